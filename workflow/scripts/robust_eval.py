# One trained model on its data set's common test set under every perturbation and strength.
from rhosym import layout
from rhosym.logs import job_logging
from rhosym.robustness import evaluate_perturbed
from rhosym.store import write_parquet

with job_logging(snakemake.log[0] if snakemake.log else None):
    w, r = snakemake.wildcards, dict(snakemake.params.robustness)
    v = layout.parse_variant(w.variant)
    identity = {"dataset": w.ds, "variant": w.variant, "group": layout.group_of(w.variant), "split": v["split"],
                "augmented": bool(v["robust"])}
    df = evaluate_perturbed(snakemake.input.checkpoint, snakemake.input.manifest, snakemake.input.split,
                            list(snakemake.input.ingest), snakemake.input.common, list(r["perturbations"]),
                            dict(r.get("levels") or {}), int(r["max_structures"]), int(snakemake.params.seed),
                            str(snakemake.resources.device), identity)
    write_parquet(df, snakemake.output[0])
