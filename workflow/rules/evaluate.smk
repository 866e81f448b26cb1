# Stage 'evaluate': test-split metrics per data set (rhosym.evaluate) and the inference-time points sweep
# behind figS8: each trained density classifier re-run on the test split with at most N points per
# structure (rhosym.infer.predict_split(max_points=N)); nothing is retrained.

from rhosym import evaluate as rev
from rhosym import train as rtrain

FIGCFG = config["figures"]
SWEEP_DATASETS = [ds for ds in DATASETS if rev.sweep_paths(EXPERIMENTS, FIGCFG, RESULTS, ds)]


localrules:
    metrics,
    points_sweep,


rule metrics:
    input:
        lambda w: rev.prediction_paths(EXPERIMENTS, RESULTS, w.ds),
    output:
        classification=report(
            f"{RESULTS}/{{ds}}/metrics/classification.csv",
            caption="../report/metrics_classification.rst",
            category="Metrics",
            subcategory="{ds}",
        ),
        classification_md=f"{RESULTS}/{{ds}}/metrics/classification.md",
        regression=report(
            f"{RESULTS}/{{ds}}/metrics/regression.csv",
            caption="../report/metrics_regression.rst",
            category="Metrics",
            subcategory="{ds}",
        ),
        regression_md=f"{RESULTS}/{{ds}}/metrics/regression.md",
        per_class=directory(f"{RESULTS}/{{ds}}/metrics/per_class"),
        confusion=directory(f"{RESULTS}/{{ds}}/metrics/confusion"),
    log:
        f"{RESULTS}/logs/metrics/{{ds}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/metrics/{{ds}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/metrics.py"


if FIGCFG["points_sweep"]:

    rule predict_sweep:
        input:
            checkpoint=rules.train_model.output.checkpoint,
            manifest=f"{RESULTS}/{{ds}}/manifest.parquet",
            split=f"{RESULTS}/{{ds}}/split.parquet",
            stores=lambda w: per_shard(f"{RESULTS}/{w.ds}/{rtrain.store_pattern(w.model, w.input)}", w.ds),
        output:
            expand(
                f"{RESULTS}/{{{{ds}}}}/predictions_sweep/{{{{model}}}}/{{{{task}}}}/{{{{input}}}}-f{{{{features}}}}/n{{n}}.parquet",
                n=FIGCFG["points_sweep"],
            ),
        params:
            max_points=FIGCFG["points_sweep"],
            top_k=config["train"]["top_k"],
            device=config["train"]["device"],
            seed=config["seed"],
        log:
            f"{RESULTS}/logs/predict_sweep/{{ds}}/{{model}}/{{task}}/{{input}}-f{{features}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/predict_sweep/{{ds}}/{{model}}/{{task}}/{{input}}-f{{features}}.tsv"
        threads: 1
        resources:
            mem_mb=lambda w: rtrain.job_setting(config["train"], w.model, "mem_mb"),
            runtime=lambda w, input: 30 + 10 * len(FIGCFG["points_sweep"]),
        conda:
            "../../envs/rhosym.yaml"
        script:
            "../scripts/predict_sweep.py"


rule points_sweep:
    input:
        lambda w: rev.sweep_paths(EXPERIMENTS, FIGCFG, RESULTS, w.ds),
    output:
        f"{RESULTS}/{{ds}}/metrics/points_sweep.csv",
    log:
        f"{RESULTS}/logs/points_sweep/{{ds}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/points_sweep/{{ds}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/points_sweep.py"


ALL_TARGETS.extend(
    f"{RESULTS}/{ds}/metrics/{name}"
    for ds in DATASETS
    if rev.prediction_paths(EXPERIMENTS, RESULTS, ds)
    for name in ("classification.csv", "classification.md", "regression.csv", "regression.md")
)
