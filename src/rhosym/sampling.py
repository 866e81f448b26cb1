"""Down-sampling a periodic density to a point cloud and to sparse-tensor voxels.

Methods (``sample.method``):

* ``random``: ``N = clip(points_per_A3 · V_cell, min_points, max_points)`` points drawn uniformly,
  without replacement, among the grid points whose total density is above ``sample.threshold``
  (all of them when fewer). Seeded per structure: ``seed = sha256(f"{global seed}:{id}")``.
* ``grid``: voxel-grid sampling at ``sample.voxel`` Å in Cartesian space. The grid points of one cell
  (above the threshold) are binned into cubic voxels; each occupied voxel gives one point at the
  voxel **centre** with the **mean** density (every channel) of the grid points in it.

Fast path (``density.path: direct``, structure-derived kinds only): no dense grid. ``random`` draws
candidate positions uniformly in the cell (continuous, not grid points), evaluates ρ there
(:class:`rhosym.density.DirectModel`) and keeps those above the threshold until ``N``; ``grid`` evaluates
ρ at the centres of the voxels whose centre lies in the cell. Differences from the dense path: the value
at a voxel centre is not the mean over the grid points in the voxel (they agree to the curvature of ρ
over one voxel); a voxel straddling the cell boundary is kept by the dense path when a grid point of the
cell falls in it, by the direct path when its centre is in the cell; near the threshold, the dense path
keeps a voxel when any of its grid points is above it, the direct path when its centre is.

Voxel indices: ``voxels = floor((xyz − origin) / voxel)`` as ``[z, y, x]`` int32, where ``origin`` is
the lowest corner of the cell's Cartesian bounding box, in a virtual frame of
``spatial_shape = [ceil(frame / voxel)] * 3`` (``sample.frame`` Å, larger than every cell; a structure
whose cell does not fit is rejected). The trainer prepends the batch index for spconv.

Stored features are the RAW density in e/Å³: channels ``total`` for structure-derived kinds,
``total, magnetization, up, down`` for ``mp_chgcar`` (``density.channels: 4``). The trainer selects 1 or 4
and applies any normalization (log, standardization) with training-split statistics; nothing is
normalized here.

Store (``results/{ds}/samples/{method}/shard-{shard}.zarr``): ``offsets`` (n+1, int64), ``xyz`` (N, 3)
float32 Cartesian Å in the frame of the structure's lattice matrix, ``features`` (N, F) float32,
``voxels`` (N, 3) int32; attributes ``ids, rejected, counts, method, channels, spatial_shape, voxel,
frame, threshold, seed, source`` (``dense`` or ``direct``), ``cells`` (3×3 per structure) and
``n_electrons`` (per structure, from the dense store; null for direct).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path

import numpy as np

from rhosym.settings import DensitySettings, SampleSettings, section

log = logging.getLogger("rhosym.sampling")

def structure_seed(global_seed: int, sid: str) -> int:
    """A per-structure seed from the global seed and the id (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{global_seed}:{sid}".encode()).digest()[:8], "little")


def n_points(volume: float, cfg) -> int:
    cfg = section(SampleSettings, cfg)
    return int(np.clip(round(cfg.points_per_A3 * volume), cfg.min_points, cfg.max_points))


def frame_shape(cfg) -> list[int]:
    cfg = section(SampleSettings, cfg)
    return [int(math.ceil(cfg.frame / cfg.voxel - 1e-9))] * 3


def cell_origin(lattice: np.ndarray) -> np.ndarray:
    """Lowest corner of the Cartesian bounding box of the cell."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    return (corners @ np.asarray(lattice)).min(0)


def voxel_index(xyz: np.ndarray, origin: np.ndarray, voxel: float) -> np.ndarray:
    """Integer ``[x, y, z]`` voxel coordinates (int64)."""
    return np.floor((np.asarray(xyz, dtype=np.float64) - origin) / voxel).astype(np.int64)


def unique_voxels(vox: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(vox, axis=0, return_inverse=True, return_counts=True)`` of (N, 3) integer voxels, the
    same arrays in the same (lexicographic) order, through one int64 key per voxel, counted with
    ``np.bincount`` when the keys span a cell's voxels (no sort): 22x faster than ``np.unique(axis=0)`` on
    3 million points in 8,000 voxels, as from a dense 0.06 Å grid."""
    vox = np.asarray(vox, dtype=np.int64)
    if len(vox) == 0:
        return vox.reshape(0, 3), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo = vox.min(0)
    span = vox.max(0) - lo + 1
    key = ((vox[:, 0] - lo[0]) * span[1] + (vox[:, 1] - lo[1])) * span[2] + (vox[:, 2] - lo[2])
    n_keys = int(np.prod(span))
    if n_keys <= max(4 * len(key), 1 << 22):  # a dense key range (a cell's voxels): count, no sort
        counts = np.bincount(key, minlength=n_keys)
        ukey = np.flatnonzero(counts)
        rank = np.zeros(n_keys, dtype=np.int64)
        rank[ukey] = np.arange(len(ukey))
        inv, cnt = rank[key], counts[ukey]
    else:  # a few voxels spread far apart
        ukey, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    uniq = np.stack(np.unravel_index(ukey, tuple(int(x) for x in span)), -1).astype(np.int64) + lo
    return uniq, inv.ravel(), cnt


def to_frame(ixyz: np.ndarray, shape: list[int]) -> np.ndarray:
    """``[z, y, x]`` int32 voxels; ``ValueError`` when any falls outside the frame."""
    if len(ixyz) and (ixyz.min() < 0 or (ixyz >= np.array(shape)).any()):
        raise ValueError(f"cell does not fit the sampling frame {shape} voxels (sample.frame)")
    return np.ascontiguousarray(ixyz[:, ::-1]).astype(np.int32)


def grid_cartesian(shape: tuple[int, ...], lattice: np.ndarray) -> np.ndarray:
    """Cartesian positions of all grid points ``[i, j, k] -> (i/nx, j/ny, k/nz) @ lattice``, C order."""
    axes = [np.arange(n, dtype=np.float64) / n for n in shape]
    f = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return f @ np.asarray(lattice, dtype=np.float64)


# ---------------------------------------------------------------------------------- dense path
def sample_random_dense(rho: np.ndarray, lattice: np.ndarray, n: int, threshold: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` grid points drawn uniformly among those with total ρ > threshold. ``rho`` is (C, nx, ny, nz)."""
    flat = rho.reshape(rho.shape[0], -1)
    cand = np.flatnonzero(flat[0] > threshold)
    if len(cand) == 0:
        raise ValueError(f"no grid point above threshold {threshold}")
    pick = np.sort(rng.choice(cand, size=min(n, len(cand)), replace=False))
    ijk = np.stack(np.unravel_index(pick, rho.shape[1:]), -1)
    xyz = (ijk / np.array(rho.shape[1:])) @ np.asarray(lattice, dtype=np.float64)
    return xyz, flat[:, pick].T


def sample_grid_dense(rho: np.ndarray, lattice: np.ndarray, voxel: float, threshold: float,
                      origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-grid sampling: ``(xyz of voxel centres, mean features, [x,y,z] voxel indices)``."""
    flat = rho.reshape(rho.shape[0], -1)
    keep = np.flatnonzero(flat[0] > threshold)
    if len(keep) == 0:
        raise ValueError(f"no grid point above threshold {threshold}")
    ijk = np.stack(np.unravel_index(keep, rho.shape[1:]), -1)
    xyz = (ijk / np.array(rho.shape[1:])) @ np.asarray(lattice, dtype=np.float64)
    vox = voxel_index(xyz, origin, voxel)
    uniq, inv, cnt = unique_voxels(vox)
    feats = np.stack([np.bincount(inv, weights=flat[c, keep], minlength=len(uniq)) for c in range(len(flat))], 1)
    feats /= cnt[:, None]
    centres = origin + (uniq + 0.5) * voxel
    return centres, feats, uniq


# ---------------------------------------------------------------------------------- direct path
def sample_random_direct(model, lattice: np.ndarray, n: int, threshold: float, rng: np.random.Generator,
                         max_rounds: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform positions in the cell with ρ > threshold, ρ evaluated directly (1 channel)."""
    lattice = np.asarray(lattice, dtype=np.float64)
    xs, vs, have, frac_ok = [], [], 0, 1.0
    for _ in range(max_rounds):
        m = int(math.ceil((n - have) / max(frac_ok, 0.05) * 1.1)) + 16
        pts = rng.random((m, 3)) @ lattice
        val = model(pts)
        ok = val > threshold
        frac_ok = max(ok.mean(), 1e-3)
        xs.append(pts[ok])
        vs.append(val[ok])
        have += int(ok.sum())
        if have >= n:
            break
    if have < n:
        raise ValueError(f"only {have} of {n} random positions above threshold {threshold}")
    return np.concatenate(xs)[:n], np.concatenate(vs)[:n, None]


def sample_grid_direct(model, lattice: np.ndarray, voxel: float, threshold: float,
                       origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ρ at the centres of the voxels whose centre lies in the cell, above the threshold."""
    lattice = np.asarray(lattice, dtype=np.float64)
    top = (np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) @ lattice).max(0)
    nvox = np.ceil((top - origin) / voxel).astype(int)
    idx = np.stack(np.meshgrid(*[np.arange(k) for k in nvox], indexing="ij"), -1).reshape(-1, 3)
    centres = origin + (idx + 0.5) * voxel
    frac = centres @ np.linalg.inv(lattice)
    inside = ((frac >= 0) & (frac < 1)).all(1)
    idx, centres = idx[inside], centres[inside]
    val = model(centres)
    ok = val > threshold
    if not ok.any():
        raise ValueError(f"no voxel centre above threshold {threshold}")
    return centres[ok], val[ok, None], idx[ok]


# ---------------------------------------------------------------------------------- one structure
def sample_one(method: str, cfg: dict, sid: str, lattice: np.ndarray, seed: int,
               rho: np.ndarray | None = None, model=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xyz float32, features float32, voxels [z,y,x] int32)`` of one structure.

    Give ``rho`` (C, nx, ny, nz) for the dense path or ``model`` (callable on Cartesian points) for the
    direct path.
    """
    cfg = section(SampleSettings, cfg)
    lattice = np.asarray(lattice, dtype=np.float64)
    origin = cell_origin(lattice)
    shape = frame_shape(cfg)
    if ((np.abs(lattice).sum(0)) > cfg.frame).any():
        raise ValueError(f"cell does not fit the sampling frame of {cfg.frame} Å (sample.frame)")
    if method == "random":
        rng = np.random.default_rng(structure_seed(seed, sid))
        n = n_points(abs(np.linalg.det(lattice)), cfg)
        if rho is not None:
            xyz, feats = sample_random_dense(rho, lattice, n, cfg.threshold, rng)
        else:
            xyz, feats = sample_random_direct(model, lattice, n, cfg.threshold, rng)
        ixyz = voxel_index(xyz, origin, cfg.voxel)
    elif method == "grid":
        if rho is not None:
            xyz, feats, ixyz = sample_grid_dense(rho, lattice, cfg.voxel, cfg.threshold, origin)
        else:
            xyz, feats, ixyz = sample_grid_direct(model, lattice, cfg.voxel, cfg.threshold, origin)
    else:
        raise ValueError(f"unknown sampling method {method!r}")
    return xyz.astype(np.float32), feats.astype(np.float32), to_frame(ixyz, shape)


def _items_dense(store: str | Path):
    from rhosym.density import iter_density_store

    for sid, rho, a in iter_density_store(store):
        yield sid, np.asarray(a["cell"]), {"rho": rho}, a.get("n_electrons"), a.get("channels")


def _items_direct(ingest: str | Path, dcfg: dict):
    from rhosym.density import DirectModel
    from rhosym.ingest import read_ingest, structure_from_json

    for row in read_ingest(ingest):
        sid = str(row["id"])
        try:
            if not isinstance(row.get("structure"), str | dict):
                raise ValueError("ingest row has no structure")
            s = structure_from_json(row["structure"])
            model = DirectModel.from_structure(s, b_iso=dcfg.b_iso, blur=dcfg.blur, cutoff=dcfg.cutoff)
        except ValueError as e:
            yield sid, None, {"error": str(e)}, None, None
            continue
        yield sid, s.lattice.matrix, {"model": model}, None, ["total"]


def write_sample_store(source: str | Path, out: str | Path, method: str, cfg: dict | None = None,
                       seed: int = 0, direct: bool = False, density: dict | None = None,
                       provenance: dict | None = None) -> dict:
    """Sample every structure of a dense store (``direct=False``) or of an ingest parquet shard
    (``direct=True``, density evaluated directly) into the sample store ``out``. Returns the counts.

    The store's attributes also record what made the densities (``kind`` of the data set, the
    ``density`` settings) and ``provenance`` (the data set's ingest ``cell`` and the ``labels``
    settings), so that ``rhosym predict`` can rebuild a checkpoint's inputs exactly."""
    from rhosym.logs import progress
    from rhosym.store import jsonable, read_attrs, write_store

    cfg = section(SampleSettings, cfg)
    t0 = time.time()
    ids, rejected, cells, nel = [], {}, [], []
    xyzs, feats, voxs, channels = [], [], [], None
    if direct:
        items = list(_items_direct(source, section(DensitySettings, density)))
        upstream_rejected = {}
        kind = provenance.get("kind") if provenance else None
        density_used = section(DensitySettings, density).model_dump()
    else:
        items = _items_dense(source)
        source_attrs = read_attrs(source)
        upstream_rejected = source_attrs.get("rejected", {})
        kind = source_attrs.get("kind")
        density_used = source_attrs.get("config") or section(DensitySettings, density).model_dump()
    total = len(items) if direct else len(read_attrs(source).get("ids", []))
    for sid, lattice, src, n_el, ch in progress(items, desc=f"sample {method} {Path(out).name}", total=total):
        try:
            if "error" in src:
                raise ValueError(src["error"])
            xyz, f, v = sample_one(method, cfg, sid, lattice, seed, rho=src.get("rho"), model=src.get("model"))
        except ValueError as e:
            rejected[sid] = " ".join(str(e).split())
            log.warning("rejected %s: %s", sid, rejected[sid])
            continue
        if channels is None:
            channels = list(ch)
        elif len(ch) != len(channels):
            rejected[sid] = f"has {len(ch)} channels, the store has {len(channels)}"
            continue
        ids.append(sid)
        cells.append(np.asarray(lattice).tolist())
        nel.append(n_el)
        xyzs.append(xyz)
        feats.append(f)
        voxs.append(v)
    nf = len(channels) if channels else 1
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in xyzs])
    arrays = {
        "offsets": offsets,
        "xyz": np.concatenate(xyzs) if xyzs else np.zeros((0, 3), np.float32),
        "features": np.concatenate(feats) if feats else np.zeros((0, nf), np.float32),
        "voxels": np.concatenate(voxs) if voxs else np.zeros((0, 3), np.int32),
    }
    all_rejected = {**upstream_rejected, **rejected}
    counts = {"ok": len(ids), "rejected": len(all_rejected)}
    attrs = {"ids": ids, "rejected": all_rejected, "counts": counts, "method": method,
             "channels": channels or ["total"], "spatial_shape": frame_shape(cfg), "voxel": cfg.voxel,
             "frame": cfg.frame, "threshold": cfg.threshold, "seed": seed,
             "source": "direct" if direct else "dense", "cells": cells, "n_electrons": nel,
             "config": cfg.model_dump(exclude={"methods"}),
             "kind": kind, "density": density_used, **(provenance or {})}
    write_store(out, arrays, jsonable(attrs))
    npts = np.diff(offsets)
    log.info("sample %s %s: %d ok, %d rejected here (%d upstream), points per structure %s, %.1f s", method,
             out, len(ids), len(rejected), len(upstream_rejected),
             f"{npts.min()}..{npts.max()} (mean {npts.mean():.0f})" if len(npts) else "-", time.time() - t0)
    return counts


def read_sample(path: str | Path, i: int | None = None):
    """All arrays and attrs of a sample store, or ``(xyz, features, voxels)`` of structure ``i``."""
    from rhosym.store import read_store

    arrays, attrs = read_store(path)
    if i is None:
        return arrays, attrs
    s, e = arrays["offsets"][i], arrays["offsets"][i + 1]
    return arrays["xyz"][s:e], arrays["features"][s:e], arrays["voxels"][s:e]
