# Stage 'symops': per ingest shard, each density in the conventional cell of its lattice, its
# symmetry-operation scores and the classical finder's answer (rhosym.symops_stage), for the classical,
# symops and periodic_cnn models. Built only for data sets an experiment of those models reads.


rule symops_shard:
    input:
        ingest=wild(L.INGEST_SHARD),
    output:
        store=directory(wild(L.STORE, store=R.INPUTS["symops"].store)),
    params:
        symops=S.symops.model_dump(),
        density=S.density.model_dump(),
    log:
        log_of("symops_shard", "{ds}", "{shard}"),
    benchmark:
        bench_of("symops_shard", "{ds}", "{shard}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/symops_shard.py"


for _ds in DATASETS:
    if any(e.dataset == _ds and R.INPUTS[e.input].rule == "symops_shard" for e in EXPERIMENTS):
        ALL_TARGETS.extend(rw.store_paths(S, _ds, "symops", SHARDS[_ds]))
