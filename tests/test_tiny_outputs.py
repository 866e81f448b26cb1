"""Checks on what the tiny-fixture DAG wrote (`make tiny` runs this file after the DAG).

Skipped when results/tiny is absent (run `make tiny` first).
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym import layout as L
from rhosym import registry as R
from rhosym.settings import layered, parse_config
from rhosym.store import read_attrs
from rhosym.workflow import expand_experiments, expand_transfers
from tests.conftest import ROOT

TINY = Path(os.environ.get("RHOSYM_TINY_RESULTS", ROOT / "results" / "tiny"))
pytestmark = pytest.mark.skipif(not (TINY / "synthetic" / "manifest.parquet").exists(),
                                reason=f"{TINY} has no tiny-DAG outputs (run `make tiny`)")


@pytest.fixture(scope="module")
def config():
    return parse_config(layered([ROOT / "config.tiny.yaml"], base=ROOT / "config.yaml"))


def test_every_input_is_in_a_manifest_with_a_status(config):
    from rhosym.shards import list_units

    for ds, d in config.datasets.items():
        m = pd.read_parquet(TINY / ds / "manifest.parquet")
        assert set(m["status"]) <= {"ok", "rejected"}
        assert (m.loc[m["status"] == "rejected", "reason"].str.len() > 0).all()
        if d.kind != "cif_dir":  # a CIF file may hold several blocks
            assert len(m) == len(list_units(d)), ds
        assert (m.loc[m["status"] == "ok", "cell"] == d.resolved_cell).all()
    cif = pd.read_parquet(TINY / "cif_tiny" / "manifest.parquet").set_index("id")
    assert cif.loc["bad_unparsable", "status"] == "rejected"
    assert cif.loc["NaCl_cubic", "space_group"] == 225
    assert {"two_blocks:Si_diamond", "two_blocks:W_bcc"} <= set(cif.index)
    report = pd.read_csv(TINY / "cif_tiny" / "ingest_report.csv")
    assert "declared space group equals spglib's" in set(report["reason"])


def test_split_covers_ok_rows_once(config):
    for ds in config.datasets:
        m = pd.read_parquet(TINY / ds / "manifest.parquet")
        s = pd.read_parquet(TINY / L.SPLIT.format(ds=ds, split=config.primary_split(ds)))
        assert sorted(s["id"]) == sorted(m.loc[m["status"] == "ok", "id"])
        assert set(s["split"]) <= {"train", "val", "test"}


def test_density_stores_count_electrons():
    for store in sorted(TINY.glob("*/density/shard-*.zarr")):
        attrs = read_attrs(store)
        assert attrs["counts"]["ok"] == len(attrs["ids"])
    a = read_attrs(TINY / "mp_tiny" / "samples" / "grid" / "shard-00000.zarr")
    assert a["channels"] == ["total", "magnetization", "up", "down"]
    assert np.allclose(a["n_electrons"], np.round(a["n_electrons"]), atol=1e-4)  # valence counts are integers


def test_every_experiment_trained_and_predicted(config):
    exps = expand_experiments(config)
    assert {e.model for e in exps} == {"lattice", "lattice_sym", "lattice_gbm", "sparse_cnn", "pointnet", "xrd_fcn", "cgcnn", "cogn",
                                       "classical", "symops", "periodic_cnn"}
    assert any(e.fraction < 1 for e in exps)  # a learning-curve point
    assert any(e.augment for e in exps)  # a named augmentation, tested plain and transformed
    for e in exps:
        hist = pd.read_csv(TINY / e.dataset / "models" / e.path / "history.csv")
        # the classical finder (nothing trained) and the boosted control (trees, no epochs): one row, epoch 0
        fit_free = R.MODELS[e.model].fit_free or R.MODELS[e.model].boosted
        assert len(hist) >= 1 and (hist["train_loss"].notna().all() or (fit_free and list(hist["epoch"]) == [0]))
        job = json.loads((TINY / e.dataset / "models" / e.path / "job.json").read_text())  # rhosym train runs it
        assert job["model"] == e.model and job["seed"] == e.seed
        assert job["cfg"]["augment"]["origin_shift"] == ("shift" in e.augment)  # named, or off
        pred = pd.read_parquet(TINY / e.dataset / "predictions" / f"{e.path}.parquet")
        split = pd.read_parquet(TINY / L.SPLIT.format(ds=e.dataset, split=e.split))
        assert set(pred["id"]) <= set(split.loc[split["split"] == "test", "id"])
        assert len(pred) > 0 and set(pred["task"]) == set(e.answers)
    for t in expand_transfers(config):
        pred = pd.read_parquet(TINY / t.target / "predictions" / t.experiment.model / t.experiment.task /
                               f"{t.variant}.parquet")
        assert set(pred["trained_on"]) == {t.experiment.dataset} and set(pred["dataset"]) == {t.target}


def test_metrics_on_one_common_test_set_with_the_lattice_control(config):
    cls = pd.read_csv(TINY / "synthetic" / "metrics" / "classification.csv")
    for _, g in cls.groupby(["split", "task"]):
        assert g["n"].nunique() == 1  # every compared model is scored on the same test ids
        assert g["control"].any() and np.isfinite(g["margin_lattice_pp"]).all()
    assert cls["top1"].between(0, 1).all() and (cls["top5"] >= cls["top1"] - 1e-12).all()
    assert (cls["n_seeds"].max() == 2) and {"top1_sd", "top1_lo", "top1_hi"} <= set(cls.columns)
    reg = pd.read_csv(TINY / "mp_tiny" / "metrics" / "regression.csv")
    assert {"mae", "rmse", "r2", "mae_lo", "mae_hi", "margin_lattice"} <= set(reg.columns) and (reg["mae"] >= 0).all()
    names = [n for n in __import__("rhosym.registry").registry.FIGURES if n != "tables"]
    for name in names:
        for ext in ("png", "pdf"):
            assert (TINY / "figures" / f"{name}.{ext}").stat().st_size > 1000, name
    rob = pd.read_csv(TINY / "synthetic" / "metrics" / "robustness.csv")
    assert {"noise", "blur", "wedge", "thermal", "lattice_noise"} <= set(rob["perturbation"])
