"""Predictions from a trained checkpoint: a whole split of the stores, or preprocessed single structures.

Classification predictions are label values as strings (crystal-system names, space-group or
extinction-group numbers) with the top-k labels and their softmax probabilities; regression
predictions are in physical units (the checkpoint's target scaling undone).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rhosym import loaders as L
from rhosym.train import _autocast, _outputs, get_registry, pick_device, to_device

log = logging.getLogger("rhosym.infer")

TRAINING_STATE = ("state_dict", "optimizer", "scheduler", "scaler", "torch_rng")
PREDICTION_COLUMNS = ["dataset", "model", "task", "input", "features", "id", "split", "y_true", "y_pred"]


def load_checkpoint(path: str | Path, device="cpu", registry=None):
    """``(model in eval mode on device, meta)``; ``meta`` is the checkpoint without the training state."""
    import torch

    device = pick_device(device) if isinstance(device, str) else device
    state = torch.load(path, map_location=device, weights_only=False)
    registry = get_registry(registry)
    model = registry.build_model(state["model"], state["n_out"], state["regression"], state["in_features"],
                                 state.get("model_cfg") or {})
    model.load_state_dict(state["state_dict"])
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in TRAINING_STATE}
    meta["device"] = str(device)
    return model, meta


def decode_outputs(out, meta: dict, top_k: int = 5) -> dict:
    """Raw model outputs (B, n_out) or (B,) → ``y_pred`` (and ``topk``, ``topk_prob`` for classification)."""
    import torch

    if meta["regression"]:
        t = meta.get("target") or {"mean": 0.0, "std": 1.0}
        out = out.reshape(len(out), -1)[:, 0] if out.ndim > 1 else out
        return {"y_pred": (out.double().numpy() * t["std"] + t["mean"]).tolist()}
    labels = meta["label_values"]
    prob = torch.softmax(out.double(), dim=1)
    k = min(int(top_k), prob.shape[1])
    p, idx = prob.topk(k, dim=1)
    topk = [[labels[j] for j in row] for row in idx.tolist()]
    return {"y_pred": [row[0] for row in topk], "topk": topk, "topk_prob": p.tolist()}


def predict_split(checkpoint, stores, manifest, split_table, split: str = "test", out: str | Path | None = None,
                  top_k: int = 5, max_points: int | None = None, device: str = "auto",
                  batch_budget: int | None = None, max_batch_size: int | None = None, num_workers: int = 0,
                  seed: int = 0, registry=None) -> pd.DataFrame:
    """Predict every structure of ``split`` found in ``stores``; write Parquet to ``out`` when given.

    ``checkpoint``: a path or a ``(model, meta)`` pair. ``max_points`` (density models) subsamples each
    structure at random (seeded) to at most that many points.
    """
    import torch
    from torch.utils.data import DataLoader

    registry = get_registry(registry)
    if isinstance(checkpoint, str | Path):
        model, meta = load_checkpoint(checkpoint, device, registry)
    else:
        model, meta = checkpoint
    dev = next(model.parameters()).device
    manifest = manifest if isinstance(manifest, pd.DataFrame) else pd.read_parquet(manifest)
    split_df = split_table if isinstance(split_table, pd.DataFrame) else pd.read_parquet(split_table)
    ids = split_df.loc[split_df["split"] == split, "id"].astype(str).tolist()
    raw = L.encode_labels(manifest, meta["task"])
    # the label is only reported here, so structures without one are kept (y_true NaN / None)
    items = L.build_items(ids, raw.fillna(-1.0), list(stores), meta["input_kind"], name=f"{split} ({meta['model']})")
    ds = L.StoreDataset(items, meta["input_kind"], meta["features"], meta.get("norm"), max_points=max_points,
                        seed=seed)
    cfg = meta.get("train_config") or {}
    budget = batch_budget or cfg.get("batch_budget", 200_000)
    if max_points is not None and meta["input_kind"] == "density":
        sizes = [min(s, max_points) for s in items.size]
    else:
        sizes = items.size
    sampler = L.BudgetBatchSampler(sizes, budget, max_batch_size or cfg.get("max_batch_size", 32), shuffle=False)
    # regression targets pass through unscaled: y_true is reported in physical units
    collate = L.Collate(registry.collate, meta["model"], True)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                        worker_init_fn=L.seed_worker)
    rows = {"id": [], "y_pred": [], "topk": [], "topk_prob": []}
    model.eval()
    with torch.no_grad():
        for batch, _, bid in loader:
            batch = to_device(batch, dev)
            with _autocast(dev, cfg):
                o = _outputs(model, batch, False).float().cpu()
            dec = decode_outputs(o, meta, top_k)
            rows["id"].extend(bid)
            rows["y_pred"].extend(dec["y_pred"])
            if not meta["regression"]:
                rows["topk"].extend(dec["topk"])
                rows["topk_prob"].extend(dec["topk_prob"])
    truth = raw.reindex(rows["id"])
    if meta["regression"]:
        rows["y_true"] = truth.astype(float).tolist()
    else:
        lv = meta["label_values"]
        rows["y_true"] = [lv[int(v)] if np.isfinite(v) else None for v in truth.tolist()]
    df = pd.DataFrame({
        "dataset": meta.get("dataset", ""), "model": meta["model"], "task": meta["task"], "input": meta["input"],
        "features": int(meta["features"]), "id": rows["id"], "split": split,
        "y_true": rows["y_true"], "y_pred": rows["y_pred"],
    }, columns=PREDICTION_COLUMNS)
    if not meta["regression"]:
        df["y_true"] = df["y_true"].astype(object)
        df["topk"] = rows["topk"]
        df["topk_prob"] = rows["topk_prob"]
    if max_points is not None:
        df["max_points"] = int(max_points)
    if not meta["regression"] and len(df):
        acc = float((df["y_true"] == df["y_pred"]).mean())
        log.info("%s %s: %d predicted, accuracy %.4f", meta["model"], meta["task"], len(df), acc)
    elif len(df):
        mae = float(np.nanmean(np.abs(df["y_true"].astype(float) - df["y_pred"].astype(float))))
        log.info("%s %s: %d predicted, MAE %.4f", meta["model"], meta["task"], len(df), mae)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        df.to_parquet(tmp, index=False)
        tmp.replace(out)
    return df


def predict_samples(model, meta: dict, samples: list[dict], top_k: int = 5, registry=None) -> list[dict]:
    """Predict preprocessed single structures (per-sample dicts in the store form: density features RAW).

    Returns one dict per sample: ``y_pred`` (label string or physical value) and, for classification,
    ``topk`` and ``topk_prob``.
    """
    import torch

    registry = get_registry(registry)
    prepared = []
    for s in samples:
        if meta["input_kind"] == "density":
            s = L.prepare_density(s, meta["features"], meta.get("norm"))
        elif meta["input_kind"] == "xrd":
            s = {**s, "pattern": np.asarray(s["pattern"], dtype=np.float32)[:L.XRD_POINTS]}
        prepared.append(s)
    if not prepared:
        return []
    dev = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        batch = to_device(registry.collate(meta["model"], prepared), dev)
        o = _outputs(model, batch, False).float().cpu()
    dec = decode_outputs(o, meta, top_k)
    keys = [k for k in ("y_pred", "topk", "topk_prob") if k in dec]
    return [{k: dec[k][i] for k in keys} for i in range(len(prepared))]


def run_predict_rule(checkpoint: str, stores, manifest: str, split: str, out: str, params: dict) -> pd.DataFrame:
    """The ``predict_test`` rule."""
    return predict_split(checkpoint, list(stores), manifest, split, split="test", out=out,
                         top_k=int(params.get("top_k", 5)), device=params.get("device", "auto"),
                         num_workers=int(params.get("num_workers", 0)))
