# Stage 'graphs': CGCNN and coGN crystal graphs per ingest shard (graphs.kinds, plus those experiments read).


rule graphs_shard:
    input:
        ingest=wild(L.INGEST_SHARD),
    output:
        store=directory(wild(L.STORE, store="graphs/{kind}/shard-{shard}.zarr")),
    params:
        graphs=S.graphs.model_dump(exclude={"kinds"}),
    log:
        log_of("graphs_shard", "{ds}", "{kind}", "{shard}"),
    benchmark:
        bench_of("graphs_shard", "{ds}", "{kind}", "{shard}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/graphs_shard.py"


for _ds in DATASETS:
    for _kind in rw.graph_kinds_needed(S, _ds, EXPERIMENTS):
        ALL_TARGETS.extend(rw.store_paths(S, _ds, _kind, SHARDS[_ds]))
