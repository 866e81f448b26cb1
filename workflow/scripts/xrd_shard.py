from rhosym.logs import snakemake_logging
from rhosym.xrd import run_xrd_shard

with snakemake_logging(snakemake):
    run_xrd_shard(snakemake.input.ingest, snakemake.output.store, dict(snakemake.params.xrd))
