# rhosym: from raw crystal data to the figures of the 3D-electron-density paper.
# Stages are included in pipeline order; each adds its final products to ALL_TARGETS.
# Settings: rhosym.settings (typed, validated at parse time); models, tasks, inputs, data-set kinds and
# figures: rhosym.registry; paths: rhosym.layout. See README.md ("Extending rhosym") and docs/formats.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/density.smk"
include: "workflow/rules/xrd.smk"
include: "workflow/rules/graphs.smk"
include: "workflow/rules/symops.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,
