"""``rhosym bench loader``: peak memory and throughput of one training epoch read from zarr shards, at
two (or more) store sizes, to show that the memory of an epoch does not grow with the data set.

``rhosym bench loader [--rows 20000 200000] [--kinds density lattice] [--workers 0 2] [--points 200]
[--cache-mb 0] [--out DIR] [--keep]``.

Stores (made up, written once per size under ``--out``, reused when present): ``--rows`` structures in
shards of ``--shard-size`` (1,000) rows, in the layouts the trainer reads:

* density (``samples/grid/shard-*.zarr``, written with :func:`rhosym.store.write_store` as
  :mod:`rhosym.sampling` writes them): ``offsets``, ``xyz``, ``features`` (one raw channel),
  ``voxels``; 150..250 points per structure (``--points`` on average) in a 16 Å frame at 0.5 Å voxels;
  the attributes of a real store, ``cells`` (3×3 per row) and ``n_electrons`` included;
* lattice (``ingest/shard-*.parquet``): the ingest columns the lattice control reads.

Labels: seven classes (crystal systems) from the row number. Disk use and write time are reported.

Epoch (each in a fresh Python process, ``sys.executable``, so that peaks are its own): the training
path of :mod:`rhosym.train` (:func:`rhosym.loaders.index_stores`, :func:`rhosym.loaders.build_items`,
:class:`rhosym.loaders.StoreDataset` with ``cache_mb`` = ``--cache-mb``, the budget batch sampler and
``torch.utils.data.DataLoader`` of :func:`rhosym.train.make_loader`, shuffled, ``pin_memory`` off on the
CPU), with ``num_workers`` each of ``--workers``, once reading only (``load``) and once with a model
step on every batch (``step``: a small PointNet for density, the lattice MLP for lattice; forward,
cross-entropy, backward, Adam step), so that a data-bound run shows as ``step`` ≈ ``load``.

Measured per run:

* ``rss_start_mb``: resident memory after the imports (torch, zarr, rhosym);
* ``rss_index_mb``: after the store index and the item lists (the part that is O(rows): a few hundred
  bytes per row);
* ``peak_mb``: the peak resident memory of the process (``VmHWM``) at the end of the epoch;
* ``epoch_growth_mb`` = ``peak_mb`` − ``rss_index_mb``: what the rest added (normalization statistics
  over 256 structures, the batch plan, the model and its optimizer in ``step``, the DataLoader and the
  epoch's reads), the figure that must not grow with the rows;
* ``worker_peak_mb``: the largest peak of a DataLoader worker (``getrusage(RUSAGE_CHILDREN)`` after the
  workers are joined; it counts the pages a forked worker shares with its parent);
* ``samples_per_s``: samples of the epoch / wall time of the epoch (first batch to last).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARD_SIZE = 1000
FRAME, VOXEL = 16.0, 0.5
N_CLASSES = 7
MODEL_OF = {"density": "pointnet", "lattice": "lattice"}
#: a small PointNet (the published one is 64, 128, 1024 wide): the step costs what a CPU step costs
SMALL_POINTNET = {"channels": [16, 32, 128], "head": [64, 32], "groups": 4}
LATTICE_PARAMS = ("a", "b", "c", "alpha", "beta", "gamma")


# ----------------------------------------------------------------------------- memory
def _status_mb(field: str, pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 if field == "VmHWM" else float("nan")


def peak_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``; ``getrusage`` where there is no /proc)."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    """Resident memory of this process now, in MB (``VmRSS``)."""
    return _status_mb("VmRSS")


def disk_mb(path: str | Path) -> float:
    """Bytes on disk under ``path`` (allocated blocks), in MB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = os.stat(os.path.join(root, f))
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total / 2**20


# ----------------------------------------------------------------------------- synthetic stores
def row_ids(start: int, stop: int) -> list[str]:
    return [f"b{i:07d}" for i in range(start, stop)]


def class_of(i: int) -> int:
    return i % N_CLASSES


def write_density_shard(path: str | Path, start: int, stop: int, points: int = 200, seed: int = 0,
                        chunk_points: int = 0) -> Path:
    """One density sample store of rows ``start..stop-1`` (layout of :mod:`rhosym.sampling`), written
    as the pipeline writes it (:func:`rhosym.store.write_store`: chunks of about 4 MB) or, with
    ``chunk_points``, with chunks of that many points."""
    from rhosym.store import jsonable, new_store, write_array, write_store

    rng = np.random.default_rng([seed, start])
    n = stop - start
    lo, hi = max(1, points - points // 4), points + points // 4
    counts = rng.integers(lo, hi + 1, n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts)
    total = int(offsets[-1])
    edges = rng.uniform(4.0, 8.0, (n, 3))
    nvox = np.repeat(np.floor(edges / VOXEL).astype(np.int64), counts, axis=0)
    vox = (rng.random((total, 3)) * nvox).astype(np.int32)  # [z, y, x] inside each cell
    xyz = ((vox[:, ::-1] + 0.5) * VOXEL).astype(np.float32)
    cls = np.repeat(np.array([class_of(i) for i in range(start, stop)]), counts)
    rho = (np.exp(0.3 * cls) * rng.gamma(2.0, 0.05, total)).astype(np.float32)[:, None]
    cells = [np.diag(e).tolist() for e in edges]
    ids = row_ids(start, stop)
    shape = [int(np.ceil(FRAME / VOXEL))] * 3
    attrs = {"ids": ids, "rejected": {}, "counts": {"ok": n, "rejected": 0}, "method": "grid",
             "channels": ["total"], "spatial_shape": shape, "voxel": VOXEL, "frame": FRAME, "threshold": 0.0,
             "seed": seed, "source": "dense", "cells": cells, "n_electrons": [float(v) for v in edges.prod(1)],
             "config": {"voxel": VOXEL, "frame": FRAME}, "kind": "synthetic", "density": {}}
    arrays = {"offsets": offsets, "xyz": xyz, "features": rho, "voxels": vox}
    if not chunk_points:
        return write_store(path, arrays, attrs)
    with new_store(path) as group:
        for name, data in arrays.items():
            write_array(group, name, data, chunks=None if name == "offsets" else (int(chunk_points), data.shape[1]))
        group.attrs.update(jsonable(attrs))
    return Path(path)


def write_lattice_shard(path: str | Path, start: int, stop: int, seed: int = 0) -> Path:
    """One ingest-like parquet shard with the lattice parameters of rows ``start..stop-1``."""
    import pandas as pd

    rng = np.random.default_rng([seed, start, 1])
    n = stop - start
    a = rng.uniform(3.0, 12.0, n)
    ratio = np.array([(1.0, 1.3, 1.7, 1.0, 1.2, 1.6, 1.1)[class_of(i)] for i in range(start, stop)])
    df = pd.DataFrame({"id": row_ids(start, stop), "status": "ok", "a": a, "b": a, "c": a * ratio,
                       "alpha": 90.0, "beta": 90.0, "gamma": 90.0})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return Path(path)


def store_paths(root: str | Path, kind: str, rows: int, shard_size: int = SHARD_SIZE) -> list[Path]:
    root = Path(root)
    n = (rows + shard_size - 1) // shard_size
    if kind == "density":
        return [root / "samples" / "grid" / f"shard-{k:05d}.zarr" for k in range(n)]
    return [root / "ingest" / f"shard-{k:05d}.parquet" for k in range(n)]


def write_stores(root: str | Path, kind: str, rows: int, points: int = 200, shard_size: int = SHARD_SIZE,
                 seed: int = 0, chunk_points: int = 0) -> dict:
    """The stores of ``kind`` for ``rows`` structures under ``root`` (shards already there are kept);
    ``{"paths", "write_s", "disk_mb"}``."""
    paths = store_paths(root, kind, rows, shard_size)
    t0 = time.perf_counter()
    for k, p in enumerate(paths):
        if p.exists():
            continue
        start, stop = k * shard_size, min(rows, (k + 1) * shard_size)
        if kind == "density":
            write_density_shard(p, start, stop, points, seed, chunk_points)
        else:
            write_lattice_shard(p, start, stop, seed)
    base = paths[0].parent
    return {"paths": [str(p) for p in paths], "write_s": time.perf_counter() - t0, "disk_mb": disk_mb(base)}


def labels(rows: int):
    """``pandas.Series`` id → class index (float), as :func:`rhosym.loaders.encode_labels` returns."""
    import pandas as pd

    return pd.Series(np.arange(rows) % N_CLASSES, index=row_ids(0, rows), dtype=float)


# ----------------------------------------------------------------------------- one epoch
def run_epoch(kind: str, paths: list[str], rows: int, workers: int = 0, model_step: bool = False,
              cache_mb: int = 0, budget: int = 12800, max_batch_size: int = 64, threads: int = 1,
              seed: int = 0, augment: bool = False, keep_groups: bool = False, limit: int = 0) -> dict:
    """One shuffled epoch over all ``rows`` through the trainer's loader, in THIS process (call it in a
    fresh one: :func:`measure`); the figures of the module docstring. ``augment``: the training
    augmentation of the density models (origin shift and rotation; their per-store context is kept);
    ``keep_groups``: keep each zarr group open as the loader did before :class:`rhosym.inputs.base.StoreArrays`
    (for comparison); ``limit``: stop after this many samples (0: the whole epoch)."""
    import torch

    import rhosym.models as registry
    from rhosym import inputs
    from rhosym import loaders as L
    from rhosym.train import make_loader

    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(seed)
    source = inputs.kind(kind)
    if keep_groups:
        source.reader = lambda h: h
    out = {"kind": kind, "rows": rows, "shards": len(paths), "workers": int(workers),
           "mode": "step" if model_step else "load", "cache_mb": int(cache_mb), "threads": int(threads),
           "augment": bool(augment), "keep_groups": bool(keep_groups), "limit": int(limit),
           "rss_start_mb": rss_mb()}
    t0 = time.perf_counter()
    lab = labels(rows)
    index = L.index_stores(paths, source)
    items = L.build_items(list(lab.index), lab, paths, source, name="bench", index=index)
    del index
    out.update(index_s=time.perf_counter() - t0, rss_index_mb=rss_mb())
    aug = None
    if augment:
        from rhosym.settings import AugmentSettings

        aug = AugmentSettings(origin_shift=True, rotation=True, lattice_noise=0.01)
    ds = L.StoreDataset(items, source, features=1, seed=seed, cache_mb=cache_mb, augment=aug)
    ds.norm = ds.fit_norm(256, seed)
    name = MODEL_OF[kind]
    collate = L.Collate(registry.collate, name, regression=False)
    cfg = argparse.Namespace(batch_budget=int(budget) if kind == "density" else int(max_batch_size),
                             max_batch_size=int(max_batch_size))
    loader, sampler = make_loader(ds, items.size, collate, cfg, shuffle=True, seed=seed,
                                  device=torch.device("cpu"), num_workers=int(workers))
    model = opt = None
    if model_step:
        model = registry.build_model(name, N_CLASSES, False, source.in_features(1, ds[0]["sample"]),
                                     SMALL_POINTNET if name == "pointnet" else None)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
    out.update(setup_s=time.perf_counter() - t0, batches=len(sampler))
    n = 0
    loss_sum = 0.0
    t0 = time.perf_counter()
    it = iter(loader)
    for batch, y, _ids in it:
        n += len(y)
        if model is not None:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(batch), y)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(y)
        if limit and n >= limit:
            break
    seconds = time.perf_counter() - t0
    del it  # joins the workers, so that RUSAGE_CHILDREN holds their peaks
    if n != len(items) and not (limit and n >= limit):
        raise RuntimeError(f"the epoch gave {n} samples of {len(items)}")
    out.update(samples=n, epoch_s=seconds, samples_per_s=n / seconds if seconds > 0 else float("nan"),
               peak_mb=peak_mb(), rss_end_mb=rss_mb(), open_stores=len(ds._stores),
               cached_mb=ds._cached_bytes / 2**20, loadavg_1min=os.getloadavg()[0])
    out["epoch_growth_mb"] = out["peak_mb"] - out["rss_index_mb"]
    out["worker_peak_mb"] = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
                             if workers else 0.0)
    if model is not None:
        out["mean_loss"] = loss_sum / max(n, 1)
    return out


def _child(argv: list[str]) -> int:
    """In a fresh process: imports, then :func:`run_epoch` with the JSON arguments, result as JSON."""
    args, result = json.loads(argv[0]), Path(argv[1])
    import torch  # noqa: F401 - imported before the first measurement, as in a training job
    import zarr  # noqa: F401

    import rhosym.loaders  # noqa: F401
    import rhosym.models  # noqa: F401
    import rhosym.train  # noqa: F401

    result.write_text(json.dumps(run_epoch(**args)))
    return 0


def measure(args: dict, work: str | Path, timeout: float | None = None) -> dict:
    """:func:`run_epoch` with ``args`` in a fresh Python process; its result."""
    result = Path(tempfile.mkstemp(suffix=".json", prefix=".epoch-", dir=work)[1])
    code = "import sys; from rhosym.bench.loader import _child; sys.exit(_child(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.get("threads", 1))}
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(args), str(result)], timeout=timeout,
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not result.stat().st_size:
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-20:]
            raise RuntimeError(f"epoch {args} failed (exit {proc.returncode}):\n" + "\n".join(tail))
        return json.loads(result.read_text())
    finally:
        result.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- main
COLUMNS = ("kind", "rows", "workers", "mode", "samples_per_s", "rss_start_mb", "rss_index_mb", "peak_mb",
           "epoch_growth_mb", "worker_peak_mb", "index_s", "epoch_s")


def format_table(rows: list[dict]) -> str:
    head = f"{'kind':<8}{'rows':>8}{'workers':>8}{'mode':>6}{'samples/s':>11}{'start MB':>10}{'index MB':>10}" \
           f"{'peak MB':>9}{'epoch +MB':>10}{'worker MB':>10}{'index s':>9}{'epoch s':>9}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['kind']:<8}{r['rows']:>8}{r['workers']:>8}{r['mode']:>6}{r['samples_per_s']:>11.0f}"
                     f"{r['rss_start_mb']:>10.0f}{r['rss_index_mb']:>10.0f}{r['peak_mb']:>9.0f}"
                     f"{r['epoch_growth_mb']:>10.1f}{r['worker_peak_mb']:>10.0f}{r['index_s']:>9.1f}"
                     f"{r['epoch_s']:>9.1f}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rhosym bench loader", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[20000, 200000], help="store sizes (rows)")
    p.add_argument("--kinds", nargs="+", default=["density", "lattice"], choices=sorted(MODEL_OF))
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers values")
    p.add_argument("--modes", nargs="+", default=["load", "step"], choices=["load", "step"],
                   help="load: read only; step: read plus a model step per batch")
    p.add_argument("--points", type=int, default=200, help="mean points per density sample (150..250 %%)")
    p.add_argument("--shard-size", type=int, default=SHARD_SIZE)
    p.add_argument("--cache-mb", type=int, default=0, help="StoreDataset cache (default 0: none)")
    p.add_argument("--chunk-points", type=int, default=0,
                   help="write the density arrays in chunks of this many points (default 0: as the pipeline, "
                        "about 4 MB chunks)")
    p.add_argument("--augment", action="store_true", help="density: origin shift and rotation (training augment)")
    p.add_argument("--keep-groups", action="store_true",
                   help="keep the zarr groups open, as the loader did before (for comparison)")
    p.add_argument("--limit", type=int, default=0, help="samples per epoch (default 0: the whole epoch)")
    p.add_argument("--budget", type=int, default=12800, help="points per density batch (batch_budget)")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the epoch process")
    p.add_argument("--out", default=None, help="folder for the stores and results.json (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the stores (always kept when --out is given)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per epoch process")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rhosym-bench-loader-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"stores": [], "epochs": [], "settings": {k: v for k, v in vars(args).items()}}
    try:
        for rows in args.rows:
            root = work / (f"rows-{rows}" + (f"-chunk{args.chunk_points}" if args.chunk_points else ""))
            for kind in args.kinds:
                st = write_stores(root, kind, rows, args.points, args.shard_size, chunk_points=args.chunk_points)
                info = {"kind": kind, "rows": rows, "shards": len(st["paths"]), "write_s": st["write_s"],
                        "disk_mb": st["disk_mb"]}
                results["stores"].append(info)
                print(f"stores: {kind} {rows} rows, {info['shards']} shards, {info['disk_mb']:.1f} MB on disk, "
                      f"written in {info['write_s']:.1f} s", flush=True)
                for workers in args.workers:
                    for mode in args.modes:
                        r = measure({"kind": kind, "paths": st["paths"], "rows": rows, "workers": workers,
                                     "model_step": mode == "step", "cache_mb": args.cache_mb,
                                     "budget": args.budget, "max_batch_size": args.max_batch_size,
                                     "threads": args.threads, "augment": args.augment,
                                     "keep_groups": args.keep_groups, "limit": args.limit}, work, args.timeout)
                        results["epochs"].append(r)
                        print(f"  {kind} rows {rows} workers {workers} {mode}: {r['samples_per_s']:.0f} samples/s, "
                              f"peak {r['peak_mb']:.0f} MB (index {r['rss_index_mb']:.0f} MB, epoch "
                              f"+{r['epoch_growth_mb']:.1f} MB), worker peak {r['worker_peak_mb']:.0f} MB",
                              flush=True)
                        (work / "results.json").write_text(json.dumps(results, indent=1))
        print()
        print(format_table(results["epochs"]))
    finally:
        if not args.out and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
