from rhosym.logs import snakemake_logging
from rhosym.train import run_train_rule

with snakemake_logging(snakemake):
    run_train_rule(snakemake)
