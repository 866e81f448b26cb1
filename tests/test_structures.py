"""Readers: CIF blocks, occupancies, B factors, CHGCAR headers, CSV rows."""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from rhosym.ingest import min_distance_violation
from rhosym.io import structures as st
from rhosym.io.chgcar import read_chgcar_structure

ROOT = Path(__file__).resolve().parents[1]
CIF_TINY = ROOT / "tests" / "fixtures" / "cif_tiny"


def test_b_factors_and_occupancy_rescaled():
    (rec,) = st.read_cif(CIF_TINY / "MgO_bfactors.cif", occupancy_tolerance=1.05)
    assert rec.ok, rec.error
    s = rec.structure
    b = {site.species_string: site.properties["b_iso"] for site in s}
    assert b["Mg"] == pytest.approx(0.31) and b["O"] == pytest.approx(0.42)
    # occupancy 1.02 is within the tolerance and scaled back to 1
    assert all(sum(site.species.values()) == pytest.approx(1.0) for site in s)
    assert s.composition.reduced_formula == "MgO" and len(s) == 8


def test_occupancy_above_tolerance_rejected():
    text = (CIF_TINY / "MgO_bfactors.cif").read_text()
    (rec,) = st.read_cif_blocks(text, "x", occupancy_tolerance=1.01)
    assert not rec.ok and "occupancy_tolerance" in rec.error


def test_two_blocks_and_u_iso():
    recs = st.read_cif(CIF_TINY / "two_blocks.cif")
    assert [r.block for r in recs] == ["Si_diamond", "W_bcc"]
    assert recs[0].structure.composition.reduced_formula == "Si" and len(recs[0].structure) == 8
    assert "b_iso" not in recs[0].structure.site_properties
    w = recs[1].structure
    assert len(w) == 2
    assert w[0].properties["b_iso"] == pytest.approx(0.0025 * 8 * math.pi**2)


def test_mixed_and_partial_sites_agree_with_pymatgen():
    from pymatgen.io.cif import CifParser

    (rec,) = st.read_cif(CIF_TINY / "LiFeNiO_mixed.cif")
    s = rec.structure
    assert not s.is_ordered
    ref = CifParser(CIF_TINY / "LiFeNiO_mixed.cif").parse_structures(primitive=False)[0]
    assert s.composition.almost_equals(ref.composition)
    mixed = [site for site in s if len(site.species) == 2][0]
    assert mixed.species.get_el_amt_dict() == pytest.approx({"Fe": 0.6, "Ni": 0.4})


def test_bad_cifs_give_one_line_reasons():
    (bad,) = st.read_cif(CIF_TINY / "bad_unparsable.cif")
    assert bad.structure is None and bad.error.startswith("unparsable CIF") and "\n" not in bad.error
    (zero,) = st.read_cif(CIF_TINY / "bad_zero_occupancy.cif")
    assert zero.error.startswith("zero or negative occupancy") and "Cl1" in zero.error
    (ov,) = st.read_cif(CIF_TINY / "bad_overlap.cif")
    assert ov.ok
    assert min_distance_violation(ov.structure, 0.5).startswith("atoms closer than 0.5 A")
    (missing,) = st.read_cif(CIF_TINY / "does_not_exist.cif")
    assert missing.error.startswith("unreadable file")


def test_split_positions_are_not_clashes():
    from pymatgen.core import Lattice, Structure

    lat = Lattice.cubic(5.0)
    split = Structure(lat, [{"Li": 0.5}, {"Li": 0.5}, "O"], [[0, 0, 0], [0.05, 0, 0], [0.5, 0.5, 0.5]])
    assert min_distance_violation(split, 0.5) == ""
    over = Structure(lat, [{"Li": 0.6}, {"Li": 0.6}, "O"], [[0, 0, 0], [0.05, 0, 0], [0.5, 0.5, 0.5]])
    assert "closer than" in min_distance_violation(over, 0.5)


def test_aniso_b_eq_matches_gemmi():
    """B_eq from U^ij equals 8π² times gemmi's UnitCell.calculate_u_eq."""
    import gemmi
    from pymatgen.core import Lattice

    params = (5.1, 6.3, 7.2, 81.0, 76.0, 70.0)
    u = {"11": 0.011, "22": 0.017, "33": 0.013, "12": 0.002, "13": -0.003, "23": 0.004}
    data = {"_atom_site_aniso_label": ["A"], **{f"_atom_site_aniso_U_{k}": [str(v)] for k, v in u.items()}}
    got = st._aniso_b_eq(data, Lattice.from_parameters(*params))["A"]
    ref = gemmi.UnitCell(*params).calculate_u_eq(
        gemmi.SMat33d(u["11"], u["22"], u["33"], u["12"], u["13"], u["23"]))
    assert got == pytest.approx(8 * math.pi**2 * ref, rel=1e-6)


def _write_chgcar(path: Path, grid=(4, 5, 6)):
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.vasp import Chgcar, Poscar

    s = Structure(Lattice.hexagonal(3.0, 5.0), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    data = np.full(grid, 2.0 * s.volume)
    Chgcar(Poscar(s), {"total": data}).write_file(str(path))
    return s


def test_chgcar_header_and_truncation(tmp_path):
    s = _write_chgcar(tmp_path / "CHGCAR")
    rec = read_chgcar_structure(tmp_path / "CHGCAR")
    assert rec.ok and rec.extra["grid"] == [4, 5, 6]
    assert rec.structure.composition == s.composition
    assert np.allclose(rec.structure.lattice.matrix, s.lattice.matrix, atol=1e-5)
    raw = (tmp_path / "CHGCAR").read_bytes()
    cut = raw[: len(raw) * 2 // 3]
    (tmp_path / "cut_CHGCAR").write_bytes(cut)
    bad = read_chgcar_structure(tmp_path / "cut_CHGCAR")
    assert not bad.ok and "truncated" in bad.error
    with gzip.open(tmp_path / "z_CHGCAR.gz", "wb") as fh:
        fh.write(raw)
    assert read_chgcar_structure(tmp_path / "z_CHGCAR.gz").ok
    with gzip.open(tmp_path / "zcut_CHGCAR.gz", "wb") as fh:
        fh.write(cut)
    assert "truncated" in read_chgcar_structure(tmp_path / "zcut_CHGCAR.gz").error
    (tmp_path / "grid_CHGCAR").write_bytes(raw.replace(b"   4   5   6", b"   4   x   6", 1))
    assert "grid line" in read_chgcar_structure(tmp_path / "grid_CHGCAR").error


def test_real_chgcar_headers(shared_data):
    if not (shared_data / "chgcar").is_dir():
        pytest.skip("../shared/data/chgcar is absent: real CHGCAR test skipped")
    want = {"Li_bcc_nospin_CHGCAR.gz": ("Li", [32, 32, 32]), "Ag4_hex_spin_CHGCAR": ("Ag4", [20, 20, 60]),
            "Co_monolayer_fm_CHGCAR": ("Co1", [24, 24, 196])}
    for name, (formula, grid) in want.items():
        rec = read_chgcar_structure(shared_data / "chgcar" / name)
        assert rec.ok, rec.error
        assert rec.structure.composition.formula.replace(" ", "") in (formula, formula + "1")
        assert rec.extra["grid"] == grid


def test_csv_row_with_column_mapping():
    import pandas as pd

    df = pd.read_csv(ROOT / "tests" / "fixtures" / "csv_tiny.csv")
    df = df.rename(columns={"material_id": "mid", "formation_energy_per_atom": "e_form"})
    rec = st.read_csv_row(df.iloc[2], {"id": "mid", "formation_energy": "e_form"}, "t.csv", 2)
    assert rec.ok and rec.source == "t.csv#2"
    assert rec.extra["id"] == "tiny-3" and rec.extra["formation_energy"] == pytest.approx(-3.05)
    assert rec.structure.composition.reduced_formula == "MgO"
    rec = st.read_csv_row({"material_id": "x"}, None, "t.csv", 0)
    assert not rec.ok and "no CIF string" in rec.error and math.isnan(rec.extra["band_gap"])


def test_sniff_kind():
    assert st.sniff_kind("a/b.cif") == "cif"
    assert st.sniff_kind("a/b.cif.gz") == "cif" and st.sniff_kind("x.mcif") == "cif"
    assert st.sniff_kind("mp-1_CHGCAR.gz") == "chgcar"
    assert st.sniff_kind("mp-2.chgcar.xz") == "chgcar" and st.sniff_kind("AECCAR0") == "chgcar"
    assert st.sniff_kind("x.csv") == "csv"
    assert st.sniff_kind("POSCAR") == "poscar"
