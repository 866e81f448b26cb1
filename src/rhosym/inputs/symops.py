"""Symmetry from the density itself: two kinds over one store (``symops/shard-*.zarr``,
:mod:`rhosym.symops_stage`).

* ``symops`` (the ``symops`` MLP and the ``classical`` finder): the agreement of the density with each of
  the 79 canonical operation and centring slots (0 where the lattice's holohedry has no such operation),
  the mask of tested slots, and the 13 lattice features (:mod:`rhosym.inputs.lattice`) of the lattice's
  conventional cell, standardized with TRAINING statistics; plus ``found``, the classical finder's space
  group. Batch: ``x`` (B, 171) float32, ``found`` (B,) int64.
* ``fracgrid`` (``periodic_cnn``): the density on the N³ fractional grid of the conventional cell,
  standardized per structure (mean 0, standard deviation 1: what a measured map's scale does not fix),
  and the lattice features. Batch: ``grid`` (B, 1, N, N, N), ``lattice`` (B, 13).

From a structure or a density (``rhosym predict``, robustness) both are computed as the stage does.
Perturbations (noise, blur, missing wedge) act on the density on the conventional cell's grid; thermal
smearing recomputes it from the structure.
"""

from __future__ import annotations

import numpy as np

from rhosym.inputs.base import InputKind, ReadOptions
from rhosym.inputs.lattice import FEATURES as LATTICE_FEATURES
from rhosym.inputs.lattice import features as lattice_features

N_SLOTS = 79


def _norm_lattice(params, norm: dict | None) -> np.ndarray:
    f = lattice_features(params)[0]
    if norm:
        f = (f - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
    return f.astype(np.float32)


class Symops(InputKind):
    name = "symops"
    perturbations = ("noise", "blur", "wedge", "thermal")
    width = 2 * N_SLOTS + len(LATTICE_FEATURES)
    arrays = ("scores", "mask", "params", "found")

    def read(self, handle, row: int, opts: ReadOptions) -> dict:
        return {k: np.asarray(handle[k][row]) for k in self.arrays}

    def store_meta(self, path: str) -> dict:
        meta = super().store_meta(path)
        return {**meta, "lattice_features": list(LATTICE_FEATURES)}

    def fit_norm(self, raw, n, features, max_structures, seed):
        if n == 0:
            raise ValueError("no training structures to compute normalization statistics from")
        f = np.concatenate([lattice_features(raw(i)["params"]) for i in range(n)])
        std = f.std(0)
        return {"features": list(LATTICE_FEATURES), "mean": [float(v) for v in f.mean(0)],
                "std": [float(v) if v > 1e-6 else 1.0 for v in std], "n_structures": n, "source": "train"}

    def prepare(self, sample, features, norm):
        mask = np.asarray(sample["mask"], dtype=bool)
        scores = np.where(mask, np.nan_to_num(np.asarray(sample["scores"], np.float32), nan=0.0), 0.0)
        x = np.concatenate([scores, mask.astype(np.float32), _norm_lattice(sample["params"], norm)])
        return {"x": x.astype(np.float32), "found": int(sample["found"])}

    def batch(self, samples):
        import torch

        return {"x": torch.from_numpy(np.stack([s["x"] for s in samples]).astype(np.float32)),
                "found": torch.as_tensor([int(s["found"]) for s in samples], dtype=torch.int64)}

    def synthetic(self, rng, **_):
        return {"x": rng.random(self.width).astype(np.float32), "found": int(rng.integers(1, 231))}

    # ----------------------------------------------------------------------------------- from raw data
    def configure(self, s, store, method, voxel):
        from rhosym.settings import DensitySettings, SymopsSettings, section

        super().configure(s, store, method, voxel)
        s.symops = section(SymopsSettings, store.get("symops"))
        s.density = section(DensitySettings, store.get("density"))

    def from_structure(self, structure, uid, s):
        from rhosym.symops_stage import of_structure

        rec = of_structure(structure, s.symops, s.density)
        return rec, {"density_source": "structure", "symops": rec.pop("report")}

    def from_density(self, rho, lattice, uid, s):
        from rhosym.symops_stage import of_grid

        rho = np.asarray(rho)
        rec = of_grid(rho[0] if rho.ndim == 4 else rho, lattice, s.symops)
        return rec, {"symops": rec.pop("report")}

    def perturbed(self, row, s, names, levels, seed):
        from rhosym.density import density_of_row
        from rhosym.ingest import structure_from_json
        from rhosym.symops import frame_from_grid, frame_from_structure

        sid = str(row["id"])
        st = None
        if row.get("kind") == "mp_chgcar":
            rho, attrs = density_of_row(row, s.density.model_copy(update={"channels": 1}))
            frame = frame_from_grid(rho[0].astype(np.float64), np.asarray(attrs["cell"]), n=s.symops.n,
                                    symprec=s.symops.lattice_symprec)
        else:
            st = structure_from_json(row["structure"])
            frame = frame_from_structure(st, n=s.symops.n, symprec=s.symops.lattice_symprec,
                                         b_iso=s.density.b_iso, blur=s.density.blur)
        yield from self.grid_perturbations(sid, s, names, levels, seed, st, frame.grid, np.asarray(frame.lattice),
                                           s.density.b_iso)


class FracGrid(Symops):
    name = "fracgrid"
    width = len(LATTICE_FEATURES)
    arrays = ("grid", "params")
    bench_batch = 8

    def prepare(self, sample, features, norm):
        g = np.asarray(sample["grid"], dtype=np.float32)
        sd = float(g.std())
        g = (g - float(g.mean())) / (sd if sd > 0 else 1.0)
        return {"grid": g[None].astype(np.float32), "lattice": _norm_lattice(sample["params"], norm)}

    def size(self, sample: dict) -> int:
        return 1

    def batch(self, samples):
        import torch

        return {"grid": torch.from_numpy(np.stack([s["grid"] for s in samples]).astype(np.float32)),
                "lattice": torch.from_numpy(np.stack([s["lattice"] for s in samples]).astype(np.float32))}

    def synthetic(self, rng, n: int = 24, **_):
        return {"grid": rng.standard_normal((1, n, n, n)).astype(np.float32),
                "lattice": rng.standard_normal(len(LATTICE_FEATURES)).astype(np.float32)}


SYMOPS = Symops()
FRACGRID = FracGrid()
