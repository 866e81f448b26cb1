from rhosym.ingest import ingest_shard
from rhosym.logs import job_logging

with job_logging(snakemake.log[0] if snakemake.log else None):
    p = snakemake.params
    ingest_shard(snakemake.wildcards.ds, dict(p.ds), snakemake.wildcards.shard, list(p.units), dict(p.labels),
                 dict(p.ingest), snakemake.output[0], seed=int(p.seed))
