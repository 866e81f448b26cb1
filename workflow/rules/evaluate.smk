# Stage 'evaluate': test-split metrics per data set on the test ids every compared model has
# (rhosym.evaluate), and the inference-time points sweep behind figS8_sweep: each trained density
# classifier re-run on the test split with at most N points per structure; nothing is retrained.

localrules:
    metrics,
    points_sweep,


rule metrics:
    input:
        predictions=get_predictions,
        manifest=wild(L.MANIFEST),
    output:
        **{k: wild(f) for k, f in L.METRIC_FILES.items()},
        per_class=directory(wild(L.METRICS_PER_CLASS)),
        confusion=directory(wild(L.METRICS_CONFUSION)),
    params:
        evaluate=S.evaluate.model_dump(include={"bootstrap", "confidence"}),
    log:
        log_of("metrics", "{ds}"),
    benchmark:
        bench_of("metrics", "{ds}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/metrics.py"


rule predict_sweep:
    input:
        checkpoint=get_checkpoint,
        manifest=wild(L.MANIFEST),
        split=get_split,
        stores=get_stores,
        lattice=get_lattice_stores,
    output:
        [wild(L.SWEEP, n=n) for n in S.figures.points_sweep],
    params:
        max_points=S.figures.points_sweep,
        top_k=S.train.top_k,
        seed=S.seed,
    log:
        log_of("predict_sweep", "{ds}", "{model}", "{task}", "{variant}"),
    benchmark:
        bench_of("predict_sweep", "{ds}", "{model}", "{task}", "{variant}")
    threads: 1
    resources:
        mem_mb=lambda w: S.train_resource(w.model, "mem_mb"),
        device=lambda w: S.train_resource(w.model, "device"),
        runtime=30 + 10 * len(S.figures.points_sweep),
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/predict_sweep.py"


rule points_sweep:
    input:
        get_sweep_outputs,
    output:
        wild(L.POINTS_SWEEP),
    log:
        log_of("points_sweep", "{ds}"),
    benchmark:
        bench_of("points_sweep", "{ds}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/points_sweep.py"


ALL_TARGETS.extend(path(f, ds=ds) for ds in DATASETS if prediction_files(ds) for f in L.METRIC_FILES.values())
