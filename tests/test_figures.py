"""Figures and tables (rhosym.figures) from fake result files with realistic shapes.

The fake data: 2 data sets x 5 models x 3 classification tasks (coGN missing on the second data set, as in
the paper), regression with 1 and 4 features on the first, training histories, split distributions and a
points sweep. ``make_fake_results`` is also handy for looking at the figures by eye.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
SG_FIRST = (1, 3, 16, 75, 143, 168, 195, 231)
MODELS = ("lattice", "cogn", "cgcnn", "xrd_fcn", "pointnet", "sparse_cnn")
SKILL = {"lattice": 0.6, "cogn": 0.55, "cgcnn": 0.5, "xrd_fcn": 0.75, "pointnet": 0.85, "sparse_cnn": 0.93}
INPUT = {"lattice": "lattice", "cogn": "cogn", "cgcnn": "cgcnn", "xrd_fcn": "xrd", "pointnet": "grid",
         "sparse_cnn": "grid"}


def _key(ds, model, task, input_, features=1, seed=0, split="formula", points=0):
    group = f"{input_}-f{features}" + (f"-n{points}" if points else "") + f"-{split}"
    return {"dataset": ds, "model": model, "task": task, "trained_task": task, "input": input_,
            "features": features, "points": points, "split": split, "seed": seed, "variant": f"{group}-s{seed}",
            "group": group, "trained_on": ds}


def _cs_of_sg(sg: np.ndarray) -> np.ndarray:
    return np.searchsorted(SG_FIRST, sg, side="right") - 1


def fake_predictions(ds: str, model: str, task: str, n: int, rng: np.random.Generator,
                     input_: str = "grid", features: int = 1, seed: int = 0, points: int = 0) -> pd.DataFrame:
    sg = rng.choice(np.arange(1, 231), size=n, p=_sg_prior())
    cs = _cs_of_sg(sg)
    skill = SKILL[model] - (0.05 if ds == "mp" else 0.0)
    if task == "crystal_system":
        true = cs
        ncls = 7
    elif task == "space_group":
        true = sg - 1
        ncls = 230
    else:
        true = np.minimum((sg - 1) * 101 // 230, 100)
        ncls = 101
    # low-symmetry structures are harder (the "Seattle zone" for the weaker models)
    p_ok = np.where(cs < 3, skill - (0.25 if model in ("xrd_fcn", "cogn") else 0.03), skill)
    ok = rng.random(n) < p_ok
    near = np.clip(true + rng.integers(-2, 3, size=n), 0, ncls - 1)
    pred = np.where(ok, true, near)
    if task == "crystal_system":
        lab = lambda a: [CRYSTAL_SYSTEMS[i] for i in a]  # noqa: E731
    else:
        lab = lambda a: [str(i + 1) for i in a]  # noqa: E731
    topk = []
    for t, p in zip(true, pred):
        cands = [p] + [c for c in rng.permutation(ncls)[:6] if c != p]
        if rng.random() < 0.6 and t not in cands[:5]:
            cands.insert(2, t)
        topk.append(lab(cands[:5]))
    return pd.DataFrame({
        **_key(ds, model, task, input_, features, seed, points=points),
        "id": [f"{ds}-{i}" for i in range(n)], "y_true": lab(true), "y_pred": lab(pred),
        "topk": topk, "topk_prob": [list(np.sort(rng.random(5))[::-1] / 2) for _ in range(n)],
    })


def _sg_prior() -> np.ndarray:
    w = np.ones(230)
    w[[1, 13, 61, 14, 11, 224, 193, 138, 165, 62]] += [60, 90, 40, 70, 30, 25, 20, 15, 10, 20]
    return w / w.sum()


def fake_regression(ds: str, model: str, task: str, n: int, rng, features: int = 1, input_: str = "graph"):
    y = rng.gamma(1.5, 1.0, n) if task == "band_gap" else rng.normal(-1.5, 0.8, n)
    err = {"lattice": 0.7, "cogn": 0.2, "cgcnn": 0.3, "xrd_fcn": 0.5, "pointnet": 0.45, "sparse_cnn": 0.35}[model]
    err = err * (0.7 if features == 4 else 1.0)
    return pd.DataFrame({**_key(ds, model, task, input_, features), "id": [f"{ds}-{i}" for i in range(n)],
                         "y_true": y, "y_pred": y + rng.normal(0, err, n)})


def fake_history(model: str, task: str, epochs: int, rng) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    base = {"crystal_system": 1.9, "extinction_group": 4.6, "space_group": 5.4}.get(task, 1.0)
    final = 1 - SKILL.get(model, 0.7)
    train = base * np.exp(-e / (epochs / 4)) + final * 0.6 + rng.normal(0, 0.01, epochs)
    val = base * np.exp(-e / (epochs / 3.5)) + final + rng.normal(0, 0.02, epochs)
    acc = SKILL.get(model, 0.7) * (1 - np.exp(-e / (epochs / 5))) + rng.normal(0, 0.005, epochs)
    return pd.DataFrame({"epoch": e, "train_loss": np.abs(train), "val_loss": np.abs(val), "val_metric": acc,
                         "metric": "accuracy", "lr": 1e-3, "seconds": 10.0, "samples_per_s": 100.0,
                         "peak_mem_mb": 500.0})


def fake_distribution(n: int, rng) -> pd.DataFrame:
    rows = []
    for split, frac in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        sg = rng.choice(np.arange(1, 231), size=int(n * frac), p=_sg_prior())
        cs = np.array(CRYSTAL_SYSTEMS)[_cs_of_sg(sg)]
        for label, vals in (("crystal_system", cs), ("space_group", sg)):
            v, c = np.unique(vals, return_counts=True)
            rows += [{"label": label, "value": str(a), "split": split, "count": int(b)} for a, b in zip(v, c)]
    return pd.DataFrame(rows)


def make_fake_results(root: Path, datasets=("mp", "icsd"), models=MODELS,
                      tasks=("crystal_system", "extinction_group", "space_group"), n: int = 400,
                      regression: bool = True, seed: int = 0) -> dict:
    """Write fake inputs under ``root`` (a ``results`` folder). Returns the paths by kind."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    out = {"predictions": {}, "history": [], "distribution": {}, "sweep": {}}
    for ds in datasets:
        preds = []
        for model in models:
            if ds == "icsd" and model == "cogn":  # as in the paper: no coGN on ICSD
                continue
            inp = INPUT[model]
            for task in tasks:
                for seed in (0, 1):
                    df = fake_predictions(ds, model, task, n, rng, inp, seed=seed)
                    p = root / ds / "predictions" / model / task / f"{df['variant'][0]}.parquet"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    df.to_parquet(p, index=False)
                    preds.append(str(p))
                if model in ("pointnet", "sparse_cnn"):  # trained at each point-cloud size (figS8)
                    for npts in (500, 2000):
                        df = fake_predictions(ds, model, task, n, rng, inp, points=npts)
                        p = root / ds / "predictions" / model / task / f"{df['variant'][0]}.parquet"
                        df.to_parquet(p, index=False)
                        preds.append(str(p))
                h = root / ds / "models" / model / task / f"{inp}-f1-formula-s0" / "history.csv"
                h.parent.mkdir(parents=True, exist_ok=True)
                fake_history(model, task, 30, rng).to_csv(h, index=False)
                out["history"].append(str(h))
            if regression and ds == "mp":
                for task in ("band_gap", "formation_energy"):
                    feats = (1, 4) if model == "sparse_cnn" else (1,)
                    for f in feats:
                        df = fake_regression(ds, model, task, n, rng, f, inp)
                        p = root / ds / "predictions" / model / task / f"{df['variant'][0]}.parquet"
                        p.parent.mkdir(parents=True, exist_ok=True)
                        df.to_parquet(p, index=False)
                        preds.append(str(p))
        out["predictions"][ds] = preds
        d = root / ds / "splits" / "formula_distribution.csv"
        d.parent.mkdir(parents=True, exist_ok=True)
        fake_distribution(4000 if ds == "mp" else 6000, rng).to_csv(d, index=False)
        out["distribution"][ds] = str(d)
        rows = []
        for model in ("pointnet", "sparse_cnn"):
            if model not in models:
                continue
            for task in tasks:
                for npts in (500, 1000, 2000, 5000, 10000, 20000):
                    acc = SKILL[model] * (1 - 0.5 * np.exp(-npts / (3000 if model == "pointnet" else 1200)))
                    rows.append({"dataset": ds, "split": "formula", "model": model, "task": task,
                                 "trained_task": task, "group": "grid-f1-formula", "input": "grid", "features": 1,
                                 "max_points": npts, "n": n, "top1": acc, "macro_f1": acc - 0.05})
        s = root / ds / "metrics" / "points_sweep.csv"
        s.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(s, index=False)
        out["sweep"][ds] = str(s)
    return out


# ------------------------------------------------------------------------------------------------ tests
FIGS = ("fig3", "fig4", "fig4_supp", "figS7", "figS8", "figS8_sweep", "figS11", "figRobust", "figCalibration")


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    import rhosym.figures

    monkeypatch.setattr(rhosym.figures, "DPI", 50)  # fast; the layout is the same at 200 dpi


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    from rhosym.evaluate import evaluate_predictions

    root = tmp_path_factory.mktemp("results")
    paths = make_fake_results(root, n=120)
    for ds, preds in paths["predictions"].items():
        evaluate_predictions(preds, root / ds / "metrics", ds, bootstrap=100)
    ds = list(paths["predictions"])
    inputs = {"classification": [str(root / d / "metrics/classification.csv") for d in ds],
              "regression": [str(root / d / "metrics/regression.csv") for d in ds],
              "confusion": [str(root / d / "metrics/confusion") for d in ds],
              "distribution": [paths["distribution"][d] for d in ds],
              "sweep": [paths["sweep"][d] for d in ds], "history": paths["history"],
              "robust": [str(fake_robustness(root, rng_seed=1))],
              "calibration": [str(root / d / "metrics/calibration.csv") for d in ds]}
    return root, ds, inputs


def fake_robustness(root: Path, rng_seed: int = 0) -> Path:
    from rhosym.perturb import PERTURBATIONS
    from rhosym.robustness import robustness_table

    rng = np.random.default_rng(rng_seed)
    rows = []
    for model, perts in (("sparse_cnn", ("noise", "blur", "wedge")), ("xrd_fcn", ("xrd_noise", "xrd_shift"))):
        for aug in (False, True):
            for pert in perts:
                for k, lv in enumerate(PERTURBATIONS[pert].levels):
                    for i in range(40):
                        rows.append({"dataset": "mp", "model": model, "trained_task": "symmetry",
                                     "group": "g-aug" if aug else "g", "seed": 0, "augmented": aug,
                                     "perturbation": pert, "strength": lv, "strength_label": str(lv), "order": k,
                                     "unit": PERTURBATIONS[pert].unit, "task": "crystal_system", "id": f"s{i}",
                                     "correct": bool(rng.random() < 0.9 - 0.1 * k * (0.5 if aug else 1))})
    p = root / "mp" / "metrics" / "robustness.csv"
    robustness_table([pd.DataFrame(rows)], 100).to_csv(p, index=False)
    return p


def test_figRobust_names_every_line_and_no_nan_units(tmp_path):
    from rhosym.figures import plot_figRobust

    (tmp_path / "mp" / "metrics").mkdir(parents=True)
    t = pd.read_csv(fake_robustness(tmp_path))
    t.loc[t["perturbation"] == "xrd_shift", "unit"] = np.nan
    fig = plot_figRobust(t, tmp_path / "r.png")
    labels = [x.get_text() for x in fig.legends[0].get_texts()]
    assert len(labels) == len(set(labels)) == 4  # two models, plain and robust-augmented, in one legend
    assert sum("robust-augmented" in lab for lab in labels) == 2
    assert not any("nan" in ax.get_xlabel() for ax in fig.axes)


def _assert_figure(png: Path, pdf: Path):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 3_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


@pytest.mark.parametrize("which", FIGS)
def test_every_figure_writes_png_and_pdf(fake, which, tmp_path):
    from rhosym.figures import run_figure

    root, ds, inputs = fake
    out = {"png": str(tmp_path / f"{which}.png"), "pdf": str(tmp_path / f"{which}.pdf")}
    run_figure(which, inputs, out, {"datasets": ds, "splits": {d: "formula" for d in ds}})
    _assert_figure(Path(out["png"]), Path(out["pdf"]))


def test_fig4_outlines_the_seattle_zone_and_marks_missing_models(fake, tmp_path):
    from matplotlib.patches import Rectangle

    from rhosym.figures import plot_fig4, read_rates

    root, ds, inputs = fake
    rates = {d: read_rates(c, "crystal_system", dataset=d, split="formula") for d, c in zip(ds, inputs["confusion"])}
    assert set(rates["mp"]) == {"lattice", "cogn", "cgcnn", "xrd_fcn", "pointnet", "sparse_cnn"}
    assert "cogn" not in rates["icsd"]
    models = ["cogn", "cgcnn", "xrd_fcn", "pointnet", "sparse_cnn"]
    fig = plot_fig4({d: {m: r.get(m) for m in models} for d, r in rates.items()}, tmp_path / "f.png", None,
                    models=models)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:10]
    outlined = 0
    for ax in axes:
        rects = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_width() == 3
                 and p.get_height() == 3 and p.get_xy() == (-0.5, -0.5)]
        outlined += len(rects) == 1
        assert bool(ax.images) == (len(rects) == 1)  # every matrix has its outline, empty panels none
    assert outlined == 9  # 2 data sets x 5 models, minus coGN on icsd
    texts = [t.get_text() for ax in axes for t in ax.texts]
    assert any("no data" in t for t in texts)


def test_fig3_bars_match_the_metrics(fake, tmp_path):
    from rhosym.figures import plot_fig3

    root, ds, inputs = fake
    tabs = {d: pd.read_csv(p) for d, p in zip(ds, inputs["classification"])}
    fig = plot_fig3(tabs, tmp_path / "f.png")
    ax = fig.axes[0]  # mp, crystal system
    heights = sorted(round(b.get_height(), 6) for b in ax.patches)
    main = tabs["mp"].query("task == 'crystal_system' and points == 0")
    want = main["top1"].mul(100).round(6).sort_values().tolist()
    assert heights == want and len(heights) == 6  # seeds pooled, sized variants left to figS8
    assert len(fig.axes[3].patches) == 5  # icsd has no coGN bar
    assert "n = 120" in ax.get_title() and "2 seeds" in ax.get_title()
    # error bars: the bootstrap interval; the lattice control's dashed line
    assert len(ax.lines) >= 6 + 1


def test_figures_with_missing_pieces(tmp_path):
    from rhosym.figures import plot_fig3, plot_fig4_supp, plot_figS8, plot_figS11, run_figure

    # a data set with one model and one task
    one = pd.DataFrame([{**_key("x", "pointnet", "crystal_system", "random"), "n": 10, "n_seeds": 1, "top1": 0.8,
                         "top1_sd": 0.0, "top5": 1.0, "macro_f1": 0.7, "weighted_f1": 0.75}])
    plot_fig3({"x": one}, tmp_path / "a.png", tmp_path / "a.pdf")
    _assert_figure(tmp_path / "a.png", tmp_path / "a.pdf")
    # nothing at all: still a (labelled, empty) figure
    for i, f in enumerate((lambda o, p: plot_figS8(pd.DataFrame(), o, p),
                           lambda o, p: plot_figS11(pd.DataFrame(), o, p),
                           lambda o, p: plot_fig4_supp({}, o, p),
                           lambda o, p: plot_fig3({"x": pd.DataFrame()}, o, p))):
        fig = f(tmp_path / f"e{i}.png", tmp_path / f"e{i}.pdf")
        assert (tmp_path / f"e{i}.png").stat().st_size > 1000 and (tmp_path / f"e{i}.pdf").exists()
        assert any(t.get_text().startswith("No ") for ax in fig.axes for t in ax.texts)
    # a confusion folder that does not exist (metrics not run for that data set)
    run_figure("fig4", {"confusion": [str(tmp_path / "nowhere")]},
               {"png": str(tmp_path / "b.png"), "pdf": str(tmp_path / "b.pdf")}, {"datasets": ["x"]})
    assert (tmp_path / "b.png").exists()


def test_tables(fake, tmp_path):
    from rhosym.figures import run_figure

    root, ds, inputs = fake
    out = {f"s{i}_{e}": str(tmp_path / f"s{i}.{e}") for i in (1, 2, 3) for e in ("csv", "md")}
    run_figure("tables", inputs, out, {"datasets": ds})
    s1 = pd.read_csv(out["s1_csv"])
    # per data set and task: 6 models (5 on icsd) plus the two sized variants of each density model
    assert len(s1) == 3 * (6 + 4) + 3 * (5 + 4)
    first = s1[(s1["dataset"] == "mp") & (s1["task"] == "crystal_system")]["model"].tolist()
    assert first[0] == "lattice" and first.index("cogn") < first.index("sparse_cnn grid")
    assert {"n", "accuracy (%)", "95% CI", "margin over lattice (pp)", "n_full"} <= set(s1.columns)
    cls = pd.read_csv(inputs["classification"][0])
    r = cls.query("model == 'sparse_cnn' and task == 'space_group' and points == 0").iloc[0]
    got = s1.query("dataset == 'mp' and model == 'sparse_cnn grid' and task == 'space_group'").iloc[0]
    assert got["accuracy (%)"].split(" ± ")[0] == f"{100 * r['top1']:.1f}"
    assert float(got["margin over lattice (pp)"]) == pytest.approx(r["margin_lattice_pp"], abs=0.06)
    s2 = pd.read_csv(out["s2_csv"])
    assert len(s2) == 2 * 6 and {"MAE", "unit", "margin over lattice (MAE reduction)"} <= set(s2.columns)
    reg = pd.read_csv(inputs["regression"][0])
    want = reg.query("model == 'cogn' and task == 'band_gap'")["mae"].iloc[0]
    assert float(s2.query("model == 'cogn' and task == 'band_gap'")["MAE"].iloc[0]) == pytest.approx(want, abs=6e-5)
    s3 = pd.read_csv(out["s3_csv"])
    assert s3[["model", "task"]].values.tolist() == [["sparse_cnn", "band_gap"], ["sparse_cnn", "formation_energy"]]
    assert (s3["MAE 4 features"] < s3["MAE 1 feature"]).all()
    assert "| sparse_cnn |" in Path(out["s3_md"]).read_text().replace("  ", " ").replace("  ", " ")
    # classification only: the regression tables say so
    run_figure("tables", {"classification": inputs["classification"], "regression": []}, out, {})
    assert "No regression experiments" in Path(out["s2_md"]).read_text()
    assert "No experiment pairs" in Path(out["s3_md"]).read_text()
    assert len(pd.read_csv(out["s2_csv"])) == 0


def test_class_boundaries_follow_the_crystal_systems():
    from rhosym.figures import EG_PER_CS, SG_PER_CS, _class_boundaries
    from rhosym.symmetry import crystal_system

    assert sum(SG_PER_CS) == 230 and sum(EG_PER_CS) == 101
    b = _class_boundaries("space_group") + 1.5  # first space group of each system after the first
    assert [crystal_system(int(x)) for x in b] == ["monoclinic", "orthorhombic", "tetragonal", "trigonal",
                                                     "hexagonal", "cubic"]
    assert [crystal_system(int(x) - 1) for x in b] == ["triclinic", "monoclinic", "orthorhombic",
                                                         "tetragonal", "trigonal", "hexagonal"]
    assert list(_class_boundaries("extinction_group") + 0.5) == list(np.cumsum(EG_PER_CS)[:-1])


def test_calibration_table_and_ece_from_the_top1_probabilities(fake):
    """The metrics give every classifier an ECE and reliability bins whose counts add up to its test rows."""
    root, ds, _ = fake
    cal = pd.read_csv(root / ds[0] / "metrics" / "calibration.csv")
    cls = pd.read_csv(root / ds[0] / "metrics" / "classification.csv")
    assert len(cal) and {"confidence", "accuracy", "n"} <= set(cal.columns)
    assert cal["confidence"].between(0, 1).all() and cal["accuracy"].between(0, 1).all()
    assert "ece" in cls.columns and cls["ece"].dropna().between(0, 1).all()


def _learning_fake() -> pd.DataFrame:
    rows = []
    for model, control, accs in (("lattice", True, {1.0: 0.8}), ("sparse_cnn", False,
                                                              {0.125: 0.2, 0.25: 0.36, 0.5: 0.488, 1.0: 0.59})):
        for f, acc in accs.items():
            tag = "" if f == 1.0 else f"-fr{int(1000 * f):03d}"
            rows.append({"dataset": "mp", "split": "formula", "task": "space_group", "model": model,
                         "trained_task": "symmetry", "input": "grid", "features": 1, "points": 0,
                         "trained_on": "mp", "group": f"grid-f1{tag}-formula", "control": control,
                         "top1": acc, "top1_lo": acc - 0.05, "top1_hi": acc + 0.05})
    return pd.DataFrame(rows)


def test_learning_curve_table_fits_the_power_law_and_says_extrapolation(tmp_path):
    from rhosym.figures import learning_table, plot_figLearning

    t = learning_table(_learning_fake())
    (row,) = t.to_dict("records")
    # 1 - acc = 0.8, 0.64, 0.512, 0.41 ~ 0.41 f^(-0.32): the control's 0.2 error at f = (0.41/0.2)^(1/0.32)
    assert row["model"] == "sparse_cnn" and row["b"] == pytest.approx(0.322, abs=0.01)
    assert row["crossing_fraction"] == pytest.approx((row["a"] / 0.2) ** (1 / row["b"]), rel=1e-9)
    assert row["crossing_fraction"] > 1 and row["note"] == "extrapolation"
    fig = plot_figLearning(_learning_fake(), tmp_path / "l.png")
    labels = [x.get_text() for ax in fig.axes for x in (ax.get_legend().get_texts() if ax.get_legend() else [])]
    assert "lattice control (all data)" in labels and any("Sparse" in lab for lab in labels)


def test_learning_figure_draws_only_data_sets_with_a_curve_and_the_controls_own_curve(tmp_path):
    from rhosym.figures import plot_figLearning

    fake = _learning_fake()
    other = fake[fake["fraction"] == 1.0] if "fraction" in fake else fake[~fake["group"].str.contains("-fr")]
    other = other.assign(dataset="other")  # full-size models only: no curve, no panel
    ctrl = fake[fake["model"] == "sparse_cnn"].assign(model="lattice_sym", control=True,
                                                      top1=lambda d: d["top1"] + 0.2)
    fig = plot_figLearning(pd.concat([fake, other, ctrl]), tmp_path / "l.png")
    titles = " ".join(ax.get_ylabel() + ax.get_title() for ax in fig.axes)
    assert "other" not in titles and "mp" in titles
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if "Lattice + metric" in str(ln.get_label())]
    assert lines and lines[0].get_linestyle() == ":" and len(lines[0].get_xdata()) == 4


def test_a_lattice_conditioned_network_is_a_learning_curve_of_its_own(tmp_path):
    """sparse_cnn and sparse_cnn+lattice at the same fractions: two rows of the power-law table and two
    lines (the +lattice one dash-dotted); an augmented variant is no curve point."""
    from rhosym.figures import learning_table, plot_figLearning

    fake = _learning_fake()
    net = fake[fake["model"] == "sparse_cnn"]
    lat = net.assign(group=net["group"].str.replace("-formula", "-lat-formula", regex=False),
                     top1=net["top1"] + 0.1)  # grid-f1-fr125-lat-formula (rhosym.layout.variant)
    aug = net.assign(group=net["group"].str.replace("-formula", "-arot-formula", regex=False), top1=0.99)
    both = pd.concat([fake, lat, aug], ignore_index=True)
    t = learning_table(both).set_index("model")
    assert sorted(t.index) == ["sparse_cnn", "sparse_cnn+lattice"]
    assert t.loc["sparse_cnn", "b"] == pytest.approx(learning_table(fake).iloc[0]["b"])  # the -arot rows left out
    fig = plot_figLearning(both, tmp_path / "l.png")
    styles = {str(ln.get_label()): ln.get_linestyle() for ax in fig.axes for ln in ax.get_lines()}
    assert styles["Sparse 3D CNN+lattice"] == "-." and styles["Sparse 3D CNN"] == "-"


def test_results_table_states_whether_a_symmetry_finder_touched_the_input():
    """Every row says whether spglib (the labels' finder) was on its input path: through the cell (its
    setting and origin) and, for the graph models, the graphs' primitive cell."""
    from rhosym.figures import finder_on_input, results_table

    assert finder_on_input("sparse_cnn", "conventional") == "yes (cell)"
    assert finder_on_input("sparse_cnn", "lattice_frame") == "no"
    assert finder_on_input("lattice_gbm", "niggli") == "no"
    assert finder_on_input("cogn", "lattice_frame") == "yes (graph's primitive cell)"
    assert finder_on_input("cgcnn", "conventional_refined") == "yes (cell, graph's primitive cell)"
    assert finder_on_input("cgcnn", "lattice_frame", graphs_primitive=False) == "no"
    row = {"split": "formula", "task": "space_group", "n_seeds": 1, "n": 10, "top1": 0.5, "top1_sd": np.nan,
           "top1_lo": 0.2, "top1_hi": 0.8, "macro_f1": 0.4, "macro_f1_sd": np.nan, "margin_lattice_pp": 1.0,
           "n_full": 10, "top1_full": 0.5, "input": "", "features": 1, "points": 0, "group": "x-f1-formula",
           "trained_on": "", "trained_task": "symmetry"}
    cls = pd.DataFrame([{**row, "dataset": "a", "model": "sparse_cnn", "input": "grid", "trained_on": "a"},
                        {**row, "dataset": "b", "model": "cogn", "input": "cogn", "trained_on": "b"}])
    t = results_table(cls, pd.DataFrame(), {"a": "conventional", "b": "lattice_frame"})
    assert t["symmetry finder on input"].tolist() == ["yes (cell)", "yes (graph's primitive cell)"]
    assert list(t.columns[:4]) == ["dataset", "split", "cell", "symmetry finder on input"]
