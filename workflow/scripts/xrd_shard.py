from rhosym.logs import job_logging
from rhosym.settings import XrdSettings
from rhosym.xrd import run_xrd_shard

with job_logging(snakemake.log[0] if snakemake.log else None):
    run_xrd_shard(snakemake.input.ingest, snakemake.output.store, XrdSettings.model_validate(snakemake.params.xrd))
