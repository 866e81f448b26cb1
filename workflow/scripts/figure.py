# One figure or table of the paper (params.which): fig3, fig4, fig4_supp, figS7, figS8, figS11, tables.
from rhosym.figures import run_figure
from rhosym.logs import job_logging

with job_logging(snakemake.log[0] if snakemake.log else None):
    run_figure(snakemake.params.which, {k: list(v) if not isinstance(v, str) else [v]
                                        for k, v in snakemake.input.items()},
               dict(snakemake.output.items()), dict(snakemake.params.items()))
