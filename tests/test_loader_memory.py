"""The memory of a training epoch read from zarr shards does not grow with the data set.

* What a :class:`rhosym.loaders.StoreDataset` keeps of each store it has read: the arrays, not the zarr
  group whose attributes (ids, per-row cells) grow with the rows (measured with ``tracemalloc``).
* A shuffled epoch (``rhosym bench loader``, each run in a fresh process, peak ``VmHWM``) over 2,000 and
  20,000 rows: the peak differs by less than 50 MB (the O(rows) index and item lists, ~0.44 KB a row),
  and what the epoch adds above the index differs by less than 6 MB (the 18 more stores opened would
  add ~12 MB if their groups were kept).
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from rhosym import loaders as L
from rhosym.bench import loader as B
from rhosym.inputs.base import StoreArrays


def _dataset(paths, rows, kind="density", **kw):
    lab = B.labels(rows)
    items = L.build_items(list(lab.index), lab, paths, kind)
    return L.StoreDataset(items, kind, **kw)


def _retained_per_store(ds, n_stores: int, per_store: int) -> float:
    """Bytes (tracemalloc) the dataset keeps after reading one row of each of ``n_stores`` stores."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for k in range(n_stores):
        ds.raw(k * per_store)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n_stores


def test_open_stores_keep_arrays_not_row_attributes(tmp_path):
    rows, n = 4000, 1000
    st = B.write_stores(tmp_path, "density", rows, points=20, shard_size=n)
    ds = _dataset(st["paths"], rows)
    kept = _retained_per_store(ds, 4, n)
    handle = ds._stores[0][0]
    assert isinstance(handle, StoreArrays)
    assert set(handle.attrs) == {"spatial_shape"} and "xyz" in handle
    # a group of 1,000 rows holds ~0.66 MB of attributes; the arrays alone ~15 KB
    assert kept < 60_000, f"{kept / 1e3:.0f} KB kept per open store"

    # the augmentation context keeps the cells as one array (72 bytes a row), not nested lists
    from rhosym.settings import AugmentSettings

    aug = _dataset(st["paths"], rows, augment=AugmentSettings(origin_shift=True, rotation=True))
    kept_aug = _retained_per_store(aug, 4, n)
    assert aug._stores[0][1]["cells"].shape == (n, 3, 3)
    assert kept_aug < kept + 100_000, f"{kept_aug / 1e3:.0f} KB kept per open store with augmentation"
    s = aug[3]["sample"]
    assert s["xyz"].shape[1] == 3 and np.isfinite(s["features"]).all()

    # the same samples as reading the group directly
    g = ds.kind.open(st["paths"][1])
    direct = ds.kind.read(g, 5, L.ReadOptions())
    np.testing.assert_array_equal(ds.raw(n + 5)["xyz"], direct["xyz"])


def test_lattice_stores_keep_only_parameters(tmp_path):
    st = B.write_stores(tmp_path, "lattice", 3000, shard_size=1000)
    ds = _dataset(st["paths"], 3000, kind="lattice")
    ds.raw(1500)
    assert set(ds._stores[1][0]) == {"params"}


@pytest.mark.slow
def test_epoch_memory_flat_between_2k_and_20k_rows(tmp_path):
    """About 35 s on 2 cores: 22,000 rows written, two epochs of 4,000 shuffled samples (every store
    opened), each in a fresh process."""
    runs = {}
    for rows in (2000, 20000):
        st = B.write_stores(tmp_path / str(rows), "density", rows, points=50, chunk_points=4096)
        runs[rows] = B.measure({"kind": "density", "paths": st["paths"], "rows": rows, "workers": 0,
                                "limit": 4000}, tmp_path, timeout=120)
    small, large = runs[2000], runs[20000]
    assert small["open_stores"] == 2 and large["open_stores"] == 20
    assert large["samples"] >= 4000
    assert large["peak_mb"] - small["peak_mb"] < 50, (small, large)
    assert abs(large["epoch_growth_mb"] - small["epoch_growth_mb"]) < 6, (small, large)
