from rhosym.density import run_density_shard
from rhosym.io.limits import use_limits
from rhosym.logs import job_logging
from rhosym.settings import DensitySettings

with job_logging(snakemake.log[0] if snakemake.log else None), use_limits(dict(snakemake.params.limits)):
    run_density_shard(snakemake.input.ingest, snakemake.output.store,
                      DensitySettings.model_validate(snakemake.params.density))
