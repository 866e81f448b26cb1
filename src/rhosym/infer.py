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

from rhosym import checkpoint as C
from rhosym import inputs
from rhosym import loaders as L
from rhosym.registry import TASKS
from rhosym.runtime import autocast, forward, model_device, pick_device, to_device
from rhosym.settings import TrainParams, section

log = logging.getLogger("rhosym.infer")

PREDICTION_COLUMNS = ["dataset", "model", "task", "trained_task", "input", "features", "points", "split", "seed",
                      "variant", "group", "trained_on", "id", "y_true", "y_pred"]


def _registry(registry=None):
    if registry is not None:
        return registry
    import rhosym.models as registry_module

    return registry_module


def builtin_model(name: str, task: str = "symmetry", device="cpu"):
    """``(model, meta dict)`` of a fit-free model (``ModelSpec.fit_free``: a fixed rule such as the classical
    finder) with the default settings of its input (the config's defaults): it needs no checkpoint."""
    from rhosym import inputs
    from rhosym.registry import MODELS
    from rhosym.settings import DensitySettings, IngestSettings, LabelsSettings, SymopsSettings

    spec = MODELS[name]
    t = TASKS[task]
    model = _registry().build_model(name, t.n_out, t.regression, 0, {}).to(pick_device(device)).eval()
    meta = C.CheckpointMeta(dataset="", model=name, task=task, regression=t.regression, n_out=t.n_out,
                            label_values=L.label_values(task), input=spec.inputs[0], input_kind=spec.input_kind,
                            features=1, in_features=inputs.of_model(name).width or 0, model_cfg={},
                            answers=list(t.answers or (task,)),
                            input_store={"symops": SymopsSettings().model_dump(),
                                         "density": DensitySettings().model_dump()},
                            provenance={"cell": "as_is", "labels": LabelsSettings().model_dump(),
                                        "ingest": IngestSettings().model_dump()}).to_dict()
    return model, {**meta, "kind": t.kind, "device": str(model_device(model))}


def load_checkpoint(path: str | Path, device="cpu", registry=None):
    """``(model in eval mode on device, meta dict)``; refuses anything but a format-2 checkpoint
    (:class:`rhosym.checkpoint.CheckpointError`). ``path`` may name a fit-free model instead
    (:func:`builtin_model`: ``classical``) when no such file exists."""
    from rhosym.registry import MODELS

    if str(path) in MODELS and MODELS[str(path)].fit_free and not Path(path).exists():
        return builtin_model(str(path), device=device)
    device = pick_device(device) if isinstance(device, str) else device
    state = C.load(path, map_location=device)
    meta = state["meta"]
    reg = _registry(registry)
    kw = {"in_lattice": len(meta.lattice["features"])} if meta.lattice else {}  # a lattice-conditioned network
    model = reg.build_model(meta.model, meta.n_out, meta.regression, meta.in_features, meta.model_cfg or {}, **kw)
    model.load_state_dict(state["state_dict"])
    model.to(device).eval()
    out = meta.to_dict()
    out["kind"] = TASKS[meta.task].kind if meta.task in TASKS else ("regression" if meta.regression else "classification")
    out["device"] = str(device)
    return model, out


def decode_outputs(out, meta: dict, top_k: int = 5) -> dict:
    """Raw outputs (B, n_out) or (B,) → ``{answer task: {"y_pred", "topk", "topk_prob"}}`` (regression:
    ``y_pred`` in physical units). A joint network answers each of its tasks from summed probabilities."""
    import torch

    task = meta["task"]
    if meta["regression"]:
        t = meta.get("target") or {"mean": 0.0, "std": 1.0}
        out = out.reshape(len(out), -1)[:, 0] if out.ndim > 1 else out
        return {task: {"y_pred": (out.double().numpy() * t["std"] + t["mean"]).tolist()}}
    # calibrated: the temperature fitted on the validation split (rhosym.train.calibrate; 1.0 if none)
    prob = torch.softmax(out.double() / float(meta.get("temperature") or 1.0), dim=1).numpy()
    if meta.get("kind") == "joint" or len(meta.get("answers") or [task]) > 1:
        from rhosym.hierarchy import marginal_probabilities

        levels = {a: marginal_probabilities(prob, a) for a in meta["answers"]}
    else:
        levels = {task: prob}
    res = {}
    for a, p in levels.items():
        labels = L.label_values(a)
        k = min(int(top_k), p.shape[1])
        idx = np.argsort(-p, axis=1, kind="stable")[:, :k]
        topk = [[labels[j] for j in row] for row in idx.tolist()]
        res[a] = {"y_pred": [row[0] for row in topk], "topk": topk,
                  "topk_prob": np.take_along_axis(p, idx, axis=1).tolist()}
    return res


def predict_split(checkpoint, stores, manifest, split_table, split: str = "test", out: str | Path | None = None,
                  top_k: int = 5, max_points: int | None = None, device: str = "auto",
                  batch_budget: int | None = None, max_batch_size: int | None = None, num_workers: int = 0,
                  seed: int = 0, transform: dict | None = None, identity: dict | None = None,
                  registry=None, lattice_stores=None) -> pd.DataFrame:
    """Predict every structure of ``split`` found in ``stores``; write Parquet to ``out`` when given.

    ``checkpoint``: a path or a ``(model, meta)`` pair. ``max_points`` (density models; the figS8 sweep)
    cuts each structure to at most that many points (the fixed per-structure subset); a model trained
    with ``points`` is always tested at that size. ``transform`` applies an origin shift / rotation to
    the test inputs (``evaluate:``). ``identity`` (dataset, variant, ...) fills the key columns. One row per
    structure and answered task (a joint network answers three). ``lattice_stores``: the data set's ingest
    shards, the cells a lattice-conditioned checkpoint reads (rhosym.conditioning; required by one).
    """
    import torch
    from torch.utils.data import DataLoader

    reg = _registry(registry)
    if isinstance(checkpoint, str | Path):
        model, meta = load_checkpoint(checkpoint, device, reg)
    else:
        model, meta = checkpoint
    dev = model_device(model)
    manifest = manifest if isinstance(manifest, pd.DataFrame) else pd.read_parquet(manifest)
    split_df = split_table if isinstance(split_table, pd.DataFrame) else pd.read_parquet(split_table)
    ids = split_df.loc[split_df["split"] == split, "id"].astype(str).tolist()
    raw = L.encode_labels(manifest, meta["task"])
    points = int(max_points or meta.get("points") or 0)
    # the label is only reported here, so structures without one are kept (y_true NaN / None)
    source = inputs.of_checkpoint(meta)
    items = L.build_items(ids, raw.fillna(-1.0), list(stores), source, name=f"{split} ({meta['model']})",
                          max_points=points)
    ds = L.StoreDataset(items, source, meta["features"], meta.get("norm"), max_points=points, seed=seed,
                        transform=transform, lattice=_lattice_features(meta, lattice_stores))
    cfg = section(TrainParams, meta.get("train_config"))  # an older checkpoint's extra keys are ignored
    sampler = L.BudgetBatchSampler(items.size, batch_budget or cfg.batch_budget, max_batch_size or cfg.max_batch_size,
                                   shuffle=False)
    # regression targets pass through unscaled: y_true is reported in physical units
    collate = L.Collate(reg.collate, meta["model"], True)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                        worker_init_fn=L.seed_worker)
    answers = meta.get("answers") or [meta["task"]]
    rows = {a: {"id": [], "y_pred": [], "topk": [], "topk_prob": []} for a in answers}
    model.eval()
    with torch.no_grad():
        for batch, _, bid in loader:
            batch = to_device(batch, dev)
            with autocast(dev, cfg.amp, cfg.amp_dtype):
                o = forward(model, batch, False).float().cpu()
            for a, dec in decode_outputs(o, meta, top_k).items():
                rows[a]["id"].extend(bid)
                rows[a]["y_pred"].extend(dec["y_pred"])
                if "topk" in dec:
                    rows[a]["topk"].extend(dec["topk"])
                    rows[a]["topk_prob"].extend(dec["topk_prob"])
    ident = {"dataset": meta.get("dataset", ""), "variant": "", "trained_on": meta.get("dataset", ""),
             **(identity or {})}
    frames = []
    for a in answers:
        r = rows[a]
        truth = L.encode_labels(manifest, a).reindex(r["id"])
        if TASKS[a].regression:
            y_true = truth.astype(float).tolist()
        else:
            lv = L.label_values(a)
            y_true = [lv[int(v)] if np.isfinite(v) else None for v in truth.tolist()]
        df = pd.DataFrame({
            "dataset": ident["dataset"], "model": meta["model"], "task": a, "trained_task": meta["task"],
            "input": meta["input"], "features": int(meta["features"]), "points": points,
            "split": ident.get("split", meta.get("split", "")), "seed": int(meta.get("seed", 0)),
            "variant": ident["variant"], "group": ident.get("group", ""), "trained_on": ident["trained_on"],
            "id": r["id"], "y_true": y_true, "y_pred": r["y_pred"]}, columns=PREDICTION_COLUMNS)
        if not TASKS[a].regression:
            df["y_true"] = df["y_true"].astype(object)
            df["topk"] = r["topk"]
            df["topk_prob"] = r["topk_prob"]
            if len(df):
                log.info("%s %s: %d predicted, accuracy %.4f", meta["model"], a, len(df),
                         float((df["y_true"] == df["y_pred"]).mean()))
        elif len(df):
            log.info("%s %s: %d predicted, MAE %.4f", meta["model"], a, len(df),
                     float(np.nanmean(np.abs(df["y_true"].astype(float) - df["y_pred"].astype(float)))))
        if max_points is not None:
            df["max_points"] = int(max_points)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)
    if out is not None:
        from rhosym.store import write_parquet

        write_parquet(df, out)  # <out>.tmp-<pid>, renamed when complete: a killed job leaves no `out`
    return df


def _lattice_features(meta: dict, lattice_stores):
    """The lattice features a lattice-conditioned checkpoint reads (None for any other)."""
    if not meta.get("lattice"):
        return None
    from rhosym import conditioning as K

    if not lattice_stores:
        raise ValueError(f"{meta['model']}/{meta['task']} is lattice-conditioned (+lattice): give the data set's "
                         f"ingest shards (lattice_stores)")
    return K.LatticeFeatures(K.CellTable(list(lattice_stores)), meta["lattice"])


def predict_sweep(checkpoint, stores, manifest, split_table, outs: list[str], max_points: list[int], top_k: int = 5,
                  device: str = "auto", seed: int = 0, identity: dict | None = None,
                  lattice_stores=None) -> list[dict]:
    """ONE trained checkpoint on the test split once per ``max_points`` value (loaded once; an
    inference-time sweep, not a retraining per size): each structure is cut to at most N points (its fixed
    subset). ``outs[i]`` receives the predictions for ``max_points[i]`` (the ``predict_sweep`` rule)."""
    loaded = load_checkpoint(checkpoint, device)
    summary = []
    for out, n in zip(outs, max_points):
        df = predict_split(loaded, stores, manifest, split_table, split="test", out=out, top_k=top_k,
                           max_points=int(n), device=device, seed=seed, identity=identity,
                           lattice_stores=lattice_stores)
        summary.append({"max_points": int(n), "n": int(len(df))})
        log.info("points sweep: max_points=%d: %d rows", n, len(df))
    return summary


def prepare_sample(sample: dict, meta: dict) -> dict:
    """A per-sample dict in the store form (density values raw, lattice parameters) made ready for the
    network with the checkpoint's normalization; a lattice-conditioned checkpoint also reads the features of
    the sample's cell (its ``cell_params``, rhosym.conditioning)."""
    from rhosym import conditioning as K

    source = inputs.of_checkpoint(meta)
    sample = dict(sample)
    cell = sample.pop(K.CELL, None)
    sample = source.limit(sample, int(meta.get("points") or 0), str(sample.get("id", "")))
    return K.attach(source.prepare(sample, int(meta.get("features") or 1), meta.get("norm")), cell,
                    meta.get("lattice"))


def predict_samples(model, meta: dict, samples: list[dict], top_k: int = 5, registry=None) -> list[dict]:
    """Predict single structures (per-sample dicts in the store form). Returns one dict per sample:
    ``{answer task: {"y_pred", "topk", "topk_prob"}}`` (regression: ``y_pred`` only)."""
    import torch

    reg = _registry(registry)
    prepared = [prepare_sample(s, meta) for s in samples]
    if not prepared:
        return []
    dev = model_device(model)
    model.eval()
    with torch.no_grad():
        batch = to_device(reg.collate(meta["model"], prepared), dev)
        o = forward(model, batch, False).float().cpu()
    dec = decode_outputs(o, meta, top_k)
    return [{a: {k: v[i] for k, v in d.items()} for a, d in dec.items()} for i in range(len(prepared))]
