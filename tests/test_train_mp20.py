"""Slow, real data: every model's training loss falls on a small MP-20 subset.

The inputs are built once per module by the package stages, as the rules build them: ingest → manifest
→ split, then cgcnn/coGN graphs (``rhosym.graphs``), XRD patterns (``rhosym.xrd``) and grid samples of
dense densities (``rhosym.density`` + ``rhosym.sampling``, at a coarse spacing and voxel, with a blur
so that the coarse grid still integrates to the electron count). Each model trains a few epochs with
small widths and one torch thread (through the trainer the rule runs, ``train.train``) on
crystal-system classification; CGCNN also on formation energy (regression), checked against the
training mean on the test split.

Run with ``-s`` to see the table of first/last training losses.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

MP20 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp20_public" / "mp20_public.csv"
N_ROWS = 100
EPOCHS = 10
DENSITY = {"spacing": 0.3, "blur": 5.0}  # blur (Å²) keeps ∫ρ within tolerance on a 0.3 Å grid
SAMPLE = {"voxel": 0.8, "frame": 64.0}
TRAIN = {"epochs": EPOCHS, "lr": 3e-3, "patience": 0, "max_batch_size": 8, "scheduler": "cosine",
         "augment": {"origin_shift": False, "rotation": False}}  # the test is about fitting the training set
# Per model (train.models.<model>): config.yaml's demo widths (cgcnn, cogn narrower), no dropout (the
# test is about the TRAINING loss), and the batch size / learning rate each needs to fit 70 structures
# within a few epochs (PointNet and the plain 13-layer xrd_fcn want a small lr and small batches, coGN a
# large lr). Margins were checked with training seeds 0-3.
MODELS = {
    "sparse_cnn": {"batch_budget": 40_000,
                   "model": {"channels": [16, 32, 48, 64, 96], "blocks": [0, 1, 1, 1, 1], "head": [64]}},
    "pointnet": {"batch_budget": 40_000, "max_batch_size": 4, "lr": 1e-3,
                 "model": {"channels": [32, 64, 128], "groups": 8, "head": [64, 64], "dropout": 0.0}},
    "xrd_fcn": {"batch_budget": 4, "lr": 1e-3,
                "model": {"channels": [8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64, 32], "dropout": 0.0}},
    "cgcnn": {"batch_budget": 400, "model": {"atom_fea_len": 32, "h_fea_len": 64, "n_conv": 2}},
    "cogn": {"batch_budget": 400, "lr": 1e-2, "model": {"units": 32, "depth": 2}},
    "lattice": {"lr": 1e-2, "model": {"hidden": [64, 64], "dropout": 0.0}},
}
INPUT = {"sparse_cnn": "grid", "pointnet": "grid", "xrd_fcn": "xrd", "cgcnn": "cgcnn", "cogn": "cogn",
         "lattice": "lattice"}


@pytest.fixture(scope="module")
def mp20(tmp_path_factory):
    """Manifest, split and every model's input store for the first ``N_ROWS`` rows of MP-20."""
    if not MP20.is_file():
        pytest.skip(f"../shared/data is absent: {MP20} not found")
    ingest = pytest.importorskip("rhosym.ingest")
    graphs = pytest.importorskip("rhosym.graphs")
    import torch
    import zarr

    from rhosym import density, sampling, splits, xrd
    from rhosym.shards import list_units

    root = tmp_path_factory.mktemp("mp20")
    shard = root / "ingest" / "shard-00000.parquet"
    ds = {"kind": "cdvae_csv", "path": str(MP20)}
    ingest.ingest_shard("mp20", ds, 0, list_units(ds)[:N_ROWS], None, None, shard)
    man = ingest.build_manifest([shard], root / "manifest.parquet")
    split = splits.make_split(man, (0.7, 0.15, 0.15), seed=42, group_by="none")
    split.to_parquet(root / "split.parquet", index=False)
    stores = {}
    for kind in ("cgcnn", "cogn"):
        stores[kind] = root / "graphs" / kind / "shard-00000.zarr"
        graphs.run_graphs_shard(shard, stores[kind], kind, {"disorder": "average"})
    stores["xrd_fcn"] = root / "xrd" / "shard-00000.zarr"
    xrd.run_xrd_shard(shard, stores["xrd_fcn"], {})
    dense = root / "density" / "shard-00000.zarr"
    density.run_density_shard(shard, dense, DENSITY)
    stores["sparse_cnn"] = stores["pointnet"] = root / "samples" / "grid" / "shard-00000.zarr"
    sampling.write_sample_store(dense, stores["sparse_cnn"], "grid", SAMPLE, seed=0)
    stores["lattice"] = shard

    n_ok = int((man["status"] == "ok").sum())
    for name, store in stores.items():  # every stage keeps (almost) every structure
        if name == "lattice":
            continue
        counts = dict(zarr.open_group(str(store), mode="r").attrs["counts"])
        assert counts["ok"] >= 0.9 * n_ok, f"{name}: {counts}"
    threads = torch.get_num_threads()
    results: dict[str, tuple[float, float]] = {}
    yield {"root": root, "man": man, "split": split, "stores": stores, "results": results}
    torch.set_num_threads(threads)
    if results:
        print("\nmp20 train loss (first -> last epoch): " + "; ".join(
            f"{m} {a:.3f} -> {b:.3f} ({b / a:.2f})" for m, (a, b) in results.items()))


def train(mp20, model: str, task: str) -> pd.DataFrame:
    from rhosym import train as T

    out = mp20["root"] / "models" / model / task / f"{INPUT[model]}-f1"
    cfg = {**TRAIN, **MODELS[model]}
    T.train(T.TrainJob(model=model, task=task, input=INPUT[model], stores=[mp20["stores"][model]],
                       manifest=mp20["root"] / "manifest.parquet", split=mp20["root"] / "split.parquet",
                       out_dir=out, cfg=cfg, seed=0, dataset="mp20", threads=1, device="cpu"))
    hist = pd.read_csv(out / "history.csv")
    assert len(hist) == EPOCHS
    assert np.isfinite(hist["train_loss"]).all()
    return hist


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("model", ["sparse_cnn", "pointnet", "xrd_fcn", "cgcnn", "cogn", "lattice"])
def test_crystal_system_loss_falls_on_mp20_subset(mp20, model):
    hist = train(mp20, model, "crystal_system")
    first, last = float(hist["train_loss"].iloc[0]), float(hist["train_loss"].iloc[-1])
    mp20["results"][model] = (first, last)
    print(f"\n{model} crystal_system: train loss {first:.3f} -> {last:.3f} ({last / first:.2f})")
    assert hist["metric"].eq("accuracy").all()
    assert last < 0.8 * first, hist.to_string()


@pytest.mark.slow
@pytest.mark.shared
def test_cgcnn_formation_energy_beats_the_mean_on_mp20_subset(mp20):
    from rhosym import infer

    hist = train(mp20, "cgcnn", "formation_energy")
    first, last = float(hist["train_loss"].iloc[0]), float(hist["train_loss"].iloc[-1])
    mp20["results"]["cgcnn/formation_energy"] = (first, last)
    assert hist["train_loss"].iloc[-2:].mean() < 0.8 * first, hist.to_string()
    man, split, store = mp20["man"], mp20["split"], mp20["stores"]["cgcnn"]
    out = mp20["root"] / "models" / "cgcnn" / "formation_energy" / "cgcnn-f1"
    df = infer.predict_split(out / "checkpoint.pt", [store], man, split, device="cpu")
    n_test = (split["split"] == "test").sum()
    assert 0 < len(df) <= n_test
    mae = np.abs(df["y_true"] - df["y_pred"]).mean()
    # better than predicting the training mean
    tr = man.set_index("id").loc[split.query("split == 'train'")["id"], "formation_energy"].mean()
    mae_mean = np.abs(df["y_true"] - tr).mean()
    print(f"\ncgcnn formation_energy: train loss {first:.3f} -> {last:.3f}; test MAE {mae:.3f} eV/atom "
          f"(training mean: {mae_mean:.3f}, n={len(df)})")
    assert mae < mae_mean
