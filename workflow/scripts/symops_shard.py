from rhosym.logs import job_logging
from rhosym.settings import DensitySettings, SymopsSettings
from rhosym.symops_stage import run_symops_shard

with job_logging(snakemake.log[0] if snakemake.log else None):
    run_symops_shard(snakemake.input.ingest, snakemake.output.store,
                     SymopsSettings.model_validate(snakemake.params.symops),
                     DensitySettings.model_validate(snakemake.params.density))
