# Inference-time points sweep (figS8): one trained checkpoint on the test split at each max_points.
from rhosym.evaluate import run_points_sweep
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    run_points_sweep(snakemake.input.checkpoint, list(snakemake.input.stores), snakemake.input.manifest,
                     snakemake.input.split, list(snakemake.output), list(snakemake.params.max_points),
                     {"top_k": snakemake.params.top_k, "device": snakemake.params.device,
                      "seed": snakemake.params.seed})
