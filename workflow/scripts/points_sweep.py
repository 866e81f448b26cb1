from rhosym.evaluate import run_sweep_table
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    run_sweep_table(list(snakemake.input), snakemake.output[0])
