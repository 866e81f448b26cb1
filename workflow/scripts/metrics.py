from rhosym.evaluate import evaluate_predictions
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    evaluate_predictions(list(snakemake.input), snakemake.output.classification.rsplit("/", 1)[0],
                         dataset=snakemake.wildcards.ds)
