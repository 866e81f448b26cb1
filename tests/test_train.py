"""The trainer and the predictor on tiny synthetic stores with a stand-in model."""

import numpy as np
import pandas as pd
import pytest
import torch

from rhosym import checkpoint as C
from rhosym import infer
from rhosym import loaders as L
from rhosym import train as T
from rhosym.inputs.lattice import FEATURES as LATTICE_FEATURES
from tests.test_train_fixtures import (
    standin_registry,
    write_density_stores,
    write_graph_stores,
    write_lattice_shards,
    write_manifest_split,
    write_xrd_stores,
)

FAST = {"epochs": 1, "lr": 0.01, "batch_budget": 200, "max_batch_size": 8}


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
        "lattice": write_lattice_shards(tmp_path, ids),
    }


def _train(data, model, task="crystal_system", out=None, cfg=None, features=1, stores=None, **job):
    kind = standin_registry().INPUT_KIND[model]
    out = out or data["root"] / "models" / model / task
    j = T.TrainJob(model=model, task=task, input={"density": "grid"}.get(kind, kind), stores=stores or data[kind],
                   manifest=data["man"], split=data["split"], out_dir=out, features=features,
                   cfg={**FAST, **(cfg or {})}, seed=1, dataset="toy", device="cpu", registry=standin_registry(),
                   **job)
    return out, T.train(j)


def _ck(path):
    return C.load(path)


@pytest.mark.parametrize("model", ["sparse_cnn", "xrd_fcn", "cgcnn", "cogn", "lattice"])
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
    from rhosym.inputs.density import DENSITY

    read_ids = set()
    orig = DENSITY.read

    def spy(g, r, opts):  # every stored row the trainer reads, by the id it reads it for
        read_ids.add(opts.sid)
        return orig(g, r, opts)

    monkeypatch.setattr(DENSITY, "read", spy)
    _train(data, "sparse_cnn", cfg={"epochs": 2}, cache_mb=0)
    split = data["split"].set_index("id")["split"]
    assert read_ids, "nothing was read"
    assert {split[i] for i in read_ids} <= {"train", "val"}
    test_ids = set(split[split == "test"].index)
    assert not read_ids & test_ids


def test_loss_falls_and_checkpoint_contents(data):
    out, summary = _train(data, "sparse_cnn", cfg={"epochs": 6, "lr": 0.05, "patience": 0})
    hist = pd.read_csv(out / "history.csv")
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    # the format loads with weights_only=True: tensors and plain data only
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    assert raw["format"] == C.FORMAT and set(raw) == {"format", "meta", "state_dict"}
    m = _ck(out / "checkpoint.pt")["meta"]
    assert m.label_values == list(L.CRYSTAL_SYSTEMS) and m.n_out == 7 and m.answers == ["crystal_system"]
    assert m.input_store["method"] == "grid" and m.input_store["spatial_shape"] == [16, 16, 16]
    assert m.norm["source"] == "train" and len(m.norm["mean"]) == 1
    assert m.best_epoch == summary["best_epoch"]
    # best checkpoint = best validation accuracy
    assert hist.loc[m.best_epoch - 1, "val_metric"] == hist["val_metric"].max()
    assert "training" in torch.load(out / "last.pt", weights_only=True)


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
    assert _ck(out / "last.pt")["training"]["epoch"] == 4


def test_rerun_with_nothing_left_writes_the_validation_best_checkpoint(data, caplog):
    """Snakemake deletes checkpoint.pt before rerunning a job; the rerun finds last.pt with no epoch left and
    must write the validation-best weights again, never the last epoch's."""
    out = data["root"] / "nothing_left"
    _train(data, "sparse_cnn", out=out, cfg={"epochs": 6, "lr": 0.2, "patience": 0})
    best = _ck(out / "checkpoint.pt")
    last = _ck(out / "last.pt")
    hist = pd.read_csv(out / "history.csv")
    assert best["meta"].best_epoch == int(hist["val_metric"].idxmax()) + 1
    (out / "checkpoint.pt").unlink()
    (out / "history.csv").unlink()
    with caplog.at_level("INFO", logger="rhosym.train"):
        _train(data, "sparse_cnn", out=out, cfg={"epochs": 6, "lr": 0.2, "patience": 0})
    assert "validation-best epoch" in caplog.text
    again = _ck(out / "checkpoint.pt")
    assert again["meta"].best_epoch == best["meta"].best_epoch
    for k, v in best["state_dict"].items():
        assert torch.equal(again["state_dict"][k], v), k
    if best["meta"].best_epoch != 6:  # the last epoch's weights differ from the best ones
        assert any(not torch.equal(last["state_dict"][k], v) for k, v in best["state_dict"].items())
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2, 3, 4, 5, 6]


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
    m = _ck(out / "checkpoint.pt")["meta"]
    train_ids = data["split"].query("split == 'train'")["id"]
    bg = data["man"].set_index("id").loc[train_ids, "band_gap"].dropna()
    assert m.target["mean"] == pytest.approx(bg.mean()) and m.target["std"] == pytest.approx(bg.std(ddof=0))
    assert m.skipped["train"]["no_label"] + m.skipped["val"]["no_label"] == 1  # the NaN band gap
    hist = pd.read_csv(out / "history.csv")
    assert hist["metric"][0] == "mae"
    pred_path = data["root"] / "pred.parquet"
    df = infer.predict_split(out / "checkpoint.pt", data["cgcnn"], data["man"], data["split"], out=pred_path,
                             device="cpu", registry=standin_registry(), identity={"split": "none"})
    assert list(df.columns) == infer.PREDICTION_COLUMNS
    assert len(df) == (data["split"].split == "test").sum() and set(df["task"]) == {"band_gap"}
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
    assert one[0]["band_gap"]["y_pred"] == pytest.approx(df["y_pred"][0], rel=1e-6)


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


def test_joint_symmetry_network_answers_three_consistent_tasks(data):
    """task symmetry: one 230-way head; the crystal system and extinction group are sums of its
    space-group probabilities, so the three answers cannot contradict each other."""
    from rhosym.hierarchy import index_maps

    out, summary = _train(data, "sparse_cnn", task="symmetry", cfg={"epochs": 4, "lr": 0.05, "patience": 0})
    m = _ck(out / "checkpoint.pt")["meta"]
    assert m.n_out == 230 and m.answers == ["crystal_system", "extinction_group", "space_group"]
    df = infer.predict_split(out / "checkpoint.pt", data["density"], data["man"], data["split"], top_k=230,
                             device="cpu", registry=standin_registry())
    assert set(df["task"]) == {"crystal_system", "extinction_group", "space_group"}
    per = {t: g.set_index("id") for t, g in df.groupby("task")}
    maps = index_maps()
    for sid, r in per["space_group"].iterrows():
        p_sg = np.zeros(230)
        for lab, p in zip(r["topk"], r["topk_prob"]):
            p_sg[int(lab) - 1] = p
        p_cs = np.bincount(maps["crystal_system"], weights=p_sg, minlength=7)
        assert L.CRYSTAL_SYSTEMS[int(p_cs.argmax())] == per["crystal_system"].loc[sid, "y_pred"]
        assert per["crystal_system"].loc[sid, "topk_prob"][0] == pytest.approx(p_cs.max(), abs=1e-6)
    assert 0 <= summary["best_metric"] <= 1


def test_lattice_control_learns_from_cell_shape(data):
    out, summary = _train(data, "lattice", cfg={"epochs": 40, "lr": 0.05, "patience": 0})
    m = _ck(out / "checkpoint.pt")["meta"]
    assert m.input_kind == "lattice" and len(m.norm["mean"]) == len(LATTICE_FEATURES)
    assert summary["best_metric"] >= 0.8  # c/a encodes the class in the fixture


def test_checkpoint_refuses_pickles_and_old_formats(data, tmp_path):
    out, _ = _train(data, "cgcnn")
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    evil = tmp_path / "evil.pt"
    torch.save({**raw, "hook": print}, evil)  # a pickled callable
    with pytest.raises(C.CheckpointError, match="refused"):
        C.load(evil)
    with pytest.raises(C.CheckpointError, match="refused"):
        infer.load_checkpoint(evil, "cpu", registry=standin_registry())
    old = tmp_path / "old.pt"
    torch.save({"format": 1, "model": "cgcnn", "state_dict": raw["state_dict"]}, old)
    with pytest.raises(C.CheckpointError, match="convert-checkpoint"):
        C.load(old)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(C.CheckpointError, match="not a readable checkpoint"):
        C.load(junk)


def test_four_features_and_workers(data, tmp_path):
    ids = data["man"]["id"].tolist()
    p4 = write_density_stores(tmp_path / "f4", ids, channels=4)
    out, _ = _train(data, "pointnet", features=4, stores=p4, cfg={"epochs": 1}, num_workers=2)
    m = _ck(out / "checkpoint.pt")["meta"]
    assert m.features == 4 and m.in_features == 4 and len(m.norm["std"]) == 4
    with pytest.raises(ValueError, match="channel"):
        _train(data, "pointnet", features=4, out=tmp_path / "bad")


def test_resolved_settings_per_model_and_protocol():
    from rhosym.settings import parse_config

    base = {"datasets": {"s": {"kind": "synthetic", "n": 4}}}
    cfg = parse_config({**base, "train": {"lr": 0.1, "models": {"cgcnn": {"lr": 0.5, "regression": {"lr": 0.7}}}}})
    assert cfg.train_resolved("cgcnn", "crystal_system")["lr"] == 0.5
    assert cfg.train_resolved("cgcnn", "band_gap")["lr"] == 0.7
    assert cfg.train_resolved("cogn", "band_gap")["lr"] == 0.1  # your global key beats the model protocol
    plain = parse_config(base)
    assert plain.train_resolved("sparse_cnn", "band_gap")["lr"] == 5e-5  # the paper's regression protocol
    assert plain.train_resolved("sparse_cnn", "space_group")["max_batch_size"] == 64
    assert plain.train_resolved("pointnet", "crystal_system")["lr"] == 1e-4
    w = T.class_weight_vector(np.array([0, 0, 0, 1]), 3)
    assert w[0] * 3 == pytest.approx(w[1]) and w[2] == 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("amp_dtype", ["fp16", "bf16"])
def test_cuda_mixed_precision(data, amp_dtype):
    out, _ = _train(data, "cgcnn", task="band_gap", cfg={"amp": True, "amp_dtype": amp_dtype, "epochs": 2,
                                                         "patience": 0},
                    out=data["root"] / f"cuda-{amp_dtype}", device="cuda")
    hist = pd.read_csv(out / "history.csv")
    assert np.isfinite(hist["train_loss"]).all() and (hist["peak_mem_mb"] > 0).all()
    ck = C.load(out / "last.pt", map_location="cpu")
    assert (ck["training"]["scaler"] is not None) == (amp_dtype == "fp16")


def test_temperature_scaling_recovers_an_overconfident_network():
    """Labels drawn from softmax(z); logits 3·z are overconfident: the fitted temperature is about 3."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4000, 7)) * 1.5
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(7, p=row) for row in p])
    assert T.fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.1)
    assert T.fit_temperature(z, y) == pytest.approx(1.0, rel=0.1)
    assert T.fit_temperature(np.zeros((0, 7)), np.zeros(0)) == 1.0


def test_the_checkpoint_carries_the_validation_temperature_and_predictions_use_it(data):
    out, _ = _train(data, "lattice", cfg={"epochs": 2})
    meta = C.load(out / "checkpoint.pt")["meta"]
    assert 0.05 <= meta.temperature <= 20 and meta.temperature != 1.0
    model, m = infer.load_checkpoint(out / "checkpoint.pt", "cpu", standin_registry())
    logits = torch.tensor([[2.0, 0.0, -1.0, 0, 0, 0, 0]])
    p = infer.decode_outputs(logits, m, top_k=1)["crystal_system"]["topk_prob"][0][0]
    assert p == pytest.approx(float(torch.softmax(logits.double() / meta.temperature, 1)[0, 0]), rel=1e-6)
    assert abs(p - float(torch.softmax(logits, 1)[0, 0])) > 1e-4  # not the uncalibrated probability
