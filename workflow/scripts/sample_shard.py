from rhosym.logs import job_logging
from rhosym.sampling import write_sample_store
from rhosym.settings import DensitySettings, SampleSettings

with job_logging(snakemake.log[0] if snakemake.log else None):
    p = snakemake.params
    write_sample_store(snakemake.input.source, snakemake.output.store, snakemake.wildcards.method,
                       SampleSettings.model_validate(p.sample), seed=int(p.seed), direct=bool(p.direct),
                       density=DensitySettings.model_validate(p.density) if p.density else None,
                       provenance=dict(p.provenance))
