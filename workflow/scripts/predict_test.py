from rhosym.infer import run_predict_rule
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    run_predict_rule(snakemake.input.checkpoint, list(snakemake.input.stores), snakemake.input.manifest,
                     snakemake.input.split, snakemake.output[0],
                     {"top_k": snakemake.params.top_k, "device": snakemake.params.device})
