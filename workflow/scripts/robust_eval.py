# One trained model on its data set's common test set under every perturbation and strength.
from rhosym.logs import snakemake_logging
from rhosym.robustness import run_robust_eval

with snakemake_logging(snakemake):
    run_robust_eval(snakemake)
