"""Test-split metrics, per-class tables and confusion matrices (the ``metrics`` rule).

Reads the prediction Parquet files of one data set (``predictions/{model}/{task}/{input}-f{features}.parquet``,
columns ``dataset, model, task, input, features, id, split, y_true, y_pred`` and, for classification,
``topk``/``topk_prob``) and writes, under ``results/{ds}/metrics/``:

* ``classification.csv`` / ``.md``: one row per experiment: ``n, top1, top5, macro_f1, weighted_f1``;
* ``regression.csv`` / ``.md``: one row per experiment: ``n, mae, rmse, r2``;
* ``per_class/{model}-{task}-{input}-f{features}.csv``: precision, recall, F1 and support of every class
  of the full label set (classes absent from the test split have support 0);
* ``confusion/{model}-{task}-{input}-f{features}.csv``: raw counts over the FULL label set (7, 101 or 230
  classes), rows true, columns predicted; ``...-rates.csv`` the same, row-normalized (mishit rates; a row
  of a class absent from the test split is all zero).

Labels are compared as strings: crystal-system names (``rhosym.symmetry.CRYSTAL_SYSTEMS`` order) and
space-group / extinction-group numbers written without decimals (``"12"``). Metrics come from scikit-learn.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rhosym.symmetry import CRYSTAL_SYSTEMS
from rhosym.workflow import CLASS_TASKS, REGRESSION_TASKS

log = logging.getLogger("rhosym.evaluate")
N_CLASSES = {"crystal_system": 7, "extinction_group": 101, "space_group": 230}
KEY_COLUMNS = ["dataset", "model", "task", "input", "features"]
CLASS_COLUMNS = KEY_COLUMNS + ["n", "top1", "top5", "macro_f1", "weighted_f1"]
REG_COLUMNS = KEY_COLUMNS + ["n", "mae", "rmse", "r2"]
UNITS = {"band_gap": "eV", "formation_energy": "eV/atom"}


def label_space(task: str) -> list[str]:
    """Every class label of a classification task, in class-index order, as strings."""
    if task == "crystal_system":
        return list(CRYSTAL_SYSTEMS)
    if task in N_CLASSES:
        return [str(i) for i in range(1, N_CLASSES[task] + 1)]
    raise ValueError(f"{task!r} is not a classification task ({', '.join(CLASS_TASKS)})")


def _one_label(v, task: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        s = v.strip()
        try:
            f = float(s)
        except ValueError:
            return s.lower() if task == "crystal_system" else s
        v = f
    if isinstance(v, (int, np.integer, float, np.floating)) and float(v).is_integer():
        i = int(v)
        if task == "crystal_system":  # a class index 0..6 (docs/formats.md)
            return CRYSTAL_SYSTEMS[i] if 0 <= i < len(CRYSTAL_SYSTEMS) else str(i)
        return str(i)
    return str(v)


def normalize_labels(values: Iterable, task: str) -> np.ndarray:
    """Labels as strings that compare equal across writers: ``12``, ``12.0`` and ``"12"`` all give ``"12"``."""
    return np.array([_one_label(v, task) for v in values], dtype=object)


def topk_accuracy(y_true: Sequence[str], topk: Sequence[Sequence], k: int, task: str) -> float:
    """Fraction of rows whose true label is among the first ``k`` of ``topk`` (best first)."""
    if len(y_true) == 0:
        return float("nan")
    hits = 0
    for t, cand in zip(y_true, topk):
        if cand is None:
            continue
        hits += t in set(normalize_labels(list(cand)[:k], task))
    return hits / len(y_true)


def classification_metrics(y_true, y_pred, task: str, topk=None) -> dict:
    """``n, top1, top5, macro_f1, weighted_f1`` (F1 over the classes present in ``y_true`` or ``y_pred``)."""
    from sklearn.metrics import accuracy_score, f1_score

    yt = normalize_labels(y_true, task)
    yp = normalize_labels(y_pred, task)
    n = len(yt)
    if n == 0:
        return {"n": 0, "top1": np.nan, "top5": np.nan, "macro_f1": np.nan, "weighted_f1": np.nan}
    out = {
        "n": n,
        "top1": float(accuracy_score(yt, yp)),
        "top5": topk_accuracy(yt, topk, 5, task) if topk is not None else np.nan,
        "macro_f1": float(f1_score(yt, yp, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(yt, yp, average="weighted", zero_division=0)),
    }
    return out


def per_class_table(y_true, y_pred, task: str) -> pd.DataFrame:
    """``label, precision, recall, f1, support`` for every class of the task's full label set."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = label_space(task)
    yt = normalize_labels(y_true, task)
    yp = normalize_labels(y_pred, task)
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    return pd.DataFrame({"label": labels, "precision": p, "recall": r, "f1": f, "support": s.astype(int)})


def confusion_counts(y_true, y_pred, task: str) -> pd.DataFrame:
    """Raw confusion counts over the full label set: index = true label, columns = predicted label.

    Predictions outside the label set are not counted here (they are logged by the caller).
    """
    from sklearn.metrics import confusion_matrix

    labels = label_space(task)
    yt = normalize_labels(y_true, task)
    yp = normalize_labels(y_pred, task)
    m = confusion_matrix(yt, yp, labels=labels) if len(yt) else np.zeros((len(labels),) * 2, dtype=int)
    df = pd.DataFrame(m.astype(np.int64), index=pd.Index(labels, name="true"),
                      columns=pd.Index(labels, name="pred"))
    return df


def row_normalize(counts: pd.DataFrame) -> pd.DataFrame:
    """Row-normalized confusion matrix (mishit rates); rows of classes with no test samples are 0."""
    sums = counts.sum(axis=1).to_numpy(dtype=float)
    rates = np.divide(counts.to_numpy(dtype=float), sums[:, None], out=np.zeros(counts.shape),
                      where=sums[:, None] > 0)
    return pd.DataFrame(rates, index=counts.index, columns=counts.columns)


def regression_metrics(y_true, y_pred) -> dict:
    """``n, mae, rmse, r2`` (scikit-learn), over rows where both values are finite."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float)
    ok = np.isfinite(yt) & np.isfinite(yp)
    yt, yp = yt[ok], yp[ok]
    n = int(ok.sum())
    if n == 0:
        return {"n": 0, "mae": np.nan, "rmse": np.nan, "r2": np.nan}
    return {
        "n": n,
        "mae": float(mean_absolute_error(yt, yp)),
        "rmse": float(math.sqrt(mean_squared_error(yt, yp))),
        "r2": float(r2_score(yt, yp)) if n > 1 else np.nan,
    }


def experiment_stem(model: str, task: str, input_: str, features: int) -> str:
    """File stem of the per-experiment tables: ``{model}-{task}-{input}-f{features}``."""
    return f"{model}-{task}-{input_}-f{int(features)}"


def to_markdown(df: pd.DataFrame, title: str | None = None, empty: str = "No rows.", floatfmt: str = ".4f") -> str:
    """A GitHub Markdown table (``empty`` when there are no rows), with an optional ``## title``."""
    head = f"## {title}\n\n" if title else ""
    if df.empty:
        return head + f"_{empty}_\n"
    return head + df.to_markdown(index=False, floatfmt=floatfmt) + "\n"


MODEL_ORDER = ("cogn", "cgcnn", "xrd_fcn", "pointnet", "sparse_cnn")


def sort_experiments(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in a stable reading order: data set (as first seen), task, model (paper order), input, features."""
    if df.empty:
        return df.reset_index(drop=True)
    ds_order = list(dict.fromkeys(df["dataset"]))
    tasks = list(CLASS_TASKS + REGRESSION_TASKS)
    key = pd.DataFrame({
        "d": df["dataset"].map(ds_order.index),
        "t": df["task"].map(lambda t: tasks.index(t) if t in tasks else 99),
        "m": df["model"].map(lambda m: MODEL_ORDER.index(m) if m in MODEL_ORDER else 99),
        "i": df["input"].astype(str), "f": df["features"].astype(int)}, index=df.index)
    return df.loc[key.sort_values(["d", "t", "m", "i", "f"], kind="stable").index].reset_index(drop=True)


def _key(df: pd.DataFrame, path: str) -> dict:
    """The experiment key of one prediction file (from its columns, else from its path)."""
    p = Path(path)
    from_path = {"model": p.parent.parent.name, "task": p.parent.name,
                 "input": p.stem.rsplit("-f", 1)[0], "features": int(p.stem.rsplit("-f", 1)[1])
                 if "-f" in p.stem else 1, "dataset": p.parents[3].name if len(p.parents) > 3 else ""}
    out = {}
    for c in KEY_COLUMNS:
        if c in df.columns and len(df) and pd.notna(df[c].iloc[0]):
            out[c] = df[c].iloc[0]
        else:
            out[c] = from_path[c]
    out["features"] = int(out["features"])
    return out


def evaluate_predictions(pred_paths: Sequence[str], out_dir: str | Path, dataset: str | None = None) -> dict:
    """The ``metrics`` rule: every table of one data set's predictions, written under ``out_dir``.

    Returns ``{"classification": DataFrame, "regression": DataFrame}``. A prediction file that is
    missing or unreadable is logged with its reason and skipped; rows outside the test split are ignored.
    """
    out = Path(out_dir)
    (out / "per_class").mkdir(parents=True, exist_ok=True)
    (out / "confusion").mkdir(parents=True, exist_ok=True)
    cls_rows, reg_rows, skipped = [], [], {}
    for path in pred_paths:
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - report and go on
            skipped[str(path)] = f"unreadable: {type(exc).__name__}: {exc}".splitlines()[0]
            continue
        key = _key(df, str(path))
        if dataset and not key["dataset"]:
            key["dataset"] = dataset
        if "split" in df.columns:
            n_all = len(df)
            df = df[df["split"].astype(str) == "test"]
            if len(df) < n_all:
                log.info("%s: %d of %d rows are not test-split rows; ignored", path, n_all - len(df), n_all)
        task = key["task"]
        if task in CLASS_TASKS:
            unlabelled = normalize_labels(df["y_true"], task) == ""
            if unlabelled.any():
                log.warning("%s: %d test rows without a true label (no label in the manifest) left out",
                            path, int(unlabelled.sum()))
                df = df[~unlabelled]
            yt, yp = df["y_true"].tolist(), df["y_pred"].tolist()
            topk = df["topk"].tolist() if "topk" in df.columns else None
            m = classification_metrics(yt, yp, task, topk)
            cls_rows.append({**key, **m})
            stem = experiment_stem(key["model"], task, key["input"], key["features"])
            per_class_table(yt, yp, task).to_csv(out / "per_class" / f"{stem}.csv", index=False)
            counts = confusion_counts(yt, yp, task)
            counts.to_csv(out / "confusion" / f"{stem}.csv")
            row_normalize(counts).to_csv(out / "confusion" / f"{stem}-rates.csv", float_format="%.6g")
            valid = set(label_space(task))
            bad_t = sum(v not in valid for v in normalize_labels(yt, task))
            bad_p = sum(v not in valid for v in normalize_labels(yp, task))
            if bad_t or bad_p:
                log.warning("%s: %d true and %d predicted labels are outside the %s label set; "
                            "not in the confusion matrix", stem, bad_t, bad_p, task)
            log.info("%s: n=%d top1=%.4f top5=%.4f macro-F1=%.4f", stem, m["n"], m["top1"], m["top5"],
                     m["macro_f1"])
        elif task in REGRESSION_TASKS:
            m = regression_metrics(df["y_true"], df["y_pred"])
            n_drop = len(df) - m["n"]
            if n_drop:
                log.warning("%s/%s: %d rows with non-finite values left out", key["model"], task, n_drop)
            reg_rows.append({**key, **m, "unit": UNITS.get(task, "")})
            log.info("%s/%s/%s-f%d: n=%d MAE=%.4g RMSE=%.4g R2=%.4g", key["model"], task, key["input"],
                     key["features"], m["n"], m["mae"], m["rmse"], m["r2"])
        else:
            skipped[str(path)] = f"unknown task {task!r}"
    for p, why in skipped.items():
        log.warning("prediction file skipped: %s: %s", p, why)
    cls = pd.DataFrame(cls_rows, columns=CLASS_COLUMNS)
    reg = pd.DataFrame(reg_rows, columns=REG_COLUMNS + ["unit"])
    cls, reg = sort_experiments(cls), sort_experiments(reg)
    cls.to_csv(out / "classification.csv", index=False)
    reg.to_csv(out / "regression.csv", index=False)
    ds = dataset or (cls["dataset"].iloc[0] if len(cls) else reg["dataset"].iloc[0] if len(reg) else "")
    (out / "classification.md").write_text(to_markdown(
        cls, f"Classification on the test split ({ds})", "No classification experiments for this data set."))
    (out / "regression.md").write_text(to_markdown(
        reg, f"Regression on the test split ({ds})", "No regression experiments for this data set."))
    log.info("metrics: %d classification and %d regression experiments; %d prediction files skipped",
             len(cls), len(reg), len(skipped))
    return {"classification": cls, "regression": reg, "skipped": skipped}


def sweep_table(paths: Sequence[str]) -> pd.DataFrame:
    """Accuracy of each ``predictions_sweep/.../n{N}.parquet`` file: one row per (experiment, max_points).

    Columns ``dataset, model, task, input, features, max_points, n, top1, macro_f1``.
    """
    rows = []
    for path in paths:
        p = Path(path)
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # noqa: BLE001
            log.warning("sweep file skipped: %s: %s", p, f"{type(exc).__name__}: {exc}".splitlines()[0])
            continue
        # .../predictions_sweep/{model}/{task}/{input}-f{features}/n{N}.parquet
        tag = p.parent.name
        key = {"dataset": p.parents[4].name if len(p.parents) > 4 else "", "model": p.parents[2].name,
               "task": p.parents[1].name, "input": tag.rsplit("-f", 1)[0], "features": int(tag.rsplit("-f", 1)[1])}
        for c in KEY_COLUMNS:
            if c in df.columns and len(df) and pd.notna(df[c].iloc[0]):
                key[c] = df[c].iloc[0]
        key["features"] = int(key["features"])
        if "split" in df.columns:
            df = df[df["split"].astype(str) == "test"]
        m = classification_metrics(df["y_true"].tolist(), df["y_pred"].tolist(), key["task"])
        rows.append({**key, "max_points": int(p.stem.lstrip("n")), "n": m["n"], "top1": m["top1"],
                     "macro_f1": m["macro_f1"]})
    cols = KEY_COLUMNS + ["max_points", "n", "top1", "macro_f1"]
    return pd.DataFrame(rows, columns=cols).sort_values(
        ["dataset", "task", "model", "max_points"], kind="stable").reset_index(drop=True)


def run_sweep_table(paths: Sequence[str], out_csv: str) -> pd.DataFrame:
    """The ``points_sweep`` rule: :func:`sweep_table` written to ``out_csv``."""
    t = sweep_table(paths)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(out_csv, index=False)
    log.info("points sweep: %d (experiment, max_points) rows from %d files", len(t), len(paths))
    return t


def prediction_paths(experiments, results: str, ds: str) -> list[str]:
    """Test-prediction files of data set ``ds`` (inputs of the ``metrics`` rule)."""
    return [f"{results}/{e.dataset}/predictions/{e.path}.parquet" for e in experiments if e.dataset == ds]


def sweep_experiments(experiments, figures_cfg: Mapping) -> list:
    """Experiments the figS8 points sweep re-runs: density classifiers named in ``figures:``."""
    return [e for e in experiments if e.model in figures_cfg.get("points_sweep_models", ())
            and e.task in figures_cfg.get("points_sweep_tasks", ())]


def sweep_paths(experiments, figures_cfg: Mapping, results: str, ds: str) -> list[str]:
    """``predictions_sweep/{model}/{task}/{input}-f{features}/n{N}.parquet`` files of data set ``ds``."""
    return [f"{results}/{e.dataset}/predictions_sweep/{e.path}/n{int(n)}.parquet"
            for e in sweep_experiments(experiments, figures_cfg) if e.dataset == ds
            for n in figures_cfg.get("points_sweep", ())]


def run_points_sweep(checkpoint: str, stores: Sequence[str], manifest: str, split: str, outputs: Sequence[str],
                     max_points: Sequence[int], params: Mapping) -> list[dict]:
    """The ``predict_sweep`` rule: the trained checkpoint on the test split once per ``max_points`` value.

    An inference-time sweep of ONE trained model (the checkpoint is loaded once), not a retraining per
    size: each structure is sub-sampled (seeded) to at most N points by ``rhosym.infer.predict_split``,
    called with the arguments the ``predict_test`` rule uses plus ``max_points``. ``outputs[i]`` receives
    the predictions for ``max_points[i]``. Returns ``[{max_points, n, top1}]``.
    """
    from rhosym import infer

    if len(outputs) != len(max_points):
        raise ValueError(f"{len(outputs)} outputs for {len(max_points)} max_points values")
    device = params.get("device", "auto")
    loaded = infer.load_checkpoint(checkpoint, device)
    summary = []
    for out, n in zip(outputs, max_points):
        df = infer.predict_split(loaded, list(stores), manifest, split, split="test", out=out,
                                 top_k=int(params.get("top_k", 5)), max_points=int(n), device=device,
                                 num_workers=int(params.get("num_workers", 0)), seed=int(params.get("seed", 0)))
        task = str(df["task"].iloc[0]) if len(df) else "crystal_system"
        m = classification_metrics(df["y_true"].tolist(), df["y_pred"].tolist(), task) if len(df) else {"n": 0,
                                                                                                       "top1": np.nan}
        summary.append({"max_points": int(n), "n": m["n"], "top1": m["top1"]})
        log.info("points sweep: max_points=%d: n=%d top1=%.4f", n, m["n"], m["top1"])
    return summary
