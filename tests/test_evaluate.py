"""Metrics, per-class tables and confusion matrices (rhosym.evaluate) on inputs with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym import evaluate as ev


def test_labels_compare_equal_across_writers():
    assert list(ev.normalize_labels([12, 12.0, "12", np.int64(12), " 12 ", "12.0"], "space_group")) == ["12"] * 6
    assert list(ev.normalize_labels(["Cubic", 0, 6.0, "2"], "crystal_system")) == [
        "cubic", "triclinic", "cubic", "orthorhombic"]
    assert list(ev.normalize_labels([None, float("nan")], "space_group")) == ["", ""]
    assert ev.label_space("crystal_system")[0] == "triclinic" and len(ev.label_space("crystal_system")) == 7
    assert ev.label_space("space_group")[-1] == "230" and len(ev.label_space("extinction_group")) == 101
    with pytest.raises(ValueError):
        ev.label_space("band_gap")


def test_classification_metrics_by_hand_and_vs_sklearn():
    from sklearn.metrics import f1_score

    yt = ["cubic", "cubic", "trigonal", "triclinic"]
    yp = ["cubic", "trigonal", "trigonal", "triclinic"]
    topk = [["cubic", "hexagonal"], ["trigonal", "hexagonal", "tetragonal", "monoclinic", "triclinic"],
            ["trigonal"], ["monoclinic", "triclinic"]]
    m = ev.classification_metrics(yt, yp, "crystal_system", topk)
    assert m["n"] == 4 and m["top1"] == 0.75
    assert m["top5"] == 0.75  # the second row's true label (cubic) is not among its five
    # cubic: P=1, R=1/2 -> F1 2/3; trigonal: P=1/2, R=1 -> 2/3; triclinic: 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    assert m["macro_f1"] == pytest.approx(f1_score(yt, yp, average="macro"))
    # integer / string mix of group numbers; top-k holds strings
    m = ev.classification_metrics([225, 14, 14], ["225", "14", "2"], "space_group", [["225"], ["2", "14"], ["2"]])
    assert m["top1"] == pytest.approx(2 / 3) and m["top5"] == pytest.approx(2 / 3)
    assert ev.topk_accuracy(["1", "2"], [["3", "1"], ["2"]], 1, "space_group") == 0.5


def test_per_class_and_confusion_over_the_full_label_set():
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(1)
    yt = rng.integers(1, 60, 300)
    yp = np.where(rng.random(300) < 0.7, yt, rng.integers(1, 231, 300))
    yp[0] = 999  # outside the label set: not in the matrix
    counts = ev.confusion_counts(yt, yp, "space_group")
    assert counts.shape == (230, 230)
    assert list(counts.index[:3]) == ["1", "2", "3"] and list(counts.columns[-1:]) == ["230"]
    support = pd.Series(yt.astype(str)).value_counts()
    rows = counts.sum(axis=1)
    assert rows.loc[support.index].tolist() == [support[k] - (k == str(yt[0])) for k in support.index]
    assert rows.sum() == 299 and rows.loc[[str(i) for i in range(60, 231)]].sum() == 0
    assert np.trace(counts.to_numpy()) == int((yt == yp).sum())
    rates = ev.row_normalize(counts)
    s = rates.sum(axis=1)
    assert np.allclose(s[rows > 0], 1.0) and (s[rows == 0] == 0).all()
    pc = ev.per_class_table(yt, yp, "space_group")
    assert len(pc) == 230 and pc["support"].sum() == 300
    p, r, f, sup = precision_recall_fscore_support(yt.astype(str), yp.astype(str),
                                                   labels=[str(i) for i in range(1, 231)], zero_division=0)
    assert np.allclose(pc["precision"], p) and np.allclose(pc["recall"], r) and np.allclose(pc["f1"], f)
    cs = ev.confusion_counts(["cubic", "cubic", "triclinic"], ["cubic", "hexagonal", "triclinic"], "crystal_system")
    assert cs.shape == (7, 7) and cs.loc["cubic", "hexagonal"] == 1 and cs.loc["triclinic", "triclinic"] == 1
    assert ev.confusion_counts([], [], "extinction_group").shape == (101, 101)


def test_regression_metrics_by_hand():
    m = ev.regression_metrics([1, 2, 3, 4, np.nan], [1.5, 2, 2, 5, 1])
    assert m["n"] == 4
    assert m["mae"] == pytest.approx(0.625)
    assert m["rmse"] == pytest.approx(math.sqrt(2.25 / 4))
    assert m["r2"] == pytest.approx(1 - 2.25 / 5)
    assert ev.regression_metrics([], [])["n"] == 0


def _write(root: Path, ds: str, model: str, task: str, inp: str, f: int, **cols) -> str:
    p = root / ds / "predictions" / model / task / f"{inp}-f{f}.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    n = len(cols["y_true"])
    df = pd.DataFrame({"dataset": ds, "model": model, "task": task, "input": inp, "features": f,
                       "id": [f"id{i}" for i in range(n)], "split": cols.pop("split", ["test"] * n), **cols})
    df.to_parquet(p, index=False)
    return str(p)


def test_evaluate_predictions_writes_every_table(tmp_path, caplog):
    cs = ["cubic", "cubic", "trigonal", "triclinic", "monoclinic"]
    paths = [
        _write(tmp_path, "d", "sparse_cnn", "crystal_system", "grid", 1, y_true=cs,
               y_pred=["cubic", "trigonal", "trigonal", "triclinic", "cubic"],
               topk=[["cubic"], ["trigonal", "cubic"], ["trigonal"], ["triclinic"], ["cubic"]],
               topk_prob=[[0.9]] * 5, split=["test"] * 4 + ["val"]),
        _write(tmp_path, "d", "xrd_fcn", "space_group", "xrd", 1, y_true=["225", "14", "2", None],
               y_pred=["225", "14", "1", "1"], topk=[["225"], ["14"], ["1", "2"], ["1"]], topk_prob=[[1.0]] * 4),
        _write(tmp_path, "d", "cogn", "band_gap", "graph", 1, y_true=[1.0, 2.0, 3.0, 4.0], y_pred=[1.5, 2, 2, 5]),
        str(tmp_path / "d" / "predictions" / "cgcnn" / "space_group" / "graph-f1.parquet"),  # missing
    ]
    out = tmp_path / "d" / "metrics"
    res = ev.evaluate_predictions(paths, out, "d")
    cls = pd.read_csv(out / "classification.csv")
    assert cls[["model", "task"]].values.tolist() == [["sparse_cnn", "crystal_system"], ["xrd_fcn", "space_group"]]
    row = cls.iloc[0]
    assert row["n"] == 4 and row["top1"] == 0.75 and row["top5"] == 1.0  # the val row is ignored
    row = cls.iloc[1]
    assert row["n"] == 3 and row["top1"] == pytest.approx(2 / 3) and row["top5"] == 1.0  # unlabelled row left out
    reg = pd.read_csv(out / "regression.csv")
    assert reg.loc[0, "mae"] == pytest.approx(0.625) and reg.loc[0, "unit"] == "eV"
    assert reg.loc[0, "r2"] == pytest.approx(0.55)
    assert "| sparse_cnn |" in (out / "classification.md").read_text().replace("  ", " ").replace("  ", " ")
    assert "mae" in (out / "regression.md").read_text()
    pc = pd.read_csv(out / "per_class" / "sparse_cnn-crystal_system-grid-f1.csv")
    assert len(pc) == 7 and pc.set_index("label").loc["cubic", "recall"] == 0.5
    c = pd.read_csv(out / "confusion" / "xrd_fcn-space_group-xrd-f1.csv", index_col=0)
    assert c.shape == (230, 230) and c.to_numpy().sum() == 3 and c.loc[2, "1"] == 1
    rates = pd.read_csv(out / "confusion" / "sparse_cnn-crystal_system-grid-f1-rates.csv", index_col=0)
    assert rates.loc["cubic", "trigonal"] == 0.5 and rates.loc["hexagonal"].sum() == 0
    assert len(res["skipped"]) == 1 and "unreadable" in next(iter(res["skipped"].values()))


def test_evaluate_without_regression_says_so(tmp_path):
    p = _write(tmp_path, "d", "pointnet", "extinction_group", "random", 1, y_true=[1, 2], y_pred=[1, 2],
               topk=[["1"], ["2"]], topk_prob=[[1.0]] * 2)
    ev.evaluate_predictions([p], tmp_path / "m", "d")
    assert "No regression experiments" in (tmp_path / "m" / "regression.md").read_text()
    assert pd.read_csv(tmp_path / "m" / "regression.csv").empty
    assert pd.read_csv(tmp_path / "m" / "classification.csv")["top1"].tolist() == [1.0]


def test_sweep_table_and_paths(tmp_path):
    from rhosym.workflow import Experiment

    files = []
    for n, acc in ((500, 0.5), (2000, 1.0)):
        p = tmp_path / "d" / "predictions_sweep" / "pointnet" / "crystal_system" / "random-f1" / f"n{n}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        yp = ["cubic", "cubic"] if acc == 1.0 else ["cubic", "trigonal"]
        pd.DataFrame({"id": ["a", "b"], "split": "test", "y_true": ["cubic", "cubic"], "y_pred": yp}).to_parquet(p)
        files.append(str(p))
    t = ev.run_sweep_table(files, str(tmp_path / "sweep.csv"))
    assert t[["dataset", "model", "input", "features", "max_points", "top1"]].values.tolist() == [
        ["d", "pointnet", "random", 1, 500, 0.5], ["d", "pointnet", "random", 1, 2000, 1.0]]
    exps = [Experiment("d", "pointnet", "crystal_system", "grid", 1), Experiment("d", "cgcnn", "crystal_system",
                                                                                  "graph", 1),
            Experiment("e", "sparse_cnn", "band_gap", "grid", 4)]
    cfg = {"points_sweep": [100, 200], "points_sweep_models": ["pointnet", "sparse_cnn"],
           "points_sweep_tasks": ["crystal_system"]}
    assert ev.sweep_paths(exps, cfg, "res", "d") == [
        "res/d/predictions_sweep/pointnet/crystal_system/grid-f1/n100.parquet",
        "res/d/predictions_sweep/pointnet/crystal_system/grid-f1/n200.parquet"]
    assert ev.sweep_paths(exps, cfg, "res", "e") == []
    assert ev.prediction_paths(exps, "res", "d") == ["res/d/predictions/pointnet/crystal_system/grid-f1.parquet",
                                                     "res/d/predictions/cgcnn/crystal_system/graph-f1.parquet"]


def test_points_sweep_loads_once_and_passes_max_points(tmp_path, monkeypatch):
    from rhosym import infer

    calls = {"load": 0, "predict": []}

    def fake_load(path, device="cpu", registry=None):
        calls["load"] += 1
        return "model", {"task": "crystal_system"}

    def fake_predict(checkpoint, stores, manifest, split_table, split="test", out=None, max_points=None, **kw):
        calls["predict"].append((checkpoint, split, max_points, kw["top_k"], kw["seed"]))
        df = pd.DataFrame({"task": "crystal_system", "id": ["a", "b"], "split": split,
                           "y_true": ["cubic", "cubic"], "y_pred": ["cubic", "trigonal" if max_points < 1000 else
                                                                    "cubic"]})
        df.to_parquet(out)
        return df

    monkeypatch.setattr(infer, "load_checkpoint", fake_load)
    monkeypatch.setattr(infer, "predict_split", fake_predict)
    outs = [str(tmp_path / "n500.parquet"), str(tmp_path / "n2000.parquet")]
    s = ev.run_points_sweep("ckpt.pt", ["s.zarr"], "m.parquet", "split.parquet", outs, [500, 2000],
                            {"top_k": 5, "device": "cpu", "seed": 3})
    assert calls["load"] == 1
    assert calls["predict"] == [(("model", {"task": "crystal_system"}), "test", 500, 5, 3),
                                (("model", {"task": "crystal_system"}), "test", 2000, 5, 3)]
    assert [r["top1"] for r in s] == [0.5, 1.0] and all(Path(o).exists() for o in outs)
