# Stage 'figures': the paper's figures and supplementary tables by name (rhosym.figures), from the metric
# tables of the evaluate stage. `snakemake figures` builds all of them; each named rule only what it needs.
# Outputs carry report() so `snakemake --report report.html` shows them with the captions in workflow/report.

FIGDIR = f"{RESULTS}/figures"
TABDIR = f"{RESULTS}/tables"
FIG_PARAMS = {"datasets": DATASETS, "features": FIGCFG["features"], "f1": FIGCFG["f1"]}
EVAL_DATASETS = [ds for ds in DATASETS if rev.prediction_paths(EXPERIMENTS, RESULTS, ds)]
CLASS_DATASETS = [ds for ds in DATASETS if any(e.dataset == ds and e.task in rw.CLASS_TASKS for e in EXPERIMENTS)]


localrules:
    fig3,
    fig4,
    fig4_supp,
    figS7,
    figS8,
    figS11,
    tables,
    figures,


rule fig3:
    input:
        classification=expand(f"{RESULTS}/{{ds}}/metrics/classification.csv", ds=CLASS_DATASETS),
    output:
        png=report(f"{FIGDIR}/fig3.png", caption="../report/fig3.rst", category="Figures"),
        pdf=f"{FIGDIR}/fig3.pdf",
    params:
        which="fig3",
        **{**FIG_PARAMS, "datasets": CLASS_DATASETS},
    log:
        f"{RESULTS}/logs/fig3/fig3.log",
    benchmark:
        f"{RESULTS}/benchmarks/fig3/fig3.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/figure.py"


rule fig4:
    input:
        confusion=expand(f"{RESULTS}/{{ds}}/metrics/confusion", ds=CLASS_DATASETS),
    output:
        png=report(f"{FIGDIR}/fig4.png", caption="../report/fig4.rst", category="Figures"),
        pdf=f"{FIGDIR}/fig4.pdf",
    params:
        which="fig4",
        **{**FIG_PARAMS, "datasets": CLASS_DATASETS},
    log:
        f"{RESULTS}/logs/fig4/fig4.log",
    benchmark:
        f"{RESULTS}/benchmarks/fig4/fig4.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/figure.py"


rule fig4_supp:
    input:
        confusion=expand(f"{RESULTS}/{{ds}}/metrics/confusion", ds=CLASS_DATASETS),
    output:
        png=report(f"{FIGDIR}/fig4_supp.png", caption="../report/fig4_supp.rst", category="Figures"),
        pdf=f"{FIGDIR}/fig4_supp.pdf",
    params:
        which="fig4_supp",
        **{**FIG_PARAMS, "datasets": CLASS_DATASETS},
    log:
        f"{RESULTS}/logs/fig4_supp/fig4_supp.log",
    benchmark:
        f"{RESULTS}/benchmarks/fig4_supp/fig4_supp.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/figure.py"


rule figS7:
    input:
        distribution=expand(f"{RESULTS}/{{ds}}/split_distribution.csv", ds=DATASETS),
    output:
        png=report(f"{FIGDIR}/figS7.png", caption="../report/figS7.rst", category="Figures"),
        pdf=f"{FIGDIR}/figS7.pdf",
    params:
        which="figS7",
        **FIG_PARAMS,
    log:
        f"{RESULTS}/logs/figS7/figS7.log",
    benchmark:
        f"{RESULTS}/benchmarks/figS7/figS7.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/figure.py"


rule figS8:
    input:
        sweep=expand(f"{RESULTS}/{{ds}}/metrics/points_sweep.csv", ds=SWEEP_DATASETS),
    output:
        png=report(f"{FIGDIR}/figS8.png", caption="../report/figS8.rst", category="Figures"),
        pdf=f"{FIGDIR}/figS8.pdf",
    params:
        which="figS8",
        **{**FIG_PARAMS, "datasets": SWEEP_DATASETS},
    log:
        f"{RESULTS}/logs/figS8/figS8.log",
    benchmark:
        f"{RESULTS}/benchmarks/figS8/figS8.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/figure.py"


rule figS11:
    input:
        history=[f"{RESULTS}/{e.dataset}/models/{e.path}/history.csv" for e in EXPERIMENTS],
    output:
        png=report(f"{FIGDIR}/figS11.png", caption="../report/figS11.rst", category="Figures"),
        pdf=f"{FIGDIR}/figS11.pdf",
    params:
        which="figS11",
        **FIG_PARAMS,
    log:
        f"{RESULTS}/logs/figS11/figS11.log",
    benchmark:
        f"{RESULTS}/benchmarks/figS11/figS11.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/figure.py"


rule tables:
    input:
        classification=expand(f"{RESULTS}/{{ds}}/metrics/classification.csv", ds=EVAL_DATASETS),
        regression=expand(f"{RESULTS}/{{ds}}/metrics/regression.csv", ds=EVAL_DATASETS),
    output:
        s1_csv=report(f"{TABDIR}/table_s1_classification.csv", caption="../report/table_s1.rst", category="Tables"),
        s1_md=f"{TABDIR}/table_s1_classification.md",
        s2_csv=report(f"{TABDIR}/table_s2_regression.csv", caption="../report/table_s2.rst", category="Tables"),
        s2_md=f"{TABDIR}/table_s2_regression.md",
        s3_csv=report(f"{TABDIR}/table_s3_features.csv", caption="../report/table_s3.rst", category="Tables"),
        s3_md=f"{TABDIR}/table_s3_features.md",
    params:
        which="tables",
        **{**FIG_PARAMS, "datasets": EVAL_DATASETS},
    log:
        f"{RESULTS}/logs/tables/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/tables.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/figure.py"


FIGURE_TARGETS = [
    *rules.fig3.output,
    *rules.fig4.output,
    *rules.fig4_supp.output,
    *rules.figS7.output,
    *rules.figS8.output,
    *rules.figS11.output,
    *rules.tables.output,
]


rule figures:
    input:
        FIGURE_TARGETS,


ALL_TARGETS.extend(FIGURE_TARGETS)
