from rhosym.ingest import download_mp
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    download_mp(dict(snakemake.params.ds))
