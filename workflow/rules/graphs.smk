# Stage 'graphs': CGCNN and coGN crystal graphs per ingest shard (kinds from graphs.kinds).


rule graphs_shard:
    input:
        ingest=f"{RESULTS}/{{ds}}/ingest/shard-{{shard}}.parquet",
    output:
        store=directory(f"{RESULTS}/{{ds}}/graphs/{{kind}}/shard-{{shard}}.zarr"),
    params:
        graphs=config["graphs"],
    wildcard_constraints:
        kind="cgcnn|cogn",
    log:
        f"{RESULTS}/logs/graphs_shard/{{ds}}/{{kind}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/graphs_shard/{{ds}}/{{kind}}/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/graphs_shard.py"


for _ds in DATASETS:
    for _kind in config["graphs"]["kinds"]:
        ALL_TARGETS.extend(per_shard(f"{RESULTS}/{{ds}}/graphs/{{kind}}/shard-{{shard}}.zarr", _ds, kind=_kind))
