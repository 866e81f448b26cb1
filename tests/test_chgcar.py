"""CHGCAR reader vs pymatgen, electron/moment counts on real files, corrupt files, writer round trip."""

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest

from rhosym.io.chgcar import read_chgcar, write_chgcar

# file: (valence electrons, net moment or None, tolerance on the moment as listed in the README)
REAL = {
    "Li_bcc_nospin_CHGCAR.gz": (1.0, None),
    "Li_bcc_spin_CHGCAR.gz": (1.0, -0.020),
    "Co_monolayer_fm_CHGCAR": (9.0, 2.07),
    "Ag4_hex_spin_CHGCAR": (76.0, 0.0),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(REAL))
def test_reader_matches_pymatgen_and_counts(shared_data, name):
    from pymatgen.io.vasp import Chgcar

    path = shared_data / "chgcar" / name
    d = read_chgcar(path)
    ref = Chgcar.from_file(str(path))
    assert d.shape == ref.data["total"].shape
    np.testing.assert_allclose(d.total, ref.data["total"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.lattice, ref.structure.lattice.matrix, atol=1e-9)
    assert d.species == [s.symbol for s in ref.structure.species]
    n_el, moment = REAL[name]
    assert abs(d.n_electrons - n_el) <= 1e-4 * n_el
    # channels in e/A^3 integrate back to the counts
    ch = d.channels(4)
    assert ch.shape == (4, *d.shape) and ch.dtype == np.float32
    assert abs(ch[0].astype(np.float64).mean() * d.volume - n_el) <= 1e-4 * n_el
    if moment is None:
        assert not d.spin and ref.data.get("diff") is None
        np.testing.assert_array_equal(ch[1], 0)
        np.testing.assert_allclose(ch[2], ch[0] / 2, rtol=1e-6)
    else:
        assert d.spin
        np.testing.assert_allclose(d.mag, ref.data["diff"], rtol=0, atol=1e-12)
        m = ch[1].astype(np.float64).mean() * d.volume
        assert abs(m - d.magnetic_moment) <= 1e-4 * max(abs(d.magnetic_moment), 1e-3)
        assert abs(d.magnetic_moment - moment) < 0.006  # README values are rounded
        np.testing.assert_allclose(ch[2] - ch[3], ch[1], atol=1e-5)
        np.testing.assert_allclose(ch[2] + ch[3], ch[0], atol=1e-5)


def _nacl():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.mark.parametrize("suffix, opener", [("", None), (".gz", gzip), (".bz2", bz2), (".xz", lzma)])
def test_write_read_round_trip(tmp_path, suffix, opener):
    s = _nacl()
    rng = np.random.default_rng(0)
    total = rng.random((6, 5, 4)) + 0.1
    mag = (rng.random((6, 5, 4)) - 0.5) * 0.1
    plain = write_chgcar(tmp_path / "X_CHGCAR", s, total, mag)
    path = plain
    if opener is not None:
        path = tmp_path / f"X_CHGCAR{suffix}"
        path.write_bytes(opener.compress(plain.read_bytes()))
    d = read_chgcar(path)
    assert d.shape == (6, 5, 4) and d.spin
    np.testing.assert_allclose(d.total / d.volume, total, rtol=1e-10)
    np.testing.assert_allclose(d.mag / d.volume, mag, rtol=1e-9, atol=1e-14)
    assert d.species == ["Na", "Cl"]


def test_corrupt_files_raise_one_line_reason(tmp_path):
    s = _nacl()
    total = np.full((4, 4, 4), 0.5)
    good = write_chgcar(tmp_path / "good_CHGCAR", s, total).read_text()
    truncated = tmp_path / "trunc_CHGCAR"
    truncated.write_text(good[: int(len(good) * 0.7)])
    nan = tmp_path / "nan_CHGCAR"
    lines = good.split("\n")
    lines[-3] = lines[-3].replace(lines[-3].split()[0], "NaN", 1)
    nan.write_text("\n".join(lines))
    garbage = tmp_path / "garbage_CHGCAR"
    garbage.write_text("hello\nworld\n")
    badgz = tmp_path / "bad_CHGCAR.gz"
    badgz.write_bytes(gzip.compress(good.encode())[:-10])
    for path, word in [(truncated, "truncated"), (nan, "NaN"), (garbage, "header"), (badgz, "corrupt")]:
        with pytest.raises(ValueError, match=word) as e:
            read_chgcar(path)
        assert "\n" not in str(e.value)


def test_fixtures_are_readable(repo_root):
    from rhosym.shards import list_units

    fx = repo_root / "tests" / "fixtures" / "mp_tiny"
    from rhosym.density import read_charge_density
    from rhosym.io.mp_json import chgcar_json_ids, read_metadata, resolve_material_id

    units = list_units({"kind": "mp_chgcar", "path": str(fx)})
    assert len(units) == 12
    # eight CHGCAR texts and four MP JSON documents (bare or wrapped, named by task or material id)
    assert sum(u.key.endswith("_CHGCAR.gz") for u in units) == 8
    assert sum(u.key.endswith(".json.gz") for u in units) == 4
    data = [read_charge_density(u.ref) for u in units]
    spins = [d.spin for d in data]
    assert 0 < sum(spins) < len(spins)
    meta = read_metadata(fx / "metadata.csv")
    assert len(meta) == 12 and (meta["formation_energy"] < 0).any()
    # every file joins its labels on the material id, whichever way it names it
    mids = set()
    for u in units:
        name = Path(str(u.ref)).name
        fid = name.split("_")[0].removesuffix(".json.gz")
        doc = chgcar_json_ids(u.ref) if name.endswith(".json.gz") else None
        mids.add(resolve_material_id(fid, meta, doc)[0])
    assert mids == {f"mp-{90001 + i}" for i in range(12)}


@pytest.mark.slow
def test_chgcar_fixtures_regenerate(tmp_path, repo_root):
    """``python -m tests.fixtures.make_fixtures`` remakes mp_tiny: same cells, grids, electron counts,
    moments and metadata. (The committed grids predate the supercell fix of rhosym.density.dense_density
    for atoms wider than the cell, so the values agree closely but not exactly.)"""
    import pandas as pd

    from tests.fixtures.make_fixtures import make_chgcar_fixtures

    fx = repo_root / "tests" / "fixtures" / "mp_tiny"
    from rhosym.density import read_charge_density

    paths = make_chgcar_fixtures(tmp_path)
    assert sorted(p.name for p in paths) == sorted(p.name for p in fx.iterdir() if p.name != "metadata.csv")
    for p in paths:
        new, old = read_charge_density(p), read_charge_density(fx / p.name)
        assert new.shape == old.shape and new.species == old.species and new.spin == old.spin
        np.testing.assert_allclose(new.lattice, old.lattice, atol=1e-6)
        assert new.n_electrons == pytest.approx(old.n_electrons, rel=1e-6)
        if old.spin:
            assert new.magnetic_moment == pytest.approx(old.magnetic_moment, rel=1e-5)
        assert np.corrcoef(new.total.ravel(), old.total.ravel())[0, 1] > 0.999
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metadata.csv"), pd.read_csv(fx / "metadata.csv"))
