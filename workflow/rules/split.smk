# One seeded 80/10/10 split per data set, shared by every model of the data set.


rule split:
    input:
        manifest=f"{RESULTS}/{{ds}}/manifest.parquet",
        ingest=lambda w: per_shard(f"{RESULTS}/{{ds}}/ingest/shard-{{shard}}.parquet", w.ds),
    output:
        split=f"{RESULTS}/{{ds}}/split.parquet",
        distribution=f"{RESULTS}/{{ds}}/split_distribution.csv",
    params:
        split=config["split"],
    log:
        f"{RESULTS}/logs/split/{{ds}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/split/{{ds}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/split.py"


ALL_TARGETS.extend(expand(f"{RESULTS}/{{ds}}/split_distribution.csv", ds=DATASETS))
