"""Down-sampling: counts, seeds, voxel indices, features; dense vs direct path; CHGCAR channels;
augmentations (origin shift, rotation)."""

import json

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from rhosym.density import DirectModel, iter_density_store, run_density_shard
from rhosym.sampling import cell_origin, n_points, read_sample, sample_one, write_sample_store
from rhosym.settings import SampleSettings

CFG = {"threshold": 0.05, "points_per_A3": 5.0, "min_points": 300, "max_points": 2000, "voxel": 0.5,
       "frame": 32.0}


def structures():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    hexa = Structure(Lattice.hexagonal(3.2, 5.2), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    mono = Structure(Lattice.from_parameters(4.1, 5.0, 6.2, 90, 104, 90), [{"Fe": 0.6, "Ni": 0.4}, "O"],
                     [[0.1, 0.2, 0.3], [0.6, 0.7, 0.8]])
    return {"nacl": nacl, "hexa": hexa, "mono": mono}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("samp")
    rows = [{"id": k, "kind": "synthetic", "status": "ok", "structure": json.dumps(s.as_dict()),
             "chgcar_path": None} for k, s in structures().items()]
    ingest = tmp / "shard-00000.parquet"
    pd.DataFrame(rows).to_parquet(ingest)
    dense = tmp / "density.zarr"
    run_density_shard(ingest, dense, {"spacing": 0.15})
    return tmp, ingest, dense


def test_random_dense(stores):
    tmp, _, dense = stores
    out = tmp / "random.zarr"
    assert write_sample_store(dense, out, "random", CFG, seed=3) == {"ok": 3, "rejected": 0}
    arrays, attrs = read_sample(out)
    assert attrs["ids"] == ["nacl", "hexa", "mono"] and attrs["spatial_shape"] == [64, 64, 64]
    assert attrs["channels"] == ["total"] and attrs["source"] == "dense"
    cfg = SampleSettings(**CFG)
    dens = {sid: (rho, a) for sid, rho, a in iter_density_store(dense)}
    for i, sid in enumerate(attrs["ids"]):
        xyz, f, v = read_sample(out, i)
        s = structures()[sid]
        assert len(xyz) == n_points(s.volume, cfg)
        assert xyz.dtype == np.float32 and f.shape == (len(xyz), 1) and v.dtype == np.int32
        assert (f[:, 0] > CFG["threshold"]).all()
        assert (v >= 0).all() and (v < 64).all()
        # voxels are floor((xyz - origin) / voxel) as [z, y, x]
        ijk = np.floor((xyz.astype(np.float64) - cell_origin(s.lattice.matrix)) / 0.5).astype(int)
        assert (np.abs(ijk[:, ::-1] - v) <= 1).all() and (ijk[:, ::-1] == v).mean() > 0.99
        # features are the dense grid values at those grid points
        rho, _ = dens[sid]
        frac = xyz.astype(np.float64) @ np.linalg.inv(s.lattice.matrix)
        idx = np.round(frac * np.array(rho.shape[1:])).astype(int) % np.array(rho.shape[1:])
        np.testing.assert_allclose(rho[0][tuple(idx.T)], f[:, 0], rtol=1e-6)
        assert len(np.unique(idx, axis=0)) == len(idx)  # without replacement
    # seeded per structure: same again, other seed differs
    out2 = tmp / "random2.zarr"
    write_sample_store(dense, out2, "random", CFG, seed=3)
    np.testing.assert_array_equal(read_sample(out2)[0]["xyz"], arrays["xyz"])
    out3 = tmp / "random3.zarr"
    write_sample_store(dense, out3, "random", CFG, seed=4)
    assert not np.array_equal(read_sample(out3)[0]["xyz"], arrays["xyz"])


def test_grid_dense_mean_per_voxel(stores):
    tmp, _, dense = stores
    out = tmp / "grid.zarr"
    write_sample_store(dense, out, "grid", CFG)
    arrays, attrs = read_sample(out)
    assert np.all(np.diff(arrays["offsets"]) > 0)
    for i, (_sid, rho, a) in enumerate(iter_density_store(dense)):
        xyz, f, v = read_sample(out, i)
        assert len(np.unique(v, axis=0)) == len(v)  # one point per voxel
        # brute force: all grid points above threshold binned with pandas
        n = rho.shape[1:]
        ijk = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
        cart = (ijk / np.array(n)) @ np.asarray(a["cell"])
        val = rho[0].reshape(-1).astype(np.float64)
        keep = val > CFG["threshold"]
        origin = cell_origin(np.asarray(a["cell"]))
        vox = np.floor((cart[keep] - origin) / 0.5).astype(int)
        df = pd.DataFrame({"x": vox[:, 0], "y": vox[:, 1], "z": vox[:, 2], "v": val[keep]})
        ref = df.groupby(["z", "y", "x"])["v"].mean()
        assert len(ref) == len(v)
        got = pd.Series(f[:, 0], index=pd.MultiIndex.from_arrays(v.T.astype(int), names=["z", "y", "x"]))
        np.testing.assert_allclose(got.sort_index().to_numpy(), ref.sort_index().to_numpy(), rtol=1e-5)
        # voxel centres
        np.testing.assert_allclose(xyz, origin + (v[:, ::-1] + 0.5) * 0.5, atol=1e-4)


def test_direct_path(stores):
    tmp, ingest, dense = stores
    out_r = tmp / "random_direct.zarr"
    assert write_sample_store(ingest, out_r, "random", CFG, seed=1, direct=True,
                              density={"b_iso": 0.5})["ok"] == 3
    arrays, attrs = read_sample(out_r)
    assert attrs["source"] == "direct"
    for i, sid in enumerate(attrs["ids"]):
        s = structures()[sid]
        xyz, f, v = read_sample(out_r, i)
        assert len(xyz) == n_points(s.volume, CFG) and (f[:, 0] > CFG["threshold"]).all()
        frac = xyz.astype(np.float64) @ np.linalg.inv(s.lattice.matrix)
        assert (frac > -1e-5).all() and (frac < 1 + 1e-5).all()
        np.testing.assert_allclose(DirectModel.from_structure(s)(xyz.astype(np.float64)), f[:, 0], rtol=1e-4)
        assert (v >= 0).all() and (v < 64).all()
    # grid: voxel centres vs the mean over grid points of the dense path
    out_g, out_gd = tmp / "grid_direct.zarr", tmp / "grid_dense.zarr"
    write_sample_store(ingest, out_g, "grid", {**CFG, "threshold": 0.0}, direct=True)
    write_sample_store(dense, out_gd, "grid", {**CFG, "threshold": 0.0})
    for i in range(3):
        xyz1, f1, v1 = read_sample(out_g, i)
        xyz2, f2, v2 = read_sample(out_gd, i)
        a = pd.Series(f1[:, 0], index=pd.MultiIndex.from_arrays(v1.T.astype(int)))
        b = pd.Series(f2[:, 0], index=pd.MultiIndex.from_arrays(v2.T.astype(int)))
        common = a.index.intersection(b.index)
        assert len(common) > 0.7 * len(b) and len(common) > 0.7 * len(a)  # boundary voxels differ
        ratio = a[common].to_numpy() / b[common].to_numpy()
        assert np.median(np.abs(np.log(ratio))) < 0.1


def test_frame_too_small_rejected(stores):
    tmp, _, dense = stores
    out = tmp / "small.zarr"
    counts = write_sample_store(dense, out, "grid", {**CFG, "frame": 6.0})
    attrs = read_sample(out)[1]
    assert counts == {"ok": 2, "rejected": 1} and "frame" in attrs["rejected"]["mono"]


def test_chgcar_four_channels_and_cli(tmp_path, repo_root):
    from rhosym.cli import main

    fx = repo_root / "tests" / "fixtures" / "mp_tiny"
    rows = [{"id": p.name.split("_")[0], "kind": "mp_chgcar", "status": "ok", "structure": None,
             "chgcar_path": str(p)} for p in sorted(fx.glob("*CHGCAR.gz"))[3:7]]
    ingest = tmp_path / "shard-00000.parquet"
    pd.DataFrame(rows).to_parquet(ingest)
    dense = tmp_path / "d.zarr"
    assert run_density_shard(ingest, dense, {})["ok"] == 4
    out = tmp_path / "s.zarr"
    assert main(["sample", str(dense), "--method", "random", "--out", str(out), "--threshold", "0.0",
                 "--min-points", "200", "--max-points", "200"]) == 0
    arrays, attrs = read_sample(out)
    assert attrs["channels"] == ["total", "magnetization", "up", "down"]
    f = arrays["features"]
    assert f.shape == (800, 4)
    np.testing.assert_allclose(f[:, 2] - f[:, 3], f[:, 1], atol=1e-5)
    np.testing.assert_allclose(f[:, 2] + f[:, 3], f[:, 0], atol=1e-5)
    spin = np.diff(arrays["offsets"])
    assert (np.abs(f[: spin[0], 1]) == 0).all()  # mp-90004 is non-spin
    assert (f[spin[0]:, 1] != 0).any()


def test_sample_one_settings_or_dict(stores):
    _, _, dense = stores
    sid, rho, a = next(iter(iter_density_store(dense)))
    lat = np.asarray(a["cell"])
    for method in ("random", "grid"):
        x1, f1, v1 = sample_one(method, CFG, sid, lat, 7, rho=rho)
        x2, f2, v2 = sample_one(method, SampleSettings(**CFG), sid, lat, 7, rho=rho)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(v1, v2)
    assert len(x1) == len(np.unique(v1, axis=0))  # grid: one point per voxel
    assert n_points(5.64**3, CFG) == 897 and n_points(1.0, CFG) == 300 and n_points(1e4, CFG) == 2000
    with pytest.raises(ValueError, match="unknown sampling method"):
        sample_one("nope", CFG, sid, lat, 7, rho=rho)
    with pytest.raises(ValueError, match="sample.frame"):
        sample_one("grid", {**CFG, "frame": 4.0}, sid, lat, 7, rho=rho)


# ------------------------------------------------------------------------------------ augmentations
def _frac(xyz, lattice):
    return np.asarray(xyz, dtype=np.float64) @ np.linalg.inv(np.asarray(lattice, dtype=np.float64))


def test_origin_shift_moves_points_and_keeps_values(stores):
    from rhosym.augment import origin_shift, shift_grid, transform_density_sample

    _, _, dense = stores
    rng = np.random.default_rng(0)
    for sid, rho, a in iter_density_store(dense):
        lat = np.asarray(a["cell"])
        xyz, f, _v = sample_one("random", CFG, sid, lat, 3, rho=rho)
        t = rng.random(3)
        moved = origin_shift(xyz, lat, t)
        assert moved.shape == xyz.shape and moved.dtype == np.float32
        fr, fr0 = _frac(moved, lat), _frac(xyz, lat)
        assert (fr > -1e-5).all() and (fr < 1 + 1e-5).all()  # all inside the cell
        assert np.linalg.norm(moved - xyz, axis=1).min() > 1e-3  # every point moved
        d = fr - fr0 - t
        np.testing.assert_allclose(d - np.round(d), 0, atol=1e-5)  # by t, modulo lattice vectors
        # the augmentation moves the points only: the values, and so their sum, are the same
        smp = {"xyz": xyz, "features": f, "voxels": _v, "spatial_shape": np.array([64, 64, 64])}
        out = transform_density_sample(smp, lat, np.random.default_rng(5), CFG["voxel"], CFG["frame"],
                                       shift=True, rotation=False)
        assert out["features"] is f and out["features"].astype(np.float64).sum() == f.astype(np.float64).sum()
        assert not np.allclose(out["xyz"], xyz) and (out["voxels"] >= 0).all() and (out["voxels"] < 64).all()
        np.testing.assert_array_equal(
            out["voxels"], np.floor((out["xyz"].astype(np.float64) - cell_origin(lat)) / CFG["voxel"])[:, ::-1])
        # a dense grid shifted by whole steps: the same integral, and sampling commutes with the shift
        n = np.array(rho.shape[1:])
        steps = rng.integers(1, n)
        tg = steps / n
        rolled = shift_grid(rho, tg)
        assert rolled.shape == rho.shape
        assert rolled.astype(np.float64).sum() == rho.astype(np.float64).sum()  # ∫ρ exactly
        assert rolled[0].astype(np.float64).mean() * abs(np.linalg.det(lat)) == pytest.approx(a["n_electrons"],
                                                                                             rel=1e-12)
        idx = np.round(_frac(origin_shift(xyz, lat, tg), lat) * n).astype(int) % n
        # grid points moved by the same shift land on the values they had
        np.testing.assert_array_equal(rolled[0][tuple(idx.T)], f[:, 0])
    assert origin_shift(np.zeros((1, 3)), np.eye(3) * 4, [1.25, -0.5, 0.0]).tolist() == [[1.0, 2.0, 0.0]]


def test_rotation_keeps_the_frame_check():
    from rhosym.augment import fits, random_rotation, rotate, transform_density_sample, voxelize

    rng = np.random.default_rng(0)
    lat = np.array([[4.1, 0, 0], [0, 5.0, 0], [-1.5, 0, 6.0]])
    xyz = (rng.random((500, 3)) @ lat).astype(np.float32)
    feats = rng.random((500, 1)).astype(np.float32)
    shape = np.array([64, 64, 64])
    sample = {"xyz": xyz, "features": feats, "voxels": np.zeros((500, 3), np.int32), "spatial_shape": shape}
    dist = np.linalg.norm(xyz[:50, None].astype(np.float64) - xyz[None, :50], axis=-1)
    for _ in range(10):
        R = random_rotation(rng)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        rx, rl = rotate(xyz, lat, R)
        # the points keep their fractional coordinates in the rotated cell, and their distances
        np.testing.assert_allclose(_frac(rx, rl), _frac(xyz, lat), atol=1e-4)
        np.testing.assert_allclose(np.linalg.norm(rx[:50, None].astype(np.float64) - rx[None, :50], axis=-1), dist,
                                   atol=1e-4)
        v = voxelize(rx, cell_origin(rl), 0.5, shape)
        assert v is not None and (v >= 0).all() and (v < 64).all()
        np.testing.assert_array_equal(v, np.floor((rx.astype(np.float64) - cell_origin(rl)) / 0.5)[:, ::-1])
    changed = 0
    for seed in range(10):
        out = transform_density_sample(sample, lat, np.random.default_rng(seed), 0.5, 32.0, shift=False)
        assert out is not sample  # the cell fits the frame in every orientation: always rotated
        changed += not np.allclose(out["xyz"], xyz)
        np.testing.assert_array_equal(out["features"], feats)
        assert (out["voxels"] >= 0).all() and (out["voxels"] < 64).all()
        np.testing.assert_allclose(np.linalg.norm(out["xyz"][:50, None].astype(np.float64) - out["xyz"][None, :50],
                                                  axis=-1), dist, atol=1e-4)
        both = transform_density_sample(sample, lat, np.random.default_rng(seed), 0.5, 32.0)
        assert (both["voxels"] >= 0).all() and (both["voxels"] < 64).all()
    assert changed == 10
    # a cell that fits only as it is: the rotation is skipped, the shift still applies
    big = np.eye(3) * 30.0
    bx = (rng.random((200, 3)) @ big).astype(np.float32)
    bs = {"xyz": bx, "features": np.ones((200, 1), np.float32), "voxels": np.zeros((200, 3), np.int32),
          "spatial_shape": shape}
    assert fits(big, 32.0) and not fits(rotate(bx, big, random_rotation(rng))[1], 32.0)
    out = transform_density_sample(bs, big, np.random.default_rng(1), 0.5, 32.0)
    fr = _frac(out["xyz"], big)
    assert (fr > -1e-5).all() and (fr < 1 + 1e-5).all() and not np.allclose(out["xyz"], bx)
    assert (out["voxels"] >= 0).all() and (out["voxels"] < 60).all()


def test_unique_voxels_equals_numpy_unique():
    from rhosym.sampling import unique_voxels

    rng = np.random.default_rng(3)
    far = np.array([[0, 0, 0], [100_000, 5, 7], [0, 0, 0], [-100_000, 3, 2]])  # sparse keys: the np.unique path
    for vox in (rng.integers(-4, 30, (50_000, 3)), rng.integers(0, 2, (7, 3)), far,
                np.zeros((0, 3), dtype=np.int64)):
        got = unique_voxels(vox)
        if len(vox) == 0:
            assert all(len(a) == 0 for a in got)
            continue
        want = np.unique(vox, axis=0, return_inverse=True, return_counts=True)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, np.asarray(w).reshape(g.shape))


def _occupied(voxels) -> int:
    return len(np.unique(np.asarray(voxels), axis=0))


@pytest.mark.parametrize("lattice", [np.diag([8.9, 9.3, 9.7]), np.array([[9.0, 0, 0], [-4.5, 7.794, 0], [0, 0, 8.3]])])
def test_origin_shifted_training_sample_equals_a_freshly_sampled_shifted_structure(lattice):
    """The training-time origin shift (whole voxels, re-binned) gives the occupied voxels and values that
    grid sampling of the shifted structure gives, up to the voxels next to a cell face, with every point at
    a voxel centre; a shift by an arbitrary vector (what main did) leaves the points off the centres."""
    from pymatgen.core import Lattice, Structure

    from rhosym.augment import origin_shift, transform_density_sample, voxel_shift
    from rhosym.density import DirectModel

    cfg = {**CFG, "voxel": 0.4, "frame": 20.0, "threshold": 0.01}
    st = Structure(Lattice(lattice), ["Na", "Cl", "O"], [[0.1, 0.2, 0.3], [0.6, 0.55, 0.7], [0.35, 0.8, 0.15]])
    lat = st.lattice.matrix

    def grid(structure):
        model = DirectModel.from_structure(structure, b_iso=0.5, blur=0.0, cutoff=1e-5)
        return sample_one("grid", cfg, "x", structure.lattice.matrix, 0, model=model)

    xyz, f, vox = grid(st)
    smp = {"xyz": xyz, "features": f, "voxels": vox, "spatial_shape": np.array([50, 50, 50])}
    n_interior = 0
    for seed in range(4):
        out = transform_density_sample(smp, lat, np.random.default_rng(seed), cfg["voxel"], cfg["frame"],
                                       shift=True, rotation=False, rebin=True)
        t = voxel_shift(np.random.default_rng(seed), lat, cfg["voxel"])
        moved = st.copy()
        moved.translate_sites(list(range(len(moved))), t, frac_coords=True, to_unit_cell=True)
        _, _, fresh = grid(moved)
        # voxels next to a cell face: where wrapped points are re-binned
        inv = np.linalg.inv(lat)
        spacing = 1.0 / np.linalg.norm(inv, axis=0)  # distance between opposite faces
        fr = (cell_origin(lat) + (fresh[:, ::-1].astype(float) + 0.5) * cfg["voxel"]) @ inv
        near = ((np.minimum(fr % 1, 1 - fr % 1) * spacing) < cfg["voxel"]).any(1).sum()
        assert abs(_occupied(out["voxels"]) - len(fresh)) <= near, (seed, _occupied(out["voxels"]), len(fresh), near)
        assert len(out["xyz"]) == _occupied(out["voxels"])  # one point per occupied voxel, as grid sampling
        # the values: a voxel holding points that did not cross a cell face carries exactly the density the
        # fresh sample has there; points wrapped across a face are re-binned (averaged) into the voxel they
        # land in, as grid sampling averages a dense grid
        fresh_x, fresh_f, _ = grid(moved)
        at = {tuple(int(c) for c in v): float(val) for v, val in zip(fresh, fresh_f[:, 0])}
        frac = (xyz.astype(np.float64) + t @ lat) @ np.linalg.inv(lat)
        wrapped = ((frac < 0) | (frac >= 1)).any(1)
        moved_x = origin_shift(xyz, lat, t).astype(np.float64)
        seam = {tuple(int(c) for c in v) for v in
                np.floor((moved_x[wrapped] - cell_origin(lat)) / cfg["voxel"]).astype(int)[:, ::-1]}
        interior = [(tuple(int(c) for c in v), float(val)) for v, val in zip(out["voxels"], out["features"][:, 0])
                    if tuple(int(c) for c in v) not in seam]
        n_interior += len(interior)
        for key, val in interior:
            assert key in at and abs(at[key] - val) <= 1e-5 * max(abs(at[key]), 1e-3), key

        def centred(points):
            c = cell_origin(lat) + (np.floor((points - cell_origin(lat)) / cfg["voxel"]) + 0.5) * cfg["voxel"]
            return np.mean(np.linalg.norm(points.astype(np.float64) - c, axis=1) < 1e-3)

        # points stay at voxel centres; a shift by an arbitrary vector (what main did) moves them off
        assert centred(out["xyz"]) == 1.0
        assert centred(origin_shift(xyz, lat, np.random.default_rng(seed).random(3))) < 0.1
        print(f"{seed}: {len(out['xyz'])} vs {len(fresh)} occupied voxels ({near} next to a face), "
              f"{len(interior)} interior ones exact, {int(wrapped.sum())} points wrapped")
    assert n_interior > 100
