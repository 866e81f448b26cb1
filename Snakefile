# rhosym: from raw crystal data to the figures of the 3D-electron-density paper.
# Stages are included in pipeline order; each adds its final products to ALL_TARGETS.
# See README.md and docs/formats.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


wildcard_constraints:
    ds="[A-Za-z0-9_]+",
    shard=r"\d{5}",


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/density.smk"
include: "workflow/rules/xrd.smk"
include: "workflow/rules/graphs.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
