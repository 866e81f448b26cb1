"""The interface every input kind implements (see :mod:`rhosym.inputs`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

#: key of a lattice-conditioned network's standardized lattice features in a prepared sample and a batch
#: (rhosym.conditioning)
LATTICE_FEATURES_KEY = "lattice_features"


@dataclass(frozen=True)
class ReadOptions:
    """What a reader needs to know of the sample it reads: its id (seeds the fixed point subset), the
    point budget of the experiment and whether the training augmentation needs extra arrays."""

    sid: str = ""
    max_points: int = 0
    sticks: bool = False


def open_zarr(path: str):
    import zarr

    return zarr.open_group(str(path), mode="r")


class StoreArrays:
    """What a dataset keeps of an open zarr store between reads: its arrays (lazy ``zarr`` arrays, read by
    slices) and the few group attributes a kind's :meth:`InputKind.read` needs, not the group itself.

    A zarr group holds all of its attributes in memory, and those of a store grow with its rows (``ids``,
    and per-row ``cells`` and ``n_electrons`` in a density sample store: about 0.66 MB for 1,000 rows);
    a dataset keeping every store it has read open would hold them all (a full epoch opens every store).
    This keeps about 3 KB per array whatever the rows. ``handle[name]`` and ``handle.attrs.get`` work as on
    the group."""

    def __init__(self, group, attrs: tuple[str, ...] = ()):
        self._arrays = {str(n): group[n] for n in group.array_keys()}
        self.attrs = {k: group.attrs[k] for k in attrs if k in group.attrs}

    def __getitem__(self, name: str):
        return self._arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self._arrays


def stack(samples: list[dict], key: str, dtype, width: int | None = None):
    """``torch`` tensor of the per-sample arrays ``key`` concatenated along the first axis."""
    import torch

    arrs = [np.asarray(s[key], dtype=dtype) for s in samples]
    if width is not None:
        arrs = [a.reshape(-1, width) for a in arrs]
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(arrs, axis=0)))


class InputKind:
    """One kind of model input. Subclasses override what differs; the defaults are the simplest case
    (no normalization, no augmentation, one unit of batch budget per sample)."""

    name: str = ""
    #: perturbations of rhosym.perturb that apply to this kind (robustness)
    perturbations: tuple[str, ...] = ()
    #: the feature width of a network of this kind, when fixed (else :meth:`in_features` looks at a sample)
    width: int | None = None
    #: samples per batch in ``rhosym bench train`` on a CPU
    bench_batch: int = 32
    #: built on spglib's standard primitive cell when ``graphs.cell: primitive`` (a symmetry finder on the
    #: input path whatever the data set's cell; the crystal graphs)
    primitive_cell: bool = False

    # ----------------------------------------------------------------------------------- stores
    def open(self, path: str):
        return open_zarr(path)

    def index(self, handle) -> tuple[list[str], np.ndarray]:
        ids = [str(i) for i in handle.attrs.get("ids", [])]
        return ids, np.ones(len(ids), dtype=np.int64)

    #: the group attributes :meth:`read` looks at (kept by :meth:`reader`)
    read_attrs: tuple[str, ...] = ()

    def reader(self, handle):
        """What a dataset keeps of the open store ``handle`` for :meth:`read`: a zarr group becomes its
        :class:`StoreArrays` (memory per store, not per row); anything else is kept as it is."""
        return StoreArrays(handle, self.read_attrs) if hasattr(handle, "array_keys") else handle

    def context(self, handle) -> dict:
        """Store-level facts the transforms of a sample need (read once per store)."""
        return {}

    def read(self, handle, row: int, opts: ReadOptions) -> dict:
        raise NotImplementedError

    def store_meta(self, path: str) -> dict:
        """Stage-specific attributes of a store (recorded in the checkpoint as ``input_store``)."""
        skip = ("ids", "rejected", "counts", "cells", "n_electrons")
        attrs = dict(getattr(self.open(path), "attrs", None) or {})
        return {k: v for k, v in attrs.items() if k not in skip}

    # ----------------------------------------------------------------------------------- samples
    def size(self, sample: dict) -> int:
        return 1

    def limit(self, sample: dict, max_points: int, sid: str) -> dict:
        """A raw sample cut to the experiment's point budget (kinds without points: unchanged)."""
        return sample

    def clip_size(self, size: int, max_points: int) -> int:
        """The batch cost of a stored row of ``size`` read under the experiment's point budget."""
        return int(size)

    def fit_norm(self, raw: Callable[[int], dict], n: int, features: int, max_structures: int,
                 seed: int) -> dict | None:
        """Normalization statistics from the ``n`` TRAINING samples ``raw(0..n-1)`` (None: none)."""
        return None

    def needs_sticks(self, augment) -> bool:
        return False

    def augment(self, sample: dict, rng: np.random.Generator, augment, ctx: dict) -> dict:
        """Training-time transforms of a raw sample (``augment``: rhosym.settings.AugmentSettings)."""
        return sample

    def transform(self, sample: dict, rng: np.random.Generator, transform: dict, ctx: dict) -> dict:
        """Evaluation-time transforms (``evaluate:``: origin shift, rotation) of a raw sample."""
        return sample

    def prepare(self, sample: dict, features: int, norm: dict | None) -> dict:
        """A raw sample made ready for the network."""
        return sample

    def in_features(self, features: int, sample: dict) -> int:
        return int(self.width) if self.width is not None else int(features)

    def collate(self, samples: list[dict]) -> dict:
        """Batch prepared samples (``rhosym.models`` documents the batch of each kind); a ``y`` in every
        sample is stacked into ``batch["y"]``, the lattice features of a lattice-conditioned network
        (rhosym.conditioning) into ``batch["lattice_features"]`` (B, 13)."""
        import torch

        if not samples:
            raise ValueError("collate: no samples")
        out = self.batch(samples)
        key = LATTICE_FEATURES_KEY
        if any(key in s for s in samples):
            if not all(key in s for s in samples):
                raise ValueError(f"collate: {key} in some samples only")
            out[key] = torch.from_numpy(np.stack([np.asarray(s[key], dtype=np.float32) for s in samples]))
        if all("y" in s for s in samples):
            ys = np.array([s["y"] for s in samples]).reshape(len(samples), -1).squeeze(-1)
            dtype = torch.int64 if np.issubdtype(ys.dtype, np.integer) else torch.float32
            out["y"] = torch.as_tensor(ys, dtype=dtype)
        return out

    def batch(self, samples: list[dict]) -> dict:
        raise NotImplementedError

    def synthetic(self, rng: np.random.Generator, **kw) -> dict:
        """One synthetic prepared sample (``rhosym bench train``); unknown keywords are ignored."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- from raw data
    def configure(self, s, store: dict, method: str | None, voxel: float | None) -> None:
        """Fill the preprocessing settings ``s`` (rhosym.predict.Settings) from a checkpoint's
        ``input_store``; refuse (ValueError) a ``method``/``voxel`` the kind does not take."""
        if method is not None or voxel is not None:
            raise ValueError(f"--method/--voxel apply to density models only, not {s.model}")

    def from_structure(self, structure, uid: str, s) -> tuple[dict, dict]:
        """``(raw sample, info)`` of a prepared structure, made as the training stores were."""
        raise NotImplementedError

    def from_density(self, rho: np.ndarray, lattice: np.ndarray, uid: str, s) -> tuple[dict, dict]:
        """``(raw sample, info)`` of a dense periodic density ``rho`` (channels, nx, ny, nz) over
        ``lattice`` (rows, Å); ValueError for kinds that do not read densities."""
        raise ValueError(f"a density map can only be given to a density model, not {s.model}")

    def perturbed(self, row: dict, s, names: list[str], levels: dict, seed: int) -> Iterator[tuple[str, float, dict]]:
        """``(perturbation, strength, raw sample)`` of one test structure (its ingest ``row``)."""
        return iter(())

    def grid_perturbations(self, sid: str, s, names, levels, seed: int, structure, rho, lattice, b_iso: float,
                           clean=None) -> Iterator[tuple[str, float, dict]]:
        """The perturbed samples of a kind that reads densities: noise, blur and wedge on the dense grid
        ``rho`` ((C,) nx, ny, nz over ``lattice``), then :meth:`from_density`; thermal smearing recomputes
        the density of ``structure`` (skipped without one). ``clean``: makes the unperturbed sample when
        the grid is not how the training inputs were made (a density evaluated directly)."""
        from rhosym.perturb import apply_grid, seeded, thermal

        rho = np.asarray(rho)
        channels = rho if rho.ndim == 4 else rho[None]
        for name in names:
            for lv in levels[name]:
                if name == "thermal":
                    if structure is not None:
                        moved = structure if lv == 0 else thermal(structure, lv, default_b=b_iso)
                        yield name, lv, self.from_structure(moved, sid, s)[0]
                    continue
                none = (name == "noise" and math.isinf(lv)) or (name != "noise" and lv == 0)
                if none and clean is not None:
                    yield name, lv, clean()
                    continue
                rng = seeded(seed, sid, name, lv)
                p = channels if none else np.stack([apply_grid(name, c, lattice, lv, rng) for c in channels])
                yield name, lv, self.from_density(p.astype(np.float32), lattice, sid, s)[0]
