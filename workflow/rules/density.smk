# Stage 'density': dense densities per ingest shard, and their down-sampling to points / sparse voxels.
# With density.path = direct (structure-derived kinds only) no dense store is written: the sample rule
# reads the ingest shard and evaluates the density at the sampled positions (rhosym.sampling).
#
# Resources of density_shard are sized for 1000 structures at 0.06 A (the paper's spacing): measured
# 1.5 s per MP-20 conventional cell (mean 362 A^3, 1.8 M grid points; `rhosym bench density`), so about
# 25 min per shard (runtime 240 min leaves room for large cells); one structure in memory at a time, at
# most density.max_voxels = 30 M points (120 MB float32 per channel, 4 channels for mp_chgcar, plus
# gemmi's grid). The store takes about 4.4 MB per structure at 0.06 A (4.4 GB per shard), 0.2 MB at 0.15 A.

from rhosym.density import density_path as _density_path


rule density_shard:
    input:
        ingest=f"{RESULTS}/{{ds}}/ingest/shard-{{shard}}.parquet",
    output:
        store=directory(f"{RESULTS}/{{ds}}/density/shard-{{shard}}.zarr"),
    params:
        density=config["density"],
    log:
        f"{RESULTS}/logs/density_shard/{{ds}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/density_shard/{{ds}}/{{shard}}.tsv"
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
        # the dense store, or the ingest shard when the density is evaluated directly
        source=lambda w: (
            f"{RESULTS}/{w.ds}/ingest/shard-{w.shard}.parquet"
            if _density_path(config, w.ds) == "direct"
            else f"{RESULTS}/{w.ds}/density/shard-{w.shard}.zarr"
        ),
    output:
        store=directory(f"{RESULTS}/{{ds}}/samples/{{method}}/shard-{{shard}}.zarr"),
    wildcard_constraints:
        method="random|grid",
    params:
        sample=config["sample"],
        density=config["density"],
        seed=config["seed"],
        direct=lambda w: _density_path(config, w.ds) == "direct",
        provenance=lambda w: {
            "kind": config["datasets"][w.ds]["kind"],
            "cell": config["datasets"][w.ds].get("cell")
            or ("as_is" if config["datasets"][w.ds]["kind"] == "mp_chgcar" else "conventional"),
            "labels": config["labels"],
        },
    log:
        f"{RESULTS}/logs/sample_shard/{{ds}}/{{method}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample_shard/{{ds}}/{{method}}/{{shard}}.tsv"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=120,
    conda:
        "../../envs/rhosym.yaml"
    script:
        "../scripts/sample_shard.py"


for _ds in DATASETS:
    for _method in rw.sample_methods_needed(config, _ds):
        ALL_TARGETS.extend(per_shard(f"{RESULTS}/{{ds}}/samples/{_method}/shard-{{shard}}.zarr", _ds))
