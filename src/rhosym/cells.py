"""The cell a structure's density is computed in (``datasets.<ds>.cell``).

* ``conventional`` (default for structure-derived kinds): the conventional setting reached by a
  **lattice transformation** of the input structure. spglib (at ``labels.symprec``) gives the
  transformation ``P`` to its standardized setting; the new basis is ``inv(P).T @ lattice`` (rows), an
  integer combination of the input vectors, and the cell is the input structure re-expressed in it
  (:meth:`pymatgen.core.Structure.make_supercell`): lattice lengths and angles, atomic positions and the
  Cartesian frame stay exactly as measured or relaxed: nothing is symmetrized, no origin shift, no
  rotation. A 1 % strain along c stays a 1 % strain. An input that is itself a supercell of the
  conventional cell (``M`` not integral: the structure has pure translations at ``symprec`` that its
  cell does not) is re-expressed in the smaller cell and the sites that the extra translations map onto
  each other (within ``symprec``) are kept once, as measured (the first of each set; nothing averaged).
* ``conventional_refined``: spglib's idealized conventional standard cell
  (``get_conventional_standard_structure``): positions and lattice symmetrized with the same tolerance
  that defines the label, ITA origin and orientation. Paper-like (the ICSD densities of the paper were
  made from symmetric structure solutions), but the input then depends on the symmetry finder's answer.
* ``niggli``: the Niggli-reduced cell, computed from the lattice alone: no symmetry finder anywhere.
* ``as_is``: the input cell.
* ``primitive``: spglib's standard primitive cell (idealized, like ``conventional_refined``).

Occupancies and site properties (``b_iso``) are kept by every choice. :data:`USES_SYMMETRY` says which
choices call a symmetry finder (``rhosym predict`` reports it).
"""

from __future__ import annotations

import warnings

import numpy as np

from rhosym.registry import CELLS, CELLS_USING_SYMMETRY

USES_SYMMETRY = dict.fromkeys(CELLS, False) | dict.fromkeys(CELLS_USING_SYMMETRY, True)


def _sga(structure, symprec: float, angle_tolerance: float):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)


def transformation_to_conventional(structure, symprec: float = 0.1, angle_tolerance: float = 5.0) -> np.ndarray:
    """The matrix ``M`` (rows) with ``conventional lattice = M @ structure.lattice.matrix``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _sga(structure, symprec, angle_tolerance).get_symmetry_dataset()
    if ds is None:
        raise ValueError(f"spglib found no symmetry (symprec={symprec})")
    return np.linalg.inv(np.asarray(ds.transformation_matrix, dtype=float)).T


def _is_integral(m: np.ndarray, tol: float = 1e-4) -> bool:
    return bool(np.all(np.abs(m - np.rint(m)) < tol))


def conventional_cell(structure, symprec: float = 0.1, angle_tolerance: float = 5.0):
    """The input structure in its conventional setting by a lattice transformation only (module docstring)."""
    m = transformation_to_conventional(structure, symprec, angle_tolerance)
    if not _is_integral(m):
        return _fold_into(structure, m, symprec)
    out = structure.copy()
    if not np.allclose(m, np.eye(3), atol=1e-8):
        out.make_supercell(np.rint(m).astype(int))
    if out.lattice.volume < 0 or np.linalg.det(out.lattice.matrix) < 0:
        raise ValueError("left-handed conventional cell")
    return out


def _fold_into(structure, m: np.ndarray, symprec: float):
    """The structure in the smaller cell ``m @ lattice``: sites mapped onto each other by its lattice
    translations are kept once (the first, as measured)."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice(m @ structure.lattice.matrix)
    ratio = abs(np.linalg.det(m))
    n_expected = len(structure) * ratio
    if abs(n_expected - round(n_expected)) > 1e-3:
        raise ValueError(f"the conventional cell holds {n_expected:.3f} input cells' sites")
    kept: list[int] = []
    frac = lat.get_fractional_coords(structure.cart_coords)
    for i in range(len(structure)):
        for j in kept:
            if structure[i].species != structure[j].species:
                continue
            d = frac[i] - frac[j]
            d -= np.round(d)
            if np.linalg.norm(d @ lat.matrix) < symprec:
                break
        else:
            kept.append(i)
    if len(kept) != round(n_expected):
        raise ValueError(f"folding into the conventional cell kept {len(kept)} sites, expected {round(n_expected)}")
    props = {k: [v[i] for i in kept] for k, v in structure.site_properties.items()}
    return Structure(lat, [structure[i].species for i in kept], frac[kept] % 1.0, site_properties=props or None)


def niggli_cell(structure):
    """The Niggli-reduced cell (lattice alone; the Cartesian frame is kept)."""
    return structure.get_reduced_structure(reduction_algo="niggli")


def density_cell(structure, cell: str, symprec: float = 0.1, angle_tolerance: float = 5.0):
    """The cell a density uses; ``cell`` is one of :data:`rhosym.registry.CELLS`."""
    if cell == "as_is":
        return structure
    if cell == "niggli":
        return niggli_cell(structure)
    if cell == "conventional":
        return conventional_cell(structure, symprec, angle_tolerance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sga = _sga(structure, symprec, angle_tolerance)
        if cell == "conventional_refined":
            return sga.get_conventional_standard_structure(keep_site_properties=True)
        if cell == "primitive":
            return sga.get_primitive_standard_structure(keep_site_properties=True)
    raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}")
