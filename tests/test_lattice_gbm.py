"""The gradient-boosted lattice control (lattice_gbm): fitted by LightGBM with validation early stopping,
saved as its text model inside a format-2 checkpoint (no pickle), predicted like any model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lightgbm")
torch = pytest.importorskip("torch")

from rhosym import checkpoint as C  # noqa: E402
from rhosym import infer  # noqa: E402
from rhosym import registry as R  # noqa: E402
from rhosym import train as T  # noqa: E402
from tests.test_train_fixtures import write_lattice_shards, write_manifest_split  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("gbm")
    man, sp = write_manifest_split(root, 90)
    return {"root": root, "man": man, "split": sp, "ingest": write_lattice_shards(root, man["id"].tolist())}


def _train(data, task, out, seed=0, cfg=None):
    job = T.TrainJob(model="lattice_gbm", task=task, input="lattice_sym", stores=data["ingest"],
                     manifest=str(data["root"] / "manifest.parquet"), split=str(data["root"] / "split.parquet"),
                     out_dir=out, cfg={"model": {"n_estimators": 60, "min_child_samples": 2, **(cfg or {})}},
                     seed=seed, dataset="toy", device="cpu", threads=1)
    return T.train(job)


def test_registered_as_a_control_that_reads_the_strengthened_features():
    spec = R.MODELS["lattice_gbm"]
    assert spec.control and spec.boosted and spec.reads_lattice and spec.input_kind == "lattice_sym"
    assert "lattice_gbm" in R.CONTROL_MODELS and "lattice_gbm" not in R.LATTICE_MODELS


@pytest.mark.parametrize("task", ["crystal_system", "symmetry"])
def test_learns_the_cell_shape_and_saves_a_text_model(data, task, tmp_path):
    summary = _train(data, task, tmp_path / task)
    assert summary["best_metric"] >= 0.9 and summary["epochs_run"] == 0  # c/a encodes the class
    raw = torch.load(tmp_path / task / "checkpoint.pt", weights_only=True)  # no pickle anywhere
    assert raw["state_dict"]["booster"].dtype == torch.uint8
    model, meta = infer.load_checkpoint(tmp_path / task / "checkpoint.pt", "cpu")
    assert model.model_text().startswith("tree\n")  # LightGBM's own text format
    # trees for the trained classes only: crystal systems 0, 1, 2; space groups 2, 14, 62 (indices 1, 13, 61)
    assert model.classes.tolist() == {"crystal_system": [0, 1, 2], "symmetry": [1, 13, 61]}[task]
    hist = pd.read_csv(tmp_path / task / "history.csv")
    assert list(hist["epoch"]) == [0] and hist["val_metric"].iloc[0] == pytest.approx(summary["best_metric"])
    df = infer.predict_split((model, meta), data["ingest"], data["man"], data["split"])
    test = df[df["task"] == "crystal_system"]
    assert len(test) == (data["split"]["split"] == "test").sum()
    assert (test["y_pred"] == test["y_true"]).mean() >= 0.9
    assert 0 < meta["temperature"] < 20  # calibrated on the validation split


def test_absent_classes_get_the_floor_logit(data, tmp_path):
    _train(data, "space_group", tmp_path / "sg")
    model, _ = infer.load_checkpoint(tmp_path / "sg" / "checkpoint.pt", "cpu")
    x = torch.zeros(2, 41)
    out = model({"lattice": x})
    assert out.shape == (2, 230)
    absent = np.setdiff1d(np.arange(230), model.classes.numpy())
    assert (out[:, absent] == -30.0).all() and (out[:, model.classes] > -30.0).all()


def test_regression_and_seeds(data, tmp_path):
    s = _train(data, "band_gap", tmp_path / "bg")
    assert s["best_metric"] < 0.5  # band gap 1, 3, 5 eV by class, ~0.1 eV noise
    a = _train(data, "crystal_system", tmp_path / "a", seed=0, cfg={"feature_fraction": 0.5})
    b = _train(data, "crystal_system", tmp_path / "b", seed=0, cfg={"feature_fraction": 0.5})
    ta = C.load(tmp_path / "a" / "checkpoint.pt")["state_dict"]["booster"]
    tb = C.load(tmp_path / "b" / "checkpoint.pt")["state_dict"]["booster"]
    assert torch.equal(ta, tb) and a["best_metric"] == b["best_metric"]  # deterministic for a seed


def test_rhosym_predict_reads_a_boosted_checkpoint(tmp_path, capsys):
    """``rhosym predict`` on CIFs with a lattice_gbm checkpoint gives what the test-split predictor gives
    (the features are rebuilt from each structure's cell, the trees come from the checkpoint's text)."""
    import json
    from pathlib import Path

    from rhosym import cli
    from rhosym.ingest import ingest_shard
    from rhosym.shards import list_units

    cif = Path(__file__).parent / "fixtures" / "cif_tiny"
    ds = {"kind": "cif_dir", "path": str(cif)}
    ingest = tmp_path / "ingest.parquet"
    frame = ingest_shard("cif", ds, 0, list_units(ds), None, None, ingest)
    man = frame[frame["status"] == "ok"].drop(columns=["structure"])
    ids = man["id"].tolist()
    split = pd.DataFrame({"id": ids, "split": ["val" if i % 3 == 0 else "train" for i in range(len(ids))]})
    out = tmp_path / "model"
    T.train(T.TrainJob(model="lattice_gbm", task="crystal_system", input="lattice_sym", stores=[str(ingest)],
                       manifest=man, split=split, out_dir=out, cfg={"model": {"min_child_samples": 1}},
                       dataset="cif", device="cpu",
                       provenance={"kind": "cif_dir", "cell": "conventional", "labels": {}, "ingest": {}}))
    ref = infer.predict_split(infer.load_checkpoint(out / "checkpoint.pt", "cpu"), [str(ingest)], man, split,
                              split="val").set_index("id")
    rc = cli.main(["predict", *map(str, sorted(cif.glob("*.cif"))), "--model", str(out / "checkpoint.pt"),
                   "--device", "cpu", "--top-k", "3"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    recs = {r["id"]: r for r in lines if "error" not in r and "id" in r}
    assert rc == 0 and len(ref) and set(ref.index) <= set(recs)
    for sid, r in ref.iterrows():
        assert recs[sid]["prediction"] == r["y_pred"]
        np.testing.assert_allclose([e["probability"] for e in recs[sid]["top_k"]], r["topk_prob"][:3], rtol=1e-4)
