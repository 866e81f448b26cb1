"""The models on symmetry read from the density: the symops stage's store, the classical finder (no
training) through the trainer and the predictor, the MLP on the scores and the periodic CNN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rhosym import checkpoint as C
from rhosym import infer
from rhosym import train as T
from rhosym.settings import DatasetSettings, DensitySettings, IngestSettings, LabelsSettings, SymopsSettings


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """16 random crystals (pyxtal), their ingest shard, manifest, split and symops store."""
    from rhosym.ingest import build_manifest, ingest_shard
    from rhosym.shards import list_units
    from rhosym.splits import make_split
    from rhosym.symops_stage import run_symops_shard

    root = tmp_path_factory.mktemp("symops")
    ds = DatasetSettings(kind="synthetic", n=16, max_atoms=8)
    units = [[u.key, u.ref] for u in list_units(ds)]
    shard = root / "ingest.parquet"
    ingest_shard("syn", ds, 0, units, LabelsSettings(), IngestSettings(), shard, seed=3)
    man = build_manifest([shard], root / "manifest.parquet")
    split = make_split(man, (0.5, 0.25, 0.25), 1, "none")
    store = root / "symops.zarr"
    counts = run_symops_shard(shard, store, SymopsSettings(), DensitySettings(b_iso=0.5))
    return {"root": root, "man": man, "split": split, "store": str(store), "counts": counts}


def _train(stores, name, **cfg):
    out = stores["root"] / name
    job = T.TrainJob(model=name, task="symmetry", input={"periodic_cnn": "fracgrid"}.get(name, "symops"),
                     stores=[stores["store"]], manifest=stores["man"], split=stores["split"], out_dir=out,
                     cfg={"epochs": 2, **cfg}, device="cpu", threads=1)
    return out, T.train(job)


def test_the_store_holds_scores_grids_and_the_finders_answer(stores):
    from rhosym.store import read_store

    a, attrs = read_store(stores["store"])
    n = stores["counts"]["ok"]
    assert n >= 14 and a["scores"].shape == (n, 79) and a["grid"].shape == (n, 24, 24, 24)
    assert (a["scores"][a["mask"]] <= 1 + 1e-6).all() and np.isnan(a["scores"][~a["mask"]]).all()
    truth = stores["man"].set_index("id").loc[attrs["ids"], "space_group"].to_numpy()
    assert (a["found"] == truth).mean() >= 0.8  # clean structure-derived densities


def test_the_classical_finder_goes_through_the_trainer_and_the_predictor(stores):
    out, summary = _train(stores, "classical")
    assert summary["epochs_run"] == 0  # nothing to fit
    state = C.load(out / "checkpoint.pt")
    assert state["meta"].model == "classical" and sum(v.numel() for v in state["state_dict"].values()) == 0
    hist = pd.read_csv(out / "history.csv")
    assert list(hist["epoch"]) == [0]
    pred = infer.predict_split(out / "checkpoint.pt", [stores["store"]], stores["man"], stores["split"],
                               split="test", device="cpu")
    sg = pred[pred["task"] == "space_group"]
    from rhosym.store import read_store

    a, attrs = read_store(stores["store"], ["found"])
    found = dict(zip(attrs["ids"], a["found"].astype(str)))
    assert len(sg) > 0 and all(found[i] == p for i, p in zip(sg["id"], sg["y_pred"]))  # its answer, verbatim


@pytest.mark.parametrize("model", ["symops", "periodic_cnn"])
def test_the_learned_models_train(stores, model):
    small = {"symops": {"hidden": [16]}, "periodic_cnn": {"channels": [4, 8], "strides": [2, 2], "head": [8]}}
    out, summary = _train(stores, model, model=small[model])
    assert summary["epochs_run"] == 2 and (out / "checkpoint.pt").exists()
    assert np.isfinite(pd.read_csv(out / "history.csv")["train_loss"]).all()


def test_the_periodic_cnn_ignores_grid_step_origin_shifts():
    from rhosym.models import build_model

    torch.manual_seed(0)
    net = build_model("periodic_cnn", 230, False, 13, {"channels": [4, 8, 8], "strides": [1, 2, 1], "head": [8],
                                                       "dropout": 0.0}).eval()
    g = torch.randn(2, 1, 24, 24, 24)
    lat = torch.randn(2, 13)
    with torch.no_grad():
        a = net({"grid": g, "lattice": lat})
        b = net({"grid": torch.roll(g, shifts=(6, 12, 18), dims=(2, 3, 4)), "lattice": lat})
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_predict_with_the_classical_finder_needs_no_checkpoint(tmp_path, capsys):
    """`rhosym predict FILE --model classical`: the answer, the operations found with their agreement."""
    import json

    from pymatgen.core import Lattice, Structure

    from rhosym.cli import main

    cif = tmp_path / "rutile.cif"
    Structure.from_spacegroup(136, Lattice.tetragonal(4.59, 2.96), ["Ti", "O"],
                              [[0, 0, 0], [0.305, 0.305, 0]]).to(filename=str(cif))
    assert main(["predict", str(cif), "--model", "classical"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["prediction"] == "136" and r["symbol"] == "P4_2/mnm" and r["symmetry_finder"] is False
    assert len(r["symops"]["operations"]) == 16 and r["symops"]["consistent"]
