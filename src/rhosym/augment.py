"""Seeded augmentations of sampled densities (training time; at evaluation only when ``evaluate:`` asks).

* **Origin shift** (:func:`origin_shift`): the periodic density moved by a random vector ``t`` that is a
  whole number of voxels along x, y and z (:func:`voxel_shift`): every point's fractional coordinates
  become ``x + t`` wrapped into the cell, values unchanged (so the sum of the values, and ∫ρ of a dense
  grid shifted with :func:`shift_grid`, are kept exactly). Points at voxel centres stay at voxel centres,
  so a shifted sample has the voxels that sampling the shifted structure gives, except where points are
  wrapped across a cell face (measured: ``tests/test_sampling.py``). Done on the fly, per epoch.
* **Rotation** (:func:`rotate`): the Cartesian points rotated about the cell centre by a uniformly random
  rotation; voxel indices are recomputed in the bounding box of the rotated cell, which must fit the
  sampling frame (``sample.frame``): a rotation that does not fit is redrawn (3 tries), then skipped.
* **Perturbations for training that holds up** (``train.augment.noise_snr``, ``blur``): additive
  noise on the sampled values (rhosym.perturb.add_noise) and a smoothing of the values over the points
  within the blur radius (a Gaussian kernel on the point cloud), on a random fraction of the samples.

Every function takes a ``numpy.random.Generator``; the loaders seed it from (training seed, epoch, item).
"""

from __future__ import annotations

import numpy as np

from rhosym.sampling import cell_origin, unique_voxels


def _corners(lattice: np.ndarray) -> np.ndarray:
    c = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    return c @ np.asarray(lattice, dtype=np.float64)


def voxelize(xyz: np.ndarray, origin: np.ndarray, voxel: float, shape) -> np.ndarray | None:
    """``[z, y, x]`` int32 voxel indices of ``xyz`` in a frame of ``shape``; None if any falls outside."""
    ixyz = np.floor((np.asarray(xyz, dtype=np.float64) - origin) / float(voxel)).astype(np.int64)
    if len(ixyz) and (ixyz.min() < 0 or (ixyz >= np.asarray(shape)[::-1]).any()):
        return None
    return np.ascontiguousarray(ixyz[:, ::-1]).astype(np.int32)


def origin_shift(xyz: np.ndarray, lattice: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points moved by fractional ``t`` and wrapped into the cell (Cartesian, float32)."""
    lattice = np.asarray(lattice, dtype=np.float64)
    frac = np.asarray(xyz, dtype=np.float64) @ np.linalg.inv(lattice) + np.asarray(t, dtype=np.float64)
    frac -= np.floor(frac)
    return (frac @ lattice).astype(np.float32)


def voxel_shift(rng: np.random.Generator, lattice: np.ndarray, voxel: float) -> np.ndarray:
    """A random fractional origin shift whose Cartesian length is a whole number of voxels on each axis:
    points at voxel centres stay at voxel centres (no voxel merges inside the cell; only points wrapped
    across a cell face are re-binned), so a shifted training sample is what sampling the shifted
    structure gives, up to the boundary voxels."""
    lattice = np.asarray(lattice, dtype=np.float64)
    cart = np.round((rng.random(3) @ lattice) / float(voxel)) * float(voxel)
    return cart @ np.linalg.inv(lattice)


def shift_grid(rho: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A dense periodic grid (..., nx, ny, nz) shifted by fractional ``t`` rounded to whole grid steps."""
    shape = rho.shape[-3:]
    steps = [int(round(float(ti) * n)) % n for ti, n in zip(t, shape)]
    return np.roll(rho, steps, axis=(-3, -2, -1))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (3×3)."""
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=np.random.default_rng(rng.integers(2**63))).as_matrix()


def rotate(xyz: np.ndarray, lattice: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(points rotated about the cell centre, rotated lattice rows)``: the points keep their place in
    the cell, which turns with them (a point at fractional ``f`` of ``lattice`` is at ``f`` of the rotated
    rows, whose cell starts at the origin like every cell the voxel indices are computed in)."""
    lattice = np.asarray(lattice, dtype=np.float64)
    rotated = lattice @ np.asarray(R, dtype=np.float64).T
    centre, new_centre = 0.5 * lattice.sum(0), 0.5 * rotated.sum(0)
    out = (np.asarray(xyz, dtype=np.float64) - centre) @ np.asarray(R, dtype=np.float64).T + new_centre
    return out.astype(np.float32), rotated


def fits(lattice: np.ndarray, frame: float) -> bool:
    c = _corners(lattice)
    return bool((c.max(0) - c.min(0) <= frame).all())


def transform_density_sample(sample: dict, lattice: np.ndarray, rng: np.random.Generator, voxel: float,
                             frame: float, shift: bool = True, rotation: bool = True, rebin: bool = False) -> dict:
    """A density sample (``xyz, features, voxels, spatial_shape``) with a random origin shift and rotation;
    voxels recomputed. ``rebin`` (grid samples): points that land in one voxel are averaged into it, at its
    centre, as grid sampling does, so the result has one point per occupied voxel like a fresh grid sample.
    The sample is returned unchanged where a step cannot apply."""
    xyz = sample["xyz"]
    lat = np.asarray(lattice, dtype=np.float64)
    if shift:
        xyz = origin_shift(xyz, lat, voxel_shift(rng, lat, voxel))
    if rotation:
        for _ in range(3):
            R = random_rotation(rng)
            rx, rl = rotate(xyz, lat, R)
            if fits(rl, frame):
                xyz, lat = rx, rl
                break
    shape = sample["spatial_shape"]
    vox = voxelize(xyz, cell_origin(lat), voxel, shape)
    if vox is None:  # cannot happen for a cell that fits; keep the input as it was
        return sample
    if rebin:
        uniq, inv, cnt = unique_voxels(vox)
        f = np.asarray(sample["features"], dtype=np.float64)
        feats = np.stack([np.bincount(inv, weights=f[:, c], minlength=len(uniq)) for c in range(f.shape[1])], 1)
        xyz = cell_origin(lat) + (uniq[:, ::-1] + 0.5) * voxel
        return {**sample, "xyz": xyz.astype(np.float32), "features": (feats / cnt[:, None]).astype(np.float32),
                "voxels": uniq.astype(np.int32)}
    return {**sample, "xyz": np.asarray(xyz, dtype=np.float32), "voxels": vox}


def smooth_values(xyz: np.ndarray, values: np.ndarray, sigma: float, k: int = 32) -> np.ndarray:
    """Gaussian smoothing (standard deviation ``sigma`` Å) of point values over each point's ``k`` nearest
    neighbours (a normalized kernel; no periodic images). A cheap stand-in for a resolution loss of the
    density, used for training augmentation only (the evaluation blurs the dense grid exactly)."""
    from scipy.spatial import cKDTree

    n = len(xyz)
    if sigma <= 0 or n < 2:
        return values
    k = min(int(k), n)
    dist, idx = cKDTree(np.asarray(xyz, dtype=np.float64)).query(xyz, k=k)
    w = np.exp(-0.5 * (dist / sigma) ** 2)
    w /= w.sum(1, keepdims=True)
    v = np.asarray(values, dtype=np.float64)
    return np.einsum("nk,nkc->nc", w, v[idx]).astype(np.float32)


def perturb_density_sample(sample: dict, rng: np.random.Generator, noise_snr: float = 0.0, blur: float = 0.0,
                           fraction: float = 0.5) -> dict:
    """Training-time robustness augmentation of a RAW density sample (values in e/Å³)."""
    if (noise_snr <= 0 and blur <= 0) or rng.random() >= fraction:
        return sample
    f = np.asarray(sample["features"], dtype=np.float32)
    if blur > 0:
        res = rng.uniform(0.0, blur)
        f = smooth_values(sample["xyz"], f, res / 2.3548)
    if noise_snr > 0:
        from rhosym.perturb import add_noise

        snr = noise_snr * float(np.exp(rng.uniform(0.0, np.log(10.0))))  # SNR in [noise_snr, 10 noise_snr]
        f = np.stack([add_noise(f[:, c], snr, rng) for c in range(f.shape[1])], 1).astype(np.float32)
    return {**sample, "features": f}
