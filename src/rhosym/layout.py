"""The results layout: every path of the workflow, written once (see ``docs/formats.md``).

Patterns are relative to the results folder (downloads: to the resources folder) and use ``{ds}``, ``{shard}``, ``{model}``, ``{task}``,
``{variant}``, ``{split}``, ``{name}``. :func:`path` fills them; :func:`pattern` fills some and leaves
the others as Snakemake wildcards. An experiment's identity lives in its *variant* string
(:func:`variant` / :func:`parse_variant`), e.g. ``grid-f1-formula-s0``, ``random-f1-n5000-none-s2``,
``grid-f1-ftsynthetic-formula-s0`` (fine-tuned from the synthetic set's model),
``grid-f1-zssynthetic-formula-s0`` (predictions of the synthetic set's model, zero-shot) or
``grid-f1-aug-formula-s0`` (trained with the robustness augmentations, robustness.train_augment),
``grid-f1-ashift-formula-s0`` (trained with a random origin shift, ``experiments[].augment``) and
``grid-f1-ashift-tshift-formula-s0`` (its predictions on origin-shifted test inputs) and
``grid-f1-fr125-formula-s0`` (trained on 1/8 of the training split: a learning-curve point) and
``grid-f1-lat-formula-s0`` (a lattice-conditioned network, ``experiments[].lattice``: its head also reads
the lattice features of the cell; displayed as ``<model>+lattice``).
"""

from __future__ import annotations

import re
from string import Formatter

MANIFEST = "{ds}/manifest.parquet"
INGEST_REPORT = "{ds}/ingest_report.csv"
INGEST_SHARD = "{ds}/ingest/shard-{shard}.parquet"
SPLIT = "{ds}/splits/{split}.parquet"
SPLIT_DISTRIBUTION = "{ds}/splits/{split}_distribution.csv"
SPLIT_DISTRIBUTION_PRIMARY = "{ds}/split_distribution.csv"
DENSITY_SHARD = "{ds}/density/shard-{shard}.zarr"
STORE = "{ds}/{store}"  # an input's per-shard store (rhosym.registry.INPUTS[...].store)
MODEL_DIR = "{ds}/models/{model}/{task}/{variant}"
CHECKPOINT = MODEL_DIR + "/checkpoint.pt"
LAST = MODEL_DIR + "/last.pt"
HISTORY = MODEL_DIR + "/history.csv"
PREDICTION = "{ds}/predictions/{model}/{task}/{variant}.parquet"
SWEEP = "{ds}/predictions_sweep/{model}/{task}/{variant}/n{n}.parquet"
ROBUST = "{ds}/robustness/{model}/{task}/{variant}/{perturbation}.parquet"
METRICS_DIR = "{ds}/metrics"
METRIC_FILES = {
    "classification": "{ds}/metrics/classification.csv", "classification_md": "{ds}/metrics/classification.md",
    "regression": "{ds}/metrics/regression.csv", "regression_md": "{ds}/metrics/regression.md",
    "common_ids": "{ds}/metrics/common_test_ids.csv", "per_seed": "{ds}/metrics/per_seed.csv",
    "calibration": "{ds}/metrics/calibration.csv",
}
METRICS_PER_CLASS = "{ds}/metrics/per_class"
METRICS_CONFUSION = "{ds}/metrics/confusion"
COMMON_IDS = METRIC_FILES["common_ids"]
POINTS_SWEEP = "{ds}/metrics/points_sweep.csv"
ROBUSTNESS = "{ds}/metrics/robustness.csv"
FIGURE = "figures/{name}.{ext}"
TABLE = "tables/{name}"
LOG = "logs/{rule}/{job}.log"
BENCHMARK = "benchmarks/{rule}/{job}.tsv"
# Under the resources folder (``resources:``, default resources/): what the workflow downloads or
# retrieves, never what it computes (results/).
MP_DOWNLOAD = "mp/{ds}"
MP_METADATA = "mp/{ds}/metadata.csv"
DOWNLOAD_DONE = "mp/{ds}.done"


def path(results: str, pattern: str, **fields) -> str:
    """``results/`` + ``pattern`` with every field filled."""
    return f"{results}/{pattern.format(**fields)}"


def pattern(results: str, pattern_: str, **fixed) -> str:
    """``results/`` + ``pattern_`` with the given fields filled and the others left as ``{field}``."""
    names = {f for _, f, _, _ in Formatter().parse(pattern_) if f}
    return f"{results}/" + pattern_.format(**{n: fixed.get(n, "{" + n + "}") for n in names})


def log(results: str, rule: str, *parts: str) -> str:
    return f"{results}/" + LOG.format(rule=rule, job="/".join(parts) or rule)


def benchmark(results: str, rule: str, *parts: str) -> str:
    return f"{results}/" + BENCHMARK.format(rule=rule, job="/".join(parts) or rule)


# ---------------------------------------------------------------------------------------------- variants
#: the variant token of a lattice-conditioned network (``experiments[].lattice``; rhosym.conditioning)
LATTICE_TAG = "-lat"
VARIANT_RE = re.compile(
    r"^(?P<input>[a-z][a-z_]*)-f(?P<features>\d+)(?:-n(?P<points>\d+))?(?:-fr(?P<fraction>\d+))?(?P<lattice>-lat)?(?:-ft(?P<pretrained>[A-Za-z0-9_]+?))?"
    r"(?:-zs(?P<source>[A-Za-z0-9_]+?))?(?P<aug>-aug)?(?:-a(?P<augment>shiftrot|shift|rot))?"
    r"(?:-t(?P<test>shiftrot|shift|rot))?-(?P<split>none|formula|structure)-s(?P<seed>\d+)$")
#: Snakemake wildcard constraint of {variant} (no named groups: Snakemake reads <name> as a path variable)
VARIANT_CONSTRAINT = re.sub(r"\(\?P<\w+>", "(?:", VARIANT_RE.pattern[1:-1])


def variant(input: str, features: int, split: str, seed: int, points: int = 0, pretrained: str | None = None,
            source: str | None = None, robust: bool = False, augment: str = "", test: str = "",
            fraction: float = 1.0, lattice: bool = False) -> str:
    v = f"{input}-f{int(features)}"
    if points:
        v += f"-n{int(points)}"
    if fraction < 1.0:
        v += f"-fr{int(round(1000 * fraction)):03d}"  # the training fraction, per mille
    if lattice:
        v += LATTICE_TAG
    if pretrained:
        v += f"-ft{pretrained}"
    if source:
        v += f"-zs{source}"
    if robust:
        v += "-aug"
    if augment:
        v += f"-a{augment}"
    if test:
        v += f"-t{test}"
    return f"{v}-{split}-s{int(seed)}"


def parse_variant(text: str) -> dict:
    """``{input, features, points, pretrained, source, robust, augment, test, split, seed, fraction,
    lattice}`` of a variant."""
    m = VARIANT_RE.match(text)
    if not m:
        raise ValueError(f"not an experiment variant: {text!r}")
    d = m.groupdict()
    return {"input": d["input"], "features": int(d["features"]), "points": int(d["points"] or 0),
            "pretrained": d["pretrained"], "source": d["source"], "robust": bool(d["aug"]),
            "augment": d["augment"] or "", "test": d["test"] or "", "split": d["split"], "seed": int(d["seed"]),
            "fraction": int(d["fraction"]) / 1000 if d["fraction"] else 1.0, "lattice": bool(d["lattice"])}


def is_lattice(group_or_variant: str) -> bool:
    """Whether a variant (or a variant group, without its seed) is lattice-conditioned."""
    g = str(group_or_variant)
    try:
        return parse_variant(g if re.search(r"-s\d+$", g) else f"{g}-s0")["lattice"]
    except ValueError:
        return False


def group_of(variant_: str) -> str:
    """The variant without its seed (what metrics average over)."""
    return re.sub(r"-s\d+$", "", variant_)
