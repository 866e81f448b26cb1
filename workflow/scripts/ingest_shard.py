from rhosym.ingest import ingest_shard
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    ingest_shard(snakemake.wildcards.ds, dict(snakemake.params.ds), snakemake.wildcards.shard,
                 int(snakemake.params.shard_size), dict(snakemake.params.labels), dict(snakemake.params.ingest),
                 snakemake.output[0], seed=int(snakemake.params.seed))
