#!/usr/bin/env python3
"""One check of a GPU machine (docs/gpu.md); writes ONE JSON of results, piece by piece.

Run it through ``tests/gpu/run.sh`` (which unpacks ``.gpu/`` onto ``PYTHONPATH``), or directly with
``PYTHONPATH=src:...``::

    python3 tests/gpu/check.py --out RESULT.json [--cpu] [--budget-s 270] [--data .gpu/mp20-grid.npz]

It needs torch, numpy, pandas and pyarrow (what the GPU machine has), pydantic and tqdm (carried as
wheels) and, for the Sparse 3D CNN, spconv (the carried bundle); never zarr, gemmi, pymatgen, scipy or
yaml (``--cpu`` blocks those imports to prove it). Every piece runs inside a guard: a piece that fails
or cannot run records ``status`` (``ok``, ``failed``, ``skipped``), its ``error`` and a one-line
``diagnostic`` (also printed, prefixed ``gpu-check:``), and the JSON is rewritten after each piece, so a
run killed at its time limit still leaves what ran. Exit status 0 when no piece failed.

Pieces (``checks`` in the JSON):

* ``imports``: spconv (+ cumm) and the project's model modules; versions.
* ``cuda_ops``: what the CUDA tests of tests/ check (tests/test_models.py, ``test_cuda_mixed_precision``
  of tests/test_train.py), on the device: every model at a small width, forward + backward in fp32
  (finite loss and gradients; outputs equal the CPU forward of the same weights: ``matches_cpu`` at
  ``rtol`` 1e-3 with TF32 off, a failure only beyond 2e-2, as spconv's kernels may use TF32), forward + backward under autocast fp16 (with a GradScaler) and bf16; the spconv shim
  returns the real CUDA stream.
* ``throughput``: Sparse 3D CNN and PointNet at the PUBLISHED width (scale 1; ``--cpu``: 1/16 and tiny
  inputs) on synthetic density samples of ``rhosym bench train`` (5,000 points in a 128³ frame):
  samples/s of a training step (forward, cross-entropy over 230 classes, backward, Adam step; fp32)
  and of inference, and the peak of ``torch.cuda.max_memory_allocated`` over the steps.
* ``mp20_train``: the project's trainer (``rhosym.train.train``) on the prepared MP-20 subset
  (``--data``, made by tests/gpu/prepare.py; without it, synthetic samples), crystal-system
  classification, published width and settings (amp fp16), a few epochs (``--cpu``: the first 40
  structures, small widths, fp32): per-epoch train loss,
  validation accuracy, samples/s, peak memory. The density kind reads the .npz instead of zarr stores
  (its ``open`` replaced here; everything after is the trainer's own path).
* ``ddp``: the same training with ``train.processes: 2`` under ``torchrun`` (nccl), when two CUDA
  devices exist (``--cpu``: two gloo ranks on the CPU); compared with ``mp20_train``.
* ``pytest``: the CUDA tests of tests/ themselves, when pytest and zarr can be imported (not on the
  bare GPU machine: skipped with the reason; ``cuda_ops`` covers what they check).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".gpu" / "mp20-grid.npz"
BUNDLE = ".gpu/spconv-cu126-py312.tar.xz"
#: what the GPU machine lacks; ``--cpu`` makes importing them fail, to show nothing here needs them
DENIED = ("zarr", "numcodecs", "gemmi", "pymatgen", "spglib", "scipy", "sklearn", "matplotlib", "yaml",
          "snakemake", "pyxtal", "psutil", "mp_api")
SPARSE_OK = {"ok": False}
CPU_STRUCTURES = 40  # --cpu trains on the first 40 structures of the data


# ----------------------------------------------------------------------------- plumbing
def deny_imports(names) -> None:
    """Make the named top-level packages look absent: ``import`` raises ModuleNotFoundError and
    ``importlib.util.find_spec`` returns None (as torch's optional imports check)."""
    for name in names:
        if sys.modules.get(name) is None:
            sys.modules[name] = None


class Report:
    """The JSON result, written after every piece."""

    def __init__(self, path: Path, mode: str):
        self.path = path
        self.t0 = time.time()
        self.data = {"format": 1, "mode": mode, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "seconds": 0.0, "environment": {}, "checks": {}, "diagnostics": []}

    def diagnose(self, line: str) -> None:
        line = " ".join(str(line).split())
        self.data["diagnostics"].append(line)
        print(f"gpu-check: {line}", flush=True)

    def write(self) -> None:
        self.data["seconds"] = round(time.time() - self.t0, 2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def run(self, name: str, fn, *args, need_s: float = 0.0, deadline: float = 0.0, hint: str = "") -> dict:
        """``fn(*args)`` → dict, recorded under ``checks[name]`` with its status and seconds."""
        left = deadline - time.time() if deadline else float("inf")
        if left < need_s:
            rec = {"status": "skipped", "reason": f"time budget: {left:.0f} s left, about {need_s:.0f} s needed"}
            self.data["checks"][name] = rec
            self.diagnose(f"{name}: skipped ({rec['reason']})")
            self.write()
            return rec
        print(f"gpu-check: {name} ...", flush=True)
        t0 = time.time()
        try:
            rec = {"status": "ok", **(fn(*args) or {})}
        except SkipPiece as exc:
            rec = {"status": "skipped", "reason": str(exc)}
            self.diagnose(f"{name}: skipped ({exc})")
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the next piece still runs
            err = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:600]
            rec = {"status": "failed", "error": err, "traceback": traceback.format_exc(limit=8)[-3000:]}
            self.diagnose(f"{name}: FAILED: {err}" + (f" ({hint})" if hint else ""))
        rec["seconds"] = round(time.time() - t0, 2)
        self.data["checks"][name] = rec
        if rec["status"] == "ok":
            print(f"gpu-check: {name}: ok in {rec['seconds']:.1f} s", flush=True)
        self.write()
        return rec


class SkipPiece(Exception):
    """A piece that cannot run here (the reason is recorded, not a failure)."""


def _version(mod: str) -> str | None:
    try:
        m = importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001
        return f"absent ({type(exc).__name__})"
    return str(getattr(m, "__version__", getattr(m, "VERSION", "?")))


def environment(cpu: bool) -> dict:
    import torch

    env = {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
           "devices": [], "cpu_count": os.cpu_count(),
           "packages": {m: _version(m) for m in ("numpy", "pandas", "pyarrow", "pydantic", "tqdm")},
           "pythonpath": os.environ.get("PYTHONPATH", "")}
    for i in range(env["device_count"]):
        p = torch.cuda.get_device_properties(i)
        env["devices"].append({"name": p.name, "memory_gb": round(p.total_memory / 2**30, 1),
                               "capability": f"{p.major}.{p.minor}"})
    with contextlib.suppress(Exception):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = q.stdout.strip().splitlines()
    with contextlib.suppress(Exception):
        env["git_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
    return env


def _device(cpu: bool):
    import torch

    if cpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device (torch.cuda.is_available() is False): check the driver "
                           "with nvidia-smi, or run with --cpu for the dry run")
    return torch.device("cuda:0")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- pieces
def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:400]


def check_imports(cpu: bool) -> dict:
    """pydantic and tqdm (carried wheels), spconv (carried bundle), every model module; one line per
    problem, saying what to carry."""
    out, problems = {}, []
    for mod in ("pydantic", "tqdm"):
        try:
            out[mod] = str(getattr(importlib.import_module(mod), "__version__", "?"))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{mod} does not import ({_err(exc)}): .gpu/wheels holds it for Python 3.12 "
                            "(tests/gpu/prepare.sh), unpacked by tests/gpu/run.sh")
    t0 = time.time()
    try:
        import spconv
        import spconv.pytorch  # noqa: F401

        out["spconv"] = str(getattr(spconv, "__version__", "?"))
        out["cumm"] = _version("cumm")
        out["spconv_file"] = str(Path(spconv.__file__).parent)
        from rhosym.models import sparse_cnn  # noqa: F401 - applies the spconv shim

        SPARSE_OK["ok"] = True
    except Exception as exc:  # noqa: BLE001
        out["spconv_error"] = _err(exc)
        problems.append(f"spconv does not import ({out['spconv_error']}): unpack {BUNDLE} onto PYTHONPATH "
                        "(tests/gpu/run.sh does; Python 3.12 only), rebuild it with ../shared/tools/gpu-bundle.sh; "
                        "the Sparse 3D CNN pieces are skipped")
    out["spconv_import_s"] = round(time.time() - t0, 2)
    out["sparse_cnn_available"] = SPARSE_OK["ok"]
    try:
        import rhosym.models as registry

        out["models"] = list(registry.MODELS)
        for name in registry.MODELS:
            if name != "sparse_cnn":
                importlib.import_module(f"rhosym.models.{name}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"the model modules do not import ({_err(exc)})")
    if problems:
        raise RuntimeError("; ".join(problems))
    return out


SMALL = {"sparse_cnn": {"channels": [8, 8, 16, 16, 32], "head": [32]},
         "pointnet": {"channels": [16, 32, 64], "groups": 4, "head": [32], "dropout": 0.0},
         "xrd_fcn": {"channels": [4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 8], "dropout": 0.0},
         "cgcnn": {"atom_fea_len": 16, "h_fea_len": 32, "n_conv": 2},
         "cogn": {"units": 16, "depth": 2}, "lattice": {"hidden": [32, 32], "dropout": 0.0}}


def check_cuda_ops(cpu: bool) -> dict:
    import torch

    from rhosym.bench.train import in_features_of, synthetic_samples
    from rhosym.models import MODELS, build_model, collate

    device = _device(cpu)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from rhosym.registry import MODELS as SPECS

    rows, failed = [], []
    for name in MODELS:
        if SPECS[name].fit_free or SPECS[name].boosted:  # a fixed rule or trees: no CUDA kernels to check
            continue
        if name == "sparse_cnn" and not SPARSE_OK["ok"]:
            rows.append({"model": name, "status": "skipped", "reason": "spconv does not import"})
            continue
        row = {"model": name}
        try:
            samples = synthetic_samples(name, 3, seed=1, points=400, frame=16.0, voxel=0.5, atoms=6)
            torch.manual_seed(0)
            model = build_model(name, 7, False, in_features_of(name, samples), SMALL.get(name))
            batch = collate(name, samples)
            y = torch.tensor([0, 3, 6])
            model.eval()
            with torch.no_grad():
                ref = model(batch).float()
            model.to(device)
            b = {k: v.to(device) for k, v in batch.items()}
            yd = y.to(device)
            with torch.no_grad():
                got = model(b).float().cpu()
            row["max_abs_diff_vs_cpu"] = float((got - ref).abs().max())
            row["matches_cpu"] = bool(torch.allclose(got, ref, rtol=1e-3, atol=1e-4))
            # spconv's own GPU kernels may use TF32 whatever torch's flags say: a looser bound fails
            row["matches_cpu_loose"] = bool(torch.allclose(got, ref, rtol=2e-2, atol=2e-3))
            model.train()
            variants = [("fp32", None)] if device.type == "cpu" else [("fp32", None), ("fp16", torch.float16),
                                                                       ("bf16", torch.bfloat16)]
            for label, dtype in variants:
                model.zero_grad(set_to_none=True)
                scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
                with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = torch.nn.functional.cross_entropy(model(b).float(), yd)
                scaler.scale(loss).backward()
                grads = [p.grad for p in model.parameters() if p.requires_grad]
                finite = bool(torch.isfinite(loss)) and all(g is not None and bool(torch.isfinite(g).all())
                                                            for g in grads if g is not None)
                row[f"{label}_loss"] = float(loss.detach())
                row[f"{label}_finite"] = finite
                if not finite:
                    failed.append(f"{name} {label}: non-finite loss or gradient")
            if not row["matches_cpu_loose"]:
                failed.append(f"{name}: output differs from the CPU by {row['max_abs_diff_vs_cpu']:.2e}")
            row["status"] = "ok"
        except Exception as exc:  # noqa: BLE001
            row.update(status="failed", error=f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:400])
            failed.append(f"{name}: {row['error']}")
        rows.append(row)
    out = {"device": str(device), "models": rows}
    if SPARSE_OK["ok"]:
        from spconv.pytorch import ops

        stream = ops.get_current_stream()
        out["spconv_stream"] = int(stream) if not hasattr(stream, "cuda_stream") else int(stream.cuda_stream)
        if device.type == "cuda":
            out["spconv_stream_is_torch_stream"] = out["spconv_stream"] == torch.cuda.current_stream().cuda_stream
    if failed:
        raise RuntimeError("; ".join(failed))
    return out


def check_throughput(cpu: bool, steps: int) -> dict:
    import torch

    from rhosym.bench.train import in_features_of, scaled_cfg, synthetic_samples, time_model
    from rhosym.models import build_model, collate

    device = _device(cpu)
    scale = 0.0625 if cpu else 1.0
    kw = {"points": 300, "frame": 16.0, "voxel": 0.5} if cpu else {"points": 5000, "frame": 64.0, "voxel": 0.5}
    batch_size = 2 if cpu else 32
    rows = []
    for name in ("sparse_cnn", "pointnet"):
        if name == "sparse_cnn" and not SPARSE_OK["ok"]:
            rows.append({"model": name, "status": "skipped", "reason": "spconv does not import"})
            continue
        samples = synthetic_samples(name, batch_size, seed=0, **kw)
        cfg = scaled_cfg(name, scale)
        model = build_model(name, 230, False, in_features_of(name, samples), cfg)
        batch = collate(name, samples)
        if device.type == "cuda":
            model.to(device)
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        t_train, t_inf = time_model(model, batch, 230, device, steps, warmup=2 if not cpu else 1)
        row = {"model": name, "status": "ok", "width_scale": scale, "config": cfg or "published",
               "params": sum(p.numel() for p in model.parameters()), "batch": batch_size,
               "points_per_sample": kw["points"], "frame": kw["frame"], "voxel": kw["voxel"], "steps": steps,
               "train_samples_per_s": batch_size / t_train, "infer_samples_per_s": batch_size / t_inf,
               "train_s_per_batch": t_train, "infer_s_per_batch": t_inf}
        if device.type == "cuda":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            row["peak_mem_above_model_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        rows.append(row)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"device": str(device), "precision": "fp32", "rows": rows}


# ----- the prepared MP-20 subset, read through the density kind
class NpzStore:
    """A density sample store held in an .npz (tests/gpu/prepare.py): ``handle[name]`` arrays and
    ``attrs`` as the zarr group has them."""

    _cache: dict = {}

    def __init__(self, path: str):
        import numpy as np

        z = np.load(path, allow_pickle=False)
        self._arrays = {k: z[k] for k in ("offsets", "xyz", "features", "voxels")}
        self.attrs = {"ids": [str(i) for i in z["ids"]], "spatial_shape": [int(v) for v in z["spatial_shape"]],
                      "voxel": float(z["voxel"]), "frame": float(z["frame"]), "method": "grid",
                      "cells": z["cells"].tolist(), "source": "npz", "counts": {"ok": int(len(z["ids"]))}}

    def __getitem__(self, name: str):
        return self._arrays[name]

    @classmethod
    def open(cls, path: str) -> NpzStore:
        if path not in cls._cache:
            cls._cache[path] = cls(str(path))
        return cls._cache[path]


def use_npz_stores() -> None:
    """The density kind reads .npz stores (everything else in the trainer is unchanged)."""
    from rhosym import inputs

    inputs.kind("density").open = NpzStore.open


def synthetic_npz(path: Path, n: int = 24, seed: int = 0) -> Path:
    """A small stand-in for the MP-20 subset (``--data`` absent): density samples whose values encode
    one of three crystal systems."""
    import numpy as np

    from rhosym.inputs.density import DENSITY

    rng = np.random.default_rng(seed)
    systems = np.array(["cubic", "tetragonal", "orthorhombic"])
    xyz, feats, vox, counts, cells, labels = [], [], [], [], [], []
    for i in range(n):
        s = DENSITY.synthetic(rng, points=150, frame=16.0, voxel=0.5)
        c = i % 3
        xyz.append(s["xyz"])
        feats.append((np.exp(s["features"][:, :1]) * (1 + c)).astype(np.float32))
        vox.append(s["voxels"].astype(np.uint8))
        counts.append(len(s["xyz"]))
        cells.append(np.eye(3) * 8.0)
        labels.append(systems[c])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    split = np.array(["train", "train", "val", "test"] * (n // 4 + 1))[:n]
    np.savez_compressed(path, offsets=offsets, xyz=np.concatenate(xyz), features=np.concatenate(feats),
                        voxels=np.concatenate(vox), ids=np.array([f"syn-{i}" for i in range(n)]),
                        crystal_system=np.array(labels), split=split, cells=np.array(cells),
                        spatial_shape=np.array([32, 32, 32]), voxel=np.array(0.5), frame=np.array(16.0),
                        source=np.array("synthetic"))
    return path


def _tables(npz: Path, work: Path, limit: int = 0) -> tuple[Path, Path, dict]:
    """Manifest and split of the .npz as Parquet files (the first ``limit`` structures when given)."""
    import numpy as np
    import pandas as pd

    z = np.load(npz, allow_pickle=False)
    ids = [str(i) for i in z["ids"]][:limit or None]
    man = pd.DataFrame({"id": ids, "status": "ok", "crystal_system": [str(v) for v in z["crystal_system"][:len(ids)]]})
    split = pd.DataFrame({"id": ids, "split": [str(v) for v in z["split"][:len(ids)]]})
    work.mkdir(parents=True, exist_ok=True)
    man.to_parquet(work / "manifest.parquet", index=False)
    split.to_parquet(work / "split.parquet", index=False)
    info = {"structures": len(ids), "points": int(z["offsets"][len(ids)]), "source": str(z["source"]),
            "splits": split["split"].value_counts().to_dict(),
            "classes": man["crystal_system"].value_counts().to_dict()}
    return work / "manifest.parquet", work / "split.parquet", info


def train_settings(cpu: bool, model: str, epochs: int, processes: int = 1) -> dict:
    """Published settings of ``model`` (crystal system), shortened; tiny widths with ``--cpu``."""
    cfg = {"epochs": epochs, "patience": 0, "scheduler": "none", "processes": processes}
    if cpu:
        cfg.update(amp=False, batch_budget=2000, max_batch_size=4, model=SMALL[model])
    return cfg


def _job(model: str, npz: Path, man: Path, split: Path, out: Path, cfg: dict, cpu: bool):
    from rhosym.train import TrainJob

    return TrainJob(model=model, task="crystal_system", input="grid", stores=[str(npz)], manifest=str(man),
                    split=str(split), out_dir=str(out), cfg=cfg, seed=0, dataset="mp20-subset",
                    device="cpu" if cpu else "cuda", num_workers=0 if cpu else 2, threads=1 if cpu else 0,
                    resume=False, cache_mb=2000)


def _history(out: Path) -> list[dict]:
    import pandas as pd

    h = pd.read_csv(out / "history.csv")
    keep = ["epoch", "train_loss", "val_loss", "val_metric", "samples_per_s", "peak_mem_mb", "seconds"]
    return [{k: (None if v != v else v) for k, v in r.items()} for r in h[[c for c in keep if c in h]].to_dict("records")]


def check_mp20_train(cpu: bool, npz: Path, work: Path, epochs: int) -> dict:
    from rhosym.train import train

    _device(cpu)
    use_npz_stores()
    man, split, info = _tables(npz, work, CPU_STRUCTURES if cpu else 0)
    model = "sparse_cnn" if SPARSE_OK["ok"] else "pointnet"
    out = work / f"train-{model}"
    job = _job(model, npz, man, split, out, train_settings(cpu, model, epochs), cpu)
    t0 = time.time()
    summary = train(job)
    hist = _history(out)
    first, last = hist[0]["train_loss"], hist[-1]["train_loss"]
    res = {"model": model, "data": info, "settings": job.cfg.model_dump(), "seconds_train": time.time() - t0,
           "summary": summary, "history": hist, "train_loss_first": first, "train_loss_last": last,
           "train_loss_fell": bool(last < first)}
    if model != "sparse_cnn":
        res["note"] = "pointnet: spconv does not import"
    return res


def check_ddp(cpu: bool, npz: Path, work: Path, epochs: int, single: dict | None, timeout: float) -> dict:
    import torch

    if not cpu:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n < 2:
            raise SkipPiece(f"{n} CUDA device(s): the two-rank DDP run needs two")
    man, split, _ = _tables(npz, work, CPU_STRUCTURES if cpu else 0)
    model = "sparse_cnn" if SPARSE_OK["ok"] else "pointnet"
    out = work / f"ddp-{model}"
    job = _job(model, npz, man, split, out, train_settings(cpu, model, epochs, processes=2), cpu)
    job_file = work / "ddp-job.json"
    job.to_json(job_file)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), "--train-child", str(job_file)] + (["--cpu"] if cpu else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"torchrun did not finish in {timeout:.0f} s") from exc
    res = {"model": model, "ranks": 2, "backend": "gloo" if cpu else "nccl", "exit": proc.returncode,
           "seconds_train": time.time() - t0, "output_tail": (proc.stdout + proc.stderr)[-2500:]}
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Error" in ln or "error:" in ln]
        raise RuntimeError(f"torchrun exit {proc.returncode}: " + " | ".join(lines[-3:] or ["no error line"]))
    res["history"] = _history(out)
    if single and single.get("history"):
        res["single_process_train_loss_last"] = single["history"][-1]["train_loss"]
        res["train_loss_last"] = res["history"][-1]["train_loss"]
    return res


def _train_child(job_file: str) -> int:
    """One DDP rank (started by torchrun from :func:`check_ddp`)."""
    from rhosym.train import TrainJob, train

    use_npz_stores()
    train(TrainJob.from_json(job_file))
    return 0


def check_pytest(cpu: bool, timeout: float) -> dict:
    if cpu:
        raise SkipPiece("--cpu: the CUDA tests skip without CUDA (the normal test suite runs the rest)")
    missing = [m for m in ("pytest", "zarr") if importlib.util.find_spec(m) is None]
    if missing:
        raise SkipPiece(f"{', '.join(missing)} not installed on this machine: the CUDA tests of tests/ need them "
                        "(cuda_ops checks what they check)")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_train.py", "tests/test_models.py",
           "-k", "cuda or sparse or spconv"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode not in (0, 5):
        raise RuntimeError(f"pytest exit {proc.returncode}: {tail[-1] if tail else ''}")
    return {"exit": proc.returncode, "summary": tail[-1] if tail else ""}


# ----------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="the JSON to write (default: $OUT/gpu-check.json, else ./gpu-check.json)")
    p.add_argument("--cpu", action="store_true", help="dry run on the CPU: everything small, imports of what the "
                   "GPU machine lacks blocked")
    p.add_argument("--budget-s", type=float, default=270.0, help="seconds for all pieces (default 270)")
    p.add_argument("--data", default=str(DATA), help="the prepared MP-20 subset (tests/gpu/prepare.py), or "
                   "'synthetic'")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the short training (default 5; --cpu 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per throughput row (default 5; --cpu 1)")
    p.add_argument("--skip", nargs="*", default=[], help="pieces to skip")
    p.add_argument("--deny", nargs="*", default=[], help="more packages to treat as absent (tests)")
    p.add_argument("--train-child", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    deny_imports((DENIED if args.cpu else ()) + tuple(args.deny))
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    if args.train_child:
        return _train_child(args.train_child)
    out = Path(args.out) if args.out else Path(os.environ["OUT"]) / "gpu-check.json" if os.environ.get("OUT") \
        else Path("gpu-check.json")
    rep = Report(out.resolve(), "cpu-dry" if args.cpu else "cuda")
    deadline = time.time() + args.budget_s
    epochs = args.epochs or (2 if args.cpu else 5)
    steps = args.steps or (1 if args.cpu else 5)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        rep.data["environment"] = environment(args.cpu)
    except Exception as exc:  # noqa: BLE001
        rep.diagnose(f"environment: torch does not import or query ({type(exc).__name__}: {exc})")
        rep.write()
        return 1
    env = rep.data["environment"]
    if args.cpu:  # one thread: steadier on a shared machine, and the DDP ranks get one each as well
        import torch

        torch.set_num_threads(1)
    if not args.cpu and not env["cuda_available"]:
        rep.diagnose("no CUDA device visible to torch: the device pieces will fail; use --cpu for a dry run")
    rep.write()
    with tempfile.TemporaryDirectory(prefix="rhosym-gpu-check-") as tmp:
        work = Path(tmp)
        npz = Path(args.data)
        if args.data == "synthetic":
            npz = synthetic_npz(work / "synthetic.npz")
        elif not npz.is_file():
            rep.diagnose(f"{npz} absent (make it here with tests/gpu/prepare.py and carry .gpu): training on "
                         "24 synthetic samples instead")
            npz = synthetic_npz(work / "synthetic.npz")
        rep.data["data"] = str(npz)
        skip = set(args.skip)
        pieces = [
            ("imports", check_imports, (args.cpu,), 5, ""),
            ("cuda_ops", check_cuda_ops, (args.cpu,), 10, ""),
            ("throughput", check_throughput, (args.cpu, steps), 20, ""),
            ("mp20_train", check_mp20_train, (args.cpu, npz, work / "single", epochs), 30, ""),
            ("ddp", None, None, 40, "see output_tail in the JSON"),
            ("pytest", check_pytest, (args.cpu, 90), 30, ""),
        ]
        for name, fn, fargs, need, hint in pieces:
            if name in skip:
                rep.data["checks"][name] = {"status": "skipped", "reason": "--skip"}
                continue
            if name == "ddp":
                left = max(10.0, deadline - time.time() - 5)
                fn, fargs = check_ddp, (args.cpu, npz, work / "ddp", epochs,
                                        rep.data["checks"].get("mp20_train"), left)
            rep.run(name, fn, *fargs, need_s=need, deadline=deadline, hint=hint)
    failed = [k for k, v in rep.data["checks"].items() if v.get("status") == "failed"]
    rep.data["failed"] = failed
    rep.write()
    print(f"gpu-check: wrote {rep.path} ({len(rep.data['checks'])} pieces, failed: {', '.join(failed) or 'none'}) "
          f"in {rep.data['seconds']:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
