"""Lattice parameters (the lattice-only control): a, b, c (Å), α, β, γ (°) of the density cell, read
from the ingest shards, turned into :data:`FEATURES` and standardized with TRAINING statistics."""

from __future__ import annotations

import numpy as np

from rhosym.inputs.base import InputKind, ReadOptions

PARAMS = ("a", "b", "c", "alpha", "beta", "gamma")
FEATURES = ("a", "b", "c", "alpha", "beta", "gamma", "cos_alpha", "cos_beta", "cos_gamma",
            "b/a", "c/a", "c/b", "V^(1/3)")


def features(params: np.ndarray) -> np.ndarray:
    """(n, 13) features of (n, 6) lattice parameters a, b, c (Å), α, β, γ (degrees)."""
    p = np.asarray(params, dtype=np.float64).reshape(-1, 6)
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    cos = np.cos(np.radians(p[:, 3:6]))
    vol = a * b * c * np.sqrt(np.clip(1 - (cos**2).sum(1) + 2 * cos.prod(1), 1e-12, None))
    return np.column_stack([p, cos, b / a, c / a, c / b, np.cbrt(vol)]).astype(np.float32)


def params_of(structure) -> np.ndarray:
    lat = structure.lattice
    return np.array([[lat.a, lat.b, lat.c, lat.alpha, lat.beta, lat.gamma]])


class Lattice(InputKind):
    name = "lattice"
    perturbations = ("lattice_noise",)
    width = len(FEATURES)

    def open(self, path: str) -> dict:
        import pandas as pd

        df = pd.read_parquet(path, columns=["id", "status", *PARAMS])
        df = df[df["status"] == "ok"]
        return {"ids": df["id"].astype(str).tolist(), "params": df[list(PARAMS)].to_numpy(np.float64)}

    def index(self, handle):
        return list(handle["ids"]), np.ones(len(handle["ids"]), dtype=np.int64)

    def reader(self, handle) -> dict:
        """The parameters only (48 bytes a row): the ids of a shard are needed by :meth:`index` alone."""
        return {"params": handle["params"]}

    def read(self, handle, row: int, opts: ReadOptions) -> dict:
        return {"lattice": handle["params"][row]}

    def store_meta(self, path: str) -> dict:
        return {"kind": "lattice", "features": list(FEATURES)}

    def fit_norm(self, raw, n, features_, max_structures, seed):
        # one (n, 13) float32 array filled row by row (52 bytes a row; a list of n small arrays took ~250)
        f = np.empty((n, len(FEATURES)), dtype=np.float32)
        for i in range(n):
            f[i] = features(raw(i)["lattice"])[0]
        std = f.std(0)
        return {"features": list(FEATURES), "mean": [float(v) for v in f.mean(0)],
                "std": [float(v) if v > 1e-6 else 1.0 for v in std], "n_structures": n, "source": "train"}

    def augment(self, sample, rng, augment, ctx):
        if augment.lattice_noise <= 0:
            return sample
        from rhosym.perturb import lattice_noise

        return {"lattice": lattice_noise(np.asarray(sample["lattice"], np.float64)[None], augment.lattice_noise,
                                         rng)[0]}

    def prepare(self, sample, features_, norm):
        f = features(sample["lattice"])[0]
        if norm:
            f = (f - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
        return {"lattice": f.astype(np.float32)}

    def synthetic(self, rng, **_):
        """The lattice features (standardized roughly) of a random cell."""
        abc = rng.uniform(3.0, 15.0, 3)
        angles = rng.uniform(60.0, 120.0, 3)
        f = features(np.concatenate([abc, angles])[None])[0].astype(np.float64)
        return {"lattice": ((f - f.mean()) / (f.std() + 1e-6)).astype(np.float32)}

    def batch(self, samples):
        import torch

        return {"lattice": torch.from_numpy(np.stack([np.asarray(s["lattice"], dtype=np.float32) for s in samples]))}

    def from_structure(self, structure, uid, s):
        return {"lattice": params_of(structure)}, {}

    def perturbed(self, row, s, names, levels, seed):
        from rhosym.perturb import lattice_noise, seeded

        sid = str(row["id"])
        params = np.array([[row[k] for k in PARAMS]], dtype=np.float64)
        for lv in levels["lattice_noise"]:
            p = params if lv == 0 else lattice_noise(params, lv, seeded(seed, sid, "lattice_noise", lv))
            yield "lattice_noise", lv, {"lattice": p}


LATTICE = Lattice()
