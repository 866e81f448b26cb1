"""Robustness to experimental-like density: trained models on perturbed test inputs (rules robust_eval
and robustness, figure figRobust).

For one trained experiment, :func:`evaluate_perturbed` (rule ``robust_eval``) takes the data set's common test set (the ids every
compared model has; ``metrics/common_test_ids.csv``; a seeded subset of at most
``robustness.max_structures``), rebuilds each structure's input from its ingest row exactly as the
training input was made (rhosym.predict's settings from the checkpoint) and applies each perturbation
of :mod:`rhosym.perturb` at each strength:

* density models: ``noise``, ``blur`` and ``wedge`` on the dense grid (the structure's density computed
  as the density stage does, or the CHGCAR grid), then sampled as in training; ``thermal`` (larger B
  factors, structure-derived densities only) recomputes the density;
* the XRD FCN: its powder analogues ``xrd_noise``, ``xrd_broaden``, ``xrd_shift`` and ``thermal``;
* the lattice control: ``lattice_noise`` on its lattice parameters;
* a lattice-conditioned network (``+lattice``) reads the test structure's unperturbed cell beside its
  perturbed input.

Strength 'none' (the first level) is the unperturbed input. Rows: one per (perturbation, strength,
structure, answered task) with ``correct``. :func:`run_robustness_table` turns them into accuracy
against strength with a bootstrap 95 % interval over structures (``metrics/robustness.csv``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("rhosym.robustness")

def levels_of(name: str, overrides: dict | None = None) -> list[float]:
    from rhosym.perturb import PERTURBATIONS

    lv = (overrides or {}).get(name)
    return [float(x) for x in (lv if lv is not None else PERTURBATIONS[name].levels)]


def _label(x: float) -> str:
    return "none" if math.isinf(x) else f"{x:g}"


def test_ids(common: pd.DataFrame, split_table: pd.DataFrame, split: str, task: str, n_max: int, seed: int) -> list[str]:
    """The common test ids of ``(split, task)``, a seeded subset of at most ``n_max``."""
    c = common[(common["split"] == split) & (common["task"] == task)]["id"].astype(str)
    ids = sorted(set(c) & set(split_table.loc[split_table["split"] == "test", "id"].astype(str)))
    if len(ids) > n_max:
        rng = np.random.default_rng([seed, 424242])
        ids = sorted(rng.choice(ids, n_max, replace=False).tolist())
    return ids


def _rows_by_id(ingest_paths, ids: set[str]) -> dict[str, dict]:
    from rhosym.ingest import read_ingest

    out = {}
    for p in ingest_paths:
        for row in read_ingest(p, ["id", "kind", "structure", "chgcar_path", "a", "b", "c", "alpha", "beta",
                                   "gamma"]):
            if str(row["id"]) in ids:
                out[str(row["id"])] = row
    return out


def evaluate_perturbed(checkpoint: str, manifest, split_table, ingest_paths, common, perturbations: list[str],
                       level_overrides: dict | None = None, max_structures: int = 500, seed: int = 0,
                       device: str = "auto", identity: dict | None = None, batch_size: int = 16) -> pd.DataFrame:
    """Every (perturbation, strength, structure, answered task) of one checkpoint, with ``correct``."""
    from rhosym.conditioning import CELL, params_of_row
    from rhosym.infer import load_checkpoint, predict_samples
    from rhosym.loaders import encode_labels, label_values
    from rhosym.logs import progress
    from rhosym.perturb import PERTURBATIONS
    from rhosym.predict import resolve_settings
    from rhosym.registry import TASKS

    model, meta = load_checkpoint(checkpoint, device)
    s = resolve_settings(meta)
    source = s.source_kind
    names = [p for p in perturbations if p in source.perturbations]
    if s.density_kind == "chgcar":  # thermal smearing needs the structure's density
        names = [p for p in names if p != "thermal"]
    answers = [a for a in (meta.get("answers") or [meta["task"]]) if not TASKS[a].regression]
    manifest = manifest if isinstance(manifest, pd.DataFrame) else pd.read_parquet(manifest)
    split_table = split_table if isinstance(split_table, pd.DataFrame) else pd.read_parquet(split_table)
    common = common if isinstance(common, pd.DataFrame) else pd.read_csv(common, dtype={"id": str})
    split = (identity or {}).get("split") or meta.get("split")
    cols = ["dataset", "model", "trained_task", "variant", "group", "seed", "augmented", "perturbation", "strength",
            "strength_label", "order", "unit", "task", "id", "correct"]
    if not names or not answers:
        log.info("%s: no perturbation applies to %s input or no classification answer", checkpoint, source.name)
        return pd.DataFrame(columns=cols)
    ids = test_ids(common, split_table, split, answers[0], max_structures, seed)
    rows_by_id = _rows_by_id(ingest_paths, set(ids))
    truth = {a: encode_labels(manifest, a) for a in answers}
    levels = {n: levels_of(n, level_overrides) for n in names}
    ident = {"dataset": meta.get("dataset", ""), "model": meta["model"], "trained_task": meta["task"],
             "variant": "", "group": "", "seed": int(meta.get("seed", 0)), "augmented": False, **(identity or {})}
    out: list[dict] = []
    pending: list[tuple[str, str, float, dict]] = []

    def flush():
        if not pending:
            return
        preds = predict_samples(model, meta, [p[3] for p in pending], top_k=1)
        for (sid, name, lv, _), pred in zip(pending, preds):
            order = levels[name].index(lv)
            for a in answers:
                y = truth[a].get(sid, np.nan)
                correct = bool(np.isfinite(y) and pred[a]["y_pred"] == label_values(a)[int(y)])
                out.append({**ident, "perturbation": name, "strength": lv, "strength_label": _label(lv),
                            "order": order, "unit": PERTURBATIONS[name].unit, "task": a, "id": sid,
                            "correct": correct})
        pending.clear()

    n_fail = 0
    for sid in progress(ids, desc=f"robustness {meta['model']}/{meta['task']}"):
        row = rows_by_id.get(sid)
        if row is None:
            n_fail += 1
            continue
        try:
            for name, lv, sample in source.perturbed(row, s, names, levels, seed):
                if s.lattice:  # a lattice-conditioned network: the (unperturbed) cell of the test structure
                    sample = {**sample, CELL: params_of_row(row)}
                pending.append((sid, name, lv, sample))
                if len(pending) >= batch_size:
                    flush()
        except ValueError as exc:  # a perturbed input that cannot be sampled counts as wrong, visibly
            n_fail += 1
            log.warning("%s: perturbed input failed: %s", sid, " ".join(str(exc).split()))
    flush()
    log.info("%s: %d structures, %d perturbations, %d rows, %d structures failed", checkpoint, len(ids), len(names),
             len(out), n_fail)
    return pd.DataFrame(out, columns=cols)


def robustness_table(frames: list[pd.DataFrame], bootstrap: int = 1000, confidence: float = 0.95) -> pd.DataFrame:
    """Accuracy against strength: one row per (data set, model, group, task, perturbation, strength),
    seeds averaged per structure, bootstrap interval over structures."""
    from rhosym import stats

    cols = ["dataset", "model", "trained_task", "group", "augmented", "task", "perturbation", "strength",
            "strength_label", "order", "unit", "n", "n_seeds", "top1", "top1_lo", "top1_hi"]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    keys = ["dataset", "model", "trained_task", "group", "augmented", "task", "perturbation", "strength"]
    rows = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        per_id = g.groupby("id")["correct"].mean().to_numpy(dtype=float)
        lo, hi = stats.bootstrap_mean(per_id, bootstrap, confidence)
        rows.append({**dict(zip(keys, key)), "strength_label": g["strength_label"].iloc[0], "order": int(g["order"].iloc[0]),
                     "unit": g["unit"].iloc[0], "n": len(per_id), "n_seeds": int(g["seed"].nunique()),
                     "top1": float(per_id.mean()) if len(per_id) else float("nan"), "top1_lo": lo, "top1_hi": hi})
    return pd.DataFrame(rows, columns=cols)


def run_robustness_table(paths, out_csv: str, bootstrap: int, confidence: float) -> pd.DataFrame:
    """The ``robustness`` rule: :func:`robustness_table` of the robust_eval outputs of one data set."""
    frames = [pd.read_parquet(p) for p in paths]
    t = robustness_table(frames, bootstrap, confidence)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(out_csv, index=False)
    for _, r in t[t["order"] == 0].iterrows():
        log.info("%s %s %s %s: clean accuracy %.3f (n=%d)", r["dataset"], r["model"], r["group"], r["task"],
                 r["top1"], r["n"])
    return t


def summary(table: pd.DataFrame, moderate: dict | None = None) -> pd.DataFrame:
    """Accuracy at no perturbation and at the moderate strength of each perturbation (rhosym.perturb)."""
    from rhosym.perturb import PERTURBATIONS

    moderate = moderate or {n: p.moderate for n, p in PERTURBATIONS.items()}
    rows = []
    for (ds, model, group, task, pert), g in table.groupby(["dataset", "model", "group", "task", "perturbation"]):
        clean = g[g["order"] == 0]
        mod = g[np.isclose(g["strength"].astype(float), float(moderate.get(pert, np.nan)))]
        rows.append({"dataset": ds, "model": model, "group": group, "task": task, "perturbation": pert,
                     "moderate": moderate.get(pert), "n": int(g["n"].max()),
                     "clean": float(clean["top1"].iloc[0]) if len(clean) else np.nan,
                     "at_moderate": float(mod["top1"].iloc[0]) if len(mod) else np.nan})
    return pd.DataFrame(rows)

