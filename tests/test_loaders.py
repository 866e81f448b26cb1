import numpy as np
import pandas as pd
import pytest

from rhosym import loaders as L
from rhosym.inputs import density as D
from tests.test_train_fixtures import (
    write_density_stores,
    write_graph_stores,
    write_manifest_split,
    write_xrd_stores,
)


def test_pack_batches_budget_and_max_size():
    sizes = [5, 5, 5, 30, 2, 2, 2, 2, 2]
    batches = L.pack_batches(sizes, range(len(sizes)), budget=12, max_batch_size=3)
    assert batches == [[0, 1], [2], [3], [4, 5, 6], [7, 8]]
    # every sample exactly once; every multi-sample batch within the budget and the size cap
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or sum(sizes[i] for i in b) <= 12


def test_budget_sampler_shuffles_with_seed_and_epoch(caplog):
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 100, 200)
    sizes[7] = 1000  # above the budget: its own batch, logged
    with caplog.at_level("WARNING", logger="rhosym.loaders"):
        s = L.BudgetBatchSampler(sizes, budget=300, max_batch_size=16, seed=3)
    assert "above the batch budget" in caplog.text
    b1 = list(s)
    assert [7] in b1
    assert sorted(i for b in b1 for i in b) == list(range(200))
    assert all(len(b) == 1 or sizes[b].sum() <= 300 for b in b1)
    assert list(L.BudgetBatchSampler(sizes, 300, 16, seed=3)) == b1  # reproducible
    s.set_epoch(1)
    assert list(s) != b1  # reshuffled each epoch
    assert len(s) == len(list(s))
    fixed = L.BudgetBatchSampler(sizes, 300, 16, shuffle=False)
    assert [i for b in fixed for i in b] == list(range(200))


def test_label_encoding():
    man = pd.DataFrame({"id": ["a", "b", "c"], "crystal_system": ["triclinic", "cubic", None],
                        "space_group": [1, 230, None], "extinction_group": [101, 5, 0],
                        "band_gap": [0.5, None, 2.0]})
    assert L.encode_labels(man, "crystal_system").tolist()[:2] == [0.0, 6.0]
    assert np.isnan(L.encode_labels(man, "crystal_system")["c"])
    assert L.encode_labels(man, "space_group").tolist()[:2] == [0.0, 229.0]
    eg = L.encode_labels(man, "extinction_group")
    assert eg["a"] == 100.0 and np.isnan(eg["c"])
    assert L.label_values("space_group")[229] == "230"
    assert L.label_values("crystal_system")[6] == "cubic"
    assert L.n_outputs("extinction_group") == 101 and L.n_outputs("band_gap") == 1


def test_items_skip_counts_and_density_stats_from_train_only(tmp_path):
    man, sp = write_manifest_split(tmp_path, 24)
    ids = man["id"].tolist()
    skip = ("s004", "s005")
    paths = write_density_stores(tmp_path, ids, shard_size=10, skip=skip)
    labels = L.encode_labels(man, "crystal_system")
    train_ids = sp.loc[sp.split == "train", "id"].tolist()
    items = L.build_items(train_ids, labels, paths, "density", name="train")
    n_skipped = sum(i in skip for i in train_ids)
    assert len(items) == len(train_ids) - n_skipped
    assert items.skipped["not_in_store"] == n_skipped
    ds = L.StoreDataset(items, "density", 1)
    stats = ds.fit_norm(max_structures=1000, seed=0)
    # against a direct computation over the training structures only
    vals = np.concatenate([np.log1p(ds.raw(i)["features"][:, 0]) for i in range(len(ds))])
    assert stats["mean"][0] == pytest.approx(vals.mean(), rel=1e-6)
    assert stats["std"][0] == pytest.approx(vals.std(), rel=1e-5)
    assert stats["n_points"] == len(vals)
    ds.norm = stats
    f = np.concatenate([ds[i]["sample"]["features"][:, 0] for i in range(len(ds))])
    assert abs(f.mean()) < 1e-4 and f.std() == pytest.approx(1.0, rel=1e-4)
    s = ds[0]["sample"]
    assert s["xyz"].dtype == np.float32 and s["voxels"].dtype == np.int32 and s["xyz"].shape[1] == 3
    assert list(s["spatial_shape"]) == [16, 16, 16]
    sz = L.index_stores(paths, "density")[1]
    assert items.size[0] == sz[items.store[0]][items.row[0]] == len(s["xyz"])


def test_four_features_need_four_channels(tmp_path):
    man, sp = write_manifest_split(tmp_path, 6)
    p1 = write_density_stores(tmp_path / "one", man["id"].tolist(), channels=1)
    items = L.build_items(man["id"].tolist(), L.encode_labels(man, "crystal_system"), p1, "density")
    with pytest.raises(ValueError, match="4 density features"):
        L.StoreDataset(items, "density", 4)[0]
    p4 = write_density_stores(tmp_path / "four", man["id"].tolist(), channels=4)
    items4 = L.build_items(man["id"].tolist(), L.encode_labels(man, "crystal_system"), p4, "density")
    ds = L.StoreDataset(items4, "density", 4)
    stats = ds.fit_norm(500, 0)
    assert stats["channels"] == ["total", "magnetization", "up", "down"]
    raw = ds.raw(0)["features"]
    # magnetization: sign-preserving asinh
    t = D.transform_values(raw)
    assert np.allclose(t[:, 1], np.arcsinh(raw[:, 1] / D.MAGNETIZATION_SCALE))
    assert np.all(np.sign(t[:, 1]) == np.sign(raw[:, 1]))


def test_xrd_and_graph_items(tmp_path):
    man, sp = write_manifest_split(tmp_path, 8)
    ids = man["id"].tolist()
    lab = L.encode_labels(man, "crystal_system")
    xp = write_xrd_stores(tmp_path, ids, shard_size=5)
    ds = L.StoreDataset(L.build_items(ids, lab, xp, "xrd"), "xrd")
    assert ds[0]["sample"]["pattern"].shape == (8192,) and ds[0]["sample"]["pattern"].dtype == np.float32
    gp = write_graph_stores(tmp_path, ids, "cogn", shard_size=5)
    items = L.build_items(ids, lab, gp, "cogn")
    ds = L.StoreDataset(items, "cogn")
    s = ds[6]["sample"]
    assert set(s) == {"atom_fea", "node_weight", "edge_index", "edge_dist", "edge_vec"}
    assert s["edge_index"].dtype == np.int64 and s["edge_index"].max() < len(s["atom_fea"])
    assert items.size[6] == len(s["atom_fea"]) and len(s["edge_dist"]) == 3 * len(s["atom_fea"])
