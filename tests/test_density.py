"""Structure-derived densities (electron counts), the dense store, the fast path vs gemmi's grid."""

import json

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from rhosym.density import (
    DirectModel,
    dense_density,
    expected_electrons,
    iter_density_store,
    run_density_shard,
)
from rhosym.store import read_attrs


def nacl():
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def partial():
    """Mixed, partially occupied site and a B factor on one site."""
    return Structure(Lattice.tetragonal(4.0, 5.0), [{"Fe": 0.5, "Co": 0.3}, {"O": 1.0}, {"Li": 0.25}],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0.25]], site_properties={"b_iso": [2.0, 0.5, 1.0]})


def write_ingest(path, rows):
    df = pd.DataFrame(rows)
    for c in ("structure", "chgcar_path"):
        if c not in df.columns:
            df[c] = None
    df.to_parquet(path)
    return path


def srow(sid, s, status="ok"):
    return {"id": sid, "kind": "synthetic", "status": status, "structure": json.dumps(s.as_dict()),
            "chgcar_path": None}


@pytest.mark.parametrize("spacing", [0.06, 0.15])
def test_nacl_integrates_to_112(spacing):
    rho, info = dense_density(nacl(), spacing=spacing)
    assert info["n_electrons_expected"] == 112.0
    assert abs(info["n_electrons"] - 112.0) < 0.005 * 112
    assert rho.dtype == np.float32 and min(rho.shape) == int(np.ceil(5.64 / spacing))
    assert max(info["spacing"]) <= spacing + 1e-9
    assert (rho >= -1e-6).all()


def test_partial_occupancy_and_b_factors():
    s = partial()
    exp = 0.5 * 26 + 0.3 * 27 + 8 + 0.25 * 3
    assert expected_electrons(s) == pytest.approx(exp)
    rho, info = dense_density(s, spacing=0.12)
    assert abs(info["n_electrons"] - exp) < 0.005 * exp
    # B factor spreads density: the peak at the Fe/Co site (B=2) is lower than with B=0.5
    s2 = s.copy(site_properties={"b_iso": [0.5, None, 1.0]})
    rho2, _ = dense_density(s2, spacing=0.12)
    assert rho[0, 0, 0] < rho2[0, 0, 0]


def test_direct_matches_gemmi_grid():
    for s in (nacl(), partial()):
        rho, _ = dense_density(s, spacing=0.2, b_iso=0.7)
        m = DirectModel.from_structure(s, b_iso=0.7)
        n = rho.shape
        idx = np.stack(np.meshgrid(*[np.arange(k) for k in n], indexing="ij"), -1).reshape(-1, 3)
        pts = (idx / np.array(n)) @ s.lattice.matrix
        v = m(pts + s.lattice.matrix[0] * 2)  # periodic: a lattice translation changes nothing
        g = rho.reshape(-1).astype(np.float64)
        mask = g > 0.01
        assert mask.mean() > 0.5
        assert np.max(np.abs(v[mask] - g[mask]) / g[mask]) < 1e-3


def test_density_store_attributes_and_rejections(tmp_path):
    small = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])
    big = Structure(Lattice.cubic(20.0), ["Cu"], [[0, 0, 0]])
    rows = [srow("nacl", nacl()), srow("part", partial()), srow("big", big), srow("skip", small, "rejected"),
            {"id": "nos", "kind": "synthetic", "status": "ok", "structure": None, "chgcar_path": None}]
    ingest = write_ingest(tmp_path / "shard-00000.parquet", rows)
    out = tmp_path / "density" / "shard-00000.zarr"
    from rhosym.settings import DensitySettings

    counts = run_density_shard(ingest, out, DensitySettings(spacing=0.2, max_voxels=60**3))
    assert counts == {"ok": 2, "rejected": 2}
    attrs = read_attrs(out)
    assert attrs["ids"] == ["nacl", "part"] and attrs["counts"] == counts
    assert "max_voxels" in attrs["rejected"]["big"] and "structure" in attrs["rejected"]["nos"]
    items = list(iter_density_store(out))
    sid, rho, a = items[0]
    assert sid == "nacl" and rho.shape == (1, 29, 29, 29) and rho.dtype == np.float32
    assert a["channels"] == ["total"] and a["n_electrons_expected"] == 112.0
    assert abs(a["n_electrons"] - 112) < 0.5 and a["bytes"] > 0
    np.testing.assert_allclose(a["cell"], nacl().lattice.matrix)
    assert abs(rho.astype(np.float64).mean() * nacl().volume - a["n_electrons"]) < 1e-3
    assert not list(tmp_path.glob("density/*.tmp-*"))


def test_store_is_atomic(tmp_path, monkeypatch):
    import rhosym.density as dens

    ingest = write_ingest(tmp_path / "shard-00000.parquet", [srow("nacl", nacl()), srow("part", partial())])
    out = tmp_path / "shard-00000.zarr"
    calls = {"n": 0}
    real = dens.density_of_row

    def boom(row, cfg):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(row, cfg)

    monkeypatch.setattr(dens, "density_of_row", boom)
    with pytest.raises(KeyboardInterrupt):
        run_density_shard(ingest, out, {"spacing": 0.3})
    assert not out.exists()
    assert not list(tmp_path.glob("*.zarr*"))


@pytest.mark.shared
def test_chgcar_rows_in_store(tmp_path, shared_data):
    rows = [{"id": "li", "kind": "mp_chgcar", "status": "ok", "structure": None,
             "chgcar_path": str(shared_data / "chgcar" / "Li_bcc_spin_CHGCAR.gz")},
            {"id": "li0", "kind": "mp_chgcar", "status": "ok", "structure": None,
             "chgcar_path": str(shared_data / "chgcar" / "Li_bcc_nospin_CHGCAR.gz")}]
    bad = tmp_path / "bad_CHGCAR"
    bad.write_text((shared_data / "chgcar" / "Ag4_hex_spin_CHGCAR").read_text()[:5000])
    rows.append({"id": "bad", "kind": "mp_chgcar", "status": "ok", "structure": None, "chgcar_path": str(bad)})
    ingest = write_ingest(tmp_path / "shard-00000.parquet", rows)
    out = tmp_path / "shard-00000.zarr"
    assert run_density_shard(ingest, out, {}) == {"ok": 2, "rejected": 1}
    items = {sid: (rho, a) for sid, rho, a in iter_density_store(out)}
    rho, a = items["li"]
    assert rho.shape == (4, 48, 48, 48) and a["spin"]
    assert a["channels"] == ["total", "magnetization", "up", "down"]
    assert abs(a["n_electrons"] - 1.0) < 1e-4 and abs(a["magnetic_moment"] + 0.0203) < 1e-3
    rho0, a0 = items["li0"]
    assert a0["magnetic_moment"] is None and not a0["spin"]
    np.testing.assert_array_equal(rho0[1], 0)
    assert "truncated" in read_attrs(out)["rejected"]["bad"]


def test_cli_density_cif_and_chgcar(tmp_path, repo_root):
    from rhosym.cli import main

    cif = tmp_path / "nacl.cif"
    nacl().to(filename=str(cif))
    out = tmp_path / "nacl.zarr"
    assert main(["density", str(cif), "--out", str(out), "--spacing", "0.25"]) == 0
    (_, rho, a), = list(iter_density_store(out))
    assert abs(a["n_electrons"] - 112) < 0.56 and a["n_electrons_expected"] == 112
    chg = repo_root / "tests" / "fixtures" / "mp_tiny" / "mp-90005_CHGCAR.gz"
    out2 = tmp_path / "fe.zarr"
    assert main(["density", str(chg), "--out", str(out2), "--channels", "1"]) == 0
    (_, rho, a), = list(iter_density_store(out2))
    assert rho.shape[0] == 1 and abs(a["magnetic_moment"] - 2.2) < 1e-4 and abs(a["n_electrons"] - 8) < 1e-4


def test_bench_dispatch(monkeypatch, capsys):
    import rhosym.bench.density
    from rhosym.cli import main

    assert main(["bench", "no_such_kind"]) == 1  # one line on stderr (rhosym.cli), no traceback
    err = capsys.readouterr().err
    assert err.startswith("rhosym bench: unknown benchmark 'no_such_kind'; known: ")
    known = err.strip().split("known: ")[1].split(", ")
    assert {"dag", "density", "inputs", "scale", "train"} <= set(known) and len(err.splitlines()) == 1
    seen = []
    monkeypatch.setattr(rhosym.bench.density, "main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "density", "--n", "3"]) == 0 and seen == [["--n", "3"]]


def test_settings_objects_or_dicts():
    from rhosym.density import density_of_row
    from rhosym.settings import DensitySettings, parse_config
    from rhosym.workflow import density_path

    cfg = parse_config({"datasets": {"syn": {"kind": "synthetic", "n": 2},
                                     "mp": {"kind": "mp_chgcar", "path": "x"}},
                        "density": {"path": "direct"}})
    assert density_path(cfg, "syn") == "direct" and density_path(cfg, "mp") == "dense"
    assert density_path(parse_config({"datasets": {"syn": {"kind": "synthetic", "n": 2}}}), "syn") == "dense"
    row = srow("nacl", nacl())
    rho_d, a_d = density_of_row(row, {"spacing": 0.3, "b_iso": None})  # None: the default
    rho_s, a_s = density_of_row(row, DensitySettings(spacing=0.3))
    np.testing.assert_array_equal(rho_d, rho_s)
    assert a_d == a_s and a_d["shape"] == [19, 19, 19] and a_d["n_electrons_expected"] == 112.0
    assert abs(a_d["n_electrons"] - 112) < 0.005 * 112
    # the tolerance on the electron count is a rejection reason
    with pytest.raises(ValueError, match="differs from expected 112.0000 e by more than 0.00%"):
        density_of_row(row, {"spacing": 0.3, "tolerance": 1e-9})
    with pytest.raises(ValueError, match="max_voxels"):
        density_of_row(row, {"spacing": 0.3, "max_voxels": 100})
    with pytest.raises(ValueError, match="no structure"):
        density_of_row({"id": "x", "kind": "cif_dir", "structure": None}, None)


def test_read_charge_density_chgcar_and_mp_json(tmp_path, repo_root):
    import gzip

    from monty.json import MontyEncoder
    from pymatgen.io.vasp import Chgcar

    from rhosym.density import density_of_row, read_charge_density

    chg = repo_root / "tests" / "fixtures" / "mp_tiny" / "mp-90005_CHGCAR.gz"
    doc = {"task_id": "mp-123456", "data": Chgcar.from_file(str(chg)).as_dict()}
    js = tmp_path / "mp-123456.json.gz"
    with gzip.open(js, "wt") as fh:
        json.dump(doc, fh, cls=MontyEncoder)
    a, b = read_charge_density(chg), read_charge_density(js)
    assert a.shape == b.shape and a.species == b.species == ["Fe"]
    np.testing.assert_allclose(b.total, a.total, rtol=1e-12)
    np.testing.assert_allclose(b.lattice, a.lattice, atol=1e-12)
    assert b.n_electrons == pytest.approx(8.0, abs=1e-4) and b.magnetic_moment == pytest.approx(2.2, abs=1e-4)
    rho, attrs = density_of_row({"id": "fe", "kind": "mp_chgcar", "chgcar_path": str(js)}, {"channels": 4})
    assert rho.shape == (4, *a.shape) and attrs["channels"] == ["total", "magnetization", "up", "down"]
    assert attrs["n_electrons"] == pytest.approx(8.0, abs=1e-4) and attrs["spin"]
    np.testing.assert_allclose(rho[2] - rho[3], rho[1], atol=1e-5)


def test_store_helpers_round_trip(tmp_path):
    from rhosym.store import open_new_store, read_store, write_store

    path = tmp_path / "x.zarr"
    write_store(path, {"a": np.arange(12, dtype=np.float32).reshape(4, 3), "e": np.zeros((0, 3), np.int32)},
                {"ids": ["p", "q"], "counts": {"ok": 2, "rejected": 0}, "v": np.float64(1.5)})
    arrays, attrs = read_store(path)
    np.testing.assert_array_equal(arrays["a"], np.arange(12).reshape(4, 3))
    assert arrays["e"].shape == (0, 3) and attrs["v"] == 1.5 and attrs["ids"] == ["p", "q"]
    group, finalize = open_new_store(path)  # replaces the old store only when finalized
    assert read_store(path)[1]["ids"] == ["p", "q"]
    group.attrs["ids"] = []
    finalize()
    assert read_store(path)[1]["ids"] == [] and not list(tmp_path.glob("*.tmp-*"))
