"""Spglib's standard primitive cell of a structure, from one symmetry search, on plain arrays.

The crystal-graph baselines (:mod:`rhosym.graphs`) build their graphs on the cell
``SpacegroupAnalyzer(structure, symprec).get_primitive_standard_structure()`` returns, with each atom's
symmetry class (spglib's ``equivalent_atoms``). pymatgen gets there with three spglib searches and its
``Structure``/``PeriodicSite`` objects, which cost more than the 5 ms per structure the preprocessing budget
allows (docs/benchmarks/preprocessing.md). This module makes the same cell from ONE search: the dataset's
standardized cell, pymatgen's conventional-cell lattice rules (the same arithmetic in the same order, from
pymatgen 2026.10) and the primitive step, on numpy arrays (:func:`standard_primitive_cell`); magnetic
moments and a few rare cases take pymatgen's own objects with the one-search analyzer
(:func:`standard_primitive`). tests/test_bench_budgets.py holds both bit for bit to pymatgen's output on
hand-made cells of every crystal system, the CIF fixtures and MP-20 rows.
"""

from __future__ import annotations

import itertools
import json
import logging
import math

import numpy as np

log = logging.getLogger("rhosym.standard_cell")


def number_ordered(species):
    """``(unique, numbers)`` of ordered sites (each one species at occupancy 1, pymatgen's
    ``Site.is_ordered``): the distinct compositions in order of first appearance and each site's 1-based
    index among them, as ``SpacegroupAnalyzer`` numbers them for spglib (two such compositions are equal
    exactly when their one species is). ``None`` when a site is not ordered."""
    first: dict = {}
    numbers = []
    for comp in species:
        if len(comp) != 1 or comp.num_atoms != 1:
            return None
        (el,) = comp
        numbers.append(first.setdefault(el, (len(first) + 1, comp))[0])
    return [comp for _n, comp in first.values()], numbers


class Cell:
    """A periodic cell as arrays (lattice, fractional coordinates, one ``Composition`` per site, site
    properties as ``Structure.site_properties``): what the graphs read of a pymatgen ``Structure``,
    without building its sites. :meth:`structure` gives the ``Structure`` (the input's own object, or the
    ingest JSON's, when the cell is the input)."""

    __slots__ = ("lattice", "frac", "species", "props", "_structure", "_source")

    def __init__(self, lattice, frac, species, props, structure=None, source=None):
        self.lattice, self.frac, self.species, self.props = lattice, frac, species, props
        self._structure, self._source = structure, source

    @classmethod
    def of(cls, structure):
        return cls(structure.lattice, structure.frac_coords, [s.species for s in structure],
                   structure.site_properties, structure)

    def structure(self):
        if self._structure is None:
            if self._source is not None:
                from rhosym.ingest import structure_from_json

                self._structure = structure_from_json(self._source)
            else:
                from pymatgen.core import Structure

                self._structure = Structure(self.lattice, self.species, self.frac,
                                            site_properties=self.props or None)
        return self._structure


def input_cell(structure) -> Cell:
    """The :class:`Cell` of a pymatgen ``Structure``, or of an ingest row's ``structure`` JSON (text or
    dict, :func:`rhosym.ingest.structure_from_json`'s input) read into arrays (:func:`cell_from_dict`)."""
    if isinstance(structure, str | dict):
        d = _loads(structure) if isinstance(structure, str) else structure
        cell = cell_from_dict(d)
        if cell is not None:
            return cell
        structure = d
    if structure is None or isinstance(structure, dict):
        from rhosym.ingest import structure_from_json

        structure = structure_from_json(structure)  # raises what the ingest reader raises
    return Cell.of(structure)


def _loads(text: str):
    """``json.loads(text)``: with orjson (a pymatgen dependency; the same objects, numbers parsed to the
    nearest double as json's), else, or for what orjson refuses (NaN, Infinity), with json."""
    try:
        import orjson

        return orjson.loads(text)
    except Exception:  # noqa: BLE001 - ImportError, or JSON orjson does not take: json decides
        return json.loads(text)


_COMPOSITIONS: dict = {}  # a site's species list (JSON) -> its pymatgen Composition


def cell_from_dict(d: dict) -> Cell | None:
    """The cell of ``Structure.from_dict(d)`` without its site objects: the lattice from
    ``Lattice.from_dict``, the fractional coordinates (``abc``) as the float64 array ``frac_coords``
    holds, each site's composition as ``PeriodicSite.from_dict`` makes it (once per distinct species list).
    ``None`` (the caller builds the ``Structure``) for anything else: site properties, species with
    oxidation states or spins, a malformed or empty dict, an occupancy pymatgen refuses."""
    from pymatgen.core import Lattice
    from pymatgen.core.sites import PeriodicSite

    try:
        sites = d["sites"]
        lattice = Lattice.from_dict(d["lattice"])
        species = []
        for sd in sites:
            if sd.get("properties"):
                return None
            key = tuple((sp["element"], repr(sp["occu"])) if len(sp) == 2 else None for sp in sd["species"])
            comp = _COMPOSITIONS.get(key)
            if comp is None:
                if None in key:
                    return None
                comp = PeriodicSite.from_dict({"species": sd["species"], "abc": [0.0, 0.0, 0.0]}, lattice).species
                if len(_COMPOSITIONS) > 4096:
                    _COMPOSITIONS.clear()
                _COMPOSITIONS[key] = comp
            species.append(comp)
        frac = np.array([sd["abc"] for sd in sites], dtype=np.float64)
    except Exception:  # noqa: BLE001 - whatever it is, Structure.from_dict says it
        return None
    if not species or frac.shape != (len(species), 3):
        return None
    return Cell(lattice, frac, species, {}, source=d)


class _Unsupported(Exception):
    """A cell the array path of :func:`standard_primitive_cell` leaves to pymatgen's objects."""


_SORT_KEYS: dict = {}  # species items -> pymatgen's Site sort key (average electronegativity, species string)


def _sort_key(comp) -> tuple[float, str]:
    """What ``Site.__lt__`` compares of a site of species ``comp``: its average electronegativity, then
    its species string."""
    key = tuple(comp.items())
    out = _SORT_KEYS.get(key)
    if out is None:
        from pymatgen.core.sites import Site

        out = (comp.average_electroneg, Site(comp, [0.0, 0.0, 0.0]).species_string)
        if len(_SORT_KEYS) > 4096:
            _SORT_KEYS.clear()
        _SORT_KEYS[key] = out
    return out


_TO_PRIMITIVE: dict = {}  # (centring letter, monoclinic) -> pymatgen's conventional-to-primitive matrix


def standard_primitive_cell(cell: Cell, numbered, symprec: float):
    """``(cell, equivalent_atoms)``: :func:`standard_primitive` on arrays, with the same arithmetic as
    pymatgen's objects (per site, ``np.dot`` of a row by a C-ordered 3×3 matrix is the row of the
    matrix product, and ``np.mod`` is elementwise), so the cell is bit for bit the same. The steps:
    spglib's dataset (one search), the refined cell sorted as ``get_sorted_structure`` sorts it, the
    conventional lattice by pymatgen's rules (:func:`_conventional_lattice`; the second sort is then the
    identity), the primitive step. Magnetic moments or spins, a species without electronegativity and
    the rhombohedral-supercell branch go through the pymatgen objects (:func:`standard_primitive`).
    ``numbered``: :func:`number_ordered` of the species (``None``: numbered here, for mixed sites)."""
    import spglib
    from pymatgen.core import Lattice
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    props = cell.props
    if numbered is not None:
        unique, zs = numbered
    else:  # pymatgen's scan (compositions compare within a tolerance)
        unique, zs = [], []
        for sp in cell.species:
            if sp not in unique:
                unique.append(sp)
            zs.append(unique.index(sp) + 1)
    if "magmom" in props or any(getattr(el, "spin", None) is not None for sp in unique for el in sp):
        return _fallback(cell, symprec)
    keys = [_sort_key(sp) for sp in unique]
    if any(math.isnan(k[0]) for k in keys):
        return _fallback(cell, symprec)
    # the search SpacegroupAnalyzer runs (its cell as arrays: the same doubles reach spglib)
    ds = spglib.get_symmetry_dataset((cell.lattice.matrix, cell.frac, zs), symprec=symprec, angle_tolerance=5)
    if ds is None:
        raise ValueError("spglib found no symmetry")
    sga = SpacegroupAnalyzer.__new__(SpacegroupAnalyzer)  # pymatgen's rules that read the dataset only
    sga._space_group_data, sga._symprec, sga._angle_tol = ds, symprec, 5
    symbol = sga.get_space_group_symbol()
    # conventional-to-primitive matrix: a function of the centring letter and of a monoclinic group only
    to_prim_key = (symbol[:1], 3 <= int(ds.number) < 16)
    if to_prim_key not in _TO_PRIMITIVE:
        _TO_PRIMITIVE[to_prim_key] = sga.get_conventional_to_primitive_transformation_matrix()

    # get_refined_structure(keep_site_properties=True), then get_sorted_structure (stable, by Site.__lt__)
    numbers = np.asarray(ds.std_types).tolist()
    order = sorted(range(len(numbers)), key=[keys[i - 1] for i in numbers].__getitem__)
    numbers = [numbers[i] for i in order]
    sp = [unique[i - 1] for i in numbers]
    props_r = {k: [v[zs.index(i)] for i in numbers] for k, v in props.items()}
    # the class of a standardized atom: that of an input atom on the same primitive-cell atom
    by_prim = np.zeros(len(ds.equivalent_atoms), dtype=np.int64)
    by_prim[np.asarray(ds.mapping_to_primitive)] = np.asarray(ds.equivalent_atoms)
    orbit = by_prim[np.asarray(ds.std_mapping_to_primitive)[order]]
    frac = np.asarray(ds.std_positions, dtype=np.float64)[order]
    lattice = Lattice(ds.std_lattice)

    # get_conventional_standard_structure: new lattice, coordinates through transf, wrapped into the cell
    latt_type = sga.get_lattice_type()
    if latt_type == "triclinic":  # struct.get_reduced_structure("LLL")
        reduced = lattice.get_lll_reduced_lattice()
        if reduced != lattice:
            frac = np.mod(reduced.get_fractional_coords(np.dot(frac, lattice.matrix)), 1)
            lattice = reduced
    try:
        conv_lattice, transf = _conventional_lattice(lattice, symbol, latt_type)
    except _Unsupported:
        return _fallback(cell, symprec)
    frac = np.mod(frac @ transf.T, 1)

    # get_primitive_standard_structure's last step (as _primitive_of_conventional)
    if not symbol.startswith("P"):
        prim_lattice = Lattice(_TO_PRIMITIVE[to_prim_key] @ conv_lattice.matrix)
        frac = np.mod(prim_lattice.get_fractional_coords(np.dot(frac, conv_lattice.matrix)), 1.0)
        keep = _first_images(frac, numbers)
        if symbol.startswith("R"):
            prim_lattice = _setyawan_curtarolo_rhombohedral(prim_lattice)
        frac, orbit = frac[keep], orbit[keep]
        sp = [sp[i] for i in keep]
        props_r = {k: [v[i] for i in keep] for k, v in props_r.items()}
        conv_lattice = prim_lattice
    seen: dict[int, int] = {}
    equiv = np.array([seen.setdefault(o, i) for i, o in enumerate(orbit.tolist())], dtype=np.int64)
    return Cell(conv_lattice, frac, sp, props_r), equiv


def _first_images(frac: np.ndarray, numbers: list) -> list[int]:
    """The sites kept by pymatgen's primitive step: each site unless a kept earlier one is a periodic image
    of it (same species, every fractional difference within 1e-8 of an integer; ``is_periodic_image``)."""
    d = frac[:, None, :] - frac[None, :, :]
    d -= np.round(d)
    near = np.abs(d) <= 1e-8
    sid = np.asarray(numbers)
    same = (sid[:, None] == sid[None, :]) & near[:, :, 0] & near[:, :, 1] & near[:, :, 2]
    # the first site of which each is an image (itself at the latest): the sites that are their own first
    # are kept; when every other one's first is kept (always, but for sites within 1e-8 of several
    # others that are not images of each other), that is the greedy rule's answer, else run it as written
    first = np.argmax(same, axis=0)
    kept = first == np.arange(len(first))
    if np.all(kept[first]):
        return np.flatnonzero(kept).tolist()
    rows = same.tolist()
    keep: list[int] = []
    for i in range(len(frac)):
        if not any(rows[k][i] for k in keep):
            keep.append(i)
    return keep


def _setyawan_curtarolo_rhombohedral(lattice):
    """A rhombohedral primitive lattice turned to the Setyawan-Curtarolo orientation (pymatgen's
    ``get_primitive_standard_structure``; fractional coordinates kept)."""
    from pymatgen.core import Lattice

    a, alpha = lattice.a, math.radians(lattice.alpha)
    cos_h = math.cos(alpha / 2)
    cos_f = math.cos(alpha) / cos_h
    a_sin_h = a * math.sin(alpha / 2)
    return Lattice(((a * cos_h, -a_sin_h, 0.0), (a * cos_h, a_sin_h, 0.0),
                    (a * cos_f, 0.0, a * math.sqrt(1 - cos_f * cos_f))))


def _matrix(rows) -> np.ndarray:
    """A lattice matrix as ``pymatgen.core.Lattice`` stores it (C-ordered float64 copy)."""
    return np.array(rows, dtype=np.float64).reshape((3, 3))


def _lengths(m: np.ndarray) -> tuple:
    """``Lattice(m).lengths``, the same operations."""
    return tuple(np.sqrt(np.sum(m**2, axis=1)).tolist())


def _angles(m: np.ndarray, lengths: tuple) -> tuple:
    """``Lattice(m).angles``, the same operations (``np.clip`` of a scalar to [-1, 1] as min/max)."""
    angles = np.zeros(3)
    for dim in range(3):
        jj = (dim + 1) % 3
        kk = (dim + 2) % 3
        angles[dim] = min(max(np.dot(m[jj], m[kk]) / (lengths[jj] * lengths[kk]), -1), 1)
    return tuple(np.rad2deg(np.arccos(angles)).tolist())


def _parameters(rows) -> tuple:
    """``Lattice(rows).parameters``: (a, b, c, alpha, beta, gamma)."""
    m = _matrix(rows)
    lengths = _lengths(m)
    return (*lengths, *_angles(m, lengths))


_RIGHT: list = []  # from_parameters' trigonometry at 90, 90, 90 degrees (the same numbers every call)


def _right_lattice(a: float, b: float, c: float):
    """``Lattice.orthorhombic(a, b, c)`` (``from_parameters(a, b, c, 90, 90, 90)``): its expressions with
    the cosines and sines of the three right angles computed once."""
    from pymatgen.core import Lattice

    if not _RIGHT:
        cos_alpha, cos_beta, cos_gamma = np.cos(np.radians([90, 90, 90]))
        sin_alpha, sin_beta, sin_gamma = np.sin(np.radians([90, 90, 90]))
        gamma_star = np.arccos(np.clip((cos_alpha * cos_beta - cos_gamma) / (sin_alpha * sin_beta), -1, 1))
        _RIGHT.extend((cos_alpha, cos_beta, sin_alpha, sin_beta, np.cos(gamma_star), np.sin(gamma_star)))
    cos_alpha, cos_beta, sin_alpha, sin_beta, cos_gs, sin_gs = _RIGHT
    return Lattice([[a * sin_beta, 0.0, a * cos_beta],
                    [-b * sin_alpha * cos_gs, b * sin_alpha * sin_gs, b * cos_alpha],
                    [0.0, 0.0, float(c)]])


def _conventional_lattice(lattice, symbol: str, latt_type: str):
    """``(lattice, transf)`` of pymatgen's ``get_conventional_standard_structure`` (2026.10) for the
    refined lattice ``lattice`` (LLL-reduced for triclinic groups) with ``international_monoclinic``:
    the conventional lattice and the matrix the fractional coordinates go through (``frac @ transf.T``).
    Its lattice parameters come from :func:`_parameters` and :func:`_right_lattice` (pymatgen's
    arithmetic without building ``Lattice`` objects). Raises :class:`_Unsupported` for a refined cell with
    a rhombohedral metric (pymatgen makes a supercell; spglib's hexagonal settings do not give one)."""
    from pymatgen.core import Lattice

    tol = 1e-5
    transf = np.zeros(shape=(3, 3), dtype=np.float64)
    abc = _lengths(lattice.matrix)  # lattice.abc
    sorted_lengths = sorted(abc)
    sorted_idx = sorted(range(3), key=lambda i: abc[i])  # pymatgen's sorted_dic: orig_index by length

    def two_sorted(ii):
        return sorted(ii, key=lambda i: abc[i])

    if latt_type in {"orthorhombic", "cubic"}:
        if symbol.startswith("C"):  # keep the c axis where it is, to keep the C setting
            transf[2] = [0, 0, 1]
            a, b = sorted(abc[:2])
            for idx, orig in enumerate(two_sorted((0, 1))):
                transf[idx][orig] = 1
            c = abc[2]
        elif symbol.startswith("A"):  # change to C-centering (Setyawan/Curtarolo)
            transf[2] = [1, 0, 0]
            a, b = sorted(abc[1:])
            for idx, orig in enumerate(two_sorted((1, 2))):
                transf[idx][orig] = 1
            c = abc[0]
        else:
            for idx, orig in enumerate(sorted_idx):
                transf[idx][orig] = 1
            a, b, c = sorted_lengths
        return _right_lattice(a, b, c), transf

    if latt_type == "tetragonal":
        a, b, c = sorted_lengths
        for idx, orig in enumerate(sorted_idx):
            transf[idx][orig] = 1
        if abs(b - c) < tol < abs(a - c):
            a, c = c, a
            transf = np.dot([[0, 0, 1], [0, 1, 0], [1, 0, 0]], transf)
        return _right_lattice(a, a, c), transf

    if latt_type in {"hexagonal", "rhombohedral"}:
        # np.allclose(abc, a, atol=1e-3, rtol=0) and np.allclose(angles, alpha, atol=1e-2, rtol=0) (finite)
        angles = _angles(lattice.matrix, abc)
        if all(abs(x - abc[0]) <= 1e-3 for x in abc) and all(abs(x - angles[0]) <= 1e-2 for x in angles):
            raise _Unsupported("rhombohedral refined cell")
        a, b, c = abc
        if abs(b - c) < 0.001:
            a, c = c, a
        new_matrix = [[a / 2, -a * math.sqrt(3) / 2, 0], [a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c]]
        return Lattice(new_matrix), np.eye(3, dtype=np.float64)

    m = lattice.matrix
    if latt_type == "monoclinic":
        if symbol.startswith("C"):  # keep the c axis where it is, to keep the C setting
            transf[2] = [0, 0, 1]
            sorted_ab = two_sorted((0, 1))
            a, b = abc[sorted_ab[0]], abc[sorted_ab[1]]
            c = abc[2]
            new_matrix = None
            for tp2 in itertools.permutations(range(2), 2):
                m2 = _matrix([m[tp2[0]], m[tp2[1]], m[2]])
                lengths = _lengths(m2)
                alpha_degrees = _angles(m2, lengths)[0]
                if math.isclose(alpha_degrees, 90, rel_tol=0, abs_tol=1e-10):
                    continue
                transf = np.zeros(shape=(3, 3))
                transf[2][2] = 1
                if alpha_degrees > 90:  # invert a and b to get an angle < 90
                    a, b, c, alpha_degrees, _beta, _gamma = _parameters([-m[tp2[0]], -m[tp2[1]], m[2]])
                    transf[0][tp2[0]] = -1
                    transf[1][tp2[1]] = -1
                elif alpha_degrees < 90:
                    transf[0][tp2[0]] = 1
                    transf[1][tp2[1]] = 1
                    a, b, c = lengths
                alpha_radians = math.radians(alpha_degrees)
                new_matrix = [[a, 0, 0], [0, b, 0], [0, c * math.cos(alpha_radians), c * math.sin(alpha_radians)]]
            if new_matrix is None:  # alpha == 90 with a monoclinic group, C unchanged
                new_matrix = [[a, 0, 0], [0, b, 0], [0, 0, c]]
                for idx, orig in enumerate(sorted_ab):
                    transf[idx][orig] = 1
        else:  # every permutation of the axes; keep those with the non-90 angle alpha and b < c
            new_matrix = None
            for tp3 in itertools.permutations(range(3), 3):
                a, b, c, alpha, _beta, _gamma = _parameters([m[tp3[0]], m[tp3[1]], m[tp3[2]]])
                if math.isclose(alpha, 90, rel_tol=0, abs_tol=1e-10) or b >= c:
                    continue
                transf = np.zeros(shape=(3, 3))
                transf[2][tp3[2]] = 1
                if alpha > 90 and b < c:
                    a, b, c, alpha, _beta, _gamma = _parameters([-m[tp3[0]], -m[tp3[1]], m[tp3[2]]])
                    transf[0][tp3[0]] = -1
                    transf[1][tp3[1]] = -1
                elif alpha < 90 and b < c:
                    transf[0][tp3[0]] = 1
                    transf[1][tp3[1]] = 1
                alpha = math.radians(alpha)
                new_matrix = [[a, 0, 0], [0, b, 0], [0, c * math.cos(alpha), c * math.sin(alpha)]]
            if new_matrix is None:  # alpha == 90 with a monoclinic group
                new_matrix = list(np.zeros(shape=(3, 3)))
                for idx, orig in enumerate(sorted_idx):
                    new_matrix[idx] = m[orig]
                    transf[idx][orig] = 1
        # international convention: beta the non-right angle
        op = [[0, 1, 0], [1, 0, 0], [0, 0, -1]]
        transf = np.dot(op, transf)
        new_matrix = np.dot(op, new_matrix)
        if _parameters(new_matrix)[4] < 90:
            op = [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]
            transf = np.dot(op, transf)
            new_matrix = np.dot(op, new_matrix)
        return Lattice(new_matrix), transf

    if latt_type != "triclinic":
        raise _Unsupported(f"lattice type {latt_type}")
    a, b, c = abc
    alpha, beta, gamma = (math.radians(i) for i in _angles(lattice.matrix, abc))
    cos, sin = math.cos, math.sin
    new_matrix = None
    x, y, z = (c * cos(beta), c * (cos(alpha) - cos(beta) * cos(gamma)) / sin(gamma),
               c * math.sqrt(sin(gamma) ** 2 - cos(alpha) ** 2 - cos(beta) ** 2
                             + 2 * cos(alpha) * cos(beta) * cos(gamma)) / sin(gamma))
    u, v = b * cos(gamma), b * sin(gamma)
    candidates = (  # pymatgen's four test matrices (-p * q is -(p * q) exactly)
        ([[a, 0, 0], [u, v, 0.0], [x, y, z]], np.eye(3, dtype=np.float64)),
        ([[-a, 0, 0], [u, v, 0.0], [-x, -y, -z]], np.array([[-1, 0, 0], [0, 1, 0], [0, 0, -1]])),
        ([[-a, 0, 0], [-u, -v, 0.0], [x, y, z]], np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]])),
        ([[a, 0, 0], [-u, -v, 0.0], [-x, -y, -z]], np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]])),
    )
    for test_matrix, t in candidates:  # the last all-acute or all-obtuse one wins, as in pymatgen
        # Lattice(test_matrix).reciprocal_lattice.angles
        recp_angles = np.array(_parameters(np.linalg.inv(_matrix(test_matrix)).T * 2 * np.pi)[3:])
        if all(recp_angles <= 90) or all(recp_angles > 90):
            transf, new_matrix = t, test_matrix
    return Lattice(new_matrix), transf


def _fallback(cell: Cell, symprec: float):
    prim, equiv = standard_primitive(cell.structure(), symprec)
    return Cell.of(prim), equiv


_ORBIT = "_rhosym_orbit"  # a transient site property: the input's symmetry class of each site


def _one_search_analyzer():
    """A :class:`~pymatgen.symmetry.analyzer.SpacegroupAnalyzer` that runs spglib once.

    pymatgen's ``get_primitive_standard_structure`` searches the symmetry three times: the dataset (in
    ``__init__``), ``spglib.refine_cell`` (``get_refined_structure``) and, for monoclinic groups,
    ``spglib.get_symmetry`` (``_get_symmetry``). The last two return what the dataset already holds
    (``std_lattice``, ``std_positions``, ``std_types``; ``rotations``, ``translations``): this subclass
    reads them from it, so the standard cell is the same and costs one search. The refined structure also
    carries each site's symmetry class (site property ``_rhosym_orbit``), which the conventional and
    primitive transformations keep, so the primitive cell's classes need no further search.
    """
    from fractions import Fraction
    from functools import cmp_to_key

    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    class OneSearch(SpacegroupAnalyzer):
        def __init__(self, structure, symprec: float = 0.01, angle_tolerance: float = 5):
            # pymatgen's __init__ without its per-site magnetic-moment checks, for cells without moments
            # (those take pymatgen's own): species numbered in order of first appearance, one search
            from pymatgen.symmetry.analyzer import _get_symmetry_dataset

            props = structure.site_properties
            if "magmom" in props or any(getattr(sp, "spin", None) is not None for sp in structure.types_of_species):
                super().__init__(structure, symprec, angle_tolerance)
                return
            self._symprec, self._angle_tol, self._structure = symprec, angle_tolerance, structure
            self._site_props = props
            species = [site.species for site in structure]
            self._unique_species = []
            zs = []
            for sp in species:
                if sp not in self._unique_species:
                    self._unique_species.append(sp)
                zs.append(self._unique_species.index(sp) + 1)
            self._numbers = zs
            self._cell = (tuple(map(tuple, structure.lattice.matrix.tolist())),
                          tuple(map(tuple, structure.frac_coords.tolist())), tuple(zs))
            self._space_group_data = _get_symmetry_dataset(self._cell, symprec, angle_tolerance)

        def _get_symmetry(self):  # as pymatgen's, from the dataset instead of spglib.get_symmetry
            ds = self._space_group_data
            translations = np.array([[float(Fraction(c).limit_denominator(1000)) for c in t]
                                     for t in ds.translations])
            translations[np.abs(translations) == 1] = 0
            return ds.rotations, translations

        def get_refined_structure(self, keep_site_properties: bool = False):
            ds = self._space_group_data  # as pymatgen's, from the dataset instead of spglib.refine_cell
            numbers = [int(i) for i in ds.std_types]
            species = [self._unique_species[i - 1] for i in numbers]
            props = {}
            if keep_site_properties:
                for k, v in self._site_props.items():
                    props[k] = [v[self._numbers.index(i)] for i in numbers]
            # the class of a standardized atom: that of an input atom on the same primitive-cell atom
            equiv = np.asarray(ds.equivalent_atoms)
            by_prim = dict(zip(np.asarray(ds.mapping_to_primitive).tolist(), equiv.tolist()))
            props[_ORBIT] = [by_prim[int(p)] for p in ds.std_mapping_to_primitive]
            # get_sorted_structure(): a stable sort by Site.__lt__ (electronegativity, then species string)
            keys = {}
            for sp in set(species):
                comp = Structure(ds.std_lattice, [sp], [[0, 0, 0]])[0]
                keys[sp] = (comp.species.average_electroneg, comp.species_string)

            def before(i: int, j: int) -> int:
                (xi, si), (xj, sj) = keys[species[i]], keys[species[j]]
                return -1 if xi < xj or (not xi > xj and si < sj) else (
                    1 if xi > xj or (not xi < xj and sj < si) else 0)

            order = sorted(range(len(species)), key=cmp_to_key(before))
            return Structure(ds.std_lattice, [species[i] for i in order], np.asarray(ds.std_positions)[order],
                             site_properties={k: [v[i] for i in order] for k, v in props.items()})

    return OneSearch


def _primitive_of_conventional(sga, conv):
    """The last step of pymatgen's ``get_primitive_standard_structure``, vectorized: the conventional
    standard cell ``conv`` in the primitive lattice ``T @ conv.lattice`` (``T``: pymatgen's
    conventional-to-primitive matrix), sites wrapped into it and kept once (the first of each set of
    periodic images: same species, fractional coordinates equal within 1e-8), a rhombohedral lattice
    turned to the Setyawan-Curtarolo orientation (fractional coordinates kept)."""
    import math

    from pymatgen.core import Lattice, Structure

    symbol = sga.get_space_group_symbol()
    if symbol.startswith("P"):
        return conv
    prim_lattice = Lattice(sga.get_conventional_to_primitive_transformation_matrix() @ conv.lattice.matrix)
    frac = np.mod(prim_lattice.get_fractional_coords(conv.cart_coords), 1.0)
    species = conv.species_and_occu
    ids: dict = {}
    sp_id = np.array([ids.setdefault(sp, len(ids)) for sp in species])
    keep: list[int] = []
    for i in range(len(frac)):
        if keep:
            k = np.asarray(keep)
            d = frac[k] - frac[i]
            d -= np.round(d)
            if np.any((sp_id[k] == sp_id[i]) & np.all(np.abs(d) <= 1e-8, axis=1)):
                continue
        keep.append(i)
    if symbol.startswith("R"):
        a, alpha = prim_lattice.a, math.radians(prim_lattice.alpha)
        cos_h = math.cos(alpha / 2)
        cos_f = math.cos(alpha) / cos_h
        a_sin_h = a * math.sin(alpha / 2)
        prim_lattice = Lattice(((a * cos_h, -a_sin_h, 0.0), (a * cos_h, a_sin_h, 0.0),
                                (a * cos_f, 0.0, a * math.sqrt(1 - cos_f * cos_f))))
    props = {k: [v[i] for i in keep] for k, v in conv.site_properties.items()}
    return Structure(prim_lattice, [species[i] for i in keep], frac[keep], site_properties=props)


def standard_primitive(structure, symprec: float):
    """``(primitive standard structure, equivalent_atoms)`` exactly as
    ``SpacegroupAnalyzer(structure, symprec).get_primitive_standard_structure(keep_site_properties=True)``
    and spglib's ``equivalent_atoms`` of that cell, from one symmetry search (:func:`_one_search_analyzer`).
    ``equivalent_atoms[i]`` is the lowest index of the sites of ``i``'s class, as spglib's."""
    sga = _one_search_analyzer()(structure, symprec=symprec)
    prim = _primitive_of_conventional(sga, sga.get_conventional_standard_structure(keep_site_properties=True))
    orbit = np.asarray(prim.site_properties[_ORBIT])
    prim.remove_site_property(_ORBIT)
    first: dict[int, int] = {}
    equiv = np.array([first.setdefault(int(o), i) for i, o in enumerate(orbit)], dtype=np.int64)
    return prim, equiv
