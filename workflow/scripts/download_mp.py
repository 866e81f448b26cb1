from rhosym.logs import job_logging
from rhosym.mp_download import download_mp

with job_logging(snakemake.log[0] if snakemake.log else None):
    result = download_mp(dict(snakemake.params.ds))
    if result["failed"]:
        raise RuntimeError(f"download_mp: {len(result['failed'])} materials failed (see failed.txt); rerun to retry")
