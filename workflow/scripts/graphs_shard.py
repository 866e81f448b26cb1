from rhosym.graphs import run_graphs_shard
from rhosym.logs import job_logging
from rhosym.settings import GraphSettings

with job_logging(snakemake.log[0] if snakemake.log else None):
    run_graphs_shard(snakemake.input.ingest, snakemake.output.store, snakemake.wildcards.kind,
                     GraphSettings.model_validate(snakemake.params.graphs))
