"""Powder XRD patterns (XRD FCN): the network reads the first 8,192 of the 10,001 stored points.

* **Store** (``xrd/shard-*.zarr``): ``patterns`` (n, 10,001) float16 in [0, 1]; the peak sticks (d,
  |F|²) in CSR form, so that a training augmentation can re-render with other peak widths.
* **Augmentation** (``train.augment.xrd_*``): zero shift, width scaling, background and noise.
* **From a structure**: :func:`rhosym.xrd.simulate`, cast as the store does.
"""

from __future__ import annotations

import numpy as np

from rhosym.inputs.base import InputKind, ReadOptions

XRD_POINTS = 8192  # the XRD network reads the first 8,192 of the 10,001 stored points


def stored(p) -> dict:
    """A pattern cast as the store does (noise may leave the [0, 1] range the store's check expects)."""
    from rhosym.xrd import to_float16

    p = np.asarray(p, dtype=np.float64).ravel()
    p16 = to_float16(p) if p.min() >= 0 and p.max() <= 1 else p.astype(np.float16)
    return {"pattern": np.nan_to_num(np.asarray(p16, np.float32), nan=0.0, posinf=0.0, neginf=0.0)}


class Xrd(InputKind):
    name = "xrd"
    perturbations = ("thermal", "xrd_noise", "xrd_broaden", "xrd_shift")
    width = 1

    def context(self, handle) -> dict:
        from rhosym.xrd import XRDSettings

        return {"settings": XRDSettings.from_config(dict(handle.attrs))}

    def read(self, handle, row: int, opts: ReadOptions) -> dict:
        p = np.asarray(handle["patterns"][row, :], dtype=np.float32)
        out = {"pattern": np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)}
        if opts.sticks:
            a, b = (int(v) for v in handle["sticks_offsets"][row:row + 2])
            out["sticks_d"] = np.asarray(handle["sticks_d"][a:b], dtype=np.float64)
            out["sticks_f2"] = np.asarray(handle["sticks_f2"][a:b], dtype=np.float64)
        return out

    def size(self, sample: dict) -> int:
        return int(min(len(sample["pattern"]), XRD_POINTS))

    def needs_sticks(self, augment) -> bool:
        return augment is not None and augment.xrd_width_scale > 0

    def augment(self, sample, rng, augment, ctx):
        a = augment
        if not (a.xrd_zero_shift or a.xrd_width_scale or a.xrd_background or a.xrd_noise):
            return sample
        from rhosym.xrd import augment_patterns, augment_render

        p = sample["pattern"]
        if a.xrd_width_scale and "sticks_d" in sample:
            p = augment_render([(sample["sticks_d"], sample["sticks_f2"])], ctx["settings"], rng, 0.0,
                               a.xrd_width_scale)[0]
        p = augment_patterns(p[None, :], rng, a.xrd_zero_shift, a.xrd_background, a.xrd_noise)[0]
        return {"pattern": np.nan_to_num(p[:XRD_POINTS], nan=0.0)}

    def prepare(self, sample, features, norm):
        return {"pattern": np.asarray(sample["pattern"], dtype=np.float32)[:XRD_POINTS]}

    def synthetic(self, rng, n: int = XRD_POINTS, **_):
        x = np.arange(n, dtype=np.float32)
        pos = rng.uniform(0, n, int(rng.integers(20, 61)))
        amp = rng.uniform(0.05, 1.0, len(pos))
        pattern = (amp[None, :] * np.exp(-((x[:, None] - pos[None, :]) ** 2) / 50.0)).sum(1)
        return {"pattern": (pattern / pattern.max()).astype(np.float32)}

    def batch(self, samples):
        import torch

        length = min(len(s["pattern"]) for s in samples)
        return {"pattern": torch.from_numpy(
            np.stack([np.asarray(s["pattern"], dtype=np.float32)[:length] for s in samples]))}

    def configure(self, s, store, method, voxel):
        from rhosym.settings import XrdSettings

        super().configure(s, store, method, voxel)
        s.xrd = XrdSettings.from_config(store)

    def from_structure(self, structure, uid, s):
        from rhosym.xrd import simulate

        return stored(simulate(structure, s.xrd)[0]), {}

    def perturbed(self, row, s, names, levels, seed):
        from rhosym.ingest import structure_from_json
        from rhosym.perturb import seeded, thermal, xrd_broaden, xrd_noise, xrd_zero_shift
        from rhosym.xrd import simulate

        sid = str(row["id"])
        st = structure_from_json(row["structure"])
        clean, d, f2 = simulate(st, s.xrd)
        for name in names:
            for lv in levels[name]:
                if name == "thermal":
                    p = clean if lv == 0 else simulate(thermal(st, lv, default_b=s.xrd.b_iso), s.xrd)[0]
                elif name == "xrd_noise":
                    p = clean if lv == 0 else xrd_noise(clean, lv, seeded(seed, sid, name, lv))
                elif name == "xrd_broaden":
                    p = clean if lv == 1 else xrd_broaden(d, f2, s.xrd, lv)
                else:
                    p = clean if lv == 0 else xrd_zero_shift(clean, lv, s.xrd.two_theta_step)
                yield name, lv, stored(p)


XRD = Xrd()
