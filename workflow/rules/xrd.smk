# Stage 'xrd': simulated powder XRD patterns (and their sticks) per ingest shard, for the XRD FCN.


rule xrd_shard:
    input:
        ingest=f"{RESULTS}/{{ds}}/ingest/shard-{{shard}}.parquet",
    output:
        store=directory(f"{RESULTS}/{{ds}}/xrd/shard-{{shard}}.zarr"),
    params:
        xrd=config["xrd"],
    log:
        f"{RESULTS}/logs/xrd_shard/{{ds}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/xrd_shard/{{ds}}/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/xrd_shard.py"


for _ds in DATASETS:
    ALL_TARGETS.extend(per_shard(f"{RESULTS}/{{ds}}/xrd/shard-{{shard}}.zarr", _ds))
