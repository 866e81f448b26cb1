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


def _write(root: Path, ds: str, model: str, task: str, ids, y_true, y_pred, seed: int = 0, group: str | None = None,
           trained_task: str | None = None, split: str = "formula", topk=None, trained_on: str | None = None,
           name: str | None = None) -> str:
    """A prediction file in the layout rhosym.infer writes."""
    group = group or f"{model}-f1-{split}"
    p = root / ds / "predictions" / model / (trained_task or task) / f"{name or group}-s{seed}.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame({"dataset": ds, "model": model, "task": task, "trained_task": trained_task or task,
                       "input": model, "features": 1, "points": 0, "split": split, "seed": seed,
                       "variant": f"{group}-s{seed}", "group": group, "trained_on": trained_on or ds,
                       "id": list(ids), "y_true": list(y_true), "y_pred": list(y_pred)})
    if topk is not None or task in ev.CLASS_TASKS:
        df["topk"] = topk if topk is not None else [[v] for v in y_pred]
        df["topk_prob"] = [[1.0] * len(t) for t in df["topk"]]
    if p.exists():  # a joint network: several answered tasks in one file
        df = pd.concat([pd.read_parquet(p), df], ignore_index=True)
    df.to_parquet(p, index=False)
    return str(p)


def test_every_model_is_scored_on_the_common_test_ids(tmp_path):
    """Each model keeps a different subset of the test split; metrics use the intersection, and each
    model's full-test-set numbers sit beside them."""
    ids = [f"s{i}" for i in range(6)]
    cs = ["cubic", "cubic", "trigonal", "triclinic", "monoclinic", "cubic"]
    p1 = _write(tmp_path, "d", "sparse_cnn", "crystal_system", ids, cs, cs)  # all right, all 6
    # xrd drops s5 and s4, gets s0 wrong
    p2 = _write(tmp_path, "d", "xrd_fcn", "crystal_system", ids[:4], cs[:4], ["trigonal"] + cs[1:4])
    # the lattice control drops s1, is wrong on s2
    keep = [0, 2, 3, 4, 5]
    p3 = _write(tmp_path, "d", "lattice", "crystal_system", [ids[i] for i in keep], [cs[i] for i in keep],
                ["cubic", "cubic", "triclinic", "monoclinic", "cubic"])
    out = tmp_path / "m"
    res = ev.evaluate_predictions([p1, p2, p3], out, "d", bootstrap=200)
    common = pd.read_csv(out / "common_test_ids.csv")
    assert sorted(common["id"]) == ["s0", "s2", "s3"]
    cls = pd.read_csv(out / "classification.csv").set_index("model")
    assert (cls["n"] == 3).all()
    assert cls.loc["sparse_cnn", "top1"] == 1.0 and cls.loc["sparse_cnn", "n_full"] == 6
    assert cls.loc["xrd_fcn", "top1"] == pytest.approx(2 / 3) and cls.loc["xrd_fcn", "n_full"] == 4
    assert cls.loc["xrd_fcn", "top1_full"] == pytest.approx(3 / 4)
    assert cls.loc["lattice", "top1"] == pytest.approx(2 / 3) and bool(cls.loc["lattice", "control"])
    # margin over the lattice control in percentage points, on the common ids
    assert cls.loc["sparse_cnn", "margin_lattice_pp"] == pytest.approx(100 / 3)
    assert cls.loc["lattice", "margin_lattice_pp"] == 0
    # models are listed control first
    assert res["classification"]["model"].tolist()[0] == "lattice"
    md = (out / "classification.md").read_text()
    assert "margin over lattice (pp)" in md and "| 3 |" in md.replace("  ", " ").replace("  ", " ")


def test_seeds_give_mean_sd_and_a_bootstrap_interval(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    ids = [f"s{i}" for i in range(n)]
    truth = rng.choice(["cubic", "tetragonal"], n)
    paths = []
    accs = []
    for seed, p_right in enumerate((0.7, 0.8, 0.9)):
        right = rng.random(n) < p_right
        pred = np.where(right, truth, np.where(truth == "cubic", "tetragonal", "cubic"))
        accs.append(right.mean())
        paths.append(_write(tmp_path, "d", "pointnet", "crystal_system", ids, truth, pred, seed=seed))
    res = ev.evaluate_predictions(paths, tmp_path / "m", "d", bootstrap=1000)
    r = res["classification"].iloc[0]
    assert r["n_seeds"] == 3 and r["n"] == n
    assert r["top1"] == pytest.approx(np.mean(accs)) and r["top1_sd"] == pytest.approx(np.std(accs, ddof=1))
    assert r["top1_lo"] < r["top1"] < r["top1_hi"]
    half = (r["top1_hi"] - r["top1_lo"]) / 2  # a binomial interval of the seed mean: about 1.96 * sqrt(pq/n)
    assert 0.5 * 1.96 * np.sqrt(0.2 * 0.8 / n) < half < 1.5 * 1.96 * np.sqrt(0.2 * 0.8 / n)
    assert r["macro_f1_lo"] <= r["macro_f1"] <= r["macro_f1_hi"]
    per_seed = pd.read_csv(tmp_path / "m" / "per_seed.csv")
    assert sorted(per_seed.query("set == 'common'")["top1"]) == pytest.approx(sorted(accs))


def test_joint_network_answers_and_regression(tmp_path):
    ids = ["a", "b", "c", "d"]
    p = _write(tmp_path, "d", "sparse_cnn", "crystal_system", ids, ["cubic"] * 4, ["cubic"] * 3 + ["hexagonal"],
               trained_task="symmetry")
    p = _write(tmp_path, "d", "sparse_cnn", "space_group", ids, ["225"] * 4, ["225", "225", "221", "194"],
               trained_task="symmetry")
    q = _write(tmp_path, "d", "cogn", "band_gap", ids, [1.0, 2.0, 3.0, 4.0], [1.5, 2, 2, 5])
    res = ev.evaluate_predictions([p, q], tmp_path / "m", "d", bootstrap=100)
    cls = res["classification"].set_index("task")
    assert cls.loc["crystal_system", "top1"] == 0.75 and cls.loc["space_group", "top1"] == 0.5
    assert set(cls["trained_task"]) == {"symmetry"}
    reg = pd.read_csv(tmp_path / "m" / "regression.csv")
    assert reg.loc[0, "mae"] == pytest.approx(0.625) and reg.loc[0, "unit"] == "eV"
    assert reg.loc[0, "r2"] == pytest.approx(0.55) and reg.loc[0, "mae_lo"] < 0.625 < reg.loc[0, "mae_hi"]
    idx = pd.read_csv(tmp_path / "m" / "confusion" / "index.csv")
    f = idx[idx["task"] == "space_group"]["file"].iloc[0]
    c = pd.read_csv(tmp_path / "m" / "confusion" / f, index_col=0)
    assert c.shape == (230, 230) and c.loc[225, "221"] == 0.25


def test_unreadable_and_foreign_prediction_files_are_skipped(tmp_path):
    p = _write(tmp_path, "d", "pointnet", "extinction_group", ["a", "b"], [1, 2], [1, 2])
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(bad)
    res = ev.evaluate_predictions([p, str(bad), str(tmp_path / "missing.parquet")], tmp_path / "m", "d")
    assert len(res["skipped"]) == 2
    assert "No regression experiments" in (tmp_path / "m" / "regression.md").read_text()
    assert pd.read_csv(tmp_path / "m" / "classification.csv")["top1"].tolist() == [1.0]


def test_bootstrap_f1_matches_sklearn_on_the_full_sample():
    from sklearn.metrics import f1_score

    from rhosym import stats

    rng = np.random.default_rng(3)
    yt = rng.integers(0, 5, 300)
    yp = np.where(rng.random(300) < 0.6, yt, rng.integers(0, 5, 300))
    conf = np.zeros((1, 6, 6))
    np.add.at(conf[0], (yt, yp), 1)
    assert stats.f1_from_confusion(conf)[0] == pytest.approx(f1_score(yt, yp, average="macro"))
    lo, hi = stats.bootstrap_f1(yt, yp[None], 5, 300)
    assert lo < f1_score(yt, yp, average="macro") < hi


def test_sweep_table(tmp_path):
    files = []
    for n, acc in ((500, 0.5), (2000, 1.0)):
        p = tmp_path / f"n{n}.parquet"
        yp = ["cubic", "cubic"] if acc == 1.0 else ["cubic", "trigonal"]
        pd.DataFrame({"dataset": "d", "split": "none", "model": "pointnet", "task": "crystal_system",
                      "trained_task": "crystal_system", "group": "random-f1-none", "input": "random", "features": 1,
                      "max_points": n, "seed": 0, "id": ["a", "b"], "y_true": ["cubic", "cubic"],
                      "y_pred": yp}).to_parquet(p)
        files.append(str(p))
    t = ev.run_sweep_table(files, str(tmp_path / "sweep.csv"))
    assert t[["dataset", "model", "input", "max_points", "top1"]].values.tolist() == [
        ["d", "pointnet", "random", 500, 0.5], ["d", "pointnet", "random", 2000, 1.0]]


def test_variant_labels_tell_every_variant_apart():
    from rhosym.evaluate import variant_label

    base = {"model": "sparse_cnn", "input": "grid", "features": 1, "points": 0, "dataset": "mp20",
            "trained_on": "mp20", "trained_task": "symmetry"}
    labels = {variant_label({**base, "group": g}) for g in
              ("grid-f1-formula", "grid-f1-aug-formula", "grid-f1-ftsynthetic-formula", "grid-f1-fr125-formula",
               "grid-f1-fr500-formula")}
    assert labels == {"sparse_cnn grid joint", "sparse_cnn grid robust-augmented joint",
                      "sparse_cnn grid fine-tuned from synthetic joint",
                      "sparse_cnn grid on 0.125 of the training split joint",
                      "sparse_cnn grid on 0.5 of the training split joint"}
    zs = variant_label({**base, "group": "grid-f1-zssynthetic-formula", "trained_on": "synthetic"})
    assert zs == "sparse_cnn grid zero-shot from synthetic joint"
    # a model with one input is not followed by it (the boosted control reads lattice_sym, and only that)
    for model, inp in (("lattice_gbm", "lattice_sym"), ("classical", "symops"), ("periodic_cnn", "fracgrid")):
        assert variant_label({**base, "model": model, "input": inp, "group": f"{inp}-f1-formula"}) == f"{model} joint"


def test_tables_mark_every_seeded_mean_and_keep_written_cells():
    from rhosym.evaluate import _pm, to_markdown

    # three seeds that agree still say so (± 0.0); one seed is a bare number
    assert _pm(0.911, 0.0, 100, 1, seeds=3) == "91.1 ± 0.0"
    assert _pm(0.911, 0.0, 100, 1, seeds=1) == "91.1"
    assert _pm(0.5, 0.02, 100, 1, seeds=2) == "50.0 ± 2.0"
    # cells formatted by the table ("-5.4") are written as they are, numbers by floatfmt, NaN as empty
    md = to_markdown(pd.DataFrame({"margin": ["-5.4", "+0.7"], "x": [0.123456, np.nan]}), floatfmt=".2f")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()[2:]]
    assert rows == [["-5.4", "0.12"], ["+0.7", ""]]
