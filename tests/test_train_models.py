"""One short epoch of every real model (rhosym.models) through the trainer and the predictor."""

import numpy as np
import pandas as pd
import pytest

from rhosym import checkpoint as C
from rhosym import infer
from rhosym import train as T
from tests.conftest import TINY_MODELS as TINY
from tests.test_train_fixtures import (
    write_density_stores,
    write_graph_stores,
    write_lattice_shards,
    write_manifest_split,
    write_xrd_stores,
)

models = pytest.importorskip("rhosym.models")


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    man, sp = write_manifest_split(root, 18)
    ids = man["id"].tolist()
    return {"man": man, "split": sp, "root": root,
            "density": write_density_stores(root, ids, channels=4),
            "xrd": write_xrd_stores(root, ids),
            "cgcnn": write_graph_stores(root, ids, "cgcnn"),
            "cogn": write_graph_stores(root, ids, "cogn"), "lattice": write_lattice_shards(root, ids)}


@pytest.mark.parametrize("model,task,features", [
    ("sparse_cnn", "space_group", 1), ("pointnet", "crystal_system", 4), ("xrd_fcn", "extinction_group", 1),
    ("cgcnn", "formation_energy", 1), ("cogn", "band_gap", 1), ("lattice", "crystal_system", 1),
    ("pointnet", "symmetry", 1), ("lattice", "symmetry", 1)])
def test_real_model_one_epoch_and_predict(stores, model, task, features):
    kind = models.INPUT_KIND[model]
    out = stores["root"] / "models" / model / task
    cfg = {"epochs": 1, "batch_budget": 400, "max_batch_size": 4, "model": TINY[model]}
    job = T.TrainJob(model=model, task=task, input={"density": "grid"}.get(kind, kind), stores=stores[kind],
                     manifest=stores["man"], split=stores["split"], out_dir=out, features=features, cfg=cfg,
                     dataset="toy", device="cpu")
    T.train(job)
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == 1 and np.isfinite(hist["train_loss"][0])
    meta = C.load(out / "checkpoint.pt")["meta"]
    resolved = models.model_config(model, TINY[model], task in ("band_gap", "formation_energy"))
    assert {k: v for k, v in meta.model_cfg.items() if v is not None} == {
        k: v for k, v in models.SPECS[model].config.model_validate(TINY[model]).model_dump().items() if v is not None}
    assert resolved
    df = infer.predict_split(out / "checkpoint.pt", stores[kind], stores["man"], stores["split"], device="cpu")
    n_test = (stores["split"].split == "test").sum()
    assert len(df) == n_test * len(meta.answers)
    if task in ("band_gap", "formation_energy"):
        assert df["y_pred"].notna().all()
    else:
        assert df["topk"].map(len).eq(5).all()


def test_unknown_architecture_key_is_refused():
    with pytest.raises(ValueError, match="chanels"):
        models.build_model("sparse_cnn", 7, False, 1, {"chanels": [8]})
