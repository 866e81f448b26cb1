from rhosym.evaluate import evaluate_predictions
from rhosym.logs import job_logging

with job_logging(snakemake.log[0] if snakemake.log else None):
    e = snakemake.params.evaluate
    evaluate_predictions(list(snakemake.input.predictions), snakemake.output.classification.rsplit("/", 1)[0],
                         dataset=snakemake.wildcards.ds, bootstrap=int(e["bootstrap"]),
                         confidence=float(e["confidence"]))
