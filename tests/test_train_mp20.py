"""Slow, real data: the training loss falls on a small MP-20 subset, inputs built by the package stages
(ingest → split → graphs) exactly as the rules build them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

MP20 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp20_public" / "mp20_public.csv"


@pytest.mark.slow
@pytest.mark.shared
def test_cgcnn_loss_falls_on_mp20_subset(tmp_path):
    if not MP20.is_file():
        pytest.skip(f"../shared/data is absent: {MP20} not found")
    ingest = pytest.importorskip("rhosym.ingest")
    graphs = pytest.importorskip("rhosym.graphs")
    from rhosym import infer, splits
    from rhosym import train as T

    ds_cfg = {"kind": "cdvae_csv", "path": str(MP20)}
    shard = tmp_path / "ingest" / "shard-00000.parquet"
    ingest.ingest_shard("mp20", ds_cfg, 0, 80, None, None, shard)
    man = ingest.build_manifest([shard], tmp_path / "manifest.parquet")
    split = splits.make_split(man, (0.7, 0.15, 0.15), seed=42, group_by="none")
    split.to_parquet(tmp_path / "split.parquet", index=False)
    store = tmp_path / "graphs" / "cgcnn" / "shard-00000.zarr"
    graphs.run_graphs_shard(shard, store, "cgcnn", {"disorder": "average"})

    out = tmp_path / "model"
    cfg = {"epochs": 6, "lr": 3e-3, "patience": 0, "device": "cpu", "batch_budget": 400, "max_batch_size": 16,
           "scheduler": "cosine", "models": {"cgcnn": {"model": {"atom_fea_len": 32, "h_fea_len": 64, "n_conv": 2}}}}
    T.train_model("cgcnn", "formation_energy", "graph", 1, [store], tmp_path / "manifest.parquet",
                  tmp_path / "split.parquet", out, cfg, seed=0, dataset="mp20")
    hist = pd.read_csv(out / "history.csv")
    print(hist.to_string())
    assert len(hist) == 6
    assert hist["train_loss"].iloc[-2:].mean() < 0.8 * hist["train_loss"].iloc[0]
    df = infer.predict_split(out / "checkpoint.pt", [store], man, split, device="cpu")
    n_test = (split["split"] == "test").sum()
    assert 0 < len(df) <= n_test
    mae = np.abs(df["y_true"] - df["y_pred"]).mean()
    # better than predicting the training mean
    tr = man.set_index("id").loc[split.query("split == 'train'")["id"], "formation_energy"].mean()
    assert mae < np.abs(df["y_true"] - tr).mean()
