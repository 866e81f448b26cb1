# Inference-time points sweep (figS8_sweep): one trained checkpoint on the test split at each max_points.
from rhosym import layout
from rhosym.infer import predict_sweep
from rhosym.logs import job_logging

with job_logging(snakemake.log[0] if snakemake.log else None):
    w = snakemake.wildcards
    v = layout.parse_variant(w.variant)
    identity = {"dataset": w.ds, "variant": w.variant, "group": layout.group_of(w.variant), "split": v["split"],
                "trained_on": w.ds}
    predict_sweep(snakemake.input.checkpoint, list(snakemake.input.stores), snakemake.input.manifest,
                  snakemake.input.split, list(snakemake.output), [int(n) for n in snakemake.params.max_points],
                  top_k=int(snakemake.params.top_k), device=str(snakemake.resources.device), seed=int(v["seed"]),
                  identity=identity, lattice_stores=list(snakemake.input.lattice))
