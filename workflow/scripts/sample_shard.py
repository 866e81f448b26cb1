from rhosym.logs import snakemake_logging
from rhosym.sampling import write_sample_store

with snakemake_logging(snakemake):
    write_sample_store(snakemake.input.source, snakemake.output.store, snakemake.wildcards.method,
                       dict(snakemake.params.sample), seed=int(snakemake.params.seed),
                       direct=bool(snakemake.params.direct), density=dict(snakemake.params.density),
                       provenance=dict(snakemake.params.provenance))
