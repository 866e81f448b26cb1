"""Tiny stores in the layouts of docs/formats.md and a stand-in model registry, for the trainer tests.

Imported by tests/test_train*.py and tests/test_loaders.py; the checks at the bottom test the fixtures.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from rhosym.loaders import CRYSTAL_SYSTEMS

INPUT_KIND = {"sparse_cnn": "density", "pointnet": "density", "xrd_fcn": "xrd", "cgcnn": "cgcnn", "cogn": "cogn",
              "lattice": "lattice"}


def write_manifest_split(root: Path, n: int = 30, seed: int = 0, fractions=(0.6, 0.2, 0.2)):
    """A manifest whose labels are a function of the id number, and a split over it."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(n)]
    cs = [i % 3 for i in range(n)]  # three crystal systems in use
    sg = [(2, 14, 62)[c] for c in cs]
    man = pd.DataFrame({
        "id": ids, "status": "ok", "reason": "",
        "crystal_system": [CRYSTAL_SYSTEMS[c] for c in cs],
        "space_group": sg, "extinction_group": [c + 1 for c in cs],
        "band_gap": [1.0 + 2.0 * c + 0.1 * rng.standard_normal() for c in cs],
        "formation_energy": [-1.0 - 0.5 * c for c in cs],
    })
    man.loc[n - 1, "band_gap"] = np.nan
    order = rng.permutation(n)
    n_tr, n_va = int(fractions[0] * n), int(fractions[1] * n)
    split = np.empty(n, dtype=object)
    split[order[:n_tr]] = "train"
    split[order[n_tr:n_tr + n_va]] = "val"
    split[order[n_tr + n_va:]] = "test"
    sp = pd.DataFrame({"id": ids, "split": split})
    root.mkdir(parents=True, exist_ok=True)
    man.to_parquet(root / "manifest.parquet", index=False)
    sp.to_parquet(root / "split.parquet", index=False)
    return man, sp


def _class_of(sid: str) -> int:
    return int(sid[1:]) % 3


def write_density_stores(root: Path, ids: list[str], shard_size: int = 12, channels: int = 1, seed: int = 0,
                         skip: tuple = (), test_marker: float | None = None) -> list[str]:
    """samples/grid stores: per structure 20..60 points whose density encodes the class.

    ``test_marker``: if given, points of test ids get this value (to detect test reads)."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(0, len(ids), shard_size):
        chunk = [i for i in ids[k:k + shard_size] if i not in skip]
        offsets, xyz, feats, vox = [0], [], [], []
        for sid in chunk:
            n = int(rng.integers(20, 60))
            c = _class_of(sid)
            total = np.exp(c) * (1 + 0.05 * rng.random(n))
            f = [total]
            if channels == 4:
                mag = (c - 1) * 0.02 * np.ones(n)
                f += [mag, (total + mag) / 2, (total - mag) / 2]
            feats.append(np.stack(f, 1))
            v = rng.integers(0, 16, (n, 3))
            vox.append(v)
            xyz.append(v * 0.25)
            offsets.append(offsets[-1] + n)
        p = root / "samples" / "grid" / f"shard-{k // shard_size:05d}.zarr"
        g = zarr.open_group(str(p), mode="w")
        g.create_array("offsets", data=np.asarray(offsets, dtype=np.int64))
        g.create_array("xyz", data=np.concatenate(xyz).astype(np.float32))
        g.create_array("features", data=np.concatenate(feats).astype(np.float32))
        g.create_array("voxels", data=np.concatenate(vox).astype(np.int32))
        g.attrs.update({"ids": chunk, "rejected": {i: "test rejection" for i in skip},
                        "counts": {"ok": len(chunk), "rejected": len(skip)},
                        "spatial_shape": [16, 16, 16], "method": "grid", "voxel": 0.25, "frame": 4.0,
                        "cells": [(np.eye(3) * 3.0).tolist()] * len(chunk)})
        paths.append(str(p))
    return paths


def write_xrd_stores(root: Path, ids: list[str], shard_size: int = 12, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(0, len(ids), shard_size):
        chunk = ids[k:k + shard_size]
        pats = rng.random((len(chunk), 10001)) * 0.1
        for j, sid in enumerate(chunk):
            pats[j, 1000 * (_class_of(sid) + 1)] = 1.0
        p = root / "xrd" / f"shard-{k // shard_size:05d}.zarr"
        g = zarr.open_group(str(p), mode="w")
        g.create_array("patterns", data=pats.astype(np.float16))
        g.attrs.update({"ids": chunk, "rejected": {}, "counts": {"ok": len(chunk), "rejected": 0}})
        paths.append(str(p))
    return paths


def write_graph_stores(root: Path, ids: list[str], kind: str = "cgcnn", shard_size: int = 12, seed: int = 0,
                       n_fea: int = 8) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(0, len(ids), shard_size):
        chunk = ids[k:k + shard_size]
        no, eo, fea, w, ei, ed, ev = [0], [0], [], [], [], [], []
        for sid in chunk:
            n = int(rng.integers(2, 6))
            e = n * 3
            f = rng.random((n, n_fea))
            f[:, _class_of(sid)] += 2.0
            fea.append(f)
            w.append(np.ones(n))
            ei.append(rng.integers(0, n, (e, 2)))
            ed.append(rng.random(e) * 5)
            ev.append(rng.standard_normal((e, 3)))
            no.append(no[-1] + n)
            eo.append(eo[-1] + e)
        p = root / "graphs" / kind / f"shard-{k // shard_size:05d}.zarr"
        g = zarr.open_group(str(p), mode="w")
        g.create_array("node_offsets", data=np.asarray(no, dtype=np.int64))
        g.create_array("edge_offsets", data=np.asarray(eo, dtype=np.int64))
        g.create_array("atom_fea", data=np.concatenate(fea).astype(np.float32))
        g.create_array("node_weight", data=np.concatenate(w).astype(np.float32))
        g.create_array("edge_index", data=np.concatenate(ei).astype(np.int64))
        g.create_array("edge_dist", data=np.concatenate(ed).astype(np.float32))
        g.create_array("edge_vec", data=np.concatenate(ev).astype(np.float32))
        g.attrs.update({"ids": chunk, "rejected": {}, "counts": {"ok": len(chunk), "rejected": 0}})
        paths.append(str(p))
    return paths


# ------------------------------------------------------------------------------------------------
# stand-in models: pooled features → MLP
# ------------------------------------------------------------------------------------------------

class StandIn(torch.nn.Module):
    def __init__(self, name, n_out, regression, in_features, cfg=None):
        super().__init__()
        self.name = name
        width = int((cfg or {}).get("width", 16))
        d = {"density": in_features, "xrd": 8, "cgcnn": in_features, "cogn": in_features,
             "lattice": in_features}[INPUT_KIND[name]]
        self.net = torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.ReLU(), torch.nn.Linear(width, n_out))

    def forward(self, batch):
        return self.net(batch["x"])


def _collate(name, samples):
    kind = INPUT_KIND[name]
    if kind == "density":
        x = [s["features"].mean(0) for s in samples]
    elif kind == "xrd":
        x = [s["pattern"][:8000].reshape(8, 1000).argmax(1) / 1000.0 for s in samples]
    elif kind == "lattice":
        x = [s["lattice"] for s in samples]
    else:
        x = [s["atom_fea"].mean(0) for s in samples]
    return {"x": torch.as_tensor(np.stack(x), dtype=torch.float32)}


def standin_registry():
    return types.SimpleNamespace(
        INPUT_KIND=INPUT_KIND, MODELS=tuple(INPUT_KIND),
        build_model=lambda name, n_out, regression, in_features, cfg=None: StandIn(name, n_out, regression,
                                                                                   in_features, cfg),
        collate=_collate,
        sample_size=lambda name, s: len(s.get("xyz", s.get("atom_fea", [0]))),
    )


def write_lattice_shards(root: Path, ids: list[str], shard_size: int = 12, seed: int = 0) -> list[str]:
    """Ingest-like parquet shards whose lattice parameters encode the class (cubic / tetragonal / ...)."""
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(0, len(ids), shard_size):
        chunk = ids[k:k + shard_size]
        rows = []
        for sid in chunk:
            a = 3 + rng.random()
            c = a * (1.0, 1.3, 1.7)[_class_of(sid)]
            rows.append({"id": sid, "status": "ok", "a": a, "b": a, "c": c, "alpha": 90.0, "beta": 90.0,
                         "gamma": 90.0})
        p = root / "ingest" / f"shard-{k // shard_size:05d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(p, index=False)
        paths.append(str(p))
    return paths


def test_fixture_stores(tmp_path):
    man, sp = write_manifest_split(tmp_path, 10)
    paths = write_density_stores(tmp_path, man["id"].tolist(), shard_size=4, skip=("s001",))
    g = zarr.open_group(paths[0], mode="r")
    assert g.attrs["ids"] == ["s000", "s002", "s003"]
    assert g["offsets"][-1] == g["xyz"].shape[0] == g["features"].shape[0]
    assert len(paths) == 3
