from rhosym.logs import snakemake_logging
from rhosym.robustness import run_robustness_table

with snakemake_logging(snakemake):
    run_robustness_table(list(snakemake.input), snakemake.output[0], dict(snakemake.params.evaluate))
