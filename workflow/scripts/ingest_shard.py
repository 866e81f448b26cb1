from rhosym.ingest import ingest_shard
from rhosym.logs import job_logging
from rhosym.settings import DatasetSettings, IngestSettings, LabelsSettings

with job_logging(snakemake.log[0] if snakemake.log else None):
    p = snakemake.params
    ingest_shard(snakemake.wildcards.ds, DatasetSettings.model_validate(p.ds), snakemake.wildcards.shard,
                 list(p.units), LabelsSettings.model_validate(p.labels), IngestSettings.model_validate(p.ingest),
                 snakemake.output[0], seed=int(p.seed))
