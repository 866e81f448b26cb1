from rhosym.ingest import build_manifest
from rhosym.logs import job_logging

with job_logging(snakemake.log[0] if snakemake.log else None):
    build_manifest(list(snakemake.input), snakemake.output.manifest, snakemake.output.report)
