from rhosym.logs import job_logging
from rhosym.settings import SplitSettings
from rhosym.splits import run_split

with job_logging(snakemake.log[0] if snakemake.log else None):
    run_split(snakemake.input.manifest, list(snakemake.input.ingest), snakemake.output.split,
              snakemake.output.distribution, SplitSettings.model_validate(snakemake.params.split))
