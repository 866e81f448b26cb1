"""Symmetry labels and the 230 -> 101 extinction-group table (rhosym.symmetry)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from rhosym import symmetry
from rhosym.cli import main


@pytest.fixture(scope="module")
def fresh():
    return symmetry.compute_extinction_table()


@pytest.fixture(scope="module")
def table():
    return symmetry.load_extinction_table()


def _group(df, sg):
    return int(df.loc[df.space_group == sg, "extinction_group"].iloc[0])


# ------------------------------------------------------------------------------------------------
# crystal systems


def test_crystal_system_boundaries():
    assert symmetry.CRYSTAL_SYSTEMS == ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal",
                                        "hexagonal", "cubic")
    expect = {1: "triclinic", 2: "triclinic", 3: "monoclinic", 15: "monoclinic", 16: "orthorhombic",
              74: "orthorhombic", 75: "tetragonal", 142: "tetragonal", 143: "trigonal", 167: "trigonal",
              168: "hexagonal", 194: "hexagonal", 195: "cubic", 230: "cubic"}
    for sg, cs in expect.items():
        assert symmetry.crystal_system(sg) == cs
    for bad in (0, 231):
        with pytest.raises(ValueError):
            symmetry.crystal_system(bad)


def test_crystal_system_agrees_with_spglib():
    import spglib
    from pymatgen.symmetry.groups import SpaceGroup

    for hall in range(1, 531, 7):
        sg = spglib.get_spacegroup_type(hall).number
        assert symmetry.crystal_system(sg) == SpaceGroup.from_int_number(sg).crystal_system


# ------------------------------------------------------------------------------------------------
# the table


def test_shipped_tables_equal_fresh_computation(fresh):
    shipped_path = symmetry.table_path()
    assert shipped_path.is_file()
    shipped = pd.read_csv(shipped_path)
    assert list(shipped.columns) == list(symmetry.TABLE_COLUMNS)
    pd.testing.assert_frame_equal(shipped, fresh)
    pd.testing.assert_frame_equal(symmetry.load_extinction_table(), fresh)


def test_counts_per_crystal_system(fresh):
    assert len(fresh) == 230 and list(fresh.space_group) == list(range(1, 231))
    assert sorted(fresh.extinction_group.unique()) == list(range(1, 102))
    counts = fresh.groupby("crystal_system").extinction_group.nunique().to_dict()
    assert counts == {"triclinic": 1, "monoclinic": 6, "orthorhombic": 33, "tetragonal": 31, "trigonal": 6,
                      "hexagonal": 7, "cubic": 17}
    assert sum(counts.values()) == 101
    # a group never spans two crystal systems; one symbol per group, distinct across groups
    assert (fresh.groupby("extinction_group").crystal_system.nunique() == 1).all()
    assert (fresh.groupby("extinction_group").extinction_symbol.nunique() == 1).all()
    assert fresh.extinction_symbol.nunique() == 101


def test_ids_ordered_by_lowest_space_group(fresh):
    lowest = fresh.groupby("extinction_group").space_group.min()
    assert list(lowest.index) == list(range(1, 102))
    assert lowest.is_monotonic_increasing


def test_standard_settings_alone_give_112():
    """Without the other settings (axis permutations, cell choices) absences split 112 ways."""
    hkl = symmetry._hkl_box(6)
    seen = {}
    for s in symmetry._settings():
        if s["number"] in seen:
            continue  # lowest Hall number = standard setting
        seen[s["number"]] = (symmetry.crystal_system(s["number"]),
                             symmetry._absent_mask(s["rotations"], s["t12"], hkl).tobytes())
    assert len(seen) == 230
    assert len(set(seen.values())) == 112


def test_rhombohedral_axes_would_merge_R_with_P():
    """Absences of R3 on rhombohedral axes (none) equal those of P3: those settings must stay out."""
    df = symmetry.compute_extinction_table(rhombohedral_axes=True)
    assert df.extinction_group.nunique() == 100
    assert _group(df, 146) == _group(df, 143)


@pytest.mark.parametrize("box", [4, 8])
def test_box_is_large_enough(box, fresh, monkeypatch):
    monkeypatch.setattr(symmetry, "_BOX", box)
    pd.testing.assert_frame_equal(symmetry.compute_extinction_table(), fresh)


def test_box_of_three_is_too_small(monkeypatch):
    monkeypatch.setattr(symmetry, "_BOX", 3)
    assert symmetry.compute_extinction_table().extinction_group.nunique() == 98


def test_absences_agree_with_gemmi():
    """Our absence rule on every Hall setting (rhombohedral axes too) vs gemmi's is_systematically_absent."""
    import gemmi

    hkl = symmetry._hkl_box(3)
    n = 0
    for s in symmetry._settings(rhombohedral_axes=True):
        ops = gemmi.symops_from_hall(s["hall_symbol"])
        ref = np.array([ops.is_systematically_absent([int(x) for x in h]) for h in hkl])
        np.testing.assert_array_equal(symmetry._absent_mask(s["rotations"], s["t12"], hkl), ref,
                                      err_msg=f"Hall {s['hall']}")
        n += 1
    assert n == 530


@pytest.mark.parametrize("sgs", [
    (1, 2),                      # P1, P-1
    (3, 6, 10),                  # P2, Pm, P2/m: no conditions
    (4, 11),                     # P21, P21/m: 0k0 k=2n
    (7, 13),                     # Pc, P2/c (Pn, Pa, P2/n, P2/a in other cell choices)
    (5, 8, 12),                  # C2, Cm, C2/m
    (9, 15),                     # Cc, C2/c
    (16, 25, 47),                # P222, Pmm2, Pmmm
    (29, 57),                    # Pca21, Pbcm (as Pcam)
    (33, 62),                    # Pna21, Pnma (as Pnam)
    (36, 40, 63),                # Cmc21, Ama2 (as Cc2m), Cmcm
    (85, 129),                   # P4/n, P4/nmm
    (76, 78, 91, 95),            # P41, P43, P4122, P4322
    (144, 145, 151, 152, 153, 154),  # P31, P32 and their 12/21 groups
    (161, 167),                  # R3c, R-3c
    (186, 190, 194),             # P63mc, P-62c, P63/mmc
    (196, 202, 209, 216, 225),   # F23, Fm-3, F432, F-43m, Fm-3m
    (203, 227),                  # Fd-3, Fd-3m
    (198, 208),                  # P213, P4232: h00 h=2n
])
def test_known_shared_groups(table, sgs):
    assert len({_group(table, sg) for sg in sgs}) == 1
    members = set(table.loc[table.extinction_group == _group(table, sgs[0]), "space_group"])
    assert members == set(sgs)


@pytest.mark.parametrize("sg", [14, 43, 70, 88, 141, 142, 228, 230])
def test_groups_alone(table, sg):
    """P21/c (P21/n, P21/a are the same space group), Fdd2, Fddd, I41/a, I41/amd, I41/acd, Fd-3c, Ia-3d."""
    assert (table.extinction_group == _group(table, sg)).sum() == 1


def test_p21c_settings_differ_but_stay_one_group(table):
    """P21/c, P21/n, P21/a (cell choices of No. 14) have different absence sets; each is alone."""
    hkl = symmetry._hkl_box(4)
    masks = {s["choice"]: symmetry._absent_mask(s["rotations"], s["t12"], hkl).tobytes()
             for s in symmetry._settings() if s["number"] == 14}
    assert len(set(masks.values())) == len(masks) == 9  # 3 unique axes x 3 cell choices


def test_symbols(table):
    sym = symmetry.extinction_symbol
    assert sym(1) == "-1 P"
    assert sym(14) == "2/m P|h0l:l=2n|0k0:k=2n"
    assert sym(29) == sym(57) == "mmm P|0kl:l=2n|h0l:h=2n"
    assert sym(70) == "mmm F|0kl:k,l=2n; k+l=4n|h0l:h,l=2n; h+l=4n|hk0:h,k=2n; h+k=4n"
    assert sym(141) == "4/mmm I|hk0:h,k=2n|hhl:2h+l=4n"
    assert sym(161) == "-3m R|h-h0l:l=2n; h+l=3n"
    assert sym(143) != sym(168)  # trigonal and hexagonal P without conditions
    assert sym(227) == "m-3m F|0kl:k,l=2n; k+l=4n|h00:h=4n"
    assert symmetry.extinction_group(225) == symmetry.extinction_group(196)
    with pytest.raises(ValueError):
        symmetry.extinction_group(0)


# ------------------------------------------------------------------------------------------------
# labelling structures


def _fcc(a):
    from pymatgen.core import Lattice

    return Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])


def test_label_nacl():
    from pymatgen.core import Structure

    s = Structure(_fcc(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    lab = symmetry.label_structure(s)
    assert lab == {"space_group": 225, "symbol": "Fm-3m", "crystal_system": "cubic",
                   "extinction_group": symmetry.extinction_group(225),
                   "extinction_symbol": symmetry.extinction_symbol(225), "symprec": 0.1}
    assert lab["extinction_symbol"] == "m-3m F"
    assert symmetry.label_structure(s, symprec=0.01)["symprec"] == 0.01


def test_label_disordered_nacl():
    from pymatgen.core import Structure

    s = Structure(_fcc(5.64), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert symmetry.label_structure(s)["space_group"] == 225


def test_label_si_diamond():
    from pymatgen.core import Structure

    s = Structure(_fcc(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    lab = symmetry.label_structure(s)
    assert (lab["space_group"], lab["symbol"], lab["crystal_system"]) == (227, "Fd-3m", "cubic")
    assert lab["extinction_group"] == symmetry.extinction_group(203)


def test_label_monoclinic():
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("P2_1/c", Lattice.monoclinic(5.15, 5.21, 5.31, 99.2), ["Zr", "O", "O"],
                                  [[0.276, 0.040, 0.208], [0.070, 0.332, 0.345], [0.450, 0.757, 0.479]])
    lab = symmetry.label_structure(s)
    assert (lab["space_group"], lab["symbol"], lab["crystal_system"]) == (14, "P2_1/c", "monoclinic")
    assert lab["extinction_symbol"] == "2/m P|h0l:l=2n|0k0:k=2n"


def test_label_hexagonal_wurtzite():
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"],
                                  [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.382]])
    lab = symmetry.label_structure(s)
    assert (lab["space_group"], lab["symbol"], lab["crystal_system"]) == (186, "P6_3mc", "hexagonal")
    assert lab["extinction_group"] == symmetry.extinction_group(194)


def test_label_failure_is_value_error():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(3.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"spglib \(symprec=0.1, angle_tolerance=5.0\)") as err:
        symmetry.label_structure(s)
    assert "\n" not in str(err.value)


def _close_pair(d=0.05):
    """Cl atoms ``d`` Å apart: spglib gives up at symprec 0.1 and 0.05 (atoms closer than the tolerance)
    and finds P4mm at 0.01."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5 + d / 4, 0.5, 0.5]])


def test_ladder_labels_what_symprec_rejects():
    s = _close_pair()
    with pytest.raises(ValueError, match=r"symprec=0.1"):
        symmetry.label_structure(s, 0.1)
    lab = symmetry.label_structure(s, 0.1, 5.0, ladder=(0.05, 0.01, 1e-3))
    assert (lab["space_group"], lab["symbol"], lab["crystal_system"], lab["symprec"]) == (99, "P4mm", "tetragonal",
                                                                                          0.01)
    # a ladder that never gets low enough: one line naming every tolerance tried
    with pytest.raises(ValueError, match=r"and at symprec 0.05, 0.08") as err:
        symmetry.label_structure(s, 0.1, 5.0, ladder=(0.05, 0.08, 0.1))
    assert "\n" not in str(err.value)


def test_ladder_is_tried_in_order(monkeypatch):
    from pymatgen.core import Structure

    s = Structure(_fcc(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    real, tried = symmetry._label_once, []

    def picky(structure, symprec, angle_tolerance):
        tried.append(symprec)
        if symprec > 0.002:
            raise ValueError(f"spglib (symprec={symprec}) found no symmetry")
        return real(structure, symprec, angle_tolerance)

    monkeypatch.setattr(symmetry, "_label_once", picky)
    lab = symmetry.label_structure(s, 0.1, 5.0, ladder=[0.1, 0.05, 0.001, 1e-5])
    assert tried == [0.1, 0.05, 0.001] and lab["symprec"] == 0.001 and lab["space_group"] == 225


def test_sg_symbol():
    assert [symmetry.sg_symbol(n) for n in (1, 14, 62, 167, 186, 225, 227)] == \
        ["P1", "P2_1/c", "Pnma", "R-3c", "P6_3mc", "Fm-3m", "Fd-3m"]
    with pytest.raises(ValueError):
        symmetry.sg_symbol(231)


def test_declared_space_group():
    dec = symmetry.declared_space_group
    assert dec({"_space_group_IT_number": "62"}) == 62
    assert dec({"_symmetry_Int_Tables_number": ["225(1)"]}) == 225
    # a number out of range or unreadable falls back to the symbol
    assert dec({"_space_group_IT_number": "0", "_symmetry_space_group_name_H-M": "'F m -3 m'"}) == 225
    assert dec({"_symmetry_Int_Tables_number": "?", "_space_group_name_H-M_alt": "P 21/c"}) == 14
    assert dec({"_symmetry_space_group_name_H-M": "?"}) is None
    assert dec({"_symmetry_space_group_name_H-M": "not a group"}) is None
    assert dec({}) is None


# ------------------------------------------------------------------------------------------------
# density cells (rhosym.cells)


def _nacl_conv(a=5.64):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _integer_combination(new, old):
    """``M`` with ``new = M @ old`` (lattice rows); asserts that it is integral."""
    m = np.linalg.solve(old.T, new.T).T
    np.testing.assert_allclose(m, np.rint(m), atol=1e-8)
    return np.rint(m)


def _assert_same_cartesian_atoms(out, inp):
    """Every atom of ``inp`` sits (same species, same Cartesian position up to a lattice vector of ``out``)
    in ``out``, and every atom of ``out`` is one of ``inp``'s atoms moved by such a vector or by a
    lattice vector of ``inp``."""
    def hits(a, b_struct, lattices):
        for site in a:
            ok = False
            for other in b_struct:
                if other.species != site.species:
                    continue
                for lat in lattices:
                    f = lat.get_fractional_coords(other.coords - site.coords)
                    if np.allclose(f, np.rint(f), atol=1e-8):
                        ok = True
                        break
                if ok:
                    break
            assert ok, site

    hits(inp, out, [out.lattice])
    hits(out, inp, [inp.lattice, out.lattice])


def test_strained_nacl_keeps_its_strain_except_refined():
    from rhosym.cells import USES_SYMMETRY, density_cell

    strained = _nacl_conv()
    strained.apply_strain([0, 0, 0.01])  # c: 5.64 -> 5.6964
    prim = strained.get_primitive_structure()
    assert len(prim) == 2 and symmetry.label_structure(prim)["space_group"] == 225  # within symprec 0.1
    for inp in (strained, prim):
        conv = density_cell(inp, "conventional", 0.1, 5.0)
        assert len(conv) == 8 and conv.composition.reduced_formula == "NaCl"
        np.testing.assert_allclose(sorted(conv.lattice.abc), [5.64, 5.64, 5.6964], atol=1e-9)
        np.testing.assert_allclose(conv.lattice.angles, 90, atol=1e-9)
        assert conv.volume == pytest.approx(len(conv) / len(inp) * inp.volume, rel=1e-12)
        # a lattice transformation of the input: integer rows, same frame, same atoms
        _integer_combination(conv.lattice.matrix, inp.lattice.matrix)
        _assert_same_cartesian_atoms(conv, inp)

        nig = density_cell(inp, "niggli")
        assert nig.volume == pytest.approx(inp.volume, rel=1e-12) and len(nig) == len(inp)
        assert abs(round(np.linalg.det(_integer_combination(nig.lattice.matrix, inp.lattice.matrix)))) == 1
        assert max(nig.lattice.abc) - min(nig.lattice.abc) > 0.01  # not made cubic

        ref = density_cell(inp, "conventional_refined", 0.1, 5.0)
        assert len(ref) == 8
        np.testing.assert_allclose(ref.lattice.abc, [ref.lattice.a] * 3, atol=1e-8)
        np.testing.assert_allclose(ref.lattice.angles, 90, atol=1e-8)
        assert ref.lattice.a == pytest.approx((5.64 * 5.64 * 5.6964) ** (1 / 3), abs=1e-3)
        assert symmetry.label_structure(ref, 1e-5)["space_group"] == 225
        assert density_cell(inp, "as_is") is inp
    # the strain is what makes the conventional cell tetragonal at a tight tolerance
    conv = density_cell(strained, "conventional", 0.1, 5.0)
    assert symmetry.label_structure(conv, 0.01)["crystal_system"] == "tetragonal"
    assert USES_SYMMETRY["conventional"] and USES_SYMMETRY["conventional_refined"] and not USES_SYMMETRY["niggli"]
    with pytest.raises(ValueError, match="unknown cell"):
        density_cell(strained, "hexagonal")


def test_conventional_keeps_positions_site_properties_and_frame():
    from pymatgen.core import Lattice, Structure

    from rhosym.cells import density_cell

    # a measured-looking rutile: slightly off-ideal positions, B factors, in a rotated frame
    s = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                  [[0, 0, 0], [0.3048, 0.3048, 0]])
    s.add_site_property("b_iso", [0.3 + 0.1 * i for i in range(len(s))])
    rng = np.random.default_rng(0)
    s.perturb(0.004, min_distance=0.001)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    rot = Structure(Lattice(s.lattice.matrix @ q.T), s.species, s.frac_coords, site_properties=s.site_properties)
    # the primitive-reduced input with permuted axes: spglib's setting needs a transformation
    inp = rot.copy()
    inp.make_supercell([[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    out = density_cell(inp, "conventional", 0.1, 5.0)
    assert symmetry.label_structure(inp)["space_group"] == 136
    m = _integer_combination(out.lattice.matrix, inp.lattice.matrix)
    assert not np.allclose(m, np.eye(3))
    _assert_same_cartesian_atoms(out, inp)
    assert sorted(out.site_properties["b_iso"]) == pytest.approx(sorted(inp.site_properties["b_iso"]))
    # the rotation stays: the cell is not put back into a standard orientation
    np.testing.assert_allclose(out.lattice.matrix, m @ inp.lattice.matrix, atol=1e-10)
    refined = density_cell(inp, "conventional_refined", 0.1, 5.0)
    assert not np.allclose(np.abs(refined.lattice.matrix), np.abs(out.lattice.matrix), atol=1e-3)


@pytest.mark.parametrize("supercell", [[2, 1, 1], [[1, 1, 0], [0, 1, 0], [0, 0, 2]], [[1, 0, 0], [0, 2, 0], [0, 1, 3]]])
def test_conventional_of_a_supercell_is_the_conventional_cell(supercell):
    from rhosym.cells import density_cell

    strained = _nacl_conv()
    strained.apply_strain([0, 0, 0.01])
    strained.add_site_property("b_iso", [0.5 + 0.1 * i for i in range(len(strained))])
    big = strained.copy()
    big.make_supercell(supercell)
    out = density_cell(big, "conventional", 0.1, 5.0)
    assert len(out) == 8 and out.composition == strained.composition
    np.testing.assert_allclose(sorted(out.lattice.abc), [5.64, 5.64, 5.6964], atol=1e-9)
    # every atom of the supercell is an atom of the result moved by a lattice vector of the result
    _assert_same_cartesian_atoms(out, big)
    assert sorted(out.site_properties["b_iso"]) == pytest.approx(sorted(strained.site_properties["b_iso"]))


def test_conventional_of_a_supercell_of_a_primitive_cell():
    """A doubled primitive cell of a C-centred crystal is neither a sub- nor a supercell of the C cell."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    from rhosym.cells import density_cell

    c_cell = Structure.from_spacegroup("C2/c", Lattice.monoclinic(9.0, 6.0, 5.5, 115), ["Fe", "O"],
                                       [[0, 0.1, 0.25], [0.13, 0.27, 0.41]])
    prim = c_cell.get_primitive_structure()
    assert len(prim) == len(c_cell) // 2
    big = prim.copy()
    big.make_supercell([1, 1, 2])
    out = density_cell(big, "conventional", 0.1, 5.0)
    assert len(out) == len(c_cell)
    np.testing.assert_allclose(sorted(out.lattice.abc), sorted(c_cell.lattice.abc), atol=1e-8)
    assert symmetry.label_structure(out)["space_group"] == 15
    assert StructureMatcher(primitive_cell=False, scale=False).fit(out, c_cell)
    _assert_same_cartesian_atoms(out, big)


# ------------------------------------------------------------------------------------------------
# CLI


def test_cli_symmetry_table(capsys, table):
    assert main(["symmetry-table"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "space_group,crystal_system,extinction_group,extinction_symbol"
    assert len(lines) == 231
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(out)), table)


def test_cli_recompute(capsys, table):
    assert main(["symmetry-table", "--recompute"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(capsys.readouterr().out)), table)


@pytest.mark.shared
def test_label_mp20_matches_materials_project(shared_data):
    """MP-20 rows (P1 primitive cells): our labels equal the space group MP computed (spglib, symprec 0.1)."""
    csv = shared_data / "mp20_public" / "mp20_public.csv"
    if not csv.is_file():
        pytest.skip(f"../shared/data is absent: {csv}")
    from pymatgen.core import Structure

    df = pd.read_csv(csv, nrows=120)
    got = [symmetry.label_structure(Structure.from_str(c, fmt="cif")) for c in df["cif"]]
    assert [g["space_group"] for g in got] == df["spacegroup.number"].tolist()
    assert len({g["crystal_system"] for g in got}) >= 5
    for g in got:
        assert g["extinction_group"] == symmetry.extinction_group(g["space_group"])
        assert g["crystal_system"] == symmetry.crystal_system(g["space_group"])


def test_lattice_frame_cell_is_niggli_turned_and_shifted_and_keeps_the_group():
    """lattice_frame: the Niggli cell with a ∥ x and b in the xy-plane, a seeded origin shift, the same
    space group (a chiral one stays itself: a proper rotation), and no symmetry finder in the registry."""
    import spglib
    from pymatgen.core import Lattice, Structure

    from rhosym import registry as R
    from rhosym.cells import USES_SYMMETRY, density_cell, niggli_cell

    chiral = Structure.from_spacegroup(76, Lattice.tetragonal(4.1, 7.3), ["Si", "O"],
                                       [[0.11, 0.23, 0.05], [0.31, 0.17, 0.41]])  # P4_1
    tilted = Structure(Lattice.from_parameters(5.1, 6.2, 7.3, 81, 97, 104), ["Na", "Cl"],
                       [[0.1, 0.2, 0.3], [0.55, 0.6, 0.8]])
    for st in (chiral, tilted):
        out = density_cell(st, "lattice_frame")
        m = out.lattice.matrix
        assert abs(m[0, 1]) < 1e-9 and abs(m[0, 2]) < 1e-9 and abs(m[1, 2]) < 1e-9  # a ∥ x, b in xy
        np.testing.assert_allclose(out.lattice.parameters, niggli_cell(st).lattice.parameters, atol=1e-6)
        assert out.composition == st.composition
        sg = [spglib.get_symmetry_dataset((s.lattice.matrix, s.frac_coords, [x.specie.Z for x in s]),
                                          symprec=1e-3).number for s in (st, out)]
        assert sg[0] == sg[1]
        again = density_cell(st, "lattice_frame")
        np.testing.assert_allclose(again.frac_coords, out.frac_coords)  # the same shift every time
    assert not USES_SYMMETRY["lattice_frame"] and "lattice_frame" in R.CELLS
    n = niggli_cell(tilted)
    d = density_cell(tilted, "lattice_frame").frac_coords[0] - n.frac_coords[0]
    assert np.linalg.norm((d + 0.5) % 1 - 0.5) > 1e-3  # the origin moved
