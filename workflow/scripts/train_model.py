from rhosym.logs import snakemake_logging
from rhosym.train import run_train_rule

with snakemake_logging(snakemake):
    w = snakemake.wildcards
    run_train_rule(w.model, w.task, w.input, int(w.features), list(snakemake.input.stores),
                   snakemake.input.manifest, snakemake.input.split, snakemake.output.checkpoint,
                   dict(snakemake.params.train), int(snakemake.params.seed), w.ds, snakemake.threads)
