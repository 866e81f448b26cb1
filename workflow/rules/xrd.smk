# Stage 'xrd': simulated powder XRD patterns (and their sticks) per ingest shard, for the XRD FCN.


rule xrd_shard:
    input:
        ingest=wild(L.INGEST_SHARD),
    output:
        store=directory(wild(L.STORE, store=R.INPUTS["xrd"].store)),
    params:
        xrd=S.xrd.model_dump(),
    log:
        log_of("xrd_shard", "{ds}", "{shard}"),
    benchmark:
        bench_of("xrd_shard", "{ds}", "{shard}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/xrd_shard.py"


for _ds in DATASETS:
    ALL_TARGETS.extend(rw.store_paths(S, _ds, "xrd", SHARDS[_ds]))
