"""Labels, datasets over the per-shard stores and the budget batch sampler, for every input kind.

The trainer (:mod:`rhosym.train`) and the predictor (:mod:`rhosym.infer`) read every input through
this module; what depends on the kind of input (reading a row, normalization, augmentation, collate,
size) is asked of its :class:`rhosym.inputs.InputKind`, so nothing here branches on the kind.

* **Items.** A structure of a split is looked up in the stores by id. A structure that a stage rejected
  (absent from its store) or whose label is missing is skipped and counted; :func:`build_items` logs
  the counts.
* **Reading.** A dataset holds store paths and row numbers; each worker process opens the stores itself
  on first use. Decoded inputs are kept in memory between epochs up to ``cache_mb`` (per process: each
  DataLoader worker has its own cache). Memory does not grow with the rows read: a read slices the
  arrays of one row, an open store keeps its arrays but not its per-row attributes; what is O(rows) is
  the index and the item lists (a few hundred bytes a row; ``rhosym bench loader``,
  docs/benchmarks/loader.md).
* **Augmentations** (``train.augment``, training split only, seeded by (seed, epoch, item)) and
  evaluation transforms (``evaluate:``) are the kind's ``augment`` and ``transform``.
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

from rhosym import inputs
from rhosym.inputs.base import InputKind, ReadOptions
from rhosym.registry import CRYSTAL_SYSTEMS, TASKS

log = logging.getLogger("rhosym.loaders")


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

def _kind(kind: str | InputKind) -> InputKind:
    return inputs.kind(kind) if isinstance(kind, str) else kind


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


def index_stores(paths: Sequence[str], kind: str | InputKind) -> tuple[dict[str, tuple[int, int]], list[np.ndarray]]:
    """``{id: (store index, row)}`` over all stores, and each store's per-row sizes."""
    k_ = _kind(kind)
    where: dict[str, tuple[int, int]] = {}
    sizes: list[np.ndarray] = []
    for k, p in enumerate(paths):
        ids, size = k_.index(k_.open(str(p)))
        sizes.append(size)
        for r, i in enumerate(ids):
            where[str(i)] = (k, r)
    return where, sizes


def build_items(split_ids: Sequence[str], labels: pd.Series, paths: Sequence[str], kind: str | InputKind,
                name: str = "", index=None, max_points: int = 0) -> Items:
    """The structures of ``split_ids`` present in the stores with a known label, in split order."""
    k_ = _kind(kind)
    where, sizes = index if index is not None else index_stores(paths, k_)
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
        items.size.append(k_.clip_size(int(sizes[k][r]), max_points))
    items.skipped = {"not_in_store": missing, "no_label": no_label}
    log.info("%s: %d structures; skipped %d absent from the %s stores (rejected upstream), %d without label",
             name or "items", len(items), missing, k_.name, no_label)
    return items


class StoreDataset:
    """``torch`` map-style dataset over :class:`Items`; opens the stores lazily in each process.

    An item is ``{"sample": {...per-sample dict of the models' contract...}, "y": float, "id": str}``.
    ``kind``: an input kind (name or :class:`rhosym.inputs.InputKind`). ``augment`` (a
    ``rhosym.settings.AugmentSettings``) applies when given (the training split); call :meth:`set_epoch`
    each epoch so augmentations differ between epochs. ``transform``: evaluation-time transforms
    (``{"origin_shift": bool, "rotation": bool}``). ``lattice`` (a :class:`rhosym.conditioning.LatticeFeatures`,
    lattice-conditioned networks): every prepared sample also gets the standardized lattice features of its
    structure's cell (``lattice_features``).
    """

    def __init__(self, items: Items, kind: str | InputKind, features: int = 1, norm: dict | None = None,
                 max_points: int | None = None, seed: int = 0, augment=None, cache_mb: int = 0,
                 transform: dict | None = None, lattice=None):
        self.items = items
        self.kind = _kind(kind)
        self.features = int(features)
        self.norm = norm
        self.max_points = int(max_points or 0)
        self.seed = int(seed)
        self.augment = augment
        self.transform = transform if transform and any(transform.values()) else None
        self.lattice = lattice
        self.epoch = 0
        self.cache_bytes = int(cache_mb) * 2**20
        self._cache: dict[int, dict] = {}
        self._cached_bytes = 0
        self._stores: dict[int, tuple] = {}
        self._pid = None

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _store(self, k: int) -> tuple:
        """``(open store, its context)``; never shared across a fork. What is kept of a store is the kind's
        :meth:`~rhosym.inputs.InputKind.reader` (for zarr stores the arrays, not the group attributes, which
        grow with the rows), so that the stores an epoch opens cost memory per store, not per row."""
        if self._pid != os.getpid():
            self._stores, self._pid = {}, os.getpid()
        if k not in self._stores:
            h = self.kind.open(self.items.paths[k])
            ctx = self.kind.context(h) if (self.augment is not None or self.transform) else {}
            self._stores[k] = (self.kind.reader(h), ctx)
        return self._stores[k]

    def raw(self, i: int) -> dict:
        """The stored arrays of item ``i`` (density values raw, all channels), cut to ``max_points``."""
        if i in self._cache:
            return self._cache[i]
        handle, _ = self._store(self.items.store[i])
        opts = ReadOptions(self.items.ids[i], self.max_points, self.kind.needs_sticks(self.augment))
        s = self.kind.read(handle, self.items.row[i], opts)
        nbytes = sum(v.nbytes for v in s.values() if isinstance(v, np.ndarray))
        if self._cached_bytes + nbytes <= self.cache_bytes:
            self._cache[i] = s
            self._cached_bytes += nbytes
        return s

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, i, 7])

    def __getitem__(self, i: int) -> dict:
        s = self.raw(i)
        if self.augment is not None or self.transform:
            ctx = {**self._store(self.items.store[i])[1], "row": self.items.row[i]}
            if self.augment is not None:
                s = self.kind.augment(s, self._rng(i), self.augment, ctx)
            else:
                s = self.kind.transform(s, self._rng(i), self.transform, ctx)
        s = self.kind.prepare(s, self.features, self.norm)
        if self.lattice is not None:
            from rhosym.conditioning import KEY

            s = {**s, KEY: self.lattice(self.items.ids[i])}
        return {"sample": s, "y": self.items.y[i], "id": self.items.ids[i]}

    def fit_norm(self, max_structures: int, seed: int) -> dict | None:
        """The kind's normalization statistics over this dataset (call it on the TRAINING split only)."""
        return self.kind.fit_norm(self.raw, len(self), self.features, int(max_structures), int(seed))


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

    Data-parallel ranks (``replicas`` > 1, :mod:`rhosym.distributed`): every rank packs the same global
    list of batches (same seeded order), and step ``k`` of the epoch is the global batches ``kN .. kN+N-1``
    (``N`` = ``replicas``): rank ``r`` takes the batches ``r, r+N, r+2N, ...``. With ``pad`` (training)
    the global list is padded to a multiple of ``N`` by repeating its first batches, so that every rank
    takes the same number of steps; :meth:`shares` gives, per step of this rank, the fraction of the
    step's sample ``weights`` its batch holds (0 for a padding batch). Scaling a rank's mean-reduced loss
    by ``share × N`` makes DDP's gradient average the exact mean over the step's real samples (padding
    contributes nothing), whatever the sizes of the N batches. Without ``pad`` (evaluation) the ranks
    simply split the batches and a rank may have one batch fewer.
    """

    def __init__(self, sizes: Sequence[int], budget: int, max_batch_size: int, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, replicas: int = 1, pad: bool = True,
                 weights: Sequence[float] | None = None):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.budget = int(budget)
        self.max_batch_size = int(max_batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.replicas, self.pad = int(rank), int(replicas), bool(pad)
        if not 0 <= self.rank < self.replicas:
            raise ValueError(f"rank {rank} is not in 0..{replicas - 1}")
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        over = int((self.sizes > self.budget).sum())
        if over and self.rank == 0:
            log.warning("%d sample(s) above the batch budget of %d (largest %d) form batches of their own",
                        over, self.budget, int(self.sizes.max()))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self) -> list[list[int]]:
        """The batches of all ranks together, in step order (the one-process list)."""
        n = len(self.sizes)
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(n)
        else:
            order = np.arange(n)
        return pack_batches(self.sizes, order, self.budget, self.max_batch_size)

    def _weight(self, batch: list[int]) -> float:
        return float(len(batch)) if self.weights is None else float(self.weights[batch].sum())

    def plan(self) -> tuple[list[list[int]], list[float]]:
        """This rank's batches and, for each, its share of its step's weight (class docstring)."""
        glob = self.global_batches()
        n = self.replicas
        if n == 1:
            return glob, [1.0] * len(glob)
        real = len(glob)
        if self.pad and real % n:
            glob = glob + [glob[i % real] for i in range(n - real % n)]  # repeats of the first batches
        mine, shares = [], []
        for k in range(0, len(glob), n):
            j = k + self.rank
            if j >= len(glob):
                break
            total = sum(self._weight(glob[i]) for i in range(k, min(k + n, real)))
            mine.append(glob[j])
            shares.append(self._weight(glob[j]) / total if j < real and total > 0 else 0.0)
        return mine, shares

    def batches(self) -> list[list[int]]:
        """This rank's batches (all of them with one rank)."""
        return self.plan()[0]

    def shares(self) -> list[float]:
        return self.plan()[1]

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
