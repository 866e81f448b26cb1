from rhosym.logs import job_logging
from rhosym.robustness import run_robustness_table

with job_logging(snakemake.log[0] if snakemake.log else None):
    e = snakemake.params.evaluate
    run_robustness_table(list(snakemake.input), snakemake.output[0], int(e["bootstrap"]), float(e["confidence"]))
