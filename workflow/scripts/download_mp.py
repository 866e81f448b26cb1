from rhosym.logs import snakemake_logging
from rhosym.mp import download_mp

with snakemake_logging(snakemake):
    result = download_mp(dict(snakemake.params.ds))
    if result["failed"]:
        raise RuntimeError(f"download_mp: {len(result['failed'])} materials failed (see failed.txt); rerun to retry")
