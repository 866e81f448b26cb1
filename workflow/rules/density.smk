# Stage 'density': dense densities per ingest shard, and their down-sampling to points / sparse voxels.
# With density.path = direct (structure-derived kinds only) no dense store is written: the sample rule
# reads the ingest shard and evaluates the density at the sampled positions (rhosym.sampling).
#
# Resources of density_shard are sized for 1000 structures at 0.06 A (the paper's spacing): measured
# 1.5 s per MP-20 conventional cell (mean 362 A^3, 1.8 M grid points; `rhosym bench density`), so about
# 25 min per shard (runtime 240 min leaves room for large cells); one structure in memory at a time, at
# most density.max_voxels = 30 M points (120 MB float32 per channel, 4 channels for mp_chgcar, plus
# gemmi's grid). The store takes about 4.4 MB per structure at 0.06 A (4.4 GB per shard), 0.2 MB at 0.15 A.

rule density_shard:
    input:
        ingest=wild(L.INGEST_SHARD),
    output:
        store=directory(wild(L.DENSITY_SHARD)),
    params:
        density=S.density.model_dump(),
        limits=S.ingest.model_dump(include={"max_bytes", "max_grid_points", "max_input_sites"}),
    log:
        log_of("density_shard", "{ds}", "{shard}"),
    benchmark:
        bench_of("density_shard", "{ds}", "{shard}")
    threads: 1
    resources:
        mem_mb=6000,
        runtime=240,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/density_shard.py"


rule sample_shard:
    input:
        source=get_sample_source,
    output:
        store=directory(wild(L.STORE, store="samples/{method}/shard-{shard}.zarr")),
    params:
        sample=S.sample.model_dump(exclude={"methods"}),
        density=lambda w: S.density.model_dump() if rw.density_path(S, w.ds) == "direct" else {},
        seed=S.seed,
        direct=lambda w: rw.density_path(S, w.ds) == "direct",
        provenance=lambda w: {
            "kind": S.datasets[w.ds].kind,
            "cell": S.datasets[w.ds].resolved_cell,
            "labels": S.labels.model_dump(),
        },
    log:
        log_of("sample_shard", "{ds}", "{method}", "{shard}"),
    benchmark:
        bench_of("sample_shard", "{ds}", "{method}", "{shard}")
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/sample_shard.py"


for _ds in DATASETS:
    for _method in rw.sample_methods_needed(S, _ds, EXPERIMENTS):
        ALL_TARGETS.extend(rw.store_paths(S, _ds, _method, SHARDS[_ds]))
