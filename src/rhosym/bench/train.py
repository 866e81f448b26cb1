"""``rhosym bench train``: throughput of the five networks on synthetic inputs of realistic size, and
the Sparse 3D CNN against a dense 3D CNN of the same layout on the same samples.

Inputs (synthetic, deterministic with ``--seed``):

* density: ``--points`` (5,000) points per sample on a ``--voxel`` (0.5 Å) grid inside a random cell
  of 6–14 Å edges placed in a ``--frame`` (64 Å) virtual frame, i.e. a (128, 128, 128) sparse frame;
  the feature is a sum of Gaussians around 8–24 random atoms (log-scaled, as the trainer's normalized
  density would be);
* xrd: 8,192-point patterns of 20–60 random Gaussian peaks;
* graphs: ``--atoms`` (20) atoms with 12 neighbours each (cgcnn), the same graph on ~1/4 of the nodes
  as asymmetric unit (cogn);
* lattice (the lattice-only control): the standardized lattice features
  (rhosym.loaders.lattice_features) of random cells of 3–15 Å edges and 60–120° angles.

Timings: a training step is forward + cross-entropy + backward + Adam step; inference is a forward in
eval mode without gradients. ``--warmup`` steps are not timed, ``--steps`` are. Samples/second =
batch size × steps / time. Widths: the density models (sparse CNN, PointNet) and the dense CNN use the
published channels multiplied by ``--scale`` (default 0.25 on CPU, 1 on CUDA); the XRD FCN, CGCNN and
coGN use their published sizes.

Sparse vs dense: ``--compare-batch`` samples, both encoders with channels scaled by
``--compare-scale``; time per training and inference batch, and peak memory: on CUDA
``torch.cuda.max_memory_allocated``, on CPU the peak resident memory (``resource.getrusage``) of a
fresh subprocess minus its resident memory before the first step (tracemalloc does not see torch's
allocator). The dense model sees the frame as a (B, F, 128, 128, 128) tensor.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from rhosym import inputs
from rhosym.models import MODELS, build_model, collate
from rhosym.registry import MODELS as SPECS

log = logging.getLogger("rhosym.bench.train")

PUBLISHED_SPARSE_CHANNELS = [128, 128, 256, 512, 1024]


# ----------------------------------------------------------------------------- synthetic inputs
def synthetic_samples(name: str, n: int, seed: int = 0, **kw) -> list[dict]:
    """``n`` synthetic per-sample dicts for model ``name`` (its input kind's ``synthetic``; keywords such
    as ``points``, ``frame``, ``voxel``, ``atoms`` go to the generator, which ignores what it does not use)."""
    rng = np.random.default_rng(seed)
    source = inputs.of_model(name)
    return [source.synthetic(rng, **kw) for _ in range(n)]


def in_features_of(name: str, samples: list[dict]) -> int:
    return inputs.of_model(name).in_features(0, samples[0])


def scaled_cfg(name: str, scale: float) -> dict:
    """Config block with the published channels × ``scale`` (density models only)."""
    if scale == 1.0:
        return {}
    if name in ("sparse_cnn", "dense_cnn"):
        return {"channels": [max(4, int(round(c * scale))) for c in PUBLISHED_SPARSE_CHANNELS],
                "head": [max(8, int(round(h * scale))) for h in (512, 256)]}
    if name == "pointnet":
        groups = 4  # every width a multiple of the groups, at any scale
        return {"channels": [max(2 * groups, groups * int(round(c * scale / groups))) for c in (64, 128, 1024)],
                "head": [max(8, int(round(h * scale))) for h in (512, 256)], "groups": groups}
    return {}


# ----------------------------------------------------------------------------- timing
def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(model, batch: dict, n_out: int, device, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds per training step and per inference batch."""
    import torch

    model.to(device)
    batch = _to(batch, device)
    n = int(batch["counts"].shape[0]) if "counts" in batch else int(next(iter(batch.values())).shape[0])
    y = torch.arange(n, device=device) % n_out
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(batch), y)
        loss.backward()
        opt.step()
    _sync(device)
    t_train = (time.perf_counter() - t0) / max(steps, 1)
    model.eval()
    with torch.no_grad():
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                t0 = time.perf_counter()
            model(batch)
    _sync(device)
    t_inf = (time.perf_counter() - t0) / max(steps, 1)
    return t_train, t_inf


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _compare_one(name: str, cfg: dict, samples: list[dict], device_name: str, steps: int, warmup: int,
                 n_out: int) -> dict:
    """Time and peak memory of one model of the sparse/dense comparison (run in a subprocess on CPU)."""
    import resource

    import torch

    device = torch.device(device_name)
    model = build_model(name, n_out, False, in_features_of(name, samples), cfg)
    batch = collate(name, samples)
    n_params = sum(p.numel() for p in model.parameters())
    if device.type == "cuda":
        model.to(device)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        base = _rss_kb() * 1024
    t_train, t_inf = time_model(model, batch, n_out, device, steps, warmup)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        # ru_maxrss and /proc's resident size round differently (a few pages): no growth reads as 0, not < 0
        peak = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
    return {"model": name, "params": n_params, "train_s_per_batch": t_train, "infer_s_per_batch": t_inf,
            "peak_mem_mb": peak / 2**20}


def _compare_worker(args_tuple, queue) -> None:
    try:
        queue.put(_compare_one(*args_tuple))
    except Exception as exc:  # pragma: no cover - reported by the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def compare_sparse_dense(samples: list[dict], cfg: dict, device_name: str, steps: int, warmup: int,
                         n_out: int = 7) -> list[dict]:
    rows = []
    for name in ("sparse_cnn", "dense_cnn"):
        args_tuple = (name, cfg, samples, device_name, steps, warmup, n_out)
        if device_name.startswith("cuda"):
            rows.append(_compare_one(*args_tuple))
            continue
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_compare_worker, args=(args_tuple, queue))
        proc.start()
        row = queue.get()
        proc.join()
        if "error" in row:
            raise RuntimeError(f"{name}: {row['error']}")
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rhosym bench train", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    trainable = [m for m in MODELS if not (SPECS[m].fit_free or SPECS[m].boosted)]  # no gradient steps to time
    p.add_argument("--models", nargs="+", default=trainable, choices=trainable)
    p.add_argument("--batch-size", type=int, default=None,
                   help="samples per batch for every model (default: density 4, others 32 on CPU; ×8 on CUDA)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--scale", type=float, default=None,
                   help="channel multiplier of the density models (default 0.25 on CPU, 1 on CUDA)")
    p.add_argument("--points", type=int, default=5000)
    p.add_argument("--frame", type=float, default=64.0)
    p.add_argument("--voxel", type=float, default=0.5)
    p.add_argument("--atoms", type=int, default=20)
    p.add_argument("--classes", type=int, default=230, help="outputs of the classification head")
    p.add_argument("--no-compare", action="store_true", help="skip the sparse-vs-dense comparison")
    p.add_argument("--compare-batch", type=int, default=2)
    p.add_argument("--compare-scale", type=float, default=None,
                   help="channel multiplier in the sparse-vs-dense comparison (default 0.125 on CPU, 0.25 on CUDA)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the tables as CSV to this path prefix")
    return p


def main(argv: list[str] | None = None) -> int:
    import pandas as pd
    import torch

    from rhosym.logs import setup_logging

    setup_logging()
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    scale = args.scale if args.scale is not None else (1.0 if cuda else 0.25)
    cscale = args.compare_scale if args.compare_scale is not None else (0.25 if cuda else 0.125)
    dkw = {"points": args.points, "frame": args.frame, "voxel": args.voxel}
    log.info("device %s, torch threads %d, density: %d points in a %.0f Å frame at %.2f Å voxels, "
             "width scale %.3g", device, torch.get_num_threads(), args.points, args.frame, args.voxel, scale)

    rows = []
    for name in args.models:
        kind = inputs.of_model(name).name
        bs = args.batch_size or (inputs.of_model(name).bench_batch * (8 if cuda else 1))
        samples = synthetic_samples(name, bs, seed=args.seed, atoms=args.atoms, **dkw)
        cfg = scaled_cfg(name, scale)
        model = build_model(name, args.classes, False, in_features_of(name, samples), cfg)
        n_params = sum(p.numel() for p in model.parameters())
        t_train, t_inf = time_model(model, collate(name, samples), args.classes, device, args.steps, args.warmup)
        row = {"model": name, "input": kind, "batch": bs, "params": n_params,
               "width_scale": scale if cfg else 1.0,
               "train_samples_per_s": bs / t_train, "infer_samples_per_s": bs / t_inf,
               "train_s_per_batch": t_train, "infer_s_per_batch": t_inf}
        log.info("%s: %s", name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        rows.append(row)
        del model
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\nThroughput (synthetic inputs; train = forward+backward+Adam step):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    if not args.no_compare:
        samples = synthetic_samples("sparse_cnn", args.compare_batch, seed=args.seed + 1, **dkw)
        cfg = scaled_cfg("sparse_cnn", cscale)
        log.info("sparse vs dense: batch %d, channels %s", args.compare_batch, cfg.get("channels"))
        comp = pd.DataFrame(compare_sparse_dense(samples, cfg, args.device, args.steps, args.warmup))
        comp.insert(1, "batch", args.compare_batch)
        comp.insert(2, "channels", str(cfg.get("channels", PUBLISHED_SPARSE_CHANNELS)))
        mem = "torch.cuda.max_memory_allocated" if cuda else "peak RSS of a fresh process above its baseline"
        print(f"\nSparse vs dense 3D CNN, same samples ({mem}):")
        print(comp.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if args.out:
            comp.to_csv(f"{args.out}sparse_vs_dense.csv", index=False)
    if args.out:
        table.to_csv(f"{args.out}throughput.csv", index=False)
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
