from rhosym.density import run_density_shard
from rhosym.logs import job_logging

with job_logging(snakemake.log[0] if snakemake.log else None):
    run_density_shard(snakemake.input.ingest, snakemake.output.store, dict(snakemake.params.density))
