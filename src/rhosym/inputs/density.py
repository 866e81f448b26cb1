"""Density samples: points (Å) with density values and voxel indices (Sparse 3D CNN, PointNet).

* **Store** (``samples/{grid,random}/shard-*.zarr``): CSR rows of ``xyz``, ``features`` (raw e/Å³,
  channels total, magnetization, up, down), ``voxels`` ``[z, y, x]``; ``spatial_shape`` and ``cells``
  (the lattice of each row) in the attributes.
* **Points** (experiments' ``points``): a sample is cut to at most N points by a subset fixed per
  structure (seeded by its id), at training and at test time.
* **Normalization** (stored in the checkpoint under ``norm``): per channel a fixed transform, then
  standardization with the mean and standard deviation over the TRAINING split only (a seeded subset of
  at most ``norm_max_structures`` structures): total, up, down ``log1p(max(rho, 0))``; magnetization
  (signed) ``asinh(m / 0.01)``.
* **Augmentation** (``train.augment``, training split; ``evaluate:`` at test time): origin shift and
  rotation (:mod:`rhosym.augment`), noise and blur of the values.
* **From raw data**: a structure's density computed as the density stage does (dense grid or the
  direct path), or a given dense grid (CHGCAR, map), sampled as in training (:mod:`rhosym.sampling`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from rhosym.inputs.base import InputKind, ReadOptions, stack

CHANNELS = ("total", "magnetization", "up", "down")
MAGNETIZATION_SCALE = 0.01  # e/Å³, the asinh knee of the magnetization channel


def point_subset(n: int, max_points: int, sid: str) -> np.ndarray | None:
    """Indices of the fixed subset of at most ``max_points`` of ``n`` points of structure ``sid``."""
    if not max_points or n <= max_points:
        return None
    seed = int.from_bytes(hashlib.blake2b(f"points:{sid}".encode(), digest_size=8).digest(), "little")
    return np.sort(np.random.default_rng(seed).choice(n, int(max_points), replace=False))


def transform_values(features: np.ndarray) -> np.ndarray:
    """The fixed per-channel transform (before standardization); ``features`` is (n, F), F ≤ 4."""
    f = np.asarray(features, dtype=np.float64)
    out = np.empty_like(f)
    for c in range(f.shape[1]):
        if CHANNELS[c] == "magnetization":
            out[:, c] = np.arcsinh(f[:, c] / MAGNETIZATION_SCALE)
        else:
            out[:, c] = np.log1p(np.clip(f[:, c], 0.0, None))
    return out


def select_channels(features: np.ndarray, n_features: int) -> np.ndarray:
    if n_features not in (1, 4):
        raise ValueError(f"features must be 1 or 4, not {n_features}")
    if features.shape[1] < n_features:
        raise ValueError(
            f"{n_features} density features asked for, but the store has {features.shape[1]} channel(s): "
            "four features (total, magnetization, up, down) need spin-polarized densities (ISPIN=2 CHGCARs)")
    return features[:, :n_features]


def sample_dict(xyz, feats, vox, spatial_shape, uid: str) -> dict:
    return {"xyz": xyz, "features": feats, "voxels": vox, "spatial_shape": np.asarray(spatial_shape, np.int64),
            "id": uid}


class Density(InputKind):
    name = "density"
    perturbations = ("noise", "blur", "wedge", "thermal")
    bench_batch = 4

    # ----------------------------------------------------------------------------------- stores
    def index(self, handle):
        ids = [str(i) for i in handle.attrs.get("ids", [])]
        return ids, np.diff(np.asarray(handle["offsets"][:], dtype=np.int64))

    read_attrs = ("spatial_shape",)

    def context(self, handle) -> dict:
        a = dict(handle.attrs)
        # cells as one (n, 3, 3) array: 72 bytes a row where the attribute's nested lists take ~600
        cells = np.asarray(a.get("cells") or [], dtype=np.float64).reshape(-1, 3, 3)
        return {"cells": cells, "voxel": float(a["voxel"]), "frame": float(a["frame"]),
                "rebin": a.get("method") == "grid"}

    def read(self, handle, row: int, opts: ReadOptions) -> dict:
        o0, o1 = (int(v) for v in handle["offsets"][row:row + 2])
        shape = handle.attrs.get("spatial_shape")
        s = {"xyz": np.asarray(handle["xyz"][o0:o1], dtype=np.float32),
             "features": np.asarray(handle["features"][o0:o1], dtype=np.float32),
             "voxels": np.asarray(handle["voxels"][o0:o1], dtype=np.int32),
             "spatial_shape": np.asarray(shape if shape is not None else [0, 0, 0], dtype=np.int64)}
        return self.limit(s, opts.max_points, opts.sid)

    # ----------------------------------------------------------------------------------- samples
    def size(self, sample: dict) -> int:
        return int(len(sample["xyz"]))

    def limit(self, sample, max_points, sid):
        keep = point_subset(len(sample["xyz"]), max_points, sid)
        if keep is None:
            return sample
        return {**sample, "xyz": sample["xyz"][keep], "features": sample["features"][keep],
                "voxels": sample["voxels"][keep]}

    def clip_size(self, size: int, max_points: int) -> int:
        return min(int(size), int(max_points)) if max_points else int(size)

    def fit_norm(self, raw, n, features, max_structures, seed):
        if n == 0:
            raise ValueError("no training structures to compute normalization statistics from")
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(n, min(n, max_structures), replace=False))
        s1 = s2 = None
        count = 0
        for i in pick:
            f = transform_values(select_channels(raw(int(i))["features"], features))
            s1 = f.sum(0) if s1 is None else s1 + f.sum(0)
            s2 = (f ** 2).sum(0) if s2 is None else s2 + (f ** 2).sum(0)
            count += len(f)
        mean = s1 / max(count, 1)
        std = np.sqrt(np.maximum(s2 / max(count, 1) - mean ** 2, 0.0))
        std = np.where(std < 1e-6, 1.0, std)
        return {"channels": list(CHANNELS[:features]),
                "transform": {"total": "log1p", "up": "log1p", "down": "log1p",
                              "magnetization": f"asinh(x/{MAGNETIZATION_SCALE})"},
                "mean": [float(v) for v in mean], "std": [float(v) for v in std],
                "n_structures": int(len(pick)), "n_points": int(count), "source": "train"}

    def _geometry(self, sample, rng, shift: bool, rotation: bool, ctx: dict, row: int) -> dict:
        from rhosym.augment import transform_density_sample

        cells = ctx.get("cells")
        if (shift or rotation) and cells is not None and row < len(cells):
            return transform_density_sample(sample, cells[row], rng, ctx["voxel"], ctx["frame"], shift, rotation,
                                            rebin=bool(ctx.get("rebin")))
        return sample

    def augment(self, sample, rng, augment, ctx):
        from rhosym.augment import perturb_density_sample

        s = self._geometry(sample, rng, bool(augment.origin_shift), bool(augment.rotation), ctx, ctx.get("row", 0))
        return perturb_density_sample(s, rng, augment.noise_snr, augment.blur, augment.perturb_fraction)

    def transform(self, sample, rng, transform, ctx):
        return self._geometry(sample, rng, bool(transform.get("origin_shift")), bool(transform.get("rotation")),
                              ctx, ctx.get("row", 0))

    def in_features(self, features, sample):
        return int(features) or int(np.asarray(sample["features"]).shape[1])

    def synthetic(self, rng, points: int = 5000, frame: float = 64.0, voxel: float = 0.5, n_features: int = 1,
                  **_):
        shape = int(round(frame / voxel))
        cell = rng.uniform(6.0, 14.0, 3)
        nvox = np.maximum((cell / voxel).astype(int), 1)
        total = int(np.prod(nvox))
        flat = rng.choice(total, size=min(points, total), replace=False)
        vox = np.stack(np.unravel_index(flat, tuple(nvox)), 1).astype(np.int32)  # [z, y, x]
        xyz = (vox[:, ::-1] + 0.5).astype(np.float32) * voxel  # x, y, z in Å
        atoms = rng.uniform(0, 1, (int(rng.integers(8, 25)), 3)) * cell[::-1]
        d2 = ((xyz[:, None, :] - atoms[None, :, :]) ** 2).sum(-1)
        rho = np.exp(-d2 / 0.5).sum(1) * 50.0 + 1e-3
        feats = np.log(rho)[:, None].repeat(n_features, 1).astype(np.float32)
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
        return {"xyz": xyz, "features": feats, "voxels": vox, "spatial_shape": np.array([shape] * 3)}

    def prepare(self, sample, features, norm):
        f = transform_values(select_channels(sample["features"], features))
        if norm is not None:
            f = (f - np.asarray(norm["mean"])) / np.asarray(norm["std"])
        return {**sample, "features": f.astype(np.float32)}

    def batch(self, samples):
        import torch

        counts = np.array([len(s["xyz"]) for s in samples], dtype=np.int64)
        nfeat = next((np.asarray(s["features"]).shape[1] for s in samples if np.asarray(s["features"]).ndim == 2), 1)
        shapes = np.array([np.asarray(s["spatial_shape"], dtype=np.int64) for s in samples])
        return {"xyz": stack(samples, "xyz", np.float32, 3), "features": stack(samples, "features", np.float32, nfeat),
                "voxels": stack(samples, "voxels", np.int32, 3),
                "batch": torch.from_numpy(np.repeat(np.arange(len(samples), dtype=np.int64), counts)),
                "counts": torch.from_numpy(counts), "spatial_shape": torch.from_numpy(shapes.max(axis=0))}

    # ----------------------------------------------------------------------------------- from raw data
    def configure(self, s, store, method, voxel):
        from rhosym.sampling import frame_shape
        from rhosym.settings import DensitySettings, SampleSettings, section

        s.method = str(store.get("method") or s.input or "grid")
        s.source = str(store.get("source") or "dense")
        s.density = section(DensitySettings, store.get("density"))
        s.sample = section(SampleSettings, {**(store.get("config") or {}),
                                            **{k: store[k] for k in ("threshold", "voxel", "frame") if k in store}})
        s.spatial_shape = list(store.get("spatial_shape") or frame_shape(s.sample))
        if list(frame_shape(s.sample)) != list(s.spatial_shape):
            raise ValueError(f"checkpoint's sample frame {s.sample.frame} A / voxel {s.sample.voxel} A does not "
                             f"give its spatial_shape {s.spatial_shape}")
        s.seed = int(store.get("seed", 0))
        if method is not None and method != s.method:
            raise ValueError(f"--method {method} asked for, but the checkpoint was trained on {s.method} sampling")
        if voxel is not None and not np.isclose(float(voxel), float(s.sample.voxel)):
            raise ValueError(f"--voxel {voxel} asked for, but the checkpoint was trained with voxel "
                             f"{s.sample.voxel} A")
        if s.features > s.store_channels:
            raise ValueError(f"checkpoint reads {s.features} density features but its training store has "
                             f"{s.store_channels} channel(s)")

    def from_structure(self, structure, uid, s, rho: np.ndarray | None = None):
        from rhosym.density import DirectModel, density_of_row
        from rhosym.sampling import sample_one

        if rho is None and s.source == "direct":
            d = s.density
            model = DirectModel.from_structure(structure, b_iso=d.b_iso, blur=d.blur, cutoff=d.cutoff)
            xyz, feats, vox = sample_one(s.method, s.sample, uid, structure.lattice.matrix, s.seed, model=model)
        else:
            if rho is None:
                import json

                rho, _ = density_of_row({"kind": "structure", "structure": json.dumps(structure.as_dict())},
                                        s.density)
            xyz, feats, vox = sample_one(s.method, s.sample, uid, structure.lattice.matrix, s.seed, rho=rho)
        return (sample_dict(xyz, feats, vox, s.spatial_shape, uid),
                {"density_source": "structure", "n_points": int(len(xyz))})

    def from_density(self, rho, lattice, uid, s):
        from rhosym.sampling import sample_one

        rho = np.asarray(rho)
        if rho.ndim == 3:
            rho = rho[None]
        if len(rho) < s.store_channels:  # a one-channel map given to a model whose store had more channels
            rho = np.repeat(rho[:1], s.store_channels, axis=0)
        xyz, feats, vox = sample_one(s.method, s.sample, uid, np.asarray(lattice), s.seed, rho=rho)
        return sample_dict(xyz, feats, vox, s.spatial_shape, uid), {"n_points": int(len(xyz))}

    def perturbed(self, row, s, names, levels, seed):
        from rhosym.density import density_of_row
        from rhosym.ingest import structure_from_json

        sid = str(row["id"])
        if s.density_kind == "chgcar":
            rho, attrs = density_of_row({"kind": "mp_chgcar", "chgcar_path": row["chgcar_path"]},
                                        {**s.density.model_dump(), "channels": s.store_channels})
            lattice, st = np.asarray(attrs["cell"]), None
        else:
            st = structure_from_json(row["structure"])
            rho, _ = density_of_row({"kind": "structure", "structure": row["structure"]}, s.density)
            lattice = st.lattice.matrix
        clean = (lambda: self.from_structure(st, sid, s)[0]) if s.source == "direct" and st is not None else None
        yield from self.grid_perturbations(sid, s, names, levels, seed, st, rho, lattice, s.density.b_iso, clean)


DENSITY = Density()
