# Stage 'figures': the paper's figures and tables by name, one rule per entry of rhosym.registry.FIGURES
# (generated in this loop). `snakemake figures` builds all of them; each named rule only what it needs.
# Outputs carry report() so `snakemake --report report.html` shows them with the captions in workflow/report.

FIGURE_TARGETS = []

for _name, _spec in R.FIGURES.items():
    _inputs, _datasets = rw.figure_inputs(S, _spec, EXPERIMENTS, TRANSFERS)
    _outputs = rw.figure_outputs(S, _spec)
    _category = "Tables" if _spec.outputs == "tables" else "Figures"
    _first = next(iter(_outputs))

    rule:
        name:
            _name
        input:
            **_inputs,
        output:
            **{
                k: (report(v, caption=f"../report/{_spec.caption}", category=_category) if k == _first else v)
                for k, v in _outputs.items()
            },
        params:
            which=_name,
            datasets=_datasets,
            splits={ds: S.primary_split(ds) for ds in _datasets},
            cells={ds: S.datasets[ds].resolved_cell for ds in _datasets},
            graphs_primitive=S.graphs.cell == "primitive",
            figures=S.figures.model_dump(include={"f1", "features"}),
        log:
            log_of(_name),
        benchmark:
            bench_of(_name)
        threads: 1
        resources:
            mem_mb=_spec.mem_mb,
            runtime=15,
        localrule: True
        conda:
            "../../envs/rhosym.yaml"
        script:
            "../scripts/figure.py"

    FIGURE_TARGETS.extend(_outputs.values())


rule figures:
    input:
        FIGURE_TARGETS,


ALL_TARGETS.extend(FIGURE_TARGETS)
