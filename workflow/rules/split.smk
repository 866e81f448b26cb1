# One seeded 80/10/10 split per data set and split rule, shared by every model of the data set.


rule split:
    input:
        manifest=wild(L.MANIFEST),
        ingest=get_ingest_shards,
    output:
        split=wild(L.SPLIT),
        distribution=wild(L.SPLIT_DISTRIBUTION),
    params:
        split=lambda w: S.split_for(w.ds, w.split),
    log:
        log_of("split", "{ds}", "{split}"),
    benchmark:
        bench_of("split", "{ds}", "{split}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/split.py"


for _ds in DATASETS:
    ALL_TARGETS.extend(path(L.SPLIT_DISTRIBUTION, ds=_ds, split=r) for r in rw.splits_needed(S, _ds, EXPERIMENTS))
