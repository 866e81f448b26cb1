"""Datasets over the per-shard stores, labels, normalization statistics and the budget batch sampler.

The trainer (:mod:`rhosym.train`) and the predictor (:mod:`rhosym.infer`) read every input through
this module, so the store layouts of ``docs/formats.md`` are read in one place only.

* **Items.** A structure of a split is looked up in the stores by id (store attribute ``ids``).
  A structure that a stage rejected (absent from its store) or whose label is missing is skipped
  and counted; :func:`build_items` returns the counts and logs them.
* **Lazy reading.** A dataset holds store paths and row numbers only; each worker process opens
  the zarr groups itself on first use and reads one structure's slice per item.
* **Density normalization** (documented in the checkpoint under ``norm``): per channel a fixed
  transform, then standardization with the mean and standard deviation of the transformed values
  over the TRAINING split only (a seeded subset of at most ``max_structures`` training structures):

  - total, up, down density (e/Å³): ``log1p(max(rho, 0))``;
  - magnetization (up − down, signed): ``asinh(m / 0.01)`` (sign-preserving, log-like above 0.01 e/Å³).
* **Batches** are formed under a budget of points (density), atoms (graphs) or patterns (XRD) by
  :class:`BudgetBatchSampler`, so that large cells cannot run the GPU out of memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger("rhosym.loaders")

try:  # the labels module of the ingest stage; the order is fixed by docs/formats.md
    from rhosym.symmetry import CRYSTAL_SYSTEMS
except ImportError:  # pragma: no cover - until the symmetry module lands
    CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")

CLASS_COUNTS = {"crystal_system": 7, "extinction_group": 101, "space_group": 230}
REGRESSION_TASKS = ("band_gap", "formation_energy")
TASKS = tuple(CLASS_COUNTS) + REGRESSION_TASKS
DENSITY_CHANNELS = ("total", "magnetization", "up", "down")
MAGNETIZATION_SCALE = 0.01  # e/Å³, the asinh knee of the magnetization channel
XRD_POINTS = 8192  # the XRD network reads the first 8,192 of the 10,001 stored points
INPUT_KINDS = ("density", "xrd", "cgcnn", "cogn")
STORE_META_SKIP = ("ids", "rejected", "counts")


def is_regression(task: str) -> bool:
    if task in REGRESSION_TASKS:
        return True
    if task in CLASS_COUNTS:
        return False
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def n_outputs(task: str) -> int:
    return 1 if is_regression(task) else CLASS_COUNTS[task]


def label_values(task: str) -> list[str]:
    """The label of each class index, as strings (crystal-system names, group numbers)."""
    if task == "crystal_system":
        return list(CRYSTAL_SYSTEMS)
    if task in CLASS_COUNTS:
        return [str(i + 1) for i in range(CLASS_COUNTS[task])]
    return []


def encode_labels(manifest: pd.DataFrame, task: str) -> pd.Series:
    """Per id: the class index (float, NaN when unknown) or the physical regression target."""
    m = manifest.set_index("id")
    if task == "crystal_system":
        index = {name: i for i, name in enumerate(CRYSTAL_SYSTEMS)}
        y = m["crystal_system"].map(lambda v: index.get(v, np.nan) if isinstance(v, str) else np.nan)
    elif task in ("space_group", "extinction_group"):
        v = pd.to_numeric(m[task], errors="coerce")
        y = v - 1
        y[(v < 1) | (v > CLASS_COUNTS[task])] = np.nan
    else:
        y = pd.to_numeric(m[task], errors="coerce")
    return y.astype(float)


# ---------------------------------------------------------------------------------------------
# stores
# ---------------------------------------------------------------------------------------------

def _open_group(path: str):
    import zarr

    return zarr.open_group(str(path), mode="r")


def store_meta(path: str) -> dict:
    """Stage-specific attributes of a store (without the ``ids``/``rejected``/``counts`` lists)."""
    attrs = dict(_open_group(path).attrs)
    return {k: v for k, v in attrs.items() if k not in STORE_META_SKIP}


# Graph stores are CSR: per-structure node and edge ranges in ``node_offsets``/``edge_offsets``;
# node arrays are sliced by the node range, edge arrays by the edge range. Edge indices are local.
GRAPH_NODE_ARRAYS = {"cgcnn": ("atom_fea",), "cogn": ("atom_fea", "node_weight")}
GRAPH_EDGE_ARRAYS = {"cgcnn": ("edge_index", "edge_dist"), "cogn": ("edge_index", "edge_dist", "edge_vec")}


@dataclass
class Items:
    """Structures of one split found in the stores: parallel lists plus skip counts."""

    ids: list[str] = field(default_factory=list)
    store: list[int] = field(default_factory=list)  # index into ``paths``
    row: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    size: list[int] = field(default_factory=list)  # points / atoms / 1 per item, for the batch budget
    paths: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def index_stores(paths: Sequence[str], input_kind: str) -> tuple[dict[str, tuple[int, int]], list[np.ndarray]]:
    """``{id: (store index, row)}`` over all stores, and each store's per-row sizes."""
    where: dict[str, tuple[int, int]] = {}
    sizes: list[np.ndarray] = []
    for k, p in enumerate(paths):
        g = _open_group(p)
        ids = list(g.attrs.get("ids", []))
        for r, i in enumerate(ids):
            where[str(i)] = (k, r)
        if input_kind == "density":
            off = np.asarray(g["offsets"][:], dtype=np.int64)
            sizes.append(np.diff(off))
        elif input_kind in ("cgcnn", "cogn"):
            off = np.asarray(g["node_offsets"][:], dtype=np.int64)
            sizes.append(np.diff(off))
        else:
            sizes.append(np.ones(len(ids), dtype=np.int64))
    return where, sizes


def build_items(split_ids: Sequence[str], labels: pd.Series, paths: Sequence[str], input_kind: str,
                name: str = "", index=None) -> Items:
    """The structures of ``split_ids`` present in the stores with a known label, in split order."""
    where, sizes = index if index is not None else index_stores(paths, input_kind)
    items = Items(paths=[str(p) for p in paths])
    missing = no_label = 0
    for sid in split_ids:
        sid = str(sid)
        if sid not in where:
            missing += 1
            continue
        y = labels.get(sid, np.nan)
        if y is None or not np.isfinite(y):
            no_label += 1
            continue
        k, r = where[sid]
        items.ids.append(sid)
        items.store.append(k)
        items.row.append(r)
        items.y.append(float(y))
        items.size.append(int(sizes[k][r]))
    items.skipped = {"not_in_store": missing, "no_label": no_label}
    log.info("%s: %d structures; skipped %d absent from the %s stores (rejected upstream), %d without label",
             name or "items", len(items), missing, input_kind, no_label)
    return items


class StoreDataset:
    """``torch`` map-style dataset over :class:`Items`; opens the zarr groups lazily in each process.

    An item is ``{"sample": {...per-sample dict of the models' contract...}, "y": float, "id": str}``.
    """

    def __init__(self, items: Items, input_kind: str, features: int = 1, norm: dict | None = None,
                 max_points: int | None = None, seed: int = 0):
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {input_kind!r}")
        self.items = items
        self.input_kind = input_kind
        self.features = int(features)
        self.norm = norm
        self.max_points = max_points
        self.seed = seed
        self._groups: dict[int, object] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.items)

    def _group(self, k: int):
        if self._pid != os.getpid():  # a new worker process: never share zarr handles across a fork
            self._groups, self._pid = {}, os.getpid()
        if k not in self._groups:
            self._groups[k] = _open_group(self.items.paths[k])
        return self._groups[k]

    def raw(self, i: int) -> dict:
        """The stored arrays of item ``i`` (density features raw, all channels)."""
        g = self._group(self.items.store[i])
        r = self.items.row[i]
        return read_row(g, r, self.input_kind)

    def __getitem__(self, i: int) -> dict:
        s = self.raw(i)
        if self.input_kind == "density":
            s = prepare_density(s, self.features, self.norm)
            if self.max_points is not None and len(s["xyz"]) > self.max_points:
                rng = np.random.default_rng((self.seed, i))
                keep = np.sort(rng.choice(len(s["xyz"]), self.max_points, replace=False))
                s = {**s, "xyz": s["xyz"][keep], "features": s["features"][keep], "voxels": s["voxels"][keep]}
        return {"sample": s, "y": self.items.y[i], "id": self.items.ids[i]}


def read_row(g, r: int, input_kind: str) -> dict:
    """Read structure ``r`` of an open store group."""
    if input_kind == "density":
        o0, o1 = (int(v) for v in g["offsets"][r:r + 2])
        shape = g.attrs.get("spatial_shape")
        return {
            "xyz": np.asarray(g["xyz"][o0:o1], dtype=np.float32),
            "features": np.asarray(g["features"][o0:o1], dtype=np.float32),
            "voxels": np.asarray(g["voxels"][o0:o1], dtype=np.int32),
            "spatial_shape": np.asarray(shape if shape is not None else [0, 0, 0], dtype=np.int64),
        }
    if input_kind == "xrd":
        p = np.asarray(g["patterns"][r, :XRD_POINTS], dtype=np.float32)
        return {"pattern": np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)}
    n0, n1 = (int(v) for v in g["node_offsets"][r:r + 2])
    e0, e1 = (int(v) for v in g["edge_offsets"][r:r + 2])
    out = {}
    for a in GRAPH_NODE_ARRAYS[input_kind]:
        out[a] = np.asarray(g[a][n0:n1], dtype=np.float32)
    for a in GRAPH_EDGE_ARRAYS[input_kind]:
        out[a] = np.asarray(g[a][e0:e1], dtype=np.int64 if a == "edge_index" else np.float32)
    return out


# ---------------------------------------------------------------------------------------------
# density normalization
# ---------------------------------------------------------------------------------------------

def transform_density(features: np.ndarray) -> np.ndarray:
    """The fixed per-channel transform (before standardization); ``features`` is (n, F), F ≤ 4."""
    f = np.asarray(features, dtype=np.float64)
    out = np.empty_like(f)
    for c in range(f.shape[1]):
        if DENSITY_CHANNELS[c] == "magnetization":
            out[:, c] = np.arcsinh(f[:, c] / MAGNETIZATION_SCALE)
        else:
            out[:, c] = np.log1p(np.clip(f[:, c], 0.0, None))
    return out


def select_channels(features: np.ndarray, n_features: int) -> np.ndarray:
    if n_features not in (1, 4):
        raise ValueError(f"features must be 1 or 4, not {n_features}")
    if features.shape[1] < n_features:
        raise ValueError(
            f"{n_features} density features asked for, but the store has {features.shape[1]} channel(s): "
            "four features (total, magnetization, up, down) need spin-polarized densities (ISPIN=2 CHGCARs)")
    return features[:, :n_features]


def prepare_density(sample: dict, n_features: int, norm: dict | None) -> dict:
    """Channel selection, transform and standardization of one raw density sample."""
    f = transform_density(select_channels(sample["features"], n_features))
    if norm is not None:
        f = (f - np.asarray(norm["mean"])) / np.asarray(norm["std"])
    return {**sample, "features": f.astype(np.float32)}


def density_stats(dataset: StoreDataset, max_structures: int = 500, seed: int = 0) -> dict:
    """Per-channel mean/std of the transformed density over (a seeded subset of) ``dataset``.

    Call it with the TRAINING dataset only.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("no training structures to compute normalization statistics from")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, min(n, max_structures), replace=False))
    s1 = s2 = None
    count = 0
    for i in pick:
        f = transform_density(select_channels(dataset.raw(int(i))["features"], dataset.features))
        s1 = f.sum(0) if s1 is None else s1 + f.sum(0)
        s2 = (f ** 2).sum(0) if s2 is None else s2 + (f ** 2).sum(0)
        count += len(f)
    mean = s1 / max(count, 1)
    std = np.sqrt(np.maximum(s2 / max(count, 1) - mean ** 2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return {
        "channels": list(DENSITY_CHANNELS[:dataset.features]),
        "transform": {"total": "log1p", "up": "log1p", "down": "log1p",
                      "magnetization": f"asinh(x/{MAGNETIZATION_SCALE})"},
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "n_structures": int(len(pick)),
        "n_points": int(count),
        "source": "train",
    }


# ---------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------

def pack_batches(sizes: Sequence[int], order: Sequence[int], budget: int, max_batch_size: int) -> list[list[int]]:
    """Greedy packing of ``order`` into batches whose summed size stays within ``budget``.

    A sample larger than the budget forms its own batch.
    """
    batches: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i in order:
        s = int(sizes[i])
        if cur and (total + s > budget or len(cur) >= max_batch_size):
            batches.append(cur)
            cur, total = [], 0
        cur.append(int(i))
        total += s
    if cur:
        batches.append(cur)
    return batches


class BudgetBatchSampler:
    """Batch sampler: shuffles with ``seed`` (and the epoch, see :meth:`set_epoch`), packs greedily.

    Batches hold at most ``max_batch_size`` samples and at most ``budget`` summed size, except a single
    sample above the budget, which forms its own batch (logged once).
    """

    def __init__(self, sizes: Sequence[int], budget: int, max_batch_size: int, shuffle: bool = True,
                 seed: int = 0):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.budget = int(budget)
        self.max_batch_size = int(max_batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        over = int((self.sizes > self.budget).sum())
        if over:
            log.warning("%d sample(s) above the batch budget of %d (largest %d) form batches of their own",
                        over, self.budget, int(self.sizes.max()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        n = len(self.sizes)
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(n)
        else:
            order = np.arange(n)
        return pack_batches(self.sizes, order, self.budget, self.max_batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class Collate:
    """``collate_fn``: the model's own collate of the samples, plus ``y`` and ``ids``.

    Returns ``(batch, y, ids)``; ``y`` is long (class index) or float (standardized target).
    """

    def __init__(self, collate_fn, model_name: str, regression: bool, y_mean: float = 0.0, y_std: float = 1.0):
        self.collate_fn = collate_fn
        self.model_name = model_name
        self.regression = regression
        self.y_mean = y_mean
        self.y_std = y_std

    def __call__(self, items: list[dict]):
        import torch

        batch = self.collate_fn(self.model_name, [it["sample"] for it in items])
        y = np.array([it["y"] for it in items], dtype=np.float64)
        if self.regression:
            yt = torch.as_tensor((y - self.y_mean) / self.y_std, dtype=torch.float32)
        else:
            yt = torch.as_tensor(y.astype(np.int64))
        return batch, yt, [it["id"] for it in items]


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: numpy and python seeds from torch's per-worker seed."""
    import random

    import torch

    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)  # noqa: NPY002 - legacy global RNG some libraries still use
    random.seed(s)
