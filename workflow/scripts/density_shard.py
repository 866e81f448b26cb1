from rhosym.density import run_density_shard
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    run_density_shard(snakemake.input.ingest, snakemake.output.store, dict(snakemake.params.density))
