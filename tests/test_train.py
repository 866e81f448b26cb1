"""The trainer and the predictor on tiny synthetic stores with a stand-in model."""

import numpy as np
import pandas as pd
import pytest
import torch

from rhosym import infer
from rhosym import loaders as L
from rhosym import train as T
from tests.test_train_fixtures import (
    standin_registry,
    write_density_stores,
    write_graph_stores,
    write_manifest_split,
    write_xrd_stores,
)

FAST = {"epochs": 1, "lr": 0.01, "batch_budget": 200, "max_batch_size": 8, "device": "cpu"}


@pytest.fixture
def data(tmp_path):
    man, sp = write_manifest_split(tmp_path, 30)
    ids = man["id"].tolist()
    return {
        "root": tmp_path, "man": man, "split": sp,
        "density": write_density_stores(tmp_path, ids, skip=("s002",)),
        "xrd": write_xrd_stores(tmp_path, ids),
        "cgcnn": write_graph_stores(tmp_path, ids, "cgcnn"),
        "cogn": write_graph_stores(tmp_path, ids, "cogn"),
    }


def _train(data, model, task="crystal_system", out=None, cfg=None, features=1, stores=None):
    kind = standin_registry().INPUT_KIND[model]
    out = out or data["root"] / "models" / model / task
    return out, T.train_model(model, task, {"density": "grid", "xrd": "xrd"}.get(kind, "graph"), features,
                              stores or data[kind], data["man"], data["split"], out, {**FAST, **(cfg or {})},
                              seed=1, dataset="toy", registry=standin_registry())


@pytest.mark.parametrize("model", ["sparse_cnn", "xrd_fcn", "cgcnn", "cogn"])
def test_one_epoch_each_input(data, model):
    out, summary = _train(data, model)
    hist = pd.read_csv(out / "history.csv")
    assert list(hist.columns) == T.HISTORY_COLUMNS and len(hist) == 1
    assert np.isfinite(hist["train_loss"][0]) and 0 <= hist["val_metric"][0] <= 1
    assert hist["metric"][0] == "accuracy" and hist["peak_mem_mb"][0] > 0 and hist["samples_per_s"][0] > 0
    assert (out / "checkpoint.pt").exists() and (out / "last.pt").exists()
    assert summary["n_train"] == (data["split"].split == "train").sum() - (model == "sparse_cnn") * (
        data["split"].set_index("id").loc["s002", "split"] == "train")


def test_trainer_never_reads_test_ids(data, monkeypatch):
    read_ids = set()
    orig = L.read_row

    def spy(g, r, kind):
        read_ids.add(g.attrs["ids"][r])
        return orig(g, r, kind)

    monkeypatch.setattr(L, "read_row", spy)
    _train(data, "sparse_cnn", cfg={"epochs": 2})
    split = data["split"].set_index("id")["split"]
    assert read_ids, "nothing was read"
    assert {split[i] for i in read_ids} <= {"train", "val"}
    test_ids = set(split[split == "test"].index)
    assert not read_ids & test_ids


def test_loss_falls_and_checkpoint_contents(data):
    out, summary = _train(data, "sparse_cnn", cfg={"epochs": 6, "lr": 0.05, "patience": 0})
    hist = pd.read_csv(out / "history.csv")
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    for k in ("model", "model_cfg", "state_dict", "optimizer", "scheduler", "epoch", "history", "label_values",
              "task", "features", "input_kind", "input_store", "norm", "target", "train_config"):
        assert k in ck, k
    assert ck["label_values"] == list(L.CRYSTAL_SYSTEMS) and ck["n_out"] == 7
    assert ck["input_store"]["method"] == "grid" and ck["input_store"]["spatial_shape"] == [16, 16, 16]
    assert ck["norm"]["source"] == "train" and len(ck["norm"]["mean"]) == 1
    assert ck["epoch"] == summary["best_epoch"]
    assert ck["history"][-1]["val_metric"] == pytest.approx(hist["val_metric"].max()) or ck["epoch"] < 6
    # best checkpoint = best validation accuracy
    assert hist.loc[ck["epoch"] - 1, "val_metric"] == hist["val_metric"].max()


def test_resume_continues_after_last_epoch(data, caplog):
    out = data["root"] / "resume"
    _train(data, "xrd_fcn", out=out, cfg={"epochs": 2, "patience": 0})
    assert len(pd.read_csv(out / "history.csv")) == 2
    (out / "checkpoint.pt").unlink()  # as if Snakemake removed the outputs of the killed job
    (out / "history.csv").unlink()
    with caplog.at_level("INFO", logger="rhosym.train"):
        _train(data, "xrd_fcn", out=out, cfg={"epochs": 4, "patience": 0})
    assert "resuming" in caplog.text and "after epoch 2" in caplog.text
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == [1, 2, 3, 4]
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 4


def test_no_resume_across_changed_settings(data, caplog):
    """A last.pt from other model or training settings is not resumed (it would not even load)."""
    out = data["root"] / "resume_changed"
    _train(data, "xrd_fcn", out=out, cfg={"epochs": 2, "patience": 0})
    with caplog.at_level("INFO", logger="rhosym.train"):
        _train(data, "xrd_fcn", out=out, cfg={"epochs": 3, "patience": 0, "lr": 0.005})
    assert "resuming" not in caplog.text and "training from scratch" in caplog.text
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2, 3]


def test_regression_destandardized_predictions(data):
    out, _ = _train(data, "cgcnn", task="band_gap", cfg={"epochs": 3, "lr": 0.03, "patience": 0})
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    train_ids = data["split"].query("split == 'train'")["id"]
    bg = data["man"].set_index("id").loc[train_ids, "band_gap"].dropna()
    assert ck["target"]["mean"] == pytest.approx(bg.mean()) and ck["target"]["std"] == pytest.approx(bg.std(ddof=0))
    assert ck["skipped"]["train"]["no_label"] + ck["skipped"]["val"]["no_label"] == 1  # the NaN band gap
    hist = pd.read_csv(out / "history.csv")
    assert hist["metric"][0] == "mae"
    pred_path = data["root"] / "pred.parquet"
    df = infer.predict_split(out / "checkpoint.pt", data["cgcnn"], data["man"], data["split"], out=pred_path,
                             device="cpu", registry=standin_registry())
    assert list(df.columns) == infer.PREDICTION_COLUMNS
    assert set(df["split"]) == {"test"} and len(df) == (data["split"].split == "test").sum()
    # predictions in physical units: model output * std + mean
    model, meta = infer.load_checkpoint(out / "checkpoint.pt", "cpu", registry=standin_registry())
    ds = L.StoreDataset(L.build_items(df["id"].tolist()[:1], L.encode_labels(data["man"], "band_gap").fillna(0),
                                      data["cgcnn"], "cgcnn"), "cgcnn")
    raw = model(standin_registry().collate("cgcnn", [ds[0]["sample"]]))[0, 0].item()
    assert df["y_pred"][0] == pytest.approx(raw * meta["target"]["std"] + meta["target"]["mean"], rel=1e-5)
    truth = data["man"].set_index("id").loc[df["id"], "band_gap"].to_numpy()
    assert np.allclose(df["y_true"].to_numpy(dtype=float), truth, equal_nan=True)
    assert pd.read_parquet(pred_path).shape == df.shape
    # the single-structure path gives the same value
    one = infer.predict_samples(model, meta, [ds[0]["sample"]], registry=standin_registry())
    assert one[0]["y_pred"] == pytest.approx(df["y_pred"][0], rel=1e-6)


def test_predict_split_classification_columns(data):
    out, _ = _train(data, "sparse_cnn", task="space_group", cfg={"class_weights": True, "label_smoothing": 0.1})
    df = infer.predict_split(out / "checkpoint.pt", data["density"], data["man"], data["split"],
                             out=data["root"] / "p.parquet", top_k=5, max_points=10, device="cpu",
                             registry=standin_registry())
    assert list(df.columns) == [*infer.PREDICTION_COLUMNS, "topk", "topk_prob", "max_points"]
    test_ids = set(data["split"].query("split == 'test'")["id"]) - {"s002"}
    assert set(df["id"]) == test_ids
    assert all(len(t) == 5 and t[0] == p for t, p in zip(df["topk"], df["y_pred"]))
    assert all(np.all(np.diff(p) <= 1e-12) and 0 < sum(p) <= 1 + 1e-9 for p in df["topk_prob"])
    assert set(df["y_true"]) <= {"2", "14", "62"}  # space-group numbers as strings
    back = pd.read_parquet(data["root"] / "p.parquet")
    assert list(back["topk"][0]) == list(df["topk"][0])


def test_four_features_and_workers(data, tmp_path):
    ids = data["man"]["id"].tolist()
    p4 = write_density_stores(tmp_path / "f4", ids, channels=4)
    out, _ = _train(data, "pointnet", features=4, stores=p4, cfg={"num_workers": 2, "epochs": 1})
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["features"] == 4 and ck["in_features"] == 4 and len(ck["norm"]["std"]) == 4
    with pytest.raises(ValueError, match="channel"):
        _train(data, "pointnet", features=4, out=tmp_path / "bad")


def test_resolve_config_per_model_overrides():
    cfg = T.resolve_config({"lr": 0.1, "models": {"cgcnn": {"lr": 0.5, "model": {"width": 4}}}}, "cgcnn")
    assert cfg["lr"] == 0.5 and cfg["model"] == {"width": 4} and cfg["epochs"] == T.DEFAULTS["epochs"]
    assert T.resolve_config({"lr": 0.1, "models": {"cgcnn": {"lr": 0.5}}}, "cogn")["lr"] == 0.1
    w = T.class_weight_vector(np.array([0, 0, 0, 1]), 3)
    assert w[0] * 3 == pytest.approx(w[1]) and w[2] == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("amp_dtype", ["fp16", "bf16"])
def test_cuda_mixed_precision(data, amp_dtype):
    out, _ = _train(data, "cgcnn", task="band_gap", cfg={"device": "cuda", "amp": True, "amp_dtype": amp_dtype,
                                                         "epochs": 2, "patience": 0},
                    out=data["root"] / f"cuda-{amp_dtype}")
    hist = pd.read_csv(out / "history.csv")
    assert np.isfinite(hist["train_loss"]).all() and (hist["peak_mem_mb"] > 0).all()
    ck = torch.load(out / "checkpoint.pt", weights_only=False, map_location="cpu")
    assert (ck["scaler"] is not None) == (amp_dtype == "fp16")
