"""Small committed fixtures: ``resources/fixtures/cif_tiny/`` and ``resources/fixtures/csv_tiny.csv``.

Regenerate with ``python -m rhosym.fixtures [RESOURCES_DIR]``. Structures are built from textbook
lattice constants and Wyckoff positions; the CSV labels (band gap, formation energy) are plausible
made-up values, not computed ones.

``cif_tiny`` holds ordered structures of every crystal system, a partially occupied mixed site, B
and U isotropic displacement parameters, a file with two data blocks and a file with no symmetry
loop (symbol only), and three files ingest must reject: unparsable, overlapping atoms, zero occupancy.
"""

from __future__ import annotations

import sys
from pathlib import Path

CSV_COLUMNS = ["material_id", "cif", "band_gap", "formation_energy_per_atom"]

# name: (space group, lattice (a, b, c, alpha, beta, gamma), species, frac coords)
ORDERED = {
    "NaCl_cubic": ("Fm-3m", (5.64, 5.64, 5.64, 90, 90, 90), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "TiO2_rutile_tetragonal": ("P4_2/mnm", (4.594, 4.594, 2.959, 90, 90, 90), ["Ti", "O"],
                               [[0, 0, 0], [0.3048, 0.3048, 0]]),
    "ZnO_wurtzite_hexagonal": ("P6_3mc", (3.25, 3.25, 5.207, 90, 90, 120), ["Zn", "O"],
                               [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]),
    "Al2O3_corundum_trigonal": ("R-3c", (4.759, 4.759, 12.99, 90, 90, 120), ["Al", "O"],
                                [[0, 0, 0.3523], [0.3064, 0, 0.25]]),
    "FeS_orthorhombic": ("Pnma", (5.93, 3.43, 5.79, 90, 90, 90), ["Fe", "S"],
                         [[0.005, 0.25, 0.20], [0.19, 0.25, 0.58]]),
    "LiOH_monoclinic": ("P2_1/c", (5.20, 6.10, 7.40, 90, 103.5, 90), ["Li", "O", "Cl"],
                        [[0.11, 0.23, 0.37], [0.31, 0.07, 0.12], [0.62, 0.41, 0.29]]),
    "CuSO_triclinic": ("P-1", (5.1, 6.2, 7.3, 82.0, 77.0, 71.0), ["Cu", "S", "O"],
                       [[0.12, 0.21, 0.33], [0.41, 0.62, 0.15], [0.73, 0.18, 0.61]]),
}

CIF_SYMBOL_ONLY = """# hand-written: no symmetry-operation loop, only the space-group symbol
data_Cu_fcc_symbol_only
_cell_length_a 3.615
_cell_length_b 3.615
_cell_length_c 3.615
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Cu1 Cu 0 0 0
"""

CIF_MIXED = """# hand-written: a Fe/Ni mixed site and a half-occupied Li site (spinel-like, made up)
data_LiFeNiO_mixed
_cell_length_a 4.20
_cell_length_b 4.20
_cell_length_c 4.20
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P m -3 m'
_symmetry_Int_Tables_number 221
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Fe1 Fe 0 0 0 0.6
Ni1 Ni 0 0 0 0.4
Li1 Li 0.5 0.5 0.5 0.5
O1 O 0.5 0 0 1.0
"""

CIF_BFACTORS = """# hand-written: isotropic B factors with standard uncertainties; occupancies summing to 1.02
data_MgO_Biso
_cell_length_a 4.2112(3)
_cell_length_b 4.2112(3)
_cell_length_c 4.2112(3)
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
_symmetry_Int_Tables_number 225
loop_
_symmetry_equiv_pos_as_xyz
x,y,z
-x,-y,z
-x,y,-z
x,-y,-z
z,x,y
z,-x,-y
-z,-x,y
-z,x,-y
y,z,x
-y,z,-x
y,-z,-x
-y,-z,x
y,x,-z
-y,-x,-z
y,-x,z
-y,x,z
x,z,-y
-x,z,y
-x,-z,-y
x,-z,y
z,y,-x
z,-y,x
-z,y,x
-z,-y,-x
-x,-y,-z
x,y,-z
x,-y,z
-x,y,z
-z,-x,-y
-z,x,y
z,x,-y
z,-x,y
-y,-z,-x
y,-z,x
-y,z,x
y,z,-x
-y,-x,z
y,x,z
-y,x,-z
y,-x,-z
-x,-z,y
x,-z,-y
x,z,y
-x,z,-y
-z,-y,x
-z,y,-x
z,-y,-x
z,y,x
x,y+1/2,z+1/2
x+1/2,y,z+1/2
x+1/2,y+1/2,z
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_B_iso_or_equiv
Mg1 Mg 0 0 0 1.02 0.31(2)
O1 O 0.5 0.5 0.5 1.0 0.42(3)
"""

CIF_TWO_BLOCKS = """# hand-written: two data blocks, U_iso in the second
data_Si_diamond
_cell_length_a 5.431
_cell_length_b 5.431
_cell_length_c 5.431
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F d -3 m:1'
_symmetry_Int_Tables_number 227
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Si1 Si 0 0 0

data_W_bcc
_cell_length_a 3.165
_cell_length_b 3.165
_cell_length_c 3.165
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'I m -3 m'
_symmetry_Int_Tables_number 229
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_U_iso_or_equiv
W1 W 0 0 0 0.0025
"""

CIF_UNPARSABLE = """# deliberately broken: a loop whose values do not fill its columns, no cell
data_broken
loop_
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 0 0
"""

CIF_OVERLAP = """# deliberately bad: two fully occupied atoms 0.21 A apart
data_overlap
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
K1 K 0.1 0.1 0.1
Br1 Br 0.15 0.1 0.1
Br2 Br 0.6 0.6 0.6
"""

CIF_ZERO_OCC = """# deliberately bad: a site with zero occupancy
data_zero_occupancy
_cell_length_a 4.1
_cell_length_b 4.1
_cell_length_c 4.1
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P m -3 m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Cs1 Cs 0 0 0 1.0
Cl1 Cl 0.5 0.5 0.5 0.0
"""

HAND_WRITTEN = {
    "Cu_symbol_only": CIF_SYMBOL_ONLY,
    "LiFeNiO_mixed": CIF_MIXED,
    "MgO_bfactors": CIF_BFACTORS,
    "two_blocks": CIF_TWO_BLOCKS,
    "bad_unparsable": CIF_UNPARSABLE,
    "bad_overlap": CIF_OVERLAP,
    "bad_zero_occupancy": CIF_ZERO_OCC,
}

# What ingest must find in cif_tiny: id -> space group, or the start of the rejection reason.
EXPECTED_CIF = {
    "NaCl_cubic": 225, "TiO2_rutile_tetragonal": 136, "ZnO_wurtzite_hexagonal": 186,
    "Al2O3_corundum_trigonal": 167, "FeS_orthorhombic": 62, "LiOH_monoclinic": 14, "CuSO_triclinic": 2,
    "Cu_symbol_only": 225, "LiFeNiO_mixed": 221, "MgO_bfactors": 225, "two_blocks:Si_diamond": 227,
    "two_blocks:W_bcc": 229,
    "bad_unparsable": "unparsable CIF", "bad_overlap": "atoms closer than", "bad_zero_occupancy": "zero or negative",
}

# CSV rows: id, builder, band gap (eV), formation energy (eV/atom) - plausible, made up
_CSV_ROWS = [
    ("tiny-1", ("Fm-3m", (5.64,) * 3 + (90,) * 3, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 5.0, -2.08),
    ("tiny-2", ("Fm-3m", (6.29,) * 3 + (90,) * 3, ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 5.1, -2.20),
    ("tiny-3", ("Fm-3m", (4.21,) * 3 + (90,) * 3, ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 4.5, -3.05),
    ("tiny-4", ("Fm-3m", (4.03,) * 3 + (90,) * 3, ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 8.7, -3.12),
    ("tiny-5", ("Fd-3m", (5.43,) * 3 + (90,) * 3, ["Si"], [[0, 0, 0]]), 0.61, 0.0),
    ("tiny-6", ("F-43m", (5.65,) * 3 + (90,) * 3, ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]), 0.19, -0.41),
    ("tiny-7", ("F-43m", (5.41,) * 3 + (90,) * 3, ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]]), 2.02, -0.98),
    ("tiny-8", ("Fm-3m", (3.615,) * 3 + (90,) * 3, ["Cu"], [[0, 0, 0]]), 0.0, 0.0),
    ("tiny-9", ("Im-3m", (2.866,) * 3 + (90,) * 3, ["Fe"], [[0, 0, 0]]), 0.0, 0.0),
    ("tiny-10", ("Pm-3m", (4.12,) * 3 + (90,) * 3, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 5.03, -2.25),
    ("tiny-11", ("Pm-3m", (3.905,) * 3 + (90,) * 3, ["Sr", "Ti", "O"],
                 [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]), 1.78, -3.49),
    ("tiny-12", ("P4_2/mnm", (4.594, 4.594, 2.959, 90, 90, 90), ["Ti", "O"], [[0, 0, 0], [0.3048, 0.3048, 0]]),
     1.79, -3.39),
    ("tiny-13", ("P6_3mc", (3.25, 3.25, 5.207, 90, 90, 120), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]),
     0.73, -1.78),
    ("tiny-14", ("P6_3/mmc", (3.21, 3.21, 5.21, 90, 90, 120), ["Mg"], [[1 / 3, 2 / 3, 0.25]]), 0.0, 0.0),
    ("tiny-15", ("R-3c", (4.759, 4.759, 12.99, 90, 90, 120), ["Al", "O"], [[0, 0, 0.3523], [0.3064, 0, 0.25]]),
     5.85, -3.43),
    ("tiny-16", ("Pnma", (5.93, 3.43, 5.79, 90, 90, 90), ["Fe", "S"], [[0.005, 0.25, 0.20], [0.19, 0.25, 0.58]]),
     0.35, -0.52),
]
EXPECTED_CSV = {"tiny-1": 225, "tiny-5": 227, "tiny-6": 216, "tiny-9": 229, "tiny-10": 221, "tiny-11": 221,
                "tiny-12": 136, "tiny-13": 186, "tiny-14": 194, "tiny-15": 167, "tiny-16": 62}


def build(sg: str, params, species, coords):
    """A pymatgen Structure from a space-group symbol, lattice parameters and the asymmetric unit."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(sg, Lattice.from_parameters(*params), species, coords)


def make_cif_fixtures(out_dir: str | Path) -> list[Path]:
    """Write ``cif_tiny``: symmetrised CIFs of :data:`ORDERED` plus the hand-written ones."""
    from pymatgen.io.cif import CifWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in ORDERED.items():
        p = out / f"{name}.cif"
        CifWriter(build(*spec), symprec=0.01).write_file(p)
        paths.append(p)
    for name, text in HAND_WRITTEN.items():
        p = out / f"{name}.cif"
        p.write_text(text)
        paths.append(p)
    return paths


def make_csv_fixture(path: str | Path) -> Path:
    """Write ``csv_tiny.csv``: CDVAE columns, P1 primitive CIF strings written by pymatgen."""
    import pandas as pd
    from pymatgen.io.cif import CifWriter

    rows = []
    for mid, spec, gap, ef in _CSV_ROWS:
        s = build(*spec).get_primitive_structure()
        rows.append({"material_id": mid, "cif": str(CifWriter(s)), "band_gap": gap,
                     "formation_energy_per_atom": ef})
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(p, index=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "resources" / "fixtures"
    cifs = make_cif_fixtures(root / "cif_tiny")
    csv = make_csv_fixture(root / "csv_tiny.csv")
    print(f"wrote {len(cifs)} CIFs under {root / 'cif_tiny'} and {csv}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
