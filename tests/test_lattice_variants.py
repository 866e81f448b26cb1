"""Lattice-conditioned networks (``experiments[].lattice``, variant ``-lat``, ``<model>+lattice``;
rhosym.conditioning): names, the head's width, a tiny training of each of the five networks through the
trainer, a checkpoint round trip through ``rhosym predict``, the config error on models that read the
lattice already, and the default (off)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym import layout as L
from rhosym import registry as R
from rhosym import settings as S
from rhosym import workflow as W
from tests.conftest import TINY_MODELS as TINY

ROOT = Path(__file__).resolve().parents[1]
CIF = ROOT / "tests" / "fixtures" / "cif_tiny"


FIVE = ("sparse_cnn", "pointnet", "xrd_fcn", "cgcnn", "cogn")


def _cfg(extra: dict) -> S.Config:
    return S.parse_config(S.merge(S.load_yaml(ROOT / "config.yaml"), extra))


# ------------------------------------------------------------------------------------------ names
def test_variant_and_display_name():
    v = L.variant("grid", 1, "formula", 0, lattice=True)
    assert v == "grid-f1-lat-formula-s0"
    assert L.parse_variant(v)["lattice"] and not L.parse_variant("grid-f1-formula-s0")["lattice"]
    assert L.parse_variant(L.variant("grid", 1, "formula", 2, fraction=0.25, lattice=True, augment="shift"))[
        "lattice"]
    assert L.is_lattice(L.group_of(v)) and not L.is_lattice("grid-f1-formula")
    assert R.model_display("sparse_cnn", lattice=True) == "Sparse 3D CNN+lattice"
    assert R.model_display("cogn") == "coGN"
    assert set(R.LATTICE_MODELS) == set(FIVE)

    from rhosym.evaluate import variant_label
    from rhosym.figures import _variant_labels, main_rows

    assert variant_label({"model": "cogn", "group": "cogn-f1-lat-formula"}) == "cogn+lattice"
    rows = pd.DataFrame([
        {"dataset": "d", "split": "formula", "task": "space_group", "model": m, "trained_task": "space_group",
         "input": "grid", "features": 1, "group": g}
        for m, g in (("sparse_cnn", "grid-f1-formula"), ("sparse_cnn", "grid-f1-lat-formula"),
                     ("sparse_cnn", "grid-f1-lat-ashift-formula"))])
    shown = main_rows(rows)
    assert sorted(shown["group"]) == ["grid-f1-formula", "grid-f1-lat-formula"]  # a row of its own, plain first
    assert sorted(_variant_labels(shown)) == ["Sparse 3D CNN\n(grid)", "Sparse 3D CNN+lattice\n(grid)"]


def test_experiments_expand_with_the_lattice_axis_and_the_train_job_carries_it():
    cfg = _cfg({"experiments": [{"datasets": ["synthetic"], "models": ["sparse_cnn", "cogn"], "tasks": ["symmetry"],
                                 "lattice": [False, True], "seeds": [0]}]})
    exps = W.expand_experiments(cfg)
    assert sorted(e.variant for e in exps if e.model == "cogn") == ["cogn-f1-formula-s0", "cogn-f1-lat-formula-s0"]
    lat = [e for e in exps if e.lattice]
    assert len(lat) == 2 and all(L.LATTICE_TAG in e.variant for e in lat)
    assert cfg.train_params("cogn", "symmetry", lattice=True).with_lattice
    assert not cfg.train_params("cogn", "symmetry").with_lattice


def test_robustness_evaluates_the_lattice_variants_unless_told_not_to():
    plain = _cfg({"experiments": [{"datasets": ["synthetic"], "models": ["sparse_cnn", "lattice"],
                                   "tasks": ["symmetry"], "seeds": [0]},
                                  {"datasets": ["synthetic"], "models": ["sparse_cnn"], "tasks": ["symmetry"],
                                   "lattice": [True], "seeds": [0]}],
                  "robustness": {"models": ["sparse_cnn", "lattice"], "tasks": ["symmetry"]}})
    exps = W.expand_experiments(plain)
    assert sorted(e.variant for e in W.robust_experiments(plain, exps)) == [
        "grid-f1-formula-s0", "grid-f1-lat-formula-s0", "lattice-f1-formula-s0"]
    plain.robustness.lattice_conditioned = False
    assert sorted(e.variant for e in W.robust_experiments(plain, exps)) == ["grid-f1-formula-s0",
                                                                             "lattice-f1-formula-s0"]


# ------------------------------------------------------------------------------------------ default and errors
def test_default_is_off_the_demo_trains_no_lattice_variant():
    cfg = S.parse_config(S.load_yaml(ROOT / "config.yaml"))
    assert all(b.lattice == [False] for b in cfg.experiments)
    exps = W.expand_experiments(cfg)
    assert exps and not any(e.lattice or L.LATTICE_TAG in e.variant for e in exps)
    assert not any(cfg.train_params(e.model, e.task).with_lattice for e in exps)
    assert S.ExperimentBlock(models=["cogn"], tasks=["symmetry"]).lattice == [False]


@pytest.mark.parametrize("model", ["lattice", "lattice_sym", "symops", "periodic_cnn", "classical"])
def test_models_that_read_the_lattice_refuse_the_option(model):
    with pytest.raises(S.ConfigError) as err:
        _cfg({"experiments": [{"datasets": ["synthetic"], "models": [model], "tasks": ["symmetry"],
                               "lattice": [True]}]})
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "experiments[0].lattice" in msg and model in msg
    with pytest.raises(ValueError, match="holds the cell"):
        S.train_params(model, "symmetry", {"with_lattice": True})
    pytest.importorskip("rhosym.models")
    from rhosym.models import build_model

    with pytest.raises(ValueError, match="no lattice features"):
        build_model(model, 230, False, 13, {}, in_lattice=13)


# ------------------------------------------------------------------------------------------ networks
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    pytest.importorskip("rhosym.models")
    from tests.test_train_fixtures import (
        write_density_stores,
        write_graph_stores,
        write_lattice_shards,
        write_manifest_split,
        write_xrd_stores,
    )

    root = tmp_path_factory.mktemp("lat")
    man, sp = write_manifest_split(root, 18)
    ids = man["id"].tolist()
    return {"man": man, "split": sp, "root": root, "density": write_density_stores(root, ids),
            "xrd": write_xrd_stores(root, ids), "cgcnn": write_graph_stores(root, ids, "cgcnn"),
            "cogn": write_graph_stores(root, ids, "cogn"), "ingest": write_lattice_shards(root, ids)}


@pytest.mark.parametrize("model", FIVE)
def test_head_grows_by_the_lattice_features(model, stores):
    import torch

    from rhosym import conditioning as K
    from rhosym.models import build_model

    def n_head_inputs(net):
        first = net.hidden[0] if model == "cgcnn" else net.out if model == "xrd_fcn" else net.head[0]
        return first.weight.shape[1]

    in_features = 92 if model in ("cgcnn", "cogn") else 1
    plain = build_model(model, 7, False, in_features, TINY[model])
    lat = build_model(model, 7, False, in_features, TINY[model], in_lattice=K.WIDTH)
    assert K.WIDTH == 41 and n_head_inputs(lat) == n_head_inputs(plain) + 41  # lattice_sym's features
    assert lat.in_lattice == 41 and plain.in_lattice == 0
    if model == "xrd_fcn":  # the plain network is unchanged: its weights load into a fresh one
        build_model(model, 7, False, 1, TINY[model]).load_state_dict(plain.state_dict())
    from rhosym.models.common import with_lattice

    with pytest.raises(ValueError, match="lattice_features"):
        with_lattice(torch.zeros(2, 4), {}, 13)


@pytest.mark.parametrize("model,task", [("sparse_cnn", "space_group"), ("pointnet", "symmetry"),
                                        ("xrd_fcn", "crystal_system"), ("cgcnn", "band_gap"),
                                        ("cogn", "crystal_system")])
def test_tiny_training_and_prediction_of_each_network(model, task, stores):
    import torch

    from rhosym import checkpoint as C
    from rhosym import conditioning as K
    from rhosym import infer
    from rhosym import models as M
    from rhosym import train as T

    torch.set_num_threads(1)
    kind = M.INPUT_KIND[model]
    out = stores["root"] / "models" / model / task
    cfg = S.train_params(model, task, {"epochs": 1, "batch_budget": 400, "max_batch_size": 4,
                                       "model": TINY[model], "with_lattice": True})
    job = T.TrainJob(model=model, task=task, input={"density": "grid"}.get(kind, kind), stores=stores[kind],
                     manifest=str(stores["root"] / "manifest.parquet"), split=str(stores["root"] / "split.parquet"),
                     out_dir=out, cfg=cfg, dataset="toy", device="cpu", lattice_stores=stores["ingest"])
    T.train(job)
    meta = C.load(out / "checkpoint.pt")["meta"]
    assert meta.train_config["with_lattice"] is True
    train_ids = stores["split"].loc[stores["split"]["split"] == "train", "id"].astype(str).tolist()
    table = K.CellTable(stores["ingest"])
    f = np.stack([np.asarray(K.SOURCE.prepare({"lattice": table[i]}, 1, None)["lattice"]) for i in train_ids])
    n = len(K.PLAIN_FEATURES)  # the metric-symmetry one-hot is left as it is (mean 0, std 1)
    np.testing.assert_allclose(meta.lattice["mean"][:n], f[:, :n].mean(0), rtol=1e-5)  # TRAINING statistics
    assert meta.lattice["mean"][n:] == [0.0] * (K.WIDTH - n)
    assert meta.lattice["n_structures"] == len(train_ids) and len(meta.lattice["features"]) == 41
    model_, m = infer.load_checkpoint(out / "checkpoint.pt", "cpu")
    assert model_.in_lattice == 41
    df = infer.predict_split((model_, m), stores[kind], stores["man"], stores["split"], lattice_stores=stores["ingest"])
    assert len(df) == (stores["split"]["split"] == "test").sum() * len(meta.answers)
    with pytest.raises(ValueError, match="lattice_stores"):
        infer.predict_split((model_, m), stores[kind], stores["man"], stores["split"])
    # the job file carries the ingest shards; without them the trainer refuses
    job.to_json(out / "job.json")
    assert T.TrainJob.from_json(out / "job.json").lattice_stores == stores["ingest"]
    with pytest.raises(ValueError, match="ingest shards"):
        T.train(T.TrainJob(model=model, task=task, input=job.input, stores=stores[kind], manifest=stores["man"],
                           split=stores["split"], out_dir=out / "no_lattice", cfg=cfg, device="cpu"))


def test_lattice_features_change_the_answer(stores):
    """The head reads the features: the same density with another cell gives another output."""
    import torch

    from rhosym import conditioning as K
    from rhosym.models import build_model, collate

    torch.manual_seed(0)
    net = build_model("pointnet", 7, False, 1, TINY["pointnet"], in_lattice=K.WIDTH).eval()
    from rhosym import inputs
    from rhosym.inputs.base import ReadOptions

    g = inputs.kind("density").open(stores["density"][0])
    raw = inputs.kind("density").read(inputs.kind("density").reader(g), 0, ReadOptions())
    prepared = inputs.kind("density").prepare(raw, 1, None)
    norm = K.fit(K.CellTable(stores["ingest"]), stores["man"]["id"].tolist())
    a = K.attach(prepared, [4, 4, 4, 90, 90, 90], norm)
    b = K.attach(prepared, [4, 4, 7, 90, 90, 120], norm)
    with torch.no_grad():
        ya, yb = net(collate("pointnet", [a])), net(collate("pointnet", [b]))
    assert not torch.allclose(ya, yb)


def test_features_carry_the_metric_symmetry_and_old_checkpoints_still_read(stores):
    """The +lattice features are the strengthened control's: the lattice's Bravais type (cell alone) is in
    them, so a cubic cell and a 1 % tetragonal strain of it differ in the one-hot at the tight tolerance
    only; a checkpoint standardized on the 13 plain features (before) still gets those 13."""
    from rhosym import conditioning as K
    from rhosym.inputs.lattice import FEATURES as PLAIN
    from rhosym.inputs.lattice_sym import BRAVAIS

    norm = K.fit(K.CellTable(stores["ingest"]), stores["man"]["id"].tolist())
    assert norm["features"] == list(K.FEATURES) and len(norm["features"]) == K.WIDTH == 41
    cubic, strained = K.features([4, 4, 4, 90, 90, 90], norm), K.features([4, 4, 4.04, 90, 90, 90], norm)
    n, nb = len(PLAIN), len(BRAVAIS)
    assert cubic[n + BRAVAIS.index("cP")] == 1 and strained[n + BRAVAIS.index("tP")] == 1  # tight tolerance
    assert cubic[n + nb + BRAVAIS.index("cP")] == strained[n + nb + BRAVAIS.index("cP")] == 1  # loose
    old = {"features": list(PLAIN), "mean": [0.0] * n, "std": [1.0] * n}
    plain = K.features([4, 4, 4, 90, 90, 90], old)
    assert plain.shape == (n,)
    np.testing.assert_allclose(plain, K.LATTICE.prepare({"lattice": np.array([4, 4, 4, 90, 90, 90.0])}, 1,
                                                        None)["lattice"])


# ------------------------------------------------------------------------------------------ predict round trip
def test_checkpoint_round_trip_through_predict(tmp_path, capsys):
    """A +lattice XRD FCN trained on stores made from the CIF fixtures: ``rhosym predict`` on the CIFs rebuilds
    the cell (the checkpoint's preparation of the structure) and gives what the test-split predictor gives."""
    pytest.importorskip("rhosym.models")
    import torch

    from rhosym import cli, infer
    from rhosym import predict as P
    from rhosym import train as T
    from rhosym.conditioning import CELL
    from rhosym.ingest import ingest_shard
    from rhosym.shards import list_units
    from rhosym.xrd import run_xrd_shard

    torch.set_num_threads(1)
    ds = {"kind": "cif_dir", "path": str(CIF)}
    ingest = tmp_path / "ingest.parquet"
    frame = ingest_shard("cif", ds, 0, list_units(ds), None, None, ingest)
    run_xrd_shard(ingest, tmp_path / "xrd.zarr")
    man = frame[frame["status"] == "ok"].drop(columns=["structure"])
    ids = man["id"].tolist()
    split = pd.DataFrame({"id": ids, "split": ["val" if i % 3 == 0 else "train" for i in range(len(ids))]})
    cfg = S.train_params("xrd_fcn", "space_group", {"epochs": 1, "max_batch_size": 8, "model": TINY["xrd_fcn"],
                                                    "with_lattice": True})
    out = tmp_path / "model"
    T.train(T.TrainJob(model="xrd_fcn", task="space_group", input="xrd", stores=[str(tmp_path / "xrd.zarr")],
                       manifest=man, split=split, out_dir=out, cfg=cfg, dataset="cif", device="cpu",
                       provenance={"kind": "cif_dir", "cell": "conventional", "labels": {}, "ingest": {}},
                       lattice_stores=[str(ingest)]))
    ckpt = out / "checkpoint.pt"
    model, meta = infer.load_checkpoint(ckpt, "cpu")
    s = P.resolve_settings(meta)
    assert s.lattice
    units = {u.uid: u for u in P.read_inputs(sorted(CIF.glob("*.cif")))}
    rows = man.set_index("id")
    for sid in ids:  # the cell predict rebuilds is the ingest cell of the structure
        got, _ = P.preprocess(units[sid], s)
        np.testing.assert_allclose(got[CELL], rows.loc[sid, ["a", "b", "c", "alpha", "beta", "gamma"]].to_numpy(
            float), rtol=1e-9, atol=1e-9)
    ref = infer.predict_split((model, meta), [str(tmp_path / "xrd.zarr")], man, split, split="val",
                              lattice_stores=[str(ingest)]).set_index("id")
    rc = cli.main(["predict", *map(str, sorted(CIF.glob("*.cif"))), "--model", str(ckpt), "--device", "cpu",
                   "--top-k", "5"])
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert rc == 0
    by_id = {r["id"]: r for r in recs if "error" not in r}
    assert set(ref.index) <= set(by_id)
    for sid, r in ref.iterrows():
        assert by_id[sid]["prediction"] == r["y_pred"]
        np.testing.assert_allclose([e["probability"] for e in by_id[sid]["top_k"]], r["topk_prob"], rtol=1e-4)
    # robustness rebuilds the same inputs (the unperturbed strength gives the stored inputs' answers)
    from rhosym import robustness as RB

    val = ref.index.tolist()
    common = pd.DataFrame({"split": "formula", "task": "space_group", "id": val})
    as_test = split.assign(split=split["split"].replace({"val": "test"}))
    df = RB.evaluate_perturbed(str(ckpt), man, as_test, [str(ingest)], common, ["xrd_noise"],
                               {"xrd_noise": [0.0, 0.05]}, device="cpu", identity={"split": "formula"})
    clean = df[(df["order"] == 0) & (df["task"] == "space_group")].set_index("id")
    assert sorted(clean.index) == sorted(val)
    for sid, r in ref.iterrows():
        assert clean.loc[sid, "correct"] == (r["y_pred"] == r["y_true"])
