"""One trainer for every model: classification (full class count) and regression (standardized L1).

:func:`train_model` reads the TRAINING and VALIDATION structures of a split from the per-shard stores
(:mod:`rhosym.loaders`), never the test split; early stopping and the best checkpoint are chosen on the
validation metric (accuracy for classification, MAE in physical units for regression). Every epoch
rewrites ``history.csv``, ``last.pt`` (everything needed to resume) and, when the validation metric
improved, ``checkpoint.pt``; all three atomically (temporary file, then rename). A rerun with
``last.pt`` present continues after its epoch.

Per-model overrides: ``cfg["models"][model]`` replaces any training key for that model; its ``model``
block is passed to ``rhosym.models.build_model`` as ``cfg``.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rhosym import loaders as L
from rhosym.logs import progress

log = logging.getLogger("rhosym.train")

DEFAULTS: dict = {
    "epochs": 8,
    "patience": 5,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "scheduler": "plateau",
    "plateau_factor": 0.5,
    "plateau_patience": 2,
    "batch_budget": 200_000,
    "max_batch_size": 32,
    "num_workers": 0,
    "device": "auto",
    "amp": True,
    "amp_dtype": "fp16",
    "grad_clip": 1.0,
    "label_smoothing": 0.0,
    "class_weights": False,
    "norm_max_structures": 500,
    "resume": True,
    "seed": None,
    "top_k": 5,
    "threads": 2,
    "mem_mb": 8000,
    "runtime": 240,
    "gpus": 1,
    "models": {},
    "model": {},
}
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_metric", "metric", "lr", "seconds", "samples_per_s",
                   "peak_mem_mb"]
CHECKPOINT_FORMAT = 1


def resolve_config(cfg: dict | None, model: str) -> dict:
    """Defaults, then the ``train:`` keys, then ``train.models.<model>`` overrides."""
    out = copy.deepcopy(DEFAULTS)
    cfg = dict(cfg or {})
    per_model = (cfg.get("models") or {}).get(model) or {}
    out.update({k: v for k, v in cfg.items() if k != "models"})
    out.update(per_model)
    out["model"] = dict(per_model.get("model") or cfg.get("model") or {})
    out.pop("models", None)
    return out


def store_pattern(model: str, input_name: str) -> str:
    """Per-shard store path of a model's input, relative to ``results/{ds}/`` (with ``{shard}``)."""
    from rhosym.workflow import DENSITY_MODELS, XRD_MODELS

    if model in DENSITY_MODELS:
        return f"samples/{input_name}/shard-{{shard}}.zarr"
    if model in XRD_MODELS:
        return "xrd/shard-{shard}.zarr"
    return f"graphs/{model}/shard-{{shard}}.zarr"


def job_setting(train_cfg: dict, model: str, key: str):
    """A training-job setting (threads, mem_mb, ...), with the per-model override when there is one."""
    return ((train_cfg.get("models") or {}).get(model) or {}).get(key, train_cfg.get(key, DEFAULTS.get(key)))


def get_registry(registry=None):
    if registry is not None:
        return registry
    import rhosym.models as registry_module

    return registry_module


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is visible")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2 ** 32)  # noqa: NPY002 - legacy global RNG some libraries still use
    torch.manual_seed(seed)


def to_device(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# train: keys that may change between a killed run and its resumption (how long, and job resources)
RESUME_FREE_KEYS = ("epochs", "patience", "resume", "threads", "mem_mb", "runtime", "gpus", "num_workers",
                    "device")


def resume_key(meta: dict, ids: dict) -> str:
    """Fingerprint of what a resumed run must share with the killed one: the experiment, the model and
    training settings (except length and job resources), the input store's settings and the split ids."""
    import hashlib
    import json

    train_cfg = {k: v for k, v in (meta.get("train_config") or {}).items() if k not in RESUME_FREE_KEYS}
    key = {k: meta.get(k) for k in ("model", "model_cfg", "task", "features", "input", "n_out", "input_store",
                                     "seed")}
    key.update(train=train_cfg, ids=ids)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_csv(df: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _read_table(t) -> pd.DataFrame:
    return t if isinstance(t, pd.DataFrame) else pd.read_parquet(t)


def make_loader(dataset, sizes, collate, cfg: dict, shuffle: bool, seed: int, device):
    import torch
    from torch.utils.data import DataLoader

    sampler = L.BudgetBatchSampler(sizes, cfg["batch_budget"], cfg["max_batch_size"], shuffle=shuffle, seed=seed)
    nw = int(cfg["num_workers"])
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=nw,
                        worker_init_fn=L.seed_worker, generator=torch.Generator().manual_seed(seed),
                        persistent_workers=False, pin_memory=device.type == "cuda")
    return loader, sampler


def _outputs(model, batch, regression: bool):
    out = model(batch)
    out = out.float()
    return out[:, 0] if regression else out


def _autocast(device, cfg: dict):
    import torch

    enabled = bool(cfg.get("amp")) and device.type == "cuda"
    dtype = torch.bfloat16 if str(cfg.get("amp_dtype", "fp16")) == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def evaluate(model, loader, device, cfg: dict, regression: bool, criterion=None):
    """Loss (when ``criterion`` is given), raw outputs (float32, CPU), labels and ids over ``loader``."""
    import torch

    model.eval()
    outs, ys, ids = [], [], []
    loss_sum, n = 0.0, 0
    with torch.no_grad():
        for batch, y, bid in loader:
            batch, y = to_device(batch, device), y.to(device)
            with _autocast(device, cfg):
                out = _outputs(model, batch, regression)
            if criterion is not None:
                loss_sum += float(criterion(out, y)) * len(y)
            n += len(y)
            outs.append(out.detach().float().cpu())
            ys.append(y.cpu())
            ids.extend(bid)
    if not outs:
        return float("nan"), torch.empty(0), torch.empty(0), []
    return (loss_sum / max(n, 1) if criterion is not None else float("nan")), torch.cat(outs), torch.cat(ys), ids


def _metric(out, y, regression: bool, y_std: float) -> float:
    if len(y) == 0:
        return float("nan")
    if regression:
        return float((out - y).abs().mean()) * y_std
    return float((out.argmax(1) == y).float().mean())


def _better(a: float, b: float | None, regression: bool) -> bool:
    if b is None or not np.isfinite(b):
        return np.isfinite(a)
    return a < b if regression else a > b


def class_weight_vector(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights from the training labels (mean 1 over present classes; absent → 1)."""
    counts = np.bincount(y.astype(np.int64), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return w


def prepare_data(model_name: str, task: str, features: int, stores, manifest, split, cfg: dict, seed: int,
                 registry):
    """Train and val datasets, label maps, normalization and target scaling (all from TRAIN only)."""
    input_kind = registry.INPUT_KIND[model_name]
    regression = L.is_regression(task)
    manifest = _read_table(manifest)
    split = _read_table(split)
    labels = L.encode_labels(manifest, task)
    ids = {s: split.loc[split["split"] == s, "id"].astype(str).tolist() for s in ("train", "val")}
    index = L.index_stores(list(stores), input_kind)
    items = {s: L.build_items(ids[s], labels, list(stores), input_kind, name=s, index=index)
             for s in ("train", "val")}
    if len(items["train"]) == 0:
        raise ValueError(f"no training structures for {model_name}/{task}: every one is missing from the "
                         f"stores or has no label ({items['train'].skipped})")
    target = None
    if regression:
        yt = np.asarray(items["train"].y)
        target = {"mean": float(yt.mean()), "std": float(yt.std()) if yt.std() > 0 else 1.0}
    datasets = {s: L.StoreDataset(items[s], input_kind, features, seed=seed) for s in items}
    norm = None
    if input_kind == "density":
        norm = L.density_stats(datasets["train"], cfg["norm_max_structures"], seed)
        for d in datasets.values():
            d.norm = norm
    first = datasets["train"][0]["sample"]
    if input_kind == "density":
        in_features = int(features)
    elif input_kind == "xrd":
        in_features = 1
    else:
        in_features = int(first["atom_fea"].shape[1])
    return {
        "input_kind": input_kind, "regression": regression, "items": items, "datasets": datasets,
        "norm": norm, "target": target, "in_features": in_features,
    }


def train_model(model_name: str, task: str, input_name: str, features: int, stores, manifest, split,
                out_dir: str | Path, cfg: dict | None = None, seed: int = 0, dataset: str = "",
                registry=None) -> dict:
    """Train one (model, task, input, features) experiment; returns a summary dict.

    ``stores``: the per-shard stores of the model's input; ``manifest``/``split``: paths or DataFrames.
    Writes ``checkpoint.pt``, ``last.pt`` and ``history.csv`` under ``out_dir``.
    """
    import torch

    registry = get_registry(registry)
    cfg = resolve_config(cfg, model_name)
    seed = int(cfg["seed"] if cfg.get("seed") is not None else seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg["device"])
    seed_everything(seed)
    stores = [str(s) for s in stores]
    data = prepare_data(model_name, task, features, stores, manifest, split, cfg, seed, registry)
    regression, input_kind = data["regression"], data["input_kind"]
    n_out = L.n_outputs(task)
    target = data["target"] or {"mean": 0.0, "std": 1.0}
    collate = L.Collate(registry.collate, model_name, regression, target["mean"], target["std"])
    loaders = {}
    for s, shuffle in (("train", True), ("val", False)):
        loaders[s] = make_loader(data["datasets"][s], data["items"][s].size, collate, cfg, shuffle, seed, device)

    model = registry.build_model(model_name, n_out, regression, data["in_features"], cfg["model"]).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if cfg["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    elif cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        raise ValueError(f"unknown optimizer {cfg['optimizer']!r}")
    epochs = int(cfg["epochs"])
    if cfg["scheduler"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    elif cfg["scheduler"] == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg["plateau_factor"],
                                                           patience=cfg["plateau_patience"])
    else:
        raise ValueError(f"unknown scheduler {cfg['scheduler']!r}")
    use_amp = bool(cfg["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and cfg["amp_dtype"] != "bf16")
    if regression:
        criterion = torch.nn.L1Loss()
    else:
        weight = None
        if cfg["class_weights"]:
            w = class_weight_vector(np.asarray(data["items"]["train"].y), n_out)
            weight = torch.as_tensor(w, dtype=torch.float32, device=device)
        criterion = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=float(cfg["label_smoothing"]))

    meta = {
        "format": CHECKPOINT_FORMAT,
        "dataset": dataset,
        "model": model_name,
        "model_cfg": cfg["model"],
        "task": task,
        "regression": regression,
        "n_out": n_out,
        "label_values": L.label_values(task),
        "input": input_name,
        "input_kind": input_kind,
        "features": int(features),
        "in_features": data["in_features"],
        "input_store": L.store_meta(stores[0]) if stores else {},
        "norm": data["norm"],
        "target": data["target"],
        "train_config": cfg,
        "seed": seed,
        "n_train": len(data["items"]["train"]),
        "n_val": len(data["items"]["val"]),
        "skipped": {s: data["items"][s].skipped for s in data["items"]},
    }
    meta["resume_key"] = resume_key(meta, {s: list(data["items"][s].ids) for s in ("train", "val")})
    history: list[dict] = []
    start_epoch, best, best_epoch, bad_epochs, stopped = 1, None, 0, 0, False
    last_path, ckpt_path, hist_path = out_dir / "last.pt", out_dir / "checkpoint.pt", out_dir / "history.csv"
    if cfg["resume"] and last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=False)
        same = state.get("resume_key") == meta["resume_key"]
        if same:
            model.load_state_dict(state["state_dict"])
            opt.load_state_dict(state["optimizer"])
            try:
                sched.load_state_dict(state["scheduler"])
            except Exception as exc:  # a different scheduler asked for on resume
                log.warning("scheduler state not restored (%s)", exc)
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            if state.get("torch_rng") is not None:
                torch.set_rng_state(state["torch_rng"].cpu())
            history = list(state["history"])
            start_epoch = int(state["epoch"]) + 1
            best, best_epoch = state.get("best_metric"), int(state.get("best_epoch", 0))
            bad_epochs, stopped = int(state.get("bad_epochs", 0)), bool(state.get("stopped_early", False))
            log.info("resuming from %s after epoch %d (best %s at epoch %d)", last_path, start_epoch - 1,
                     best, best_epoch)
        else:
            log.warning("%s was made with other settings, inputs or split; training from scratch", last_path)
    if meta["n_val"] == 0:
        log.warning("no validation structures: the checkpoint is the last epoch and early stopping is off")
    log.info("%s/%s (%s, f%d) on %s: %d train, %d val, %d parameters, epochs %d..%d",
             model_name, task, input_name, features, device, meta["n_train"], meta["n_val"], n_params,
             start_epoch, epochs)

    def snapshot(epoch: int) -> dict:
        return {**meta, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "epoch": epoch, "history": history, "best_metric": best, "best_epoch": best_epoch,
                "bad_epochs": bad_epochs, "stopped_early": stopped, "torch_rng": torch.get_rng_state()}

    for epoch in range(start_epoch, epochs + 1):
        if stopped:
            break
        t0 = time.time()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        model.train()
        train_loader, train_sampler = loaders["train"]
        train_sampler.set_epoch(epoch)
        lr = opt.param_groups[0]["lr"]
        loss_sum, n_seen = 0.0, 0
        for batch, y, _ in progress(train_loader, desc=f"epoch {epoch}"):
            batch, y = to_device(batch, device), y.to(device)
            opt.zero_grad(set_to_none=True)
            with _autocast(device, cfg):
                out = _outputs(model, batch, regression)
            loss = criterion(out, y)
            scaler.scale(loss).backward()
            if cfg["grad_clip"]:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
            scaler.step(opt)
            scaler.update()
            loss_sum += float(loss.detach()) * len(y)
            n_seen += len(y)
        train_seconds = time.time() - t0
        val_loss, out, yv, _ = evaluate(model, loaders["val"][0], device, cfg, regression, criterion)
        val_metric = _metric(out, yv, regression, target["std"])
        if cfg["scheduler"] == "plateau":
            sched.step(val_loss if np.isfinite(val_loss) else loss_sum / max(n_seen, 1))
        else:
            sched.step()
        row = {
            "epoch": epoch, "train_loss": loss_sum / max(n_seen, 1), "val_loss": val_loss,
            "val_metric": val_metric, "metric": "mae" if regression else "accuracy", "lr": lr,
            "seconds": time.time() - t0, "samples_per_s": n_seen / max(train_seconds, 1e-9),
            "peak_mem_mb": peak_memory_mb(device),
        }
        history.append(row)
        improved = _better(val_metric, best, regression) or (best is None and not np.isfinite(val_metric))
        if improved:
            best, best_epoch, bad_epochs = (val_metric if np.isfinite(val_metric) else None), epoch, 0
        else:
            bad_epochs += 1
        if cfg["patience"] and bad_epochs >= int(cfg["patience"]):
            stopped = True
            log.info("early stop after epoch %d: no better val %s for %d epochs", epoch, row["metric"],
                     bad_epochs)
        log.info("epoch %d: train loss %.4f, val loss %.4f, val %s %.4f, lr %.2e, %.1f s, %.1f samples/s, "
                 "peak %.0f MB", epoch, row["train_loss"], val_loss, row["metric"], val_metric, lr,
                 row["seconds"], row["samples_per_s"], row["peak_mem_mb"])
        snap = snapshot(epoch)
        if improved:
            atomic_torch_save(snap, ckpt_path)
        atomic_torch_save(snap, last_path)
        atomic_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), hist_path)

    if not ckpt_path.exists():  # e.g. resumed with nothing left to do and the best file removed
        atomic_torch_save(snapshot(start_epoch - 1), ckpt_path)
    if not hist_path.exists():
        atomic_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), hist_path)
    summary = {"best_epoch": best_epoch, "best_metric": best, "epochs_run": len(history),
               "stopped_early": stopped, "n_train": meta["n_train"], "n_val": meta["n_val"]}
    log.info("done: best val %s %s at epoch %d", "mae" if regression else "accuracy", best, best_epoch)
    return summary


def run_train_rule(model_name: str, task: str, input_name: str, features: int, stores, manifest: str,
                   split: str, checkpoint: str, cfg: dict, seed: int, dataset: str, threads: int = 0) -> dict:
    """The ``train_model`` rule: train into the folder of ``checkpoint`` with ``threads`` torch threads."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return train_model(model_name, task, input_name, int(features), list(stores), manifest, split,
                       Path(checkpoint).parent, cfg, seed, dataset)
