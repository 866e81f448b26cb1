"""The cell a structure's density is computed in (``datasets.<ds>.cell``).

* ``conventional`` (default for structure-derived kinds): the conventional setting reached by a
  **lattice transformation** of the input structure. spglib (at ``labels.symprec``) gives the
  transformation ``P`` to its standardized setting; the new basis is ``inv(P).T @ lattice`` (rows), an
  integer combination of the input vectors, and the cell is the input structure re-expressed in it
  (:meth:`pymatgen.core.Structure.make_supercell`): lattice lengths and angles, atomic positions and the
  Cartesian frame stay exactly as measured or relaxed: nothing is symmetrized, no origin shift, no
  rotation. A 1 % strain along c stays a 1 % strain. An input that is itself a supercell of the
  conventional cell (``M`` not integral: the structure has pure translations at ``symprec`` that its
  cell does not), or a supercell of a primitive cell of a centred lattice, is re-expressed in the
  conventional cell: the input sites and their images under the input lattice, wrapped into it, with the
  sites that the structure's translations map onto each other (within ``symprec``) kept once, as
  measured (the first of each set; nothing averaged).
* ``conventional_refined``: spglib's idealized conventional standard cell
  (``get_conventional_standard_structure``): positions and lattice symmetrized with the same tolerance
  that defines the label, ITA origin and orientation. Paper-like (the ICSD densities of the paper were
  made from symmetric structure solutions), but the input then depends on the symmetry finder's answer.
* ``niggli``: the Niggli-reduced cell, computed from the lattice alone: no symmetry finder anywhere.
* ``lattice_frame``: a frame no symmetry finder chose: the Niggli cell turned so that a ∥ x and b lies in
  the xy-plane (a proper rotation: chirality kept), with a seeded random origin shift per structure (seeded
  by the structure's content, so the same structure gets the same shift at training, at test and in
  ``rhosym predict``). The origin "as given" is not finder-free: Materials Project structures come in
  spglib's standard origin.
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


def _denominator(x: np.ndarray, max_den: int = 12, tol: float = 1e-4) -> int:
    """The smallest ``d <= max_den`` with ``d * x`` integral."""
    for d in range(1, max_den + 1):
        if _is_integral(d * x, tol):
            return d
    raise ValueError(f"the conventional cell is not commensurate with the input cell (transformation {x.tolist()})")


def _fold_into(structure, m: np.ndarray, symprec: float):
    """The structure in the cell ``m @ lattice`` (``m`` not integral): every input site and its images
    under the input's lattice translations, wrapped into the new cell; sites the structure's translations
    map onto each other (within ``symprec``) are kept once (the first, as measured: an input site before
    its images; nothing averaged). Covers an input that is a supercell of the conventional cell and one
    that is neither a sub- nor a supercell of it (a supercell of a primitive cell of a centred lattice)."""
    from pymatgen.core import Lattice, Structure

    lat = Lattice(m @ structure.lattice.matrix)
    n_expected = len(structure) * abs(np.linalg.det(m))
    if abs(n_expected - round(n_expected)) > 1e-3:
        raise ValueError(f"the conventional cell holds {n_expected:.3f} input cells' sites")
    # the input's lattice vectors in the new cell's fractional coordinates: d of them are new-cell vectors
    old_in_new = np.linalg.inv(m)
    d = _denominator(old_in_new)
    shifts = np.stack(np.meshgrid(*[np.arange(d)] * 3, indexing="ij"), -1).reshape(-1, 3)  # (0,0,0) first
    base = lat.get_fractional_coords(structure.cart_coords)
    species = [site.species for site in structure]
    kept: list[tuple[int, np.ndarray]] = []  # (input site, new-cell fractional coordinates)
    kept_frac: list[np.ndarray] = []
    kept_of: dict = {}  # species -> indices into kept
    for i in range(len(structure)):
        for n in shifts:
            f = base[i] + n @ old_in_new
            idx = kept_of.setdefault(species[i], [])
            if idx:
                diff = np.asarray([kept_frac[j] for j in idx]) - f
                diff -= np.round(diff)
                if np.min(np.linalg.norm(diff @ lat.matrix, axis=1)) < symprec:
                    continue
            idx.append(len(kept))
            kept.append((i, f))
            kept_frac.append(f)
    if len(kept) != round(n_expected):
        raise ValueError(f"folding into the conventional cell kept {len(kept)} sites, expected {round(n_expected)}")
    props = {k: [v[i] for i, _f in kept] for k, v in structure.site_properties.items()}
    return Structure(lat, [species[i] for i, _f in kept], np.array([f for _i, f in kept]) % 1.0,
                     site_properties=props or None)


def niggli_cell(structure):
    """The Niggli-reduced cell (lattice alone; the Cartesian frame is kept)."""
    return structure.get_reduced_structure(reduction_algo="niggli")


def content_seed(structure) -> int:
    """A seed from the structure itself (species, lattice and positions at 1e-4), stable across runs."""
    import hashlib

    key = [structure.composition.formula, np.round(structure.lattice.abc, 4).tolist(),
           np.round(structure.lattice.angles, 3).tolist(), np.round(structure.frac_coords % 1.0, 4).tolist()]
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")


def lattice_frame_cell(structure):
    """The Niggli cell with a ∥ x, b in the xy-plane and a seeded origin shift (module docstring)."""
    from pymatgen.core import Lattice, Structure

    s = niggli_cell(structure)
    m = s.lattice.matrix
    e1 = m[0] / np.linalg.norm(m[0])
    b = m[1] - (m[1] @ e1) * e1
    e2 = b / np.linalg.norm(b)
    rot = np.stack([e1, e2, np.cross(e1, e2)], 1)  # columns: the new x, y, z axes in the old frame
    shift = np.random.default_rng(content_seed(s)).random(3)
    return Structure(Lattice(m @ rot), s.species_and_occu, (s.frac_coords + shift) % 1.0,
                     site_properties=s.site_properties or None)


def density_cell(structure, cell: str, symprec: float = 0.1, angle_tolerance: float = 5.0):
    """The cell a density uses; ``cell`` is one of :data:`rhosym.registry.CELLS`."""
    if cell == "as_is":
        return structure
    if cell == "niggli":
        return niggli_cell(structure)
    if cell == "lattice_frame":
        return lattice_frame_cell(structure)
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
