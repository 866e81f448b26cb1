# Inference-time points sweep (figS8_sweep): one trained checkpoint on the test split at each max_points.
from rhosym.evaluate import run_points_sweep
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    run_points_sweep(snakemake)
