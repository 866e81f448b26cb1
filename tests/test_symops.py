"""rhosym.symops: lattice frames, densities in the conventional cell, operation scores, the classical finder."""

import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import spglib
from pymatgen.core import Lattice, Structure

from rhosym import symops as so
from rhosym.symmetry import crystal_system, extinction_group

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EXAMPLES = so.example_structures()


def need_shared(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"../shared/data absent: {p} not found, real-data test skipped")
    return p


def spglib_number(s: Structure, symprec: float = 1e-3) -> int:
    cell = (s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # spglib 2.x OLD_ERROR_HANDLING notice
        return int(spglib.get_symmetry_dataset(cell, symprec=symprec).number)


def shifted(s: Structure, frac_shift) -> Structure:
    out = s.copy()
    out.translate_sites(list(range(len(out))), frac_shift, frac_coords=True, to_unit_cell=True)
    return out


def permuted(s: Structure, perm=(1, 2, 0)) -> Structure:
    """The same crystal with the axes relabelled (default (a, b, c) -> (b, c, a)): a non-standard setting."""
    m = s.lattice.matrix[list(perm)]
    return Structure(Lattice(m), s.species, s.frac_coords[:, list(perm)])


# -------------------------------------------------------------------------------------------------- tables


def test_canonical_lists_are_the_holohedries():
    for ops, order in ((so.CUBIC_OPS, 48), (so.HEX_OPS, 24)):
        assert len(ops) == order and len(np.unique(ops, axis=0)) == order
        keys = {w.tobytes() for w in ops}
        assert all((a @ b).tobytes() in keys for a in ops for b in ops)
    assert np.array_equal(so.POINT_OPS[0], np.eye(3)) and np.array_equal(so.POINT_OPS[48], np.eye(3))
    assert np.array_equal(so.POINT_OPS[24], -np.eye(3)) and np.array_equal(so.POINT_OPS[60], -np.eye(3))
    assert len(so.SLOT_NAMES) == so.N_SLOTS == 79
    hexm = np.array([[1.0, -0.5, 0], [-0.5, 1.0, 0], [0, 0, 2.56]])  # metric of a=b=1, gamma=120, c=1.6
    assert all(np.allclose(w.T @ hexm @ w, hexm) for w in so.HEX_OPS)
    assert all(np.allclose(w.T @ w, np.eye(3)) for w in so.CUBIC_OPS)


def test_symbols_and_seitz():
    assert so.op_symbol(so.xyz_to_matrix("-y,x,z")) == "4+ [0,0,1]"
    assert so.op_symbol(so.xyz_to_matrix("y,-x,z")) == "4- [0,0,1]"
    assert so.op_symbol(so.xyz_to_matrix("z,x,y")) == "3+ [1,1,1]"
    assert so.op_symbol(so.xyz_to_matrix("x,y,-z")) == "m [0,0,1]"
    assert so.op_symbol(so.xyz_to_matrix("-x,-y,-z")) == "-1"
    assert so.seitz(so.xyz_to_matrix("-x,-y,z"), [0, 0, 0.5]) == "{2 [0,0,1]|0,0,1/2}"
    assert so.matrix_to_xyz(so.xyz_to_matrix("-x+y,-x,z"), [0, 0.5, 1 / 3]) == "-x+y,-x+1/2,z+1/3"
    with pytest.raises(ValueError):
        so.xyz_to_matrix("x,y")


# -------------------------------------------------------------------------------------------------- lattice frames

BRAVAIS = [  # (expected, symmorphic group, lattice)
    ("aP", 2, Lattice.from_parameters(4.1, 5.3, 6.2, 78, 83, 71)),
    ("mP", 10, Lattice.monoclinic(4.1, 5.3, 6.2, 104)),
    ("mC", 12, Lattice.monoclinic(4.1, 5.3, 6.2, 104)),
    ("oP", 47, Lattice.orthorhombic(4.1, 5.3, 6.2)),
    ("oC", 65, Lattice.orthorhombic(4.1, 5.3, 6.2)),
    ("oI", 71, Lattice.orthorhombic(4.1, 5.3, 6.2)),
    ("oF", 69, Lattice.orthorhombic(4.1, 5.3, 6.2)),
    ("tP", 123, Lattice.tetragonal(4.1, 6.2)),
    ("tI", 139, Lattice.tetragonal(4.1, 6.2)),
    ("hR", 166, Lattice.hexagonal(4.1, 9.7)),
    ("hP", 191, Lattice.hexagonal(4.1, 6.2)),
    ("cP", 221, Lattice.cubic(4.1)),
    ("cI", 229, Lattice.cubic(4.1)),
    ("cF", 225, Lattice.cubic(4.1)),
]
ORDER = {"a": 2, "m": 4, "o": 8, "t": 16, "c": 48}


@pytest.mark.parametrize("expected,sg,lattice", BRAVAIS, ids=[b[0] for b in BRAVAIS])
def test_lattice_frame_of_every_bravais_lattice(expected, sg, lattice):
    prim = Structure.from_spacegroup(sg, lattice, ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    lf = so.lattice_frame(prim.lattice.matrix)
    assert lf.bravais == expected
    order = 12 if expected == "hR" else 24 if expected == "hP" else ORDER[expected[0]]
    assert len(lf.ops) == order
    assert np.allclose(lf.lattice, lf.to_conventional @ prim.lattice.matrix)
    assert np.allclose(lf.transformation, np.linalg.inv(lf.to_conventional).T)
    assert round(abs(np.linalg.det(lf.to_conventional))) == {"P": 1, "C": 2, "I": 2, "F": 4, "R": 3}[expected[1]]
    g = lf.lattice @ lf.lattice.T
    assert all(np.allclose(w.T @ g @ w, g, atol=1e-6) for w in lf.ops)  # isometries of the conventional cell
    assert lf.family == ("hexagonal" if expected[0] == "h" else "cubic")
    assert all(np.array_equal(so.POINT_OPS[s], w) for s, w in zip(lf.slots, lf.ops))


def test_bad_input_raises_one_line_value_error():
    for bad in (np.eye(2), np.zeros((3, 3)), [[1, 0, 0], [0, 1, 0], [0, 0, np.nan]], "abc"):
        with pytest.raises(ValueError):
            so.lattice_frame(bad)
    with pytest.raises(ValueError, match="even integer"):
        so.frame_from_structure(EXAMPLES["CsCl Pm-3m"], n=25)
    with pytest.raises(ValueError, match="3D grid"):
        so.frame_from_grid(np.zeros((4, 4)), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        so.frame_from_grid(np.full((4, 4, 4), np.nan), np.eye(3) * 3)
    with pytest.raises(ValueError, match="pymatgen Structure"):
        so.frame_from_structure(np.eye(3))
    with pytest.raises(ValueError, match="constant"):
        so.operation_scores(so.frame_from_grid(np.ones((8, 8, 8)), np.eye(3) * 3, n=8))


# -------------------------------------------------------------------------------------------------- densities


def test_density_matches_the_projects_dense_density_and_counts_electrons():
    from rhosym.density import dense_density

    s = EXAMPLES["rutile P4_2/mnm"]
    fr = so.frame_from_structure(s, n=24)
    assert fr.grid.shape == (24, 24, 24)
    vol = abs(np.linalg.det(fr.lattice))
    assert fr.grid.mean() * vol == pytest.approx(sum(site.specie.Z for site in s), abs=0.05)
    # the same density from the project's gemmi grid, resampled: identical low-resolution Fourier terms
    rho, _ = dense_density(s, shape=(64, 64, 40))
    fg = so.frame_from_grid(rho, s.lattice.matrix, n=24)
    low = np.linalg.norm(fg.hkl @ np.linalg.inv(fg.lattice).T, axis=1) < 0.8
    sel = np.isin(fr.hkl.view([("", fr.hkl.dtype)] * 3), fg.hkl[low].view([("", fg.hkl.dtype)] * 3)).ravel()
    a = fr.fhkl[sel]
    b = fg.fhkl[low]
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max()


def test_grid_roundtrip_and_operations_map_the_grid_onto_itself():
    s = EXAMPLES["rutile P4_2/mnm"]  # standard origin: every translation is 0 or 1/2, a grid step
    fr = so.frame_from_structure(s, n=24)
    back = so.frame_from_grid(fr.grid, fr.lattice, n=24)
    assert np.allclose(back.fhkl, fr.fhkl, atol=1e-9 * np.abs(fr.fhkl).max())
    sc = so.operation_scores(fr)
    assert fr.shape == (24, 24, 24)
    n = 24
    idx = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for op in sc.operations(0.999):
        w, t = np.array(op["W"]), np.array(op["t"])
        assert np.allclose(t * n, np.rint(t * n), atol=1e-6)
        img = (idx @ w.T + np.rint(t * n).astype(int)) % n  # grid index of W x + t
        moved = fr.grid[img[:, 0], img[:, 1], img[:, 2]].reshape(fr.grid.shape)
        assert np.allclose(moved, fr.grid, atol=1e-8 * np.abs(fr.grid).max())
    assert len(sc.operations(0.999)) == 16  # 4/mmm


# -------------------------------------------------------------------------------------------------- scores


def test_score_vector_layout():
    cubic = so.operation_scores(so.frame_from_structure(EXAMPLES["NaCl Fm-3m"]))
    hexa = so.operation_scores(so.frame_from_structure(EXAMPLES["wurtzite P6_3mc"]))
    ortho = so.operation_scores(so.frame_from_structure(EXAMPLES["Amm2 orthorhombic"]))
    for sc in (cubic, hexa, ortho):
        assert sc.scores.shape == (so.N_SLOTS,) and sc.translations.shape == (so.N_SLOTS, 3)
        assert np.all(np.isnan(sc.scores[~sc.mask])) and np.all(np.isfinite(sc.scores[sc.mask]))
        assert sc.mask[so.CENTRING_OFFSET:].all()
        assert np.all((sc.scores[sc.mask] >= -1) & (sc.scores[sc.mask] <= 1 + 1e-12))
        f = so.CENTRING_OFFSET + 4
        assert sc.scores[f] == min(sc.scores[so.CENTRING_OFFSET:so.CENTRING_OFFSET + 3])
    assert cubic.mask[:48].all() and not cubic.mask[48:72].any()
    assert hexa.mask[48:72].all() and not hexa.mask[:48].any()
    assert ortho.mask[:72].sum() == 8
    assert np.allclose(cubic.scores[:48], 1.0, atol=1e-6)  # Fm-3m: every operation of m-3m
    assert np.allclose(cubic.scores[so.CENTRING_OFFSET:so.CENTRING_OFFSET + 3], 1.0, atol=1e-6)  # A, B, C
    assert cubic.scores[so.CENTRING_OFFSET + 3] < 0.95  # not I
    assert np.sum(hexa.scores[48:72] > 0.999) == 12  # 6mm
    assert any(line.startswith("{6") for line in hexa.seitz_list(0.999))


@pytest.mark.parametrize("name", ["Pnma orthorhombic", "wurtzite P6_3mc", "corundum R-3c"])
def test_scores_do_not_depend_on_the_origin(name):
    s = EXAMPLES[name]
    base = so.operation_scores(so.frame_from_structure(s))
    m = base.mask
    grid_shift = so.operation_scores(so.frame_from_structure(shifted(s, np.array([5, 17, 9]) / 24)))
    assert np.array_equal(grid_shift.mask, m)
    assert np.abs(grid_shift.scores[m] - base.scores[m]).max() < 1e-6
    rng = np.random.default_rng(7)
    for _ in range(2):
        arb = so.operation_scores(so.frame_from_structure(shifted(s, rng.random(3))))
        assert np.abs(arb.scores[m] - base.scores[m]).max() < 0.02


def test_refined_translations_are_exact_after_an_arbitrary_shift():
    s = EXAMPLES["I4_1/amd tetragonal"]
    sc = so.operation_scores(so.frame_from_structure(shifted(s, [0.1234, 0.377, 0.0421])))
    present = sc.operations(0.999)
    assert len(present) == 16
    assert min(o["score"] for o in present) > 1 - 1e-9  # the peak is found off the grid, not sampled


# -------------------------------------------------------------------------------------------------- finder


def check_finder(s: Structure, symprec: float = 1e-3):
    res = so.find_space_group(s)
    ref = spglib_number(s, symprec)
    assert res.space_group == ref, (res.space_group, ref, res.threshold)
    assert res.crystal_system == crystal_system(ref)
    assert res.extinction_group == extinction_group(ref)
    assert res.consistent
    return res


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_finder_matches_spglib_after_origin_shift_and_in_other_settings(name):
    s = EXAMPLES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    res = check_finder(shifted(s, rng.random(3)))
    assert res.threshold == so.DEFAULT_LADDER[0]
    check_finder(shifted(permuted(s), rng.random(3)))
    check_finder(permuted(s, (1, 0, 2)))  # a left-handed basis
    sheared = s.copy()
    sheared.make_supercell([[1, 0, 0], [1, 1, 0], [0, -1, 1]])  # another basis of the same lattice
    assert len(sheared) == len(s)
    check_finder(shifted(sheared, rng.random(3)))
    prim = s.get_primitive_structure()
    if len(prim) < len(s):  # centred: the primitive cell is a different basis of the same lattice
        check_finder(shifted(prim, rng.random(3)))


def test_isotropic_grid_keeps_the_resolution_of_long_cells():
    s = EXAMPLES["corundum R-3c"]  # a = 4.76 Å, c = 12.99 Å
    cubic = so.frame_from_structure(s)
    iso = so.frame_from_structure(s, isotropic=True)
    assert cubic.shape == (24, 24, 24) and iso.shape == (24, 24, 72)
    assert iso.q_max == pytest.approx(11 / np.linalg.norm(iso.lattice, axis=1).min(), rel=1e-6)
    assert iso.q_max > 2.5 * cubic.q_max
    assert so.find_space_group(shifted(s, [0.1, 0.5, 0.3]), isotropic=True).space_group == 167
    assert so.grid_shape(np.eye(3), (24, 24, 48)) == (24, 24, 48)
    with pytest.raises(ValueError):
        so.grid_shape(np.eye(3), (24, 24))


def test_finder_reports_operations_centrings_and_threshold():
    res = so.find_space_group(shifted(EXAMPLES["corundum R-3c"], [0.3, 0.1, 0.7]))
    assert res.space_group == 167 and res.symbol == "R-3c" and res.crystal_system == "trigonal"
    assert res.centrings == ["R_obv"] and res.bravais == "hP"
    assert len(res.operations) == 12 and all(o["score"] > 0.999 for o in res.operations)
    assert all(o["seitz"].startswith("{") for o in res.operations)
    prim = so.find_space_group(EXAMPLES["corundum R-3c"].get_primitive_structure())
    assert prim.space_group == 167 and prim.bravais == "hR" and prim.centrings == ["R_obv"]


def test_finder_without_a_closed_set_falls_back_to_a_greedy_group():
    fr = so.frame_from_structure(EXAMPLES["Pnma orthorhombic"])  # a = c: the metric is tetragonal
    sc = so.operation_scores(fr)
    fours = [k for k in np.flatnonzero(sc.mask[:48]) if so.SLOT_NAMES[k].split()[1] in ("4+", "4-")]
    assert len(fours) == 2
    sc.scores[fours] = 1.0  # a wrong 4-fold "present" at every threshold: no threshold gives a group
    sc.translations[fours] = [0.1, 0.2, 0.3]
    res = so.find_space_group(fr, scores=sc)
    assert not res.consistent and res.space_group == 62 and len(res.operations) == 8
    with pytest.raises(ValueError, match="ladder"):
        so.find_space_group(fr, ladder=[1.5])


def test_bench_and_cli(capsys):
    rows = so.bench([EXAMPLES["CsCl Pm-3m"]], n=24, repeat=1)
    assert rows[0]["space_group"] == 221 and rows[0]["ms"] > 0
    assert so.main(["--bench", "--agreement", "--limit", "2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "builtin n=24: 2 structures, wall median" in out and "agreement with spglib 2/2" in out


def test_heavy_atom_moved_off_a_mirror_gives_the_subgroup():
    cubic = Structure.from_spacegroup(221, Lattice.cubic(4.0), ["Ba", "Ti", "O"],
                                      [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])
    assert so.find_space_group(cubic).space_group == 221
    moved = cubic.copy()
    moved.translate_sites([0], [0, 0, 0.3], frac_coords=False)  # Ba 0.3 Å along c: m_z is gone
    ref = spglib_number(moved, 0.01)
    assert ref == 99  # P4mm
    res = so.find_space_group(shifted(moved, [0.21, 0.66, 0.37]))
    assert res.space_group == ref and res.crystal_system == "tetragonal"
    # the same in a lower-symmetry parent: Pnma with Ca moved off its mirror (y = 1/4)
    pnma = EXAMPLES["Pnma orthorhombic"].copy()
    ca = [i for i, site in enumerate(pnma) if site.specie.symbol == "Ca"][0]
    pnma.translate_sites([ca], [0, 0.3, 0], frac_coords=False)
    assert so.find_space_group(pnma).space_group == spglib_number(pnma, 0.01)


def test_finder_from_a_dense_grid_in_a_primitive_cell():
    from rhosym.density import dense_density

    prim = EXAMPLES["NaCl Fm-3m"].get_primitive_structure()
    rho, _ = dense_density(prim, shape=(30, 30, 30))
    fr = so.frame_from_grid(np.roll(rho, (3, 7, 11), axis=(0, 1, 2)), prim.lattice.matrix)
    assert fr.bravais == "cF"
    res = so.find_space_group(fr)
    assert res.space_group == 225 and res.centrings == ["A", "B", "C"]


# -------------------------------------------------------------------------------------------------- real data


def test_chgcar_li_bcc_is_im3m():
    from pymatgen.io.vasp import Chgcar

    path = need_shared("chgcar", "Li_bcc_nospin_CHGCAR.gz")
    ch = Chgcar.from_file(str(path))
    res = so.find_space_group(so.frame_from_grid(ch.data["total"], ch.structure.lattice.matrix))
    assert res.space_group == 229


def test_aflow_prototypes_agree_with_spglib():
    path = need_shared("prototypes", "pymatgen_aflow_prototypes.json.gz")
    protos = so.load_prototypes(path)[::6]  # 48 of 288, every crystal family
    hits = sum(so.find_space_group(s).space_group == spglib_number(s, 1e-3) for _lab, _sg, s in protos)
    assert hits >= 0.93 * len(protos), f"{hits}/{len(protos)}"


def test_pyxtal_random_crystals_agree_with_spglib():
    items = so._pyxtal_structures(12, seed=3)
    hits = sum(so.find_space_group(s).space_group == spglib_number(s, 1e-3) for _sg, s in items)
    assert hits >= 10, f"{hits}/12"


def test_trivial_floor_reads_through_noise_and_is_off_by_default():
    """Noise pulls every true operation's agreement below the first rung (0.999), where the identity alone
    is a closed group: the default answers P1; ``trivial_floor`` passes over that rung."""
    from rhosym.perturb import add_noise

    s = EXAMPLES["Pnma orthorhombic"]
    frame = so.frame_from_structure(s)
    noisy = so.frame_from_grid(add_noise(frame.grid, 5.0, np.random.default_rng(0)), np.asarray(frame.lattice),
                               n=frame.grid.shape[0])
    sc = so.operation_scores(noisy)
    plain = so.find_space_group(noisy, scores=sc)
    assert plain.space_group == 1 and plain.threshold == so.DEFAULT_LADDER[0]
    floored = so.find_space_group(noisy, scores=sc, trivial_floor=0.9)
    assert floored.space_group == spglib_number(s) == 62 and 0.9 <= floored.threshold < so.DEFAULT_LADDER[0]
    clean = so.find_space_group(frame, trivial_floor=0.9)  # nothing changes where the first rung names the group
    assert clean.space_group == 62 and clean.threshold == so.DEFAULT_LADDER[0]
