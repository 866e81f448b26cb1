from rhosym.logs import snakemake_logging
from rhosym.splits import run_split

with snakemake_logging(snakemake):
    run_split(snakemake.input.manifest, list(snakemake.input.ingest), snakemake.output.split,
              snakemake.output.distribution, dict(snakemake.params.split))
