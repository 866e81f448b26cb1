from rhosym.ingest import build_manifest
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    build_manifest(list(snakemake.input), snakemake.output.manifest, snakemake.output.report)
