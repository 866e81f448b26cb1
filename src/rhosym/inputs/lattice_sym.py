"""Lattice parameters plus the lattice's metric symmetry (the strengthened lattice-only control).

The features of :mod:`rhosym.inputs.lattice`, then, for each metric tolerance of :data:`TOLERANCES`, a
one-hot of the Bravais lattice (of :data:`BRAVAIS`, 14) that the cell's metric alone admits: spglib on a
cell with one atom at the origin, whose symmetry is the holohedry of the lattice, so no atom and no
symmetry finder on the structure is involved. A 1 % tetragonal strain of a cubic cell reads cubic at the
loose tolerance and tetragonal at the tight one: the network sees both.
"""

from __future__ import annotations

import numpy as np

from rhosym.inputs.lattice import FEATURES as BASE_FEATURES
from rhosym.inputs.lattice import Lattice, features

BRAVAIS = ("aP", "mP", "mC", "oP", "oC", "oI", "oF", "tP", "tI", "hR", "hP", "cP", "cI", "cF")
TOLERANCES = (0.002, 0.05)  # relative (a length tolerance of tolerance × V^(1/3))
FEATURES = BASE_FEATURES + tuple(f"{b}@{t:g}" for t in TOLERANCES for b in BRAVAIS)
_FAMILY = [(2, "a"), (15, "m"), (74, "o"), (142, "t"), (167, "h"), (194, "h"), (230, "c")]


def matrix(params) -> np.ndarray:
    """Lattice rows (a along x, b in the xy-plane) of a, b, c (Å), α, β, γ (degrees)."""
    a, b, c, al, be, ga = (float(v) for v in np.asarray(params, dtype=np.float64).ravel()[:6])
    ca, cb, cg = np.cos(np.radians([al, be, ga]))
    sg = np.sin(np.radians(ga))
    cx, cy = cb, (ca - cb * cg) / sg
    cz = np.sqrt(max(1.0 - cx * cx - cy * cy, 1e-12))
    return np.array([[a, 0, 0], [b * cg, b * sg, 0], [c * cx, c * cy, c * cz]])


def bravais(params, tolerance: float) -> str:
    """The Bravais lattice of the metric (one atom at the origin), at ``tolerance`` × V^(1/3) Å."""
    import spglib

    m = matrix(params)
    symprec = tolerance * abs(np.linalg.det(m)) ** (1 / 3)
    ds = spglib.get_symmetry_dataset((m, [[0.0, 0.0, 0.0]], [1]), symprec=symprec)
    if ds is None:
        return "aP"
    family = next(f for top, f in _FAMILY if ds.number <= top)
    centring = ds.international[0]
    if family == "h":
        return "hR" if centring == "R" else "hP"
    if centring in "AB":
        centring = "C"
    return family + centring


def symmetry_features(params) -> np.ndarray:
    out = np.zeros(len(TOLERANCES) * len(BRAVAIS), dtype=np.float32)
    for k, t in enumerate(TOLERANCES):
        out[k * len(BRAVAIS) + BRAVAIS.index(bravais(params, t))] = 1.0
    return out


class LatticeSym(Lattice):
    name = "lattice_sym"
    width = len(FEATURES)

    def read(self, handle, row, opts):
        p = handle["params"][row]
        return {"lattice": p, "metric": symmetry_features(p)}

    def store_meta(self, path: str) -> dict:
        return {"kind": "lattice_sym", "features": list(FEATURES), "tolerances": list(TOLERANCES)}

    def fit_norm(self, raw, n, features_, max_structures, seed):
        # the one-hot part is left as it is (mean 0, std 1)
        out = super().fit_norm(raw, n, features_, max_structures, seed)
        k = len(FEATURES) - len(BASE_FEATURES)
        return {**out, "features": list(FEATURES), "mean": out["mean"] + [0.0] * k, "std": out["std"] + [1.0] * k}

    def augment(self, sample, rng, augment, ctx):
        out = super().augment(sample, rng, augment, ctx)
        return out if out is sample else {**out, "metric": symmetry_features(out["lattice"])}

    def prepare(self, sample, features_, norm):
        metric = sample["metric"] if "metric" in sample else symmetry_features(sample["lattice"])
        f = np.concatenate([features(sample["lattice"])[0], metric])
        if norm:
            f = (f - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
        return {"lattice": f.astype(np.float32)}

    def from_structure(self, structure, uid, s):
        sample, info = super().from_structure(structure, uid, s)
        return {**sample, "metric": symmetry_features(sample["lattice"])}, info

    def synthetic(self, rng, **_):
        f = super().synthetic(rng)["lattice"]
        onehot = np.zeros(len(FEATURES) - len(BASE_FEATURES), np.float32)
        onehot[rng.integers(0, len(BRAVAIS))] = 1.0
        return {"lattice": np.concatenate([f, onehot])}

    def perturbed(self, row, s, names, levels, seed):
        for name, lv, smp in super().perturbed(row, s, names, levels, seed):
            yield name, lv, {**smp, "metric": symmetry_features(smp["lattice"])}


LATTICE_SYM = LatticeSym()
