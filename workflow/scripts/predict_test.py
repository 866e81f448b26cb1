# A trained checkpoint on the test split of its data set (or, zero-shot, of another).
from rhosym import layout
from rhosym.infer import predict_split
from rhosym.logs import job_logging
from rhosym.registry import AUGMENTATIONS

with job_logging(snakemake.log[0] if snakemake.log else None):
    w = snakemake.wildcards
    v = layout.parse_variant(w.variant)
    # test inputs transformed as the experiment was trained (-t<name>), else as evaluate: asks
    transform = ({flag: True for flag in AUGMENTATIONS[v["test"]]} if v["test"] else dict(snakemake.params.evaluate))
    identity = {"dataset": w.ds, "variant": w.variant, "group": layout.group_of(w.variant), "split": v["split"],
                "trained_on": v["source"] or w.ds}
    predict_split(snakemake.input.checkpoint, list(snakemake.input.stores), snakemake.input.manifest,
                  snakemake.input.split, split="test", out=snakemake.output[0], top_k=int(snakemake.params.top_k),
                  device=str(snakemake.resources.device), seed=int(v["seed"]),
                  transform=transform, identity=identity, lattice_stores=list(snakemake.input.lattice))
