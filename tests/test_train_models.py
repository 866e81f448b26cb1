"""One short epoch of every real model (rhosym.models) through the trainer and the predictor."""

import numpy as np
import pandas as pd
import pytest
import torch

from rhosym import infer
from rhosym import train as T
from tests.test_train_fixtures import (
    write_density_stores,
    write_graph_stores,
    write_manifest_split,
    write_xrd_stores,
)

models = pytest.importorskip("rhosym.models")

TINY = {
    "sparse_cnn": {"channels": [8, 8, 16, 16, 16], "head": [16]},
    "pointnet": {"channels": [8, 16, 32], "groups": 4, "head": [16]},
    "xrd_fcn": {"channels": [4] * 10 + [8] * 3},
    "cgcnn": {"atom_fea_len": 8, "h_fea_len": 16, "n_conv": 1},
    "cogn": {"units": 16, "depth": 1},
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    man, sp = write_manifest_split(root, 18)
    ids = man["id"].tolist()
    return {"man": man, "split": sp, "root": root,
            "density": write_density_stores(root, ids, channels=4),
            "xrd": write_xrd_stores(root, ids),
            "cgcnn": write_graph_stores(root, ids, "cgcnn"),
            "cogn": write_graph_stores(root, ids, "cogn")}


@pytest.mark.parametrize("model,task,features", [
    ("sparse_cnn", "space_group", 1), ("pointnet", "crystal_system", 4), ("xrd_fcn", "extinction_group", 1),
    ("cgcnn", "formation_energy", 1), ("cogn", "band_gap", 1)])
def test_real_model_one_epoch_and_predict(stores, model, task, features):
    kind = models.INPUT_KIND[model]
    out = stores["root"] / "models" / model / task
    cfg = {"epochs": 1, "device": "cpu", "batch_budget": 400, "max_batch_size": 4,
           "models": {model: {"model": TINY[model]}}}
    T.train_model(model, task, {"density": "grid", "xrd": "xrd"}.get(kind, "graph"), features, stores[kind],
                  stores["man"], stores["split"], out, cfg, seed=0, dataset="toy")
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == 1 and np.isfinite(hist["train_loss"][0])
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["model_cfg"] == TINY[model]
    df = infer.predict_split(out / "checkpoint.pt", stores[kind], stores["man"], stores["split"], device="cpu")
    assert len(df) == (stores["split"].split == "test").sum()
    if task in ("band_gap", "formation_energy"):
        assert df["y_pred"].notna().all()
    else:
        assert df["topk"].map(len).eq(5).all()
