from rhosym.logs import job_logging
from rhosym.sampling import write_sample_store

with job_logging(snakemake.log[0] if snakemake.log else None):
    write_sample_store(snakemake.input.source, snakemake.output.store, snakemake.wildcards.method,
                       dict(snakemake.params.sample), seed=int(snakemake.params.seed),
                       direct=bool(snakemake.params.direct), density=dict(snakemake.params.density),
                       provenance=dict(snakemake.params.provenance))
