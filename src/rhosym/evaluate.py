"""Test-split metrics on one common test set, over seeds, with intervals (the ``metrics`` rule).

Reads every test-prediction file of one data set (``predictions/{model}/{task}/{variant}.parquet``:
one row per structure and answered task, with key columns ``dataset, model, task, trained_task, input,
features, points, split, seed, variant, group, trained_on``; rhosym.infer) and writes, under
``results/{ds}/metrics/``:

* ``classification.csv`` / ``.md`` and ``regression.csv`` / ``.md``: one row per compared model variant
  (model × trained task × input × features × points × source; seeds pooled) and answered task:
  - the **common test set**: for each (split rule, task), the test ids that every compared variant and
    seed predicted and that have a label; ``n`` is its size, the same for every row of that comparison;
  - metrics on it as **mean ± sd over seeds** (``top1``, ``top1_sd``; ``macro_f1``...; ``mae``...) and a
    **bootstrap 95 % interval** over test structures (``top1_lo``, ``top1_hi``...; rhosym.stats);
  - each variant's numbers on **its own full test set** beside them (``n_full``, ``top1_full``...);
  - ``margin_lattice_pp``: accuracy minus the lattice-only control's, in percentage points (regression:
    ``margin_lattice``, the control's MAE minus this MAE, in the target's unit: positive is better);
* ``per_seed.csv``: every (variant, seed, task) on the common and on its full test set;
* ``common_test_ids.csv``: ``split, task, id`` of every common test set;
* ``per_class/{stem}.csv`` and ``confusion/{stem}.csv`` (counts over the FULL label set, 7/101/230
  classes, summed over seeds, on the common test set; ``{stem}-rates.csv`` row-normalized) with
  ``confusion/index.csv`` naming each file's variant.

Labels are compared as strings: crystal-system names (``rhosym.registry.CRYSTAL_SYSTEMS`` order) and
space-group / extinction-group numbers written without decimals (``"12"``). Metrics come from
scikit-learn (per seed) and rhosym.stats (intervals).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rhosym import registry as R
from rhosym.registry import CLASS_TASKS, CONTROL_MODELS, CRYSTAL_SYSTEMS, MODELS, REGRESSION_TASKS, TASKS

log = logging.getLogger("rhosym.evaluate")
VARIANT_KEY = ["dataset", "split", "task", "model", "trained_task", "input", "features", "points", "trained_on",
               "group"]
CLASS_METRICS = ("top1", "top5", "macro_f1", "weighted_f1", "ece")
REG_METRICS = ("mae", "rmse", "r2")
UNITS = {t: TASKS[t].unit for t in REGRESSION_TASKS}


def label_space(task: str) -> list[str]:
    """Every class label of a classification task, in class-index order, as strings."""
    if task == "crystal_system":
        return list(CRYSTAL_SYSTEMS)
    if task in CLASS_TASKS:
        return [str(i) for i in range(1, TASKS[task].n_classes + 1)]
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


def _as_values(values) -> np.ndarray | None:
    """``values`` as a 1-D array whose elements are what iterating ``values`` gives (numeric arrays kept
    as they are); None when that is not possible (the caller then iterates)."""
    if isinstance(values, np.ndarray):
        return values if values.ndim == 1 and values.dtype.kind in "biufOU" else None
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy(dtype=object)
    try:
        return np.fromiter(values, dtype=object)
    except (TypeError, ValueError):
        return None


def normalize_labels(values: Iterable, task: str) -> np.ndarray:
    """Labels as strings that compare equal across writers: ``12``, ``12.0`` and ``"12"`` all give ``"12"``.

    Each distinct value is converted once (a label column holds few distinct values); missing values
    (None, NaN, NA) one by one.
    """
    arr = _as_values(values)
    if arr is None or len(arr) < 64:
        return np.array([_one_label(v, task) for v in (values if arr is None else arr)], dtype=object)
    out = np.empty(len(arr), dtype=object)
    missing = np.asarray(pd.isna(arr), dtype=bool)
    if missing.any():
        out[missing] = [_one_label(v, task) for v in arr[missing]]
        arr = arr[~missing]
    try:
        codes, uniques = pd.factorize(arr)
    except TypeError:  # unhashable values
        out[~missing] = [_one_label(v, task) for v in arr]
        return out
    labels = np.empty(len(uniques), dtype=object)
    labels[:] = [_one_label(v, task) for v in uniques]
    out[~missing] = labels[codes]
    return out


def _sorted_codes(*label_arrays: np.ndarray, extra=()) -> tuple[list[str], list[np.ndarray]]:
    """Integer codes of normalized labels, numbered in the sorted order of the labels (so scikit-learn
    sees the classes in the same order as with the strings); ``extra`` labels are numbered too."""
    present = set(extra)
    for a in label_arrays:
        present.update(pd.unique(a))
    classes = sorted(present)
    return classes, [_codes(a, classes) for a in label_arrays]


def _codes(values, labels) -> np.ndarray:
    """Position of each value in ``labels`` (-1: not there)."""
    return np.asarray(pd.Index(labels).get_indexer(np.asarray(values, dtype=object)), dtype=np.int64)


def _topk_hits(y_true: np.ndarray, topk, k: int, task: str) -> np.ndarray:
    """Per row: is ``y_true`` (as given) among the normalized first ``k`` of its ``topk`` (None: no)."""
    n = len(y_true)
    flat, owner = [], []
    for i, cand in zip(range(n), topk):
        if cand is None:
            continue
        c = list(cand)[:k]
        flat.extend(c)
        owner.extend([i] * len(c))
    return _hits_from_flat(y_true, flat, np.asarray(owner, dtype=np.int64), task)


def _hits_from_flat(y_true, flat, owner: np.ndarray, task: str) -> np.ndarray:
    hits = np.zeros(len(y_true), dtype=bool)
    if len(owner):
        cand = normalize_labels(flat, task)
        t = np.empty(len(y_true), dtype=object)
        t[:] = list(y_true)
        hits[owner[np.asarray(t[owner] == cand, dtype=bool)]] = True
    return hits


def topk_accuracy(y_true: Sequence[str], topk: Sequence[Sequence], k: int, task: str) -> float:
    """Fraction of rows whose true label is among the first ``k`` of ``topk`` (best first)."""
    if len(y_true) == 0:
        return float("nan")
    return int(_topk_hits(y_true, topk, k, task).sum()) / len(y_true)


def _class_metrics(yt: np.ndarray, yp: np.ndarray, hits5: np.ndarray | None) -> dict:
    """:func:`classification_metrics` of normalized labels (``hits5``: top-5 hit per row, or None)."""
    from sklearn.metrics import accuracy_score, f1_score

    n = len(yt)
    if n == 0:
        return {"n": 0, "top1": np.nan, "top5": np.nan, "macro_f1": np.nan, "weighted_f1": np.nan, "ece": np.nan}
    _, (ct, cp) = _sorted_codes(yt, yp)
    out = {
        "n": n,
        "top1": float(accuracy_score(ct, cp)),
        "top5": int(np.count_nonzero(hits5)) / n if hits5 is not None else np.nan,
        "macro_f1": float(f1_score(ct, cp, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(ct, cp, average="weighted", zero_division=0)),
        "ece": np.nan,  # set from the top-1 probabilities where the predictions have them
    }
    return out


def classification_metrics(y_true, y_pred, task: str, topk=None) -> dict:
    """``n, top1, top5, macro_f1, weighted_f1`` (F1 over the classes present in ``y_true`` or ``y_pred``)."""
    yt = normalize_labels(y_true, task)
    yp = normalize_labels(y_pred, task)
    hits = _topk_hits(yt, topk, 5, task) if topk is not None and len(yt) else None
    return _class_metrics(yt, yp, hits)


def _per_class(yt: np.ndarray, yp: np.ndarray, task: str) -> pd.DataFrame:
    from sklearn.metrics import precision_recall_fscore_support

    labels = label_space(task)
    classes, (ct, cp) = _sorted_codes(yt, yp, extra=labels)
    code = {c: i for i, c in enumerate(classes)}
    p, r, f, s = precision_recall_fscore_support(ct, cp, labels=[code[lab] for lab in labels], zero_division=0)
    return pd.DataFrame({"label": labels, "precision": p, "recall": r, "f1": f, "support": s.astype(int)})


def per_class_table(y_true, y_pred, task: str) -> pd.DataFrame:
    """``label, precision, recall, f1, support`` for every class of the task's full label set."""
    return _per_class(normalize_labels(y_true, task), normalize_labels(y_pred, task), task)


def _confusion(yt: np.ndarray, yp: np.ndarray, task: str) -> pd.DataFrame:
    labels = label_space(task)
    k = len(labels)
    m = np.zeros((k, k), dtype=np.int64)
    if len(yt):
        it, ip = _codes(yt, labels), _codes(yp, labels)
        both = (it >= 0) & (ip >= 0)  # pairs with a label outside the set are not counted
        m = np.bincount(it[both] * k + ip[both], minlength=k * k).reshape(k, k).astype(np.int64)
    return pd.DataFrame(m, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="pred"))


def confusion_counts(y_true, y_pred, task: str) -> pd.DataFrame:
    """Raw confusion counts over the full label set: index = true label, columns = predicted label.

    Predictions outside the label set are not counted here (they are logged by the caller).
    """
    return _confusion(normalize_labels(y_true, task), normalize_labels(y_pred, task), task)


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


def experiment_stem(row: Mapping) -> str:
    """File stem of a variant's per-class and confusion tables: ``{model}-{task}-{trained_task}-{group}``
    (plus ``-zs{trained_on}`` never: the group already names a zero-shot source)."""
    return f"{row['model']}-{row['task']}-{row['trained_task']}-{row['group']}"


def to_markdown(df: pd.DataFrame, title: str | None = None, empty: str = "No rows.", floatfmt: str = ".4f") -> str:
    """A GitHub Markdown table (``empty`` when there are no rows), with an optional ``## title``."""
    head = f"## {title}\n\n" if title else ""
    if df.empty:
        return head + f"_{empty}_\n"

    def cell(v):  # numbers formatted here; text cells ("-5.4", "87.4 ± 1.5") are kept as written
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else format(float(v), floatfmt)
        return v

    body = df.apply(lambda col: col.map(cell))
    return head + body.to_markdown(index=False, disable_numparse=True) + "\n"


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in a stable reading order: data set, split, task, model (control first, then paper order), rest."""
    if df.empty:
        return df.reset_index(drop=True)
    ds_order = list(dict.fromkeys(df["dataset"]))
    tasks = list(TASKS)
    key = pd.DataFrame({
        "d": df["dataset"].map(ds_order.index), "s": df["split"].astype(str),
        "t": df["task"].map(lambda t: tasks.index(t) if t in tasks else 99),
        "m": df["model"].map(lambda m: MODELS[m].order if m in MODELS else 99),
        "g": df["group"].astype(str), "tt": df["trained_task"].astype(str)}, index=df.index)
    return df.loc[key.sort_values(["d", "s", "t", "m", "tt", "g"], kind="stable").index].reset_index(drop=True)


def _file_top1_prob(path, n: int) -> np.ndarray:
    """The top-1 probability of every row of one prediction file (NaN where it has none)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        col = pq.read_table(path, columns=["topk_prob"]).column("topk_prob").combine_chunks()
    except (KeyError, pa.ArrowInvalid):
        return np.full(n, np.nan)
    if len(col) != n or not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        return np.full(n, np.nan)
    out = np.full(n, np.nan)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    has = np.flatnonzero(np.nan_to_num(lengths.astype(float), nan=0.0) > 0)
    if len(has):
        out[has] = pc.list_element(col.take(pa.array(has)), 0).to_numpy(zero_copy_only=False).astype(float)
    return out


def _file_topk_hits(path, df: pd.DataFrame, yt: np.ndarray, k: int = 5) -> np.ndarray:
    """Top-``k`` hit of every row of one prediction file (rows of classification tasks), from its
    ``topk`` column read with pyarrow (the lists are never turned into Python objects)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    hits = np.zeros(len(df), dtype=bool)
    col = pq.read_table(path, columns=["topk"]).column("topk").combine_chunks()
    if len(col) != len(df) or not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        topk = pd.read_parquet(path, columns=["topk"])["topk"]
        for task, idx in df.groupby("task", sort=False).indices.items():
            if task in CLASS_TASKS:
                hits[idx] = _topk_hits(yt[idx], topk.iloc[idx].tolist(), k, task)
        return hits
    first = pc.list_slice(col, 0, k)
    for task, idx in df.groupby("task", sort=False).indices.items():
        if task not in CLASS_TASKS:
            continue
        sub = first.take(pa.array(idx))
        owner = np.asarray(pc.list_parent_indices(sub).to_numpy(zero_copy_only=False), dtype=np.int64)
        flat = pc.list_flatten(sub).to_numpy(zero_copy_only=False)
        hits[idx] = _hits_from_flat(yt[idx], flat, owner, task)
    return hits


def _read_for_metrics(paths: Sequence[str]) -> tuple[pd.DataFrame, dict, bool]:
    """The rows of the prediction files for :func:`evaluate_predictions`; instead of
    ``y_true, y_pred, topk, topk_prob`` the normalized labels ``_yt, _yp`` (classification tasks), the
    values ``_vt, _vp`` (other tasks) and the top-5 hit ``_top5``; plus whether any file had ``topk``."""
    import pyarrow.parquet as pq

    needed = VARIANT_KEY + ["seed", "id", "y_true", "y_pred"]
    frames, skipped, any_topk = [], {}, False
    for p in paths:
        has_topk = False
        try:
            names = pq.read_schema(p).names
            has_topk = "topk" in names
            df = pd.read_parquet(p, columns=[c for c in needed if c in names])
        except Exception:  # noqa: BLE001 - read it the ordinary way (and report its error)
            try:
                df = pd.read_parquet(p)
            except Exception as exc:  # noqa: BLE001 - report and go on
                skipped[str(p)] = f"unreadable: {type(exc).__name__}: {exc}".splitlines()[0]
                continue
            has_topk = "topk" in df.columns
            df = df[[c for c in needed if c in df.columns]]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            skipped[str(p)] = f"not a rhosym prediction file (no {', '.join(missing)})"
            continue
        if not len(df):
            continue
        n = len(df)
        yt, yp = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
        vt, vp = np.full(n, np.nan), np.full(n, np.nan)
        for task, idx in df.groupby("task", sort=False).indices.items():
            if task in CLASS_TASKS:
                yt[idx] = normalize_labels(df["y_true"].iloc[idx], task)
                yp[idx] = normalize_labels(df["y_pred"].iloc[idx], task)
            else:
                vt[idx] = pd.to_numeric(df["y_true"].iloc[idx], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                vp[idx] = pd.to_numeric(df["y_pred"].iloc[idx], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        top5 = np.zeros(n, dtype=bool)
        conf = np.full(n, np.nan)
        if has_topk:
            any_topk = True
            top5 = _file_topk_hits(p, df, yt)
            conf = _file_top1_prob(p, n)
        df = df.drop(columns=["y_true", "y_pred"])
        df["id"] = df["id"].astype(str)
        # object columns of shared label strings (8 bytes a row, no copies)
        df["_yt"], df["_yp"] = (pd.Series(a, index=df.index, dtype=object) for a in (yt, yp))
        df["_vt"], df["_vp"], df["_top5"], df["_conf"] = vt, vp, top5, conf
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=VARIANT_KEY + ["seed", "id", "_yt", "_yp", "_vt", "_vp", "_top5", "_conf"])
    for p, why in skipped.items():
        log.warning("prediction file skipped: %s: %s", p, why)
    return df, skipped, any_topk


def _groups(frame: pd.DataFrame, keys: list[str], dropna: bool = True) -> list[tuple[tuple, np.ndarray]]:
    """``(key, row positions)`` of ``frame.groupby(keys, sort=False, dropna=dropna)`` in the order its
    iteration gives, without the sorted copy of the whole frame that iterating makes."""
    ind = frame.groupby(keys, sort=False, dropna=dropna).indices
    return sorted(ind.items(), key=lambda kv: kv[1][0])


def _labelled_mask(df: pd.DataFrame, classification: bool) -> np.ndarray:
    if classification:
        return np.asarray(df["_yt"].to_numpy() != "", dtype=bool)
    return np.isfinite(df["_vt"].to_numpy(dtype=float))


def _take(values: np.ndarray, pos: np.ndarray, fill):
    """``values[pos]`` with ``fill`` where ``pos`` is -1 (an id this seed did not predict)."""
    if len(pos) == 0 or pos.min() >= 0:
        return values[pos]
    out = values[np.maximum(pos, 0)].copy()
    out[pos < 0] = fill
    return out


def evaluate_predictions(pred_paths: Sequence[str], out_dir: str | Path, dataset: str | None = None,
                         bootstrap: int = 1000, confidence: float = 0.95, bootstrap_f1: int = 200) -> dict:
    """The ``metrics`` rule: every table of one data set's predictions, written under ``out_dir``.

    Returns ``{"classification", "regression", "per_seed", "common_ids"}`` DataFrames. A prediction
    file that is missing or unreadable is logged with its reason and skipped.

    Labels are normalized once per file, top-5 hits are computed from the ``topk`` lists with pyarrow,
    and metrics use integer class codes (numbered in the labels' sorted order, so scikit-learn gives
    the same numbers as with the strings); 200,000 test rows × six models stay within a minute or two.
    """
    from rhosym import stats

    out = Path(out_dir)
    (out / "per_class").mkdir(parents=True, exist_ok=True)
    (out / "confusion").mkdir(parents=True, exist_ok=True)
    df, skipped, has_topk = _read_for_metrics(pred_paths)
    if dataset and len(df):
        df["dataset"] = dataset
    cls_rows, reg_rows, seed_rows, id_rows, index_rows, calib_rows = [], [], [], [], [], []
    for (split, task), where in _groups(df, ["split", "task"]):
        rows = df.take(where)
        is_cls = task in CLASS_TASKS
        labelled = rows[_labelled_mask(rows, is_cls)]
        lab_ids = labelled["id"].to_numpy(dtype=object)
        sets = [set(lab_ids[i].tolist()) for _, i in _groups(labelled, VARIANT_KEY + ["seed"], dropna=False)]
        ids = sorted(set.intersection(*sets)) if sets else []
        del labelled, lab_ids, sets
        id_rows += [{"split": split, "task": task, "id": i} for i in ids]
        n_variants = rows.groupby(VARIANT_KEY, dropna=False).ngroups
        log.info("%s/%s: common test set of %d structures over %d variants", split, task, len(ids), n_variants)
        for key, vi in _groups(rows, VARIANT_KEY, dropna=False):
            v = rows.take(vi)
            base = dict(zip(VARIANT_KEY, key))
            seeds = sorted(v["seed"].unique())
            per_seed_common, per_seed_full = [], []
            for seed in seeds:
                sv = v[v["seed"] == seed]
                full = sv[_labelled_mask(sv, is_cls)]
                first = full.drop_duplicates("id")
                pos = pd.Index(first["id"]).get_indexer(ids) if ids else np.zeros(0, dtype=np.int64)
                if is_cls:
                    f_yt, f_yp, f_hit = (full[c].to_numpy() for c in ("_yt", "_yp", "_top5"))
                    com = {"yt": _take(first["_yt"].to_numpy(), pos, ""), "yp": _take(first["_yp"].to_numpy(), pos, ""),
                           "hit": _take(first["_top5"].to_numpy(), pos, False),
                           "conf": _take(first["_conf"].to_numpy(dtype=float), pos, np.nan)}
                    mc = _class_metrics(com["yt"], com["yp"], com["hit"] if has_topk else None)
                    mf = _class_metrics(f_yt, f_yp, f_hit if has_topk else None)
                    mc["ece"] = stats.reliability(com["conf"], com["yt"] == com["yp"])[0]
                    mf["ece"] = stats.reliability(full["_conf"].to_numpy(dtype=float), f_yt == f_yp)[0]
                else:
                    com = {"vt": _take(first["_vt"].to_numpy(dtype=float), pos, np.nan),
                           "vp": _take(first["_vp"].to_numpy(dtype=float), pos, np.nan)}
                    mc = regression_metrics(com["vt"], com["vp"])
                    mf = regression_metrics(full["_vt"].to_numpy(dtype=float), full["_vp"].to_numpy(dtype=float))
                per_seed_common.append((com, mc))
                per_seed_full.append(mf)
                seed_rows.append({**base, "seed": int(seed), "set": "common", **mc})
                seed_rows.append({**base, "seed": int(seed), "set": "full", **mf})
            row = {**base, "control": base["model"] in CONTROL_MODELS, "n_seeds": len(seeds), "n": len(ids),
                   "n_full": int(round(np.mean([m["n"] for m in per_seed_full])))}
            names = CLASS_METRICS if is_cls else REG_METRICS
            for name in names:
                row[name], row[f"{name}_sd"] = stats.mean_sd([m[name] for _, m in per_seed_common])
                row[f"{name}_full"] = stats.mean_sd([m[name] for m in per_seed_full])[0]
            frames = [c for c, _ in per_seed_common]
            if is_cls and ids:
                labels = label_space(task)
                yt = _codes(frames[0]["yt"], labels)
                yp = np.stack([_codes(f["yp"], labels) for f in frames])
                correct = (yp == yt[None, :]).mean(0)
                row["top1_lo"], row["top1_hi"] = stats.bootstrap_mean(correct, bootstrap, confidence)
                row["macro_f1_lo"], row["macro_f1_hi"] = stats.bootstrap_f1(
                    yt, yp, len(labels), min(bootstrap, bootstrap_f1), confidence)
                stem = experiment_stem(row)
                pooled_yt = np.concatenate([f["yt"] for f in frames])
                pooled_yp = np.concatenate([f["yp"] for f in frames])
                _ece, bins = stats.reliability(np.concatenate([f["conf"] for f in frames]), pooled_yt == pooled_yp)
                calib_rows += [{**base, **b} for b in bins]
                _per_class(pooled_yt, pooled_yp, task).to_csv(out / "per_class" / f"{stem}.csv", index=False)
                counts = _confusion(pooled_yt, pooled_yp, task)
                counts.to_csv(out / "confusion" / f"{stem}.csv")
                row_normalize(counts).to_csv(out / "confusion" / f"{stem}-rates.csv", float_format="%.6g")
                index_rows.append({**base, "file": f"{stem}-rates.csv"})
            elif task in REGRESSION_TASKS and ids:
                err = np.mean([np.abs(f["vt"] - f["vp"]) for f in frames], axis=0)
                row["mae_lo"], row["mae_hi"] = stats.bootstrap_mean(err, bootstrap, confidence)
                row["unit"] = UNITS.get(task, "")
            (cls_rows if is_cls else reg_rows).append(row)
    cls = _with_margins(pd.DataFrame(cls_rows), "top1", 100.0, "margin_lattice_pp")
    reg = _with_margins(pd.DataFrame(reg_rows), "mae", -1.0, "margin_lattice")
    cls, reg = sort_rows(cls), sort_rows(reg)
    per_seed = pd.DataFrame(seed_rows)
    ids_df = pd.DataFrame(id_rows, columns=["split", "task", "id"])
    cls.to_csv(out / "classification.csv", index=False)
    reg.to_csv(out / "regression.csv", index=False)
    per_seed.to_csv(out / "per_seed.csv", index=False)
    ids_df.to_csv(out / "common_test_ids.csv", index=False)
    pd.DataFrame(index_rows).to_csv(out / "confusion" / "index.csv", index=False)
    pd.DataFrame(calib_rows, columns=VARIANT_KEY + ["bin", "lo", "hi", "n", "confidence", "accuracy"]).to_csv(
        out / "calibration.csv", index=False)
    ds = dataset or (cls["dataset"].iloc[0] if len(cls) else reg["dataset"].iloc[0] if len(reg) else "")
    (out / "classification.md").write_text(to_markdown(
        readable_table(cls, "classification"), f"Classification on the common test set ({ds})",
        "No classification experiments for this data set.", floatfmt=".2f"))
    (out / "regression.md").write_text(to_markdown(
        readable_table(reg, "regression"), f"Regression on the common test set ({ds})",
        "No regression experiments for this data set.", floatfmt=".4f"))
    log.info("metrics: %d classification and %d regression rows; %d prediction files skipped",
             len(cls), len(reg), len(skipped))
    return {"classification": cls, "regression": reg, "per_seed": per_seed, "common_ids": ids_df, "skipped": skipped}


def _with_margins(df: pd.DataFrame, metric: str, scale: float, column: str) -> pd.DataFrame:
    """Margin of each row over the lattice control of the same (split, task): ``scale × (metric −
    control's)``; the controls are those trained on this data set with the row's trained task if there
    are any, else every control row of the comparison, and the margin is over the STRONGEST of them (the
    plain and the metric-symmetry lattice controls: a margin over the weaker one would flatter)."""
    if df.empty:
        return df
    df = df.copy()
    df[column] = np.nan
    for (_split, _task), g in df.groupby(["split", "task"], sort=False):
        ctrl = g[g["control"]]
        if ctrl.empty:
            continue
        for i, r in g.iterrows():
            c = ctrl[(ctrl["trained_task"] == r["trained_task"]) & (ctrl["trained_on"] == ctrl["dataset"])]
            c = c if len(c) else ctrl
            best = float(c[metric].max() if scale > 0 else c[metric].min())
            df.loc[i, column] = scale * (r[metric] - best)
    return df


def _pm(mean, sd, scale: float, digits: int, seeds: int = 1) -> str:
    """``mean ± sd`` when there are several seeds (``± 0.0`` included), ``mean`` alone for one."""
    if mean is None or not np.isfinite(mean):
        return ""
    out = f"{scale * mean:.{digits}f}"
    if seeds > 1 and sd is not None and np.isfinite(sd):
        out += f" ± {scale * sd:.{digits}f}"
    return out


def _ci(lo, hi, scale: float, digits: int) -> str:
    if lo is None or not np.isfinite(lo):
        return ""
    return f"[{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"


def variant_label(r: Mapping) -> str:
    """``model`` (``<model>+lattice`` for a lattice-conditioned network, layout tag -lat) plus what sets the
    variant apart: input, features, points, source, robust augmentation, joint network."""
    from rhosym.layout import is_lattice

    parts = [str(r["model"]) + (R.LATTICE_SUFFIX if is_lattice(str(r.get("group", ""))) else "")]
    inp = str(r.get("input", ""))
    spec = R.MODELS.get(str(r["model"]))
    only_input = spec is not None and not spec.sampled and inp == spec.inputs[0]  # says nothing (lattice_gbm)
    if inp and not only_input and inp not in (r["model"], "xrd", "lattice"):
        parts.append(inp)
    if int(r.get("features", 1) or 1) != 1:
        parts.append(f"f{int(r['features'])}")
    if int(r.get("points", 0) or 0):
        parts.append(f"n{int(r['points'])}")
    g = str(r.get("group", ""))
    if "-ft" in g:
        parts.append("fine-tuned from " + g.split("-ft", 1)[1].rsplit("-", 1)[0])
    if r.get("trained_on") and r.get("dataset") and r["trained_on"] != r["dataset"]:
        parts.append(f"zero-shot from {r['trained_on']}")
    if "aug" in g.split("-"):  # trained with the robustness augmentations (layout: -aug)
        parts.append("robust-augmented")
    tags = g.split("-")
    for prefix, what in (("a", "trained with"), ("t", "tested with")):
        name = next((t[1:] for t in tags if t[:1] == prefix and t[1:] in R.AUGMENTATIONS), "")
        if name:
            parts.append(f"{what} {R.AUGMENTATION_DISPLAY[name]}")
    frac = next((t[2:] for t in tags if t.startswith("fr") and t[2:].isdigit()), "")
    if frac:  # a learning-curve point (layout: -fr<permille>)
        parts.append(f"on {int(frac) / 1000:g} of the training split")
    if r.get("trained_task") == "symmetry":
        parts.append("joint")
    return " ".join(parts)


def readable_table(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The table of the Markdown files and of the benchmark docs: mean ± sd [95 % interval], n."""
    if df.empty:
        return df
    rows = []
    for _, r in df.iterrows():
        out = {"dataset": r["dataset"], "split": r["split"], "task": r["task"], "model": variant_label(r),
               "seeds": int(r["n_seeds"]), "n": int(r["n"])}
        if kind == "classification":
            out["accuracy (%)"] = _pm(r["top1"], r["top1_sd"], 100, 1, out["seeds"])
            out["95% CI"] = _ci(r.get("top1_lo"), r.get("top1_hi"), 100, 1)
            out["macro-F1 (%)"] = _pm(r["macro_f1"], r["macro_f1_sd"], 100, 1, out["seeds"])
            out["margin over lattice (pp)"] = "" if not np.isfinite(r.get("margin_lattice_pp", np.nan)) else \
                f"{r['margin_lattice_pp'] + 0.0:+.1f}"
            out["ECE (%)"] = _pm(r.get("ece", np.nan), r.get("ece_sd"), 100, 1, out["seeds"])
            out["n_full"] = int(r["n_full"])
            out["accuracy full (%)"] = _pm(r["top1_full"], None, 100, 1)
        else:
            out["unit"] = r.get("unit", "")
            out["MAE"] = _pm(r["mae"], r["mae_sd"], 1, 4, out["seeds"])
            out["95% CI"] = _ci(r.get("mae_lo"), r.get("mae_hi"), 1, 4)
            out["R2"] = _pm(r["r2"], r["r2_sd"], 1, 3, out["seeds"])
            m = r.get("margin_lattice", np.nan)
            out["margin over lattice (MAE reduction)"] = "" if not np.isfinite(m) else f"{m + 0.0:+.4f}"
            out["n_full"] = int(r["n_full"])
            out["MAE full"] = _pm(r["mae_full"], None, 1, 4)
        rows.append(out)
    return pd.DataFrame(rows)


def sweep_table(paths: Sequence[str]) -> pd.DataFrame:
    """Accuracy of each ``predictions_sweep/.../n{N}.parquet`` file: one row per (variant, task, max_points),
    seeds pooled as mean. Columns ``dataset, split, model, task, trained_task, group, input, features,
    max_points, n, top1, macro_f1``."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_parquet(path))
        except Exception as exc:  # noqa: BLE001
            log.warning("sweep file skipped: %s: %s", path, f"{type(exc).__name__}: {exc}".splitlines()[0])
    cols = ["dataset", "split", "model", "task", "trained_task", "group", "input", "features", "max_points", "n",
            "top1", "macro_f1"]
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    rows = []
    keys = ["dataset", "split", "model", "task", "trained_task", "group", "input", "features", "max_points"]
    for key, g in df.groupby(keys, sort=False):
        per = [classification_metrics(s["y_true"].tolist(), s["y_pred"].tolist(), key[3])
               for _, s in g.groupby("seed")]
        rows.append({**dict(zip(keys, key)), "n": per[0]["n"], "top1": float(np.mean([m["top1"] for m in per])),
                     "macro_f1": float(np.mean([m["macro_f1"] for m in per]))})
    return pd.DataFrame(rows, columns=cols).sort_values(
        ["dataset", "task", "model", "max_points"], kind="stable").reset_index(drop=True)


def run_sweep_table(paths: Sequence[str], out_csv: str) -> pd.DataFrame:
    """The ``points_sweep`` rule: :func:`sweep_table` written to ``out_csv``."""
    t = sweep_table(paths)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(out_csv, index=False)
    log.info("points sweep: %d (variant, task, max_points) rows from %d files", len(t), len(paths))
    return t

