"""Checks on what the tiny-fixture DAG wrote (`make tiny` runs this file after the DAG).

Skipped when results/tiny is absent (run `make tiny` first).
"""

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rhosym.store import read_attrs
from rhosym.workflow import expand_experiments
from tests.conftest import ROOT

TINY = Path(os.environ.get("RHOSYM_TINY_RESULTS", ROOT / "results" / "tiny"))
pytestmark = pytest.mark.skipif(not (TINY / "synthetic" / "manifest.parquet").exists(),
                                reason=f"{TINY} has no tiny-DAG outputs (run `make tiny`)")


@pytest.fixture(scope="module")
def config():
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    base.update(yaml.safe_load((ROOT / "config.tiny.yaml").read_text()))
    return base


def test_every_input_is_in_a_manifest_with_a_status(config):
    from rhosym.shards import list_units

    for ds, cfg in config["datasets"].items():
        m = pd.read_parquet(TINY / ds / "manifest.parquet")
        assert set(m["status"]) <= {"ok", "rejected"}
        assert (m.loc[m["status"] == "rejected", "reason"].str.len() > 0).all()
        if cfg["kind"] != "cif_dir":  # a CIF file may hold several blocks
            assert len(m) == len(list_units(cfg)), ds
    cif = pd.read_parquet(TINY / "cif_tiny" / "manifest.parquet").set_index("id")
    assert cif.loc["bad_unparsable", "status"] == "rejected"
    assert cif.loc["NaCl_cubic", "space_group"] == 225
    assert {"two_blocks:Si_diamond", "two_blocks:W_bcc"} <= set(cif.index)


def test_split_covers_ok_rows_once(config):
    for ds in config["datasets"]:
        m = pd.read_parquet(TINY / ds / "manifest.parquet")
        s = pd.read_parquet(TINY / ds / "split.parquet")
        assert sorted(s["id"]) == sorted(m.loc[m["status"] == "ok", "id"])
        assert set(s["split"]) <= {"train", "val", "test"}


def test_density_stores_count_electrons():
    import numpy as np

    for store in sorted(TINY.glob("*/density/shard-*.zarr")):
        attrs = read_attrs(store)
        assert attrs["counts"]["ok"] == len(attrs["ids"])
    a = read_attrs(TINY / "mp_tiny" / "samples" / "grid" / "shard-00000.zarr")
    assert a["channels"] == ["total", "magnetization", "up", "down"]
    assert np.allclose(a["n_electrons"], np.round(a["n_electrons"]), atol=1e-4)  # valence counts are integers


def test_every_experiment_trained_and_predicted(config):
    exps = expand_experiments(config)
    assert {e.model for e in exps} == {"sparse_cnn", "pointnet", "xrd_fcn", "cgcnn", "cogn"}
    for e in exps:
        hist = pd.read_csv(TINY / e.dataset / "models" / e.path / "history.csv")
        assert len(hist) >= 1 and hist["train_loss"].notna().all()
        pred = pd.read_parquet(TINY / e.dataset / "predictions" / f"{e.path}.parquet")
        split = pd.read_parquet(TINY / e.dataset / "split.parquet")
        assert set(pred["id"]) <= set(split.loc[split["split"] == "test", "id"])
        assert len(pred) > 0


def test_metrics_tables_and_figures_exist(config):
    cls = pd.read_csv(TINY / "synthetic" / "metrics" / "classification.csv")
    assert len(cls) == sum(1 for e in expand_experiments(config) if e.dataset == "synthetic")
    assert cls["top1"].between(0, 1).all() and (cls["top5"] >= cls["top1"]).all()
    reg = pd.read_csv(TINY / "mp_tiny" / "metrics" / "regression.csv")
    assert {"mae", "rmse", "r2"} <= set(reg.columns) and (reg["mae"] >= 0).all()
    for name in ("fig3", "fig4", "fig4_supp", "figS7", "figS8", "figS11"):
        for ext in ("png", "pdf"):
            assert (TINY / "figures" / f"{name}.{ext}").stat().st_size > 1000
