from rhosym.evaluate import run_sweep_table
from rhosym.logs import job_logging

with job_logging(snakemake.log[0] if snakemake.log else None):
    run_sweep_table(list(snakemake.input), snakemake.output[0])
