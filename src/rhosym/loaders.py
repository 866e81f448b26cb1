"""Datasets over the per-shard stores, labels, normalization statistics and the budget batch sampler.

The trainer (:mod:`rhosym.train`) and the predictor (:mod:`rhosym.infer`) read every input through
this module, so the store layouts of ``docs/formats.md`` are read in one place only.

* **Items.** A structure of a split is looked up in the stores by id (store attribute ``ids``; for the
  lattice control, the ``ok`` rows of the ingest shards). A structure that a stage rejected (absent from
  its store) or whose label is missing is skipped and counted; :func:`build_items` logs the counts.
* **Reading.** A dataset holds store paths and row numbers; each worker process opens the zarr groups
  itself on first use. Decoded inputs are kept in memory between epochs up to ``cache_mb``.
* **Points** (experiments' ``points``): density samples are cut to at most N points by a subset fixed
  per structure (seeded by its id), at training and at test time.
* **Augmentations** (``train.augment``, training split only, seeded by (seed, epoch, item)): origin
  shift and rotation of density samples (:mod:`rhosym.augment`), noise/blur of their values, zero shift,
  width scaling, background and noise of XRD patterns, noise on lattice parameters.
* **Density normalization** (stored in the checkpoint under ``norm``): per channel a fixed transform,
  then standardization with the mean and standard deviation of the transformed values over the
  TRAINING split only (a seeded subset of at most ``max_structures`` training structures):

  - total, up, down density (e/Å³): ``log1p(max(rho, 0))``;
  - magnetization (up − down, signed): ``asinh(m / 0.01)`` (sign-preserving, log-like above 0.01 e/Å³).
* **Lattice features** (:func:`lattice_features`), standardized with training statistics likewise.
* **Batches** are formed under a budget of points (density), atoms (graphs) or patterns (XRD) by
  :class:`BudgetBatchSampler`, so that large cells cannot run the GPU out of memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rhosym.registry import CRYSTAL_SYSTEMS, INPUTS, TASKS

log = logging.getLogger("rhosym.loaders")

DENSITY_CHANNELS = ("total", "magnetization", "up", "down")
MAGNETIZATION_SCALE = 0.01  # e/Å³, the asinh knee of the magnetization channel
XRD_POINTS = 8192  # the XRD network reads the first 8,192 of the 10,001 stored points
INPUT_KINDS = tuple(dict.fromkeys(i.kind for i in INPUTS.values()))
STORE_META_SKIP = ("ids", "rejected", "counts", "cells", "n_electrons")
LATTICE_FEATURES = ("a", "b", "c", "alpha", "beta", "gamma", "cos_alpha", "cos_beta", "cos_gamma",
                    "b/a", "c/a", "c/b", "V^(1/3)")


def is_regression(task: str) -> bool:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return TASKS[task].regression


def n_outputs(task: str) -> int:
    return TASKS[task].n_out


def label_values(task: str) -> list[str]:
    """The label of each class index, as strings (crystal-system names, group numbers); a joint task
    has the space-group labels of its head."""
    t = TASKS[task]
    if t.kind == "joint":
        return label_values(t.answers[-1])
    if task == "crystal_system":
        return list(CRYSTAL_SYSTEMS)
    if t.kind == "classification":
        return [str(i + 1) for i in range(t.n_classes)]
    return []


def encode_labels(manifest: pd.DataFrame, task: str) -> pd.Series:
    """Per id: the class index (float, NaN when unknown) or the physical regression target. A joint
    task is encoded by its space-group index (the other answers follow from it)."""
    t = TASKS[task]
    if t.kind == "joint":
        return encode_labels(manifest, t.answers[-1])
    m = manifest.set_index("id")
    if task == "crystal_system":
        index = {name: i for i, name in enumerate(CRYSTAL_SYSTEMS)}
        y = m["crystal_system"].map(lambda v: index.get(v, np.nan) if isinstance(v, str) else np.nan)
    elif t.kind == "classification":
        v = pd.to_numeric(m[t.column], errors="coerce")
        y = v - 1
        y[(v < 1) | (v > t.n_classes)] = np.nan
    else:
        y = pd.to_numeric(m[t.column], errors="coerce")
    return y.astype(float)


# ---------------------------------------------------------------------------------------------
# stores
# ---------------------------------------------------------------------------------------------

def _open_group(path: str):
    import zarr

    return zarr.open_group(str(path), mode="r")


def store_meta(path: str) -> dict:
    """Stage-specific attributes of a store (without the per-structure lists); {} for an ingest shard."""
    if str(path).endswith(".parquet"):
        return {"kind": "lattice", "features": list(LATTICE_FEATURES)}
    attrs = dict(_open_group(path).attrs)
    return {k: v for k, v in attrs.items() if k not in STORE_META_SKIP}


# Graph stores are CSR: per-structure node and edge ranges in ``node_offsets``/``edge_offsets``;
# node arrays are sliced by the node range, edge arrays by the edge range. Edge indices are local.
GRAPH_NODE_ARRAYS = {"cgcnn": ("atom_fea",), "cogn": ("atom_fea", "node_weight")}
GRAPH_EDGE_ARRAYS = {"cgcnn": ("edge_index", "edge_dist"), "cogn": ("edge_index", "edge_dist", "edge_vec")}


def lattice_features(params: np.ndarray) -> np.ndarray:
    """(n, 13) features of (n, 6) lattice parameters a, b, c (Å), α, β, γ (degrees)."""
    p = np.asarray(params, dtype=np.float64).reshape(-1, 6)
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    cos = np.cos(np.radians(p[:, 3:6]))
    vol = a * b * c * np.sqrt(np.clip(1 - (cos**2).sum(1) + 2 * cos.prod(1), 1e-12, None))
    return np.column_stack([p, cos, b / a, c / a, c / b, np.cbrt(vol)]).astype(np.float32)


def _read_lattice_shard(path: str) -> pd.DataFrame:
    df = pd.read_parquet(path, columns=["id", "status", "a", "b", "c", "alpha", "beta", "gamma"])
    return df[df["status"] == "ok"].reset_index(drop=True)


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
        if input_kind == "lattice":
            ids = _read_lattice_shard(p)["id"].astype(str).tolist()
            sizes.append(np.ones(len(ids), dtype=np.int64))
        else:
            g = _open_group(p)
            ids = list(g.attrs.get("ids", []))
            if input_kind == "density":
                sizes.append(np.diff(np.asarray(g["offsets"][:], dtype=np.int64)))
            elif input_kind in ("cgcnn", "cogn"):
                sizes.append(np.diff(np.asarray(g["node_offsets"][:], dtype=np.int64)))
            else:
                sizes.append(np.ones(len(ids), dtype=np.int64))
        for r, i in enumerate(ids):
            where[str(i)] = (k, r)
    return where, sizes


def build_items(split_ids: Sequence[str], labels: pd.Series, paths: Sequence[str], input_kind: str,
                name: str = "", index=None, max_points: int = 0) -> Items:
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
        n = int(sizes[k][r])
        items.size.append(min(n, max_points) if max_points and input_kind == "density" else n)
    items.skipped = {"not_in_store": missing, "no_label": no_label}
    log.info("%s: %d structures; skipped %d absent from the %s stores (rejected upstream), %d without label",
             name or "items", len(items), missing, input_kind, no_label)
    return items


def point_subset(n: int, max_points: int, sid: str) -> np.ndarray | None:
    """Indices of the fixed subset of at most ``max_points`` of ``n`` points of structure ``sid``."""
    if not max_points or n <= max_points:
        return None
    seed = int.from_bytes(hashlib.blake2b(f"points:{sid}".encode(), digest_size=8).digest(), "little")
    return np.sort(np.random.default_rng(seed).choice(n, int(max_points), replace=False))


class StoreDataset:
    """``torch`` map-style dataset over :class:`Items`; opens the zarr groups lazily in each process.

    An item is ``{"sample": {...per-sample dict of the models' contract...}, "y": float, "id": str}``.
    ``augment`` (a ``rhosym.settings.AugmentSettings``) applies when given (the training split);
    call :meth:`set_epoch` each epoch so augmentations differ between epochs.
    """

    def __init__(self, items: Items, input_kind: str, features: int = 1, norm: dict | None = None,
                 max_points: int | None = None, seed: int = 0, augment=None, cache_mb: int = 0,
                 transform: dict | None = None):
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"unknown input kind {input_kind!r}")
        self.items = items
        self.input_kind = input_kind
        self.features = int(features)
        self.norm = norm
        self.max_points = int(max_points or 0)
        self.seed = int(seed)
        self.augment = augment
        self.transform = transform  # evaluation-time {"origin_shift": bool, "rotation": bool}
        self.epoch = 0
        self.cache_bytes = int(cache_mb) * 2**20
        self._cache: dict[int, dict] = {}
        self._cached_bytes = 0
        self._groups: dict[int, object] = {}
        self._lattice: dict[int, np.ndarray] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _group(self, k: int):
        if self._pid != os.getpid():  # a new worker process: never share zarr handles across a fork
            self._groups, self._lattice, self._pid = {}, {}, os.getpid()
        if k not in self._groups:
            self._groups[k] = _open_group(self.items.paths[k])
        return self._groups[k]

    def raw(self, i: int) -> dict:
        """The stored arrays of item ``i`` (density features raw, all channels), cut to ``max_points``."""
        if i in self._cache:
            return self._cache[i]
        k, r = self.items.store[i], self.items.row[i]
        if self.input_kind == "lattice":
            if k not in self._lattice:
                df = _read_lattice_shard(self.items.paths[k])
                self._lattice[k] = df[["a", "b", "c", "alpha", "beta", "gamma"]].to_numpy(np.float64)
            s = {"lattice": self._lattice[k][r]}
        else:
            s = read_row(self._group(k), r, self.input_kind, sticks=self._need_sticks())
            if self.input_kind == "density":
                keep = point_subset(len(s["xyz"]), self.max_points, self.items.ids[i])
                if keep is not None:
                    s = {**s, "xyz": s["xyz"][keep], "features": s["features"][keep], "voxels": s["voxels"][keep]}
        nbytes = sum(v.nbytes for v in s.values() if isinstance(v, np.ndarray))
        if self._cached_bytes + nbytes <= self.cache_bytes:
            self._cache[i] = s
            self._cached_bytes += nbytes
        return s

    def _need_sticks(self) -> bool:
        return self.input_kind == "xrd" and self.augment is not None and self.augment.xrd_width_scale > 0

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, i, 7])

    def __getitem__(self, i: int) -> dict:
        s = self.raw(i)
        aug = self.augment
        if self.input_kind == "density":
            if aug is not None or self.transform:
                s = self._density_transforms(i, s)
            s = prepare_density(s, self.features, self.norm)
        elif self.input_kind == "xrd":
            s = self._xrd(i, s)
        elif self.input_kind == "lattice":
            lat = np.asarray(s["lattice"], dtype=np.float64)
            if aug is not None and aug.lattice_noise > 0:
                from rhosym.perturb import lattice_noise

                lat = lattice_noise(lat[None], aug.lattice_noise, self._rng(i))[0]
            f = lattice_features(lat)[0]
            if self.norm is not None:
                f = (f - np.asarray(self.norm["mean"], np.float32)) / np.asarray(self.norm["std"], np.float32)
            s = {"lattice": f.astype(np.float32)}
        return {"sample": s, "y": self.items.y[i], "id": self.items.ids[i]}

    def _density_transforms(self, i: int, s: dict) -> dict:
        from rhosym.augment import perturb_density_sample, transform_density_sample

        meta = self._density_meta(self.items.store[i])
        cells = meta["cells"]
        aug, tr = self.augment, self.transform or {}
        rng = self._rng(i)
        shift = bool(aug.origin_shift) if aug is not None else bool(tr.get("origin_shift"))
        rot = bool(aug.rotation) if aug is not None else bool(tr.get("rotation"))
        if (shift or rot) and self.items.row[i] < len(cells):
            cell = cells[self.items.row[i]]
            s = transform_density_sample(s, cell, rng, meta["voxel"], meta["frame"], shift, rot)
        if aug is not None:
            s = perturb_density_sample(s, rng, aug.noise_snr, aug.blur, aug.perturb_fraction)
        return s

    def _density_meta(self, k: int) -> dict:
        key = ("meta", k)
        if key not in self._groups:
            a = dict(self._group(k).attrs)
            self._groups[key] = {"cells": a.get("cells") or [], "voxel": float(a.get("voxel", 0.25)),
                                 "frame": float(a.get("frame", 64.0))}
        return self._groups[key]

    def _xrd(self, i: int, s: dict) -> dict:
        aug = self.augment
        p = s["pattern"]
        if aug is not None and (aug.xrd_zero_shift or aug.xrd_width_scale or aug.xrd_background or aug.xrd_noise):
            from rhosym.xrd import XRDStore, augment_patterns, augment_render

            rng = self._rng(i)
            if aug.xrd_width_scale and "sticks_d" in s:
                settings = XRDStore(self.items.paths[self.items.store[i]]).settings
                p = augment_render([(s["sticks_d"], s["sticks_f2"])], settings, rng, 0.0, aug.xrd_width_scale)[0]
            p = augment_patterns(p[None, :], rng, aug.xrd_zero_shift, aug.xrd_background, aug.xrd_noise)[0]
            p = np.nan_to_num(p[:XRD_POINTS], nan=0.0)
        return {"pattern": np.asarray(p[:XRD_POINTS], dtype=np.float32)}


def read_row(g, r: int, input_kind: str, sticks: bool = False) -> dict:
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
        p = np.asarray(g["patterns"][r, :], dtype=np.float32)
        out = {"pattern": np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)}
        if sticks:
            a, b = (int(v) for v in g["sticks_offsets"][r:r + 2])
            out["sticks_d"] = np.asarray(g["sticks_d"][a:b], dtype=np.float64)
            out["sticks_f2"] = np.asarray(g["sticks_f2"][a:b], dtype=np.float64)
        return out
    n0, n1 = (int(v) for v in g["node_offsets"][r:r + 2])
    e0, e1 = (int(v) for v in g["edge_offsets"][r:r + 2])
    out = {}
    for a in GRAPH_NODE_ARRAYS[input_kind]:
        out[a] = np.asarray(g[a][n0:n1], dtype=np.float32)
    for a in GRAPH_EDGE_ARRAYS[input_kind]:
        out[a] = np.asarray(g[a][e0:e1], dtype=np.int64 if a == "edge_index" else np.float32)
    return out


def lattice_stats(dataset: StoreDataset) -> dict:
    """Mean/std of the lattice features over the TRAINING dataset."""
    f = np.concatenate([lattice_features(dataset.raw(i)["lattice"]) for i in range(len(dataset))])
    std = f.std(0)
    return {"features": list(LATTICE_FEATURES), "mean": [float(v) for v in f.mean(0)],
            "std": [float(v) if v > 1e-6 else 1.0 for v in std], "n_structures": len(dataset), "source": "train"}


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
