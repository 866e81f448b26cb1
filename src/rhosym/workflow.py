"""Helpers the Snakemake rules call at DAG-build time: data sets, shards, experiments, paths.

Kept in the package (not in ``common.smk``) so that tests exercise them directly.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

from rhosym.shards import list_shards

DENSITY_MODELS = ("sparse_cnn", "pointnet")
GRAPH_MODELS = ("cgcnn", "cogn")
XRD_MODELS = ("xrd_fcn",)
MODELS = DENSITY_MODELS + XRD_MODELS + GRAPH_MODELS
CLASS_TASKS = ("crystal_system", "extinction_group", "space_group")
REGRESSION_TASKS = ("band_gap", "formation_energy")
TASKS = CLASS_TASKS + REGRESSION_TASKS


@dataclass(frozen=True)
class Experiment:
    dataset: str
    model: str
    task: str
    input: str  # random | grid (density models), xrd, graph
    features: int

    @property
    def tag(self) -> str:
        return f"{self.input}-f{self.features}"

    @property
    def path(self) -> str:
        """Relative to the data set's results folder."""
        return f"{self.model}/{self.task}/{self.tag}"

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.path}"


def model_input(model: str, sampling: str) -> str:
    if model in DENSITY_MODELS:
        return sampling
    if model in XRD_MODELS:
        return "xrd"
    if model in GRAPH_MODELS:
        return "graph"
    raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")


def expand_experiments(config: dict) -> list[Experiment]:
    """Every (data set, model, task, input, features) the ``experiments:`` section asks for.

    Feature sets other than 1 apply to the density models only; the others read one input.
    Duplicates are removed; order is stable.
    """
    out: dict[Experiment, None] = {}
    for block in config.get("experiments") or []:
        datasets = block.get("datasets") or list(config["datasets"])
        for ds, model, task, feats, sampling in itertools.product(
            datasets, block["models"], block["tasks"], block.get("features", [1]), block.get("sampling", ["grid"])
        ):
            if ds not in config["datasets"]:
                raise ValueError(f"experiments name data set {ds!r}, which is not under datasets:")
            if model not in DENSITY_MODELS and feats != 1:
                feats = 1
            out[Experiment(ds, model, task, model_input(model, sampling), int(feats))] = None
    return list(out)


def dataset_shards(config: dict, ds: str) -> list[str]:
    """Shard names of ``ds``. A missing ``mp_chgcar`` folder has none yet (a warning says to run its
    ``download_mp_<ds>`` target first), so that the download target can be built; any other missing
    input is an error."""
    cfg = config["datasets"][ds]
    try:
        return list_shards(cfg, int(config["shard_size"]))
    except FileNotFoundError:
        if cfg["kind"] != "mp_chgcar":
            raise
        warnings.warn(f"data set {ds!r}: {cfg.get('path')!r} does not exist yet; "
                      f"run `snakemake download_mp_{ds}` first", stacklevel=2)
        return []


def sample_methods_needed(config: dict, ds: str) -> list[str]:
    """Down-sampling methods some experiment of ``ds`` reads, plus ``sample.methods``."""
    methods = dict.fromkeys(config.get("sample", {}).get("methods", []))
    for e in expand_experiments(config):
        if e.dataset == ds and e.model in DENSITY_MODELS:
            methods[e.input] = None
    return list(methods)
