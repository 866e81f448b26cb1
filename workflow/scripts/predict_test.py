from rhosym.infer import run_predict_rule
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    run_predict_rule(snakemake)
