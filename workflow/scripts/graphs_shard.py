from rhosym.graphs import run_graphs_shard
from rhosym.logs import snakemake_logging

with snakemake_logging(snakemake):
    run_graphs_shard(snakemake.input.ingest, snakemake.output.store, snakemake.wildcards.kind,
                     dict(snakemake.params.graphs))
