"""Symmetry operations read from the density itself: operation scores and a classical space-group finder.

The method is Palatinus & van der Lee (J. Appl. Cryst. 41, 975, 2008; Superflip ``derivesymmetry``), no
learning: the candidate point operations come from the lattice metric alone, the best translation of each
comes from one FFT cross-correlation, and the accepted operations are handed to spglib to name the group.
See ``docs/symops.md`` for the full description and the slot table.

Conventions
-----------
* Operations act on fractional column vectors, ``x' = W x + t`` (spglib's convention). An operation is
  present in a density when ``ρ(W x + t) = ρ(x)`` for every ``x``.
* **Lattice frame** (:func:`lattice_frame`): spglib on a one-atom cell gives the Bravais lattice of the
  input cell from its metric alone (tolerance ``symprec``, Å), its conventional cell and its holohedry
  (2 to 48 integer matrices in the conventional basis). ``to_conventional`` (integer, det 1..4) gives the
  conventional rows ``lattice = to_conventional @ input_rows``; ``transformation`` ``P`` maps fractional
  coordinates, ``x_conv = P x_in`` (``P = inv(to_conventional).T``).
* **Density** (:class:`DensityFrame`): structure factors ``F(H)`` of the conventional cell, with
  ``ρ(x) = (1/V) Σ_H F(H) exp(-2πi H·x)``, kept on a sphere ``|H| ≤ q_max`` in reciprocal space. The
  sphere is invariant under every isometry of the lattice, so the kept (band-limited) density has exactly
  the symmetry of the full one; ``q_max = min_i (n_i/2 − 1) / |a_i|`` keeps every index inside the grid
  (and inside the input grid's Nyquist box for gridded input). ``grid`` is that band-limited ``ρ``
  sampled at ``x = (i/n0, j/n1, k/n2)`` of the conventional cell: N³ with N = 24 by default (every 1/2,
  1/3, 1/4, 1/6, 1/8 and 1/12 translation is a grid step); ``isotropic=True`` takes N times
  ``round(|a_i| / min |a|)`` points along each axis, so that one long axis does not set the resolution.
* **Score** of an operation: the Pearson correlation of the mean-subtracted density with its image,
  ``corr(W, t) = ∫ρ̃(x) ρ̃(Wx + t) dx / (‖ρ̃‖ ‖ρ̃∘W‖)``, in ``[-1, 1]``, 1 = present, about 0 for an absent
  operation (a random phase relation), maximized over ``t``. In reciprocal space
  ``C_W(t) = Σ_H F(H) F*(HW) exp(-2πi H·t)`` (``H`` a row vector, ``H ≠ 0``): one inverse FFT gives it at
  every grid ``t`` (single precision); the grid maximum is refined off the grid (parabola through the
  neighbours, then Newton steps on the exact trigonometric sum in double precision). ``W`` and ``W⁻¹``
  share one FFT
  (``C_{W⁻¹}(t) = C_W(−W t)``). Centrings are pure translations ``(I, c)``: ``corr = C_I(c) / C_I(0)``.

Score vector (:data:`N_SLOTS` = 79 entries, names in :data:`SLOT_NAMES`)
------------------------------------------------------------------------
* slots 0–47 (:data:`CUBIC_OPS`): the 48 operations of m-3m in a cubic-axes basis, in the order of the
  general positions of Pm-3m (No. 221) in International Tables A (slot 0 = identity, 24 = inversion);
* slots 48–71 (:data:`HEX_OPS`): the 24 operations of 6/mmm in hexagonal axes, in the order of P6/mmm
  (No. 191) (slot 48 = identity, 60 = inversion);
* slots 72–78 (:data:`CENTRINGS`): A (0,½,½), B (½,0,½), C (½,½,0), I (½,½,½), F (= min of A, B, C),
  R_obv (⅔,⅓,⅓), R_rev (⅓,⅔,⅓), in the conventional cell.

Lattices of the hexagonal family (hP, hR) fill the hexagonal block, all others the cubic block; in that
block only the operations of the lattice's holohedry are tested. Untested slots hold ``NaN`` and
``mask = False``; centring slots are always tested. ``translations`` holds the refined ``t`` of each slot
(fractional, conventional cell, in [0, 1)).

Finder (:func:`find_space_group`)
---------------------------------
For each threshold of the ladder :data:`DEFAULT_LADDER` (0.999, 0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5) the
operations and centrings scoring at least the threshold are accepted (centrings whose translations the
accepted operations do not map onto themselves are dropped, lowest score first). The group is generated
from the accepted operations: a product gets the composed translation and must itself be accepted and
score at least the threshold at that translation; the result must be closed modulo the centrings within
``symprec`` Å. The first threshold whose group spglib (``get_spacegroup_type_from_symmetry``, which puts
the operations on a standard origin and setting) can name gives the answer. When no threshold works, a
group is built greedily from the best-scoring operations at the first threshold and ``consistent`` is
False.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rhosym.registry import SYMOPS_LADDER

# --------------------------------------------------------------------------------------------------
# canonical operation lists


def xyz_to_matrix(xyz: str) -> np.ndarray:
    """Integer matrix of a coordinate triplet such as ``-y,x-y,z`` (translations not allowed)."""
    rows = []
    parts = xyz.replace(" ", "").lower().split(",")
    if len(parts) != 3:
        raise ValueError(f"not a coordinate triplet: {xyz!r}")
    for part in parts:
        row = [0, 0, 0]
        sign = 1
        for ch in part:
            if ch in "+-":
                sign = 1 if ch == "+" else -1
            elif ch in "xyz":
                row["xyz".index(ch)] += sign
                sign = 1
            else:
                raise ValueError(f"not a coordinate triplet: {xyz!r}")
        rows.append(row)
    return np.array(rows, dtype=np.int64)


def matrix_to_xyz(w: np.ndarray, t=None) -> str:
    """Coordinate triplet of ``(W, t)``, e.g. ``-y+1/2,x-y,z+1/4``."""
    out = []
    for i in range(3):
        s = ""
        for j, c in enumerate("xyz"):
            v = int(w[i, j])
            if v:
                s += ("-" if v < 0 else ("+" if s else "")) + ("" if abs(v) == 1 else str(abs(v))) + c
        if t is not None:
            f = fraction_str(t[i])
            if f != "0":
                s += ("" if f.startswith("-") else "+") + f
        out.append(s or "0")
    return ",".join(out)


_CUBIC_XYZ_HALF = ("x,y,z", "-x,-y,z", "-x,y,-z", "x,-y,-z", "z,x,y", "z,-x,-y", "-z,-x,y", "-z,x,-y",
                   "y,z,x", "-y,z,-x", "y,-z,-x", "-y,-z,x", "y,x,-z", "-y,-x,-z", "y,-x,z", "-y,x,z",
                   "x,z,-y", "-x,z,y", "-x,-z,-y", "x,-z,y", "z,y,-x", "z,-y,x", "-z,y,x", "-z,-y,-x")
_HEX_XYZ_HALF = ("x,y,z", "-y,x-y,z", "-x+y,-x,z", "-x,-y,z", "y,-x+y,z", "x-y,x,z", "y,x,-z", "x-y,-y,-z",
                 "-x,-x+y,-z", "-y,-x,-z", "-x+y,y,-z", "x,x-y,-z")


def _ops(half):
    m = np.array([xyz_to_matrix(s) for s in half])
    return np.concatenate([m, -m])


CUBIC_OPS = _ops(_CUBIC_XYZ_HALF)  # (48, 3, 3): m-3m, Pm-3m general-position order
HEX_OPS = _ops(_HEX_XYZ_HALF)  # (24, 3, 3): 6/mmm in hexagonal axes, P6/mmm order
POINT_OPS = np.concatenate([CUBIC_OPS, HEX_OPS])  # (72, 3, 3)
HEX_OFFSET = len(CUBIC_OPS)
N_POINT_SLOTS = len(POINT_OPS)
CENTRINGS = (("A", (0, 1 / 2, 1 / 2)), ("B", (1 / 2, 0, 1 / 2)), ("C", (1 / 2, 1 / 2, 0)),
             ("I", (1 / 2, 1 / 2, 1 / 2)), ("F", None), ("R_obv", (2 / 3, 1 / 3, 1 / 3)),
             ("R_rev", (1 / 3, 2 / 3, 1 / 3)))
CENTRING_OFFSET = N_POINT_SLOTS
N_SLOTS = N_POINT_SLOTS + len(CENTRINGS)
DEFAULT_LADDER = SYMOPS_LADDER  # rhosym.registry; the setting symops.ladder defaults to it
_IDEAL = {"cubic": np.eye(3), "hexagonal": np.array([[1.0, 0, 0], [-0.5, math.sqrt(3) / 2, 0], [0, 0, 1.6]])}


def fraction_str(v: float, tol: float = 1e-3) -> str:
    """``v`` as ``k/d`` for d | 24 when within ``tol``, else 4 decimals."""
    for d in (1, 2, 3, 4, 6, 8, 12, 24):
        k = round(v * d)
        if abs(v * d - k) < tol * d:
            g = math.gcd(k, d)
            return str(k // g) if d == g else f"{k // g}/{d // g}"
    return f"{v:.4f}"


def op_symbol(w: np.ndarray, lattice=None) -> str:
    """Symmetry-element symbol of a point operation: ``1, -1, 2 [0,1,0], m [0,0,1], 3+ [1,1,1], -4- ...``.

    The direction is the rotation axis of ``det(W)·W`` (for ``m`` the mirror normal), in the basis of the
    cell; the sense (+/−, orders 3, 4, 6) is counter-clockwise seen from the axis tip, in ``lattice``
    (rows; the identity when None; only the handedness of the basis matters).
    """
    w = np.asarray(w, dtype=np.int64)
    hand = 1 if lattice is None or np.linalg.det(np.asarray(lattice, dtype=float)) > 0 else -1
    return _op_symbol(tuple(int(x) for x in w.ravel()), hand)


@lru_cache(maxsize=4096)
def _op_symbol(key: tuple, hand: int) -> str:
    w = np.array(key, dtype=np.int64).reshape(3, 3)
    det = int(round(np.linalg.det(w)))
    tr = int(np.trace(w))
    order = {(1, 3): "1", (1, -1): "2", (1, 0): "3", (1, 1): "4", (1, 2): "6",
             (-1, -3): "-1", (-1, 1): "m", (-1, 0): "-3", (-1, -1): "-4", (-1, -2): "-6"}.get((det, tr))
    if order is None:
        raise ValueError(f"not a crystallographic point operation: {w.tolist()}")
    if order in ("1", "-1"):
        return order
    r = det * w
    a = r - np.eye(3, dtype=np.int64)
    axis = None
    for i, j in ((0, 1), (0, 2), (1, 2)):
        c = np.cross(a[i], a[j])
        if np.any(c):
            axis = c
            break
    g = math.gcd(*[int(x) for x in axis])
    axis = axis // g
    if axis[np.flatnonzero(axis)[0]] < 0:
        axis = -axis
    sense = ""
    if order not in ("2", "m"):
        v = np.eye(3)[int(np.argmin(np.abs(axis)))]
        trip = np.linalg.det(np.stack([axis.astype(float), v, r @ v])) * hand
        sense = "+" if trip > 0 else "-"
    return f"{order}{sense} [{','.join(str(int(x)) for x in axis)}]"


def seitz(w: np.ndarray, t, lattice=None) -> str:
    """Seitz symbol ``{R|t}``, e.g. ``{2 [0,0,1]|0,0,1/2}``."""
    return "{" + op_symbol(w, lattice) + "|" + ",".join(fraction_str(float(x)) for x in t) + "}"


def _op_dicts(slots, ws, ts, vals, lattice) -> list[dict]:
    """slot, Seitz symbol, xyz, W, t, score of each operation (sorted by slot)."""
    hand = 1 if np.linalg.det(np.asarray(lattice, dtype=float)) > 0 else -1
    out = []
    for s, w, t, v in sorted(zip(slots, ws, ts, vals), key=lambda x: x[0]):
        t = np.where(np.abs(np.asarray(t, dtype=float) - 1.0) < 1e-9, 0.0, t)
        sym = _op_symbol(tuple(int(x) for x in np.ravel(w)), hand)
        out.append({"slot": int(s), "seitz": "{" + sym + "|" + ",".join(fraction_str(float(x)) for x in t) + "}",
                    "xyz": matrix_to_xyz(w, t), "W": np.asarray(w).tolist(), "t": t.tolist(), "score": float(v)})
    return out


def _slot_names() -> tuple[str, ...]:
    names = [f"cub{i:02d} {op_symbol(w, _IDEAL['cubic'])} ({matrix_to_xyz(w)})" for i, w in enumerate(CUBIC_OPS)]
    names += [f"hex{i:02d} {op_symbol(w, _IDEAL['hexagonal'])} ({matrix_to_xyz(w)})" for i, w in enumerate(HEX_OPS)]
    names += [f"centring {name}" for name, _ in CENTRINGS]
    return tuple(names)


SLOT_NAMES = _slot_names()


# --------------------------------------------------------------------------------------------------
# lattice frame


@dataclass
class LatticeFrame:
    """The Bravais lattice of a cell from its metric: conventional cell, holohedry, transformation."""

    input_lattice: np.ndarray  # (3, 3) rows, Å
    lattice: np.ndarray  # (3, 3) conventional rows, Å (= to_conventional @ input_lattice)
    to_conventional: np.ndarray  # (3, 3) int, det 1..4
    transformation: np.ndarray  # (3, 3) P: x_conv = P x_in
    ops: np.ndarray  # (k, 3, 3) int: holohedry in the conventional basis, x' = W x
    slots: np.ndarray  # (k,) int: index of each op in POINT_OPS (score-vector slot)
    bravais: str  # e.g. "cF", "hR", "mC", "aP"
    family: str  # "cubic" (cubic-axes slots) or "hexagonal" (hexagonal-axes slots)


_BRAVAIS_PREFIX = {"triclinic": "a", "monoclinic": "m", "orthorhombic": "o", "tetragonal": "t", "trigonal": "h",
                   "hexagonal": "h", "cubic": "c"}


def _as_lattice(lattice) -> np.ndarray:
    try:
        lat = np.asarray(getattr(lattice, "matrix", lattice), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lattice is not a 3x3 array of numbers: {exc}") from None
    if lat.shape != (3, 3) or not np.isfinite(lat).all():
        raise ValueError(f"lattice must be a finite 3x3 array (rows a, b, c), got shape {lat.shape}")
    if abs(np.linalg.det(lat)) < 1e-6:
        raise ValueError("lattice is singular (volume ~ 0)")
    return lat


def lattice_frame(lattice, symprec: float = 0.1) -> LatticeFrame:
    """Conventional cell and holohedry of the lattice of ``lattice`` (3x3 rows, Å, or a pymatgen Lattice).

    The metric tolerance ``symprec`` (Å) is spglib's, applied to a one-atom cell (no atoms involved).
    """
    import warnings

    import spglib

    from rhosym.symmetry import crystal_system

    lat = _as_lattice(lattice)
    if not symprec > 0:
        raise ValueError(f"symprec must be > 0, got {symprec}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = spglib.get_symmetry_dataset((lat, [[0.0, 0.0, 0.0]], [1]), symprec=symprec)
    if ds is None:
        raise ValueError(f"spglib found no lattice symmetry at symprec {symprec}")
    p = np.asarray(ds.transformation_matrix, dtype=np.float64)
    m = np.linalg.inv(p).T
    mi = np.rint(m).astype(np.int64)
    if not np.allclose(m, mi, atol=1e-6):
        raise ValueError("conventional cell is not an integer supercell of the input cell")
    w = p[None] @ np.asarray(ds.rotations, dtype=np.float64) @ np.linalg.inv(p)[None]
    ops = np.rint(w).astype(np.int64)
    if not np.allclose(w, ops, atol=1e-6):
        raise ValueError("holohedry operation is not integral in the conventional cell")
    ops = np.unique(ops, axis=0)
    system = crystal_system(int(ds.number))
    family = "hexagonal" if system in ("trigonal", "hexagonal") else "cubic"
    letter = ds.hall.lstrip("-")[0]
    table = HEX_OPS if family == "hexagonal" else CUBIC_OPS
    offset = HEX_OFFSET if family == "hexagonal" else 0
    where = {wt.tobytes(): k for k, wt in enumerate(table)}
    slots = []
    for wi in ops:
        k = where.get(wi.tobytes())
        if k is None:
            raise ValueError(f"holohedry operation {matrix_to_xyz(wi)} not in the canonical {family} list")
        slots.append(offset + k)
    order = np.argsort(slots)
    return LatticeFrame(input_lattice=lat, lattice=mi @ lat, to_conventional=mi, transformation=p,
                        ops=ops[order], slots=np.array(slots)[order], bravais=_BRAVAIS_PREFIX[system] + letter,
                        family=family)


# --------------------------------------------------------------------------------------------------
# density frames


@dataclass
class DensityFrame:
    """A density in the conventional cell of its lattice, as structure factors on a sphere and a grid."""

    grid: np.ndarray  # (n0, n1, n2) float64: band-limited ρ at fractional (i/n0, j/n1, k/n2), conventional cell
    lattice: np.ndarray  # (3, 3) conventional rows, Å
    ops: np.ndarray  # (k, 3, 3) int holohedry in the conventional basis
    slots: np.ndarray  # (k,) slot of each op
    transformation: np.ndarray  # P: x_conv = P x_in
    to_conventional: np.ndarray  # conventional rows = to_conventional @ input rows
    bravais: str
    family: str
    shape: tuple[int, int, int]  # grid points along a, b, c of the conventional cell (N³ by default)
    hkl: np.ndarray  # (m, 3) int: the sphere 0 < |H| <= q_max, conventional indices
    fhkl: np.ndarray  # (m,) complex F(H) of the conventional cell (electrons, or input units x Å^3)
    f000: float  # F(0): electrons in the conventional cell (input units x Å^3 for grids)
    q_max: float  # sphere radius, 1/Å


@lru_cache(maxsize=16)
def _box(shape: tuple[int, int, int]) -> np.ndarray:
    """All integer H with |h_i| <= n_i/2 - 1 (H = 0 included), (m, 3)."""
    r = [np.arange(-(n // 2 - 1), n // 2) for n in shape]
    return np.stack(np.meshgrid(*r, indexing="ij"), -1).reshape(-1, 3)


def _sphere(conv: np.ndarray, shape, q_limit: float = math.inf) -> tuple[np.ndarray, np.ndarray, float]:
    """Indices 0 < |H| <= q_max and their |H| (1/Å); q_max keeps every component h_i within n_i/2 - 1
    (|h_i| <= |H| |a_i|)."""
    shape = tuple(int(n) for n in shape)
    q_max = min(float(np.min((np.array(shape) // 2 - 1) / np.linalg.norm(conv, axis=1))), q_limit)
    rec = np.linalg.inv(conv).T  # reciprocal rows (no 2π)
    box = _box(shape)
    q = np.linalg.norm(box @ rec, axis=1)
    keep = (q <= q_max * (1 + 1e-9)) & (q > 0)
    return box[keep], q[keep], q_max


def _finish(lf: LatticeFrame, shape, hkl, q, q_max, f, f000) -> DensityFrame:
    import scipy.fft as sfft

    fgrid = np.zeros(shape, dtype=np.complex128)
    fgrid[hkl[:, 0] % shape[0], hkl[:, 1] % shape[1], hkl[:, 2] % shape[2]] = f
    fgrid[0, 0, 0] = f000
    vol = abs(float(np.linalg.det(lf.lattice)))
    grid = sfft.fftn(fgrid, workers=1).real / vol
    return DensityFrame(grid=grid, lattice=lf.lattice, ops=lf.ops, slots=lf.slots, transformation=lf.transformation,
                        to_conventional=lf.to_conventional, bravais=lf.bravais, family=lf.family, shape=shape, hkl=hkl,
                        fhkl=f, f000=float(f000), q_max=q_max)


def grid_shape(lattice: np.ndarray, n=24, isotropic: bool = False) -> tuple[int, int, int]:
    """Grid points along a, b, c of a conventional cell ``lattice`` (rows).

    ``n`` an even int >= 6: ``(n, n, n)``, or with ``isotropic`` ``n·k_i`` points along axis i,
    ``k_i = max(1, round(|a_i| / min_j |a_j|))``, so that long axes do not lower the resolution of the
    whole map (``q_max`` follows the longest axis, module docstring). A 3-tuple of even ints is taken
    as it is.
    """
    if isinstance(n, tuple | list | np.ndarray):
        shape = tuple(n)
        if len(shape) != 3:
            raise ValueError(f"grid shape must have 3 sizes, got {n!r}")
    else:
        shape = (n, n, n)
    for x in shape:
        if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < 6 or x % 2:
            raise ValueError(f"grid size n must be an even integer >= 6, got {n!r}")
    shape = tuple(int(x) for x in shape)
    if isotropic and not isinstance(n, tuple | list | np.ndarray):
        lengths = np.linalg.norm(np.asarray(lattice, dtype=float), axis=1)
        shape = tuple(int(n) * max(1, round(float(x / lengths.min()))) for x in lengths)
    return shape


@lru_cache(maxsize=128)
def _it92(sym: str) -> np.ndarray:
    import gemmi

    el = gemmi.Element(sym)
    if el.atomic_number == 0 or el.name.upper() != sym.upper():
        raise ValueError(f"element {sym!r} unknown to gemmi")
    co = np.array(el.it92.get_coefs(), dtype=np.float64)
    if not len(co) or co.sum() == 0:
        raise ValueError(f"no IT92 form factor for {sym}")
    return co


def frame_from_structure(structure, n=24, symprec: float = 0.1, b_iso: float | None = None,
                         blur: float | None = None, isotropic: bool = False) -> DensityFrame:
    """The all-electron density of a pymatgen ``Structure`` in the conventional cell of its lattice.

    Same model as :func:`rhosym.density.dense_density` (IT92 Gaussians, occupancies, site ``b_iso`` or
    ``b_iso``, plus ``blur``; defaults from ``DensitySettings``), evaluated exactly as structure factors
    (no truncation radius) and kept on the sphere ``|H| <= q_max`` (module docstring). Grid: N³ for
    an int ``n``, per-axis multiples of ``n`` with ``isotropic`` (:func:`grid_shape`), or a 3-tuple.
    """
    from rhosym.density import atoms_of
    from rhosym.settings import DensitySettings

    grid_shape(np.eye(3), n)  # validates n before any work
    d = DensitySettings()
    b_iso = d.b_iso if b_iso is None else float(b_iso)
    blur = d.blur if blur is None else float(blur)
    if not hasattr(structure, "lattice") or not hasattr(structure, "site_properties"):
        raise ValueError("frame_from_structure needs a pymatgen Structure")
    if len(structure) == 0:
        raise ValueError("structure has no sites")
    lf = lattice_frame(structure.lattice.matrix, symprec)
    shape = grid_shape(lf.lattice, n, isotropic)
    hkl, q, q_max = _sphere(lf.lattice, shape)
    hin = hkl @ lf.transformation  # H·x_conv = (H P)·x_in
    hin_i = np.rint(hin)
    allowed = np.all(np.abs(hin - hin_i) < 1e-6, axis=1)
    hin_i = hin_i[allowed].astype(np.int64)
    s2 = (q[allowed] / 2) ** 2
    groups: dict[tuple[str, float], list] = {}
    for sym, frac, occ, b in atoms_of(structure, b_iso):
        if b + blur <= 0:
            raise ValueError(f"B + blur must be > 0 (got {b + blur}) for {sym}")
        groups.setdefault((sym, b + blur), []).append((frac, occ))
    f = np.zeros(len(hin_i), dtype=np.complex128)
    f000 = 0.0
    for (sym, b), items in groups.items():
        co = _it92(sym)
        ff = co[8] * np.exp(-b * s2)
        for k in range(4):
            ff += co[k] * np.exp(-(co[4 + k] + b) * s2)
        frac = np.array([x for x, _ in items])
        occ = np.array([o for _, o in items])
        geo = np.exp(2j * np.pi * (hin_i @ frac.T)) @ occ
        f += ff * geo
        f000 += float(co[:4].sum() + co[8]) * float(occ.sum())
    det = abs(round(float(np.linalg.det(lf.to_conventional))))
    full = np.zeros(len(hkl), dtype=np.complex128)
    full[allowed] = f * det
    return _finish(lf, shape, hkl, q, q_max, full, f000 * det)


def frame_from_grid(rho, lattice, n=24, symprec: float = 0.1, isotropic: bool = False) -> DensityFrame:
    """A dense periodic density ``rho`` (nx, ny, nz) over ``lattice`` (rows, Å), resampled by Fourier
    interpolation onto the N³ grid of the conventional cell of its lattice.

    Point ``rho[i, j, k]`` is at fractional ``(i/nx, j/ny, k/nz)`` (the CHGCAR / rhosym store layout). Units
    are kept (a CHGCAR's ρ·V stays ρ·V). Frequencies beyond either grid's Nyquist are dropped (sphere
    ``q_max`` limited by both grids).
    """
    import scipy.fft as sfft

    grid_shape(np.eye(3), n)
    try:
        rho = np.asarray(rho, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"rho is not a numeric array: {exc}") from None
    if rho.ndim != 3 or min(rho.shape) < 2:
        raise ValueError(f"rho must be a 3D grid with at least 2 points per axis, got shape {rho.shape}")
    if not np.isfinite(rho).all():
        raise ValueError("rho holds NaN or Inf")
    lat = _as_lattice(lattice)
    lf = lattice_frame(lat, symprec)
    shape = np.array(rho.shape)
    q_in = float(np.min(((shape - 1) // 2) / np.linalg.norm(lat, axis=1)))
    out_shape = grid_shape(lf.lattice, n, isotropic)
    hkl, q, q_max = _sphere(lf.lattice, out_shape, q_in)
    vol_in = abs(float(np.linalg.det(lat)))
    fin = sfft.ifftn(rho, workers=1) * vol_in  # F_in(h) = V/Npts Σ ρ exp(+2πi h·x)
    hin = hkl @ lf.transformation
    hin_i = np.rint(hin)
    allowed = np.all(np.abs(hin - hin_i) < 1e-6, axis=1)
    hi = hin_i[allowed].astype(np.int64)
    if np.any(np.abs(hi) > (shape - 1) // 2):
        raise AssertionError("sphere beyond the input grid's Nyquist")
    det = abs(round(float(np.linalg.det(lf.to_conventional))))
    full = np.zeros(len(hkl), dtype=np.complex128)
    full[allowed] = fin[hi[:, 0] % shape[0], hi[:, 1] % shape[1], hi[:, 2] % shape[2]] * det
    return _finish(lf, out_shape, hkl, q, q_max, full, float(fin[0, 0, 0].real) * det)


# --------------------------------------------------------------------------------------------------
# operation scores


@dataclass
class OperationScores:
    """Scores of the N_SLOTS canonical slots (module docstring) for one density."""

    scores: np.ndarray  # (N_SLOTS,) float, NaN where not tested
    mask: np.ndarray  # (N_SLOTS,) bool, True where tested
    translations: np.ndarray  # (N_SLOTS, 3) best t (conventional fractional, [0, 1)), NaN where not tested
    grid_scores: np.ndarray  # (N_SLOTS,) the unrefined grid maxima (centrings: same as scores)
    lattice: np.ndarray  # conventional rows
    bravais: str
    family: str

    def operations(self, threshold: float = 0.9) -> list[dict]:
        """Tested point operations scoring at least ``threshold``: slot, Seitz symbol, W, t, score."""
        sel = [s for s in range(N_POINT_SLOTS) if self.mask[s] and self.scores[s] >= threshold]
        return _op_dicts(sel, POINT_OPS[sel], self.translations[sel], self.scores[sel], self.lattice)

    def seitz_list(self, threshold: float = 0.9) -> list[str]:
        """Human-readable found operations and centrings, e.g. ``{4+ [0,0,1]|0,0,1/4}  0.998``."""
        lines = [f"{o['seitz']}  {o['score']:.3f}" for o in self.operations(threshold)]
        for i, (name, _c) in enumerate(CENTRINGS):
            if self.scores[CENTRING_OFFSET + i] >= threshold:
                lines.append(f"centring {name}  {self.scores[CENTRING_OFFSET + i]:.3f}")
        return lines


def _lin_index(h: np.ndarray, ws: np.ndarray, shape) -> np.ndarray:
    """Flat index into an array of ``shape`` of ``H W`` (each component modulo n_i) for every op: (k, m)."""
    a = np.ascontiguousarray(ws.transpose(0, 2, 1)).reshape(-1, 3).astype(np.float32)  # rows of W^T
    c = (a @ h.T.astype(np.float32)).astype(np.int32).reshape(len(ws), 3, len(h))  # small exact integers
    out = None
    for i, n in enumerate(shape):
        wrap = (np.arange(-4 * n, 4 * n) % n).astype(np.int32)
        ci = wrap[c[:, i] + 4 * n]
        out = ci if out is None else out * n + ci
    return out


def _trig(g: np.ndarray, h: np.ndarray, t: np.ndarray, order: int):
    """C(t) = 2 Re Σ g e^{-2πi H·t} over hemisphere rows ``h`` for each op (rows of g, t); with gradient
    and Hessian when order > 0. The phases are products of per-axis tables (cheaper than one exp each)."""
    hm = int(np.abs(h).max()) if len(h) else 0
    r = np.arange(-hm, hm + 1)
    v = g.copy()
    for a in range(3):
        v *= np.exp(-2j * np.pi * np.outer(t[:, a], r))[:, h[:, a] + hm]
    c = 2 * v.real.sum(axis=1)
    if not order:
        return c, None, None
    grad = 4 * np.pi * (v.imag @ h)
    hh = (h[:, :, None] * h[:, None, :]).reshape(len(h), 9).astype(np.float64)
    hess = (-8 * np.pi**2 * (v.real @ hh)).reshape(-1, 3, 3)
    return c, grad, hess


def _refine(g: np.ndarray, h: np.ndarray, t: np.ndarray, steps: int = 6,
            tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Newton ascent on C(t) from ``t`` (k, 3), with step halving, ops dropping out once their step is
    below ``tol``; returns (t, C(t))."""
    c, grad, hess = _trig(g, h, t, 1)
    act = np.arange(len(t))
    for it in range(steps):
        ok = np.linalg.eigvalsh(hess).max(axis=1) < 0
        step = np.zeros((len(act), 3))
        if ok.any():
            step[ok] = -np.linalg.solve(hess[ok], grad[ok][:, :, None])[:, :, 0]
        if (~ok).any():  # not concave here: a small gradient step
            gn = np.linalg.norm(grad[~ok], axis=1, keepdims=True)
            step[~ok] = 0.002 * grad[~ok] / np.maximum(gn, 1e-300)
        step = np.clip(step, -0.02, 0.02)
        moving = np.abs(step).max(axis=1) >= tol
        act, step = act[moving], step[moving]
        if not len(act):
            break
        done = np.zeros(len(act), dtype=bool)
        for _half in range(4):
            todo = np.flatnonzero(~done)
            if not len(todo):
                break
            tn = t[act[todo]] + step[todo]
            cn, _, _ = _trig(g[act[todo]], h, tn, 0)
            better = cn >= c[act[todo]] - 1e-12 * np.abs(c[act[todo]])
            sel = act[todo[better]]
            t[sel], c[sel] = tn[better], cn[better]
            done[todo[better]] = True
            step[todo] *= 0.5
        act = act[done]  # ops that found no better point stay where they are
        if not len(act) or it == steps - 1:
            break
        c_act, grad, hess = _trig(g[act], h, t[act], 1)
        c[act] = c_act
    return t, c


def operation_scores(frame: DensityFrame, refine: bool = True) -> OperationScores:
    """Score every holohedry operation and centring of ``frame`` (module docstring)."""
    import scipy.fft as sfft

    n0, n1, n2 = shape = frame.shape
    f = frame.fhkl
    hkl = frame.hkl
    norm0 = float(np.sum(np.abs(f) ** 2))
    if norm0 <= 0:
        raise ValueError("density is constant (no Fourier component within the grid's resolution)")
    scores = np.full(N_SLOTS, np.nan)
    grid_scores = np.full(N_SLOTS, np.nan)
    trans = np.full((N_SLOTS, 3), np.nan)
    mask = np.zeros(N_SLOTS, dtype=bool)
    # half sphere (l >= 0, the irfftn half spectrum) and hemisphere (one of each ±H) within it
    half = hkl[:, 2] >= 0
    hs, fs = hkl[half], f[half]
    hemi = (hs[:, 2] > 0) | ((hs[:, 2] == 0) & ((hs[:, 1] > 0) | ((hs[:, 1] == 0) & (hs[:, 0] > 0))))
    hh, fh = hs[hemi], fs[hemi]
    # centrings: exact translations
    pat = np.abs(fh) ** 2
    for i, (_name, c) in enumerate(CENTRINGS):
        if c is None:
            continue
        slot = CENTRING_OFFSET + i
        scores[slot] = grid_scores[slot] = float(2 * np.sum(pat * np.cos(2 * np.pi * (hh @ np.array(c))))) / norm0
        trans[slot] = c
    fslot = CENTRING_OFFSET + [nm for nm, _ in CENTRINGS].index("F")
    scores[fslot] = grid_scores[fslot] = min(scores[CENTRING_OFFSET + k] for k in range(3))
    trans[fslot] = 0.0
    mask[CENTRING_OFFSET:] = True
    ops = frame.ops
    mask[frame.slots] = True
    eye = np.eye(3, dtype=np.int64)
    # one representative of each {W, W^-1} pair, identity exact
    keys = {w.tobytes(): i for i, w in enumerate(ops)}
    inv = np.rint(np.linalg.inv(ops)).astype(np.int64)
    reps, partner, done = [], {}, set()
    for i, w in enumerate(ops):
        if np.array_equal(w, eye):
            scores[frame.slots[i]] = grid_scores[frame.slots[i]] = 1.0
            trans[frame.slots[i]] = 0.0
            continue
        if i in done:
            continue
        j = keys[inv[i].tobytes()]
        reps.append(i)
        partner[i] = j
        done.update((i, j))
    if not reps:
        return OperationScores(scores, mask, trans, grid_scores, frame.lattice, frame.bravais, frame.family)
    fgrid = np.zeros(shape, dtype=np.complex128)
    fgrid[hkl[:, 0] % n0, hkl[:, 1] % n1, hkl[:, 2] % n2] = f
    w_rep = ops[reps]  # (r, 3, 3)
    fw = fgrid.reshape(-1)[_lin_index(hs, w_rep, shape)]  # F(HW) on the half sphere, (r, m_half)
    # norms of F(HW) over the whole sphere (equal to norm0 for exact isometries)
    weight = np.where(hs[:, 2] > 0, 2.0, 1.0)
    normw = (np.abs(fw) ** 2) @ weight
    denom = np.sqrt(norm0 * normw)
    g = fs[None, :] * np.conj(fw)
    nl = n2 // 2 + 1
    # the grid search only needs single precision (the maximum is re-evaluated in double precision)
    spec = np.zeros((len(reps), n0 * n1 * nl), dtype=np.complex64)
    spec[:, ((hs[:, 0] % n0) * n1 + hs[:, 1] % n1) * nl + hs[:, 2]] = np.conj(g) * float(n0 * n1 * n2)
    corr = sfft.irfftn(spec.reshape(len(reps), n0, n1, nl), s=shape, axes=(1, 2, 3), workers=1)
    flat = corr.reshape(len(reps), -1)
    j = np.argmax(flat, axis=1)
    idx = np.stack(np.unravel_index(j, shape), -1)  # (r, 3)
    cmax = flat[np.arange(len(reps)), j].astype(np.float64)
    t0 = idx.astype(np.float64)
    for a in range(3):  # parabola through the neighbours along each axis
        e = np.zeros(3, dtype=np.int64)
        e[a] = 1
        ip, im = (idx + e) % shape, (idx - e) % shape
        cp = corr[np.arange(len(reps)), ip[:, 0], ip[:, 1], ip[:, 2]].astype(np.float64)
        cm = corr[np.arange(len(reps)), im[:, 0], im[:, 1], im[:, 2]].astype(np.float64)
        den = cm - 2 * cmax + cp
        with np.errstate(divide="ignore", invalid="ignore"):
            dlt = np.where(den < 0, 0.5 * (cm - cp) / den, 0.0)
        t0[:, a] += np.clip(dlt, -0.5, 0.5)
    t0 /= shape
    best_t, best_c = idx / np.array(shape), cmax.copy()
    if refine:
        gh = g[:, hemi]
        t1, c1 = _refine(gh, hh, t0.copy())
        better = c1 > best_c - 1e-5 * denom  # float32 grid values carry ~1e-7 relative error
        best_t[better], best_c[better] = t1[better], c1[better]
    for k, i in enumerate(reps):
        sc = float(np.clip(best_c[k] / denom[k], -1.0, 1.0)) if denom[k] > 0 else 0.0
        gs = float(np.clip(cmax[k] / denom[k], -1.0, 1.0)) if denom[k] > 0 else 0.0
        t = np.mod(best_t[k], 1.0)
        s_i, s_j = frame.slots[i], frame.slots[partner[i]]
        scores[s_i] = scores[s_j] = sc
        grid_scores[s_i] = grid_scores[s_j] = gs
        trans[s_i] = t
        trans[s_j] = np.mod(-inv[i] @ t, 1.0)  # C_{W^-1}(t') = C_W(-W t')
    trans[np.abs(trans - 1.0) < 1e-9] = 0.0
    return OperationScores(scores, mask, trans, grid_scores, frame.lattice, frame.bravais, frame.family)


# --------------------------------------------------------------------------------------------------
# classical finder


@dataclass
class SymopsResult:
    """What :func:`find_space_group` found."""

    space_group: int
    symbol: str
    crystal_system: str
    extinction_group: int
    extinction_symbol: str
    threshold: float  # the ladder threshold that gave a consistent group
    consistent: bool  # False: no threshold gave a closed set; a greedy subgroup was used
    bravais: str  # Bravais lattice of the metric (before centrings found in the density)
    centrings: list[str]  # accepted centring slots
    operations: list[dict] = field(default_factory=list)  # slot, seitz, xyz, W, t, score
    scores: OperationScores | None = None


def _frac_dist(d: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    d = d - np.rint(d)
    return np.linalg.norm(d @ lattice, axis=-1)


def _translation_group(vectors, ops) -> np.ndarray | None:
    """Closure (x12 integers mod 12) of the centring vectors; None when some W does not map it onto itself."""
    tset = {(0, 0, 0)}
    todo = [tuple(int(round(x * 12)) % 12 for x in v) for v in vectors]
    while todo:
        v = todo.pop()
        if v in tset:
            continue
        tset.add(v)
        todo.extend(x for x in (tuple(int(a) for a in (np.array(v) + np.array(u)) % 12) for u in tset)
                    if x not in tset)
    arr = np.array(sorted(tset), dtype=np.int64)
    for w in ops:
        img = (arr @ w.T) % 12
        if {tuple(x) for x in img} != tset:
            return None
    return arr / 12.0


def _op_keys(ws: np.ndarray) -> np.ndarray:
    """One integer per matrix (entries -3..3)."""
    return (np.asarray(ws, dtype=np.int64).reshape(-1, 9) + 3) @ (7 ** np.arange(9, dtype=np.int64))


def _closed(ws: np.ndarray, ts: np.ndarray, tgroup: np.ndarray, lattice: np.ndarray, tol: float) -> bool:
    """Whether the ops (ws, ts) form a group modulo the translations of ``tgroup`` (Cartesian ``tol``)."""
    if not len(ws):
        return True
    prod = np.matmul(ws[:, None].astype(np.float64), ws[None].astype(np.float64))  # (a, b, 3, 3)
    pk = _op_keys(np.rint(prod).astype(np.int64)).reshape(len(ws), len(ws))
    keys = _op_keys(ws)
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], pk), 0, len(ws) - 1)
    if not np.all(keys[order][pos] == pk):
        return False
    j = order[pos]  # (a, b)
    tt = np.einsum("aij,bj->abi", ws.astype(np.float64), ts) + ts[:, None, :]
    d = (tt - ts[j])[:, :, None, :] - tgroup[None, None]
    return bool(_frac_dist(d, lattice).min(axis=2).max() <= tol)


def _identify(ws, ts, tgroup, lattice, symprec):
    import warnings

    import spglib

    rot = np.concatenate([ws] * len(tgroup))
    tr = np.concatenate([np.mod(ts + c, 1.0) for c in tgroup])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return spglib.get_spacegroup_type_from_symmetry(rot.astype(np.intc), tr, lattice, symprec)
        except Exception:  # spglib raises on inconsistent input in some versions
            return None


class _Scorer:
    """corr(W, t) of a frame at given translations (the exact sum over the sphere, no grid)."""

    def __init__(self, frame: DensityFrame):
        self.shape = frame.shape
        h = frame.hkl
        hemi = (h[:, 2] > 0) | ((h[:, 2] == 0) & ((h[:, 1] > 0) | ((h[:, 1] == 0) & (h[:, 0] > 0))))
        self.hkl, self.f = h[hemi], frame.fhkl[hemi]  # one of each ±H: sums are 2 Re Σ
        fgrid = np.zeros(frame.shape, dtype=np.complex128)
        fgrid[tuple((h % np.array(frame.shape)).T)] = frame.fhkl
        self.fflat = fgrid.reshape(-1)
        self.norm0 = float(np.sum(np.abs(frame.fhkl) ** 2))

    def __call__(self, ws: np.ndarray, ts: np.ndarray) -> np.ndarray:
        if not len(ws):
            return np.zeros(0)
        fw = self.fflat[_lin_index(self.hkl, ws, self.shape)]  # (k, m/2)
        normw = 2 * np.sum(np.abs(fw) ** 2, axis=1)
        c = 2 * np.sum((self.f[None, :] * np.conj(fw) * np.exp(-2j * np.pi * (ts @ self.hkl.T))).real, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(normw > 0, c / np.sqrt(self.norm0 * normw), 0.0)


def _generate(gens, allowed, sc: OperationScores, scorer: _Scorer, thr: float, tgroup: np.ndarray,
              lattice: np.ndarray, tol: float):
    """The group generated by the slots ``gens`` with their found translations.

    Products get the composed translation; each new operation must be an ``allowed`` slot and score at
    least ``thr`` at that translation (so a near-equal second peak of an operation cannot break the
    group). The result must be closed modulo ``tgroup`` within ``tol`` Å. Returns (slots, W, t) or None.
    """
    slot_of = {int(k): s for k, s in zip(_op_keys(POINT_OPS[list(allowed)]), allowed)}
    eye = np.eye(3, dtype=np.int64)
    ws, ts, slots = [eye], [np.zeros(3)], [slot_of.get(int(_op_keys(eye[None])[0]))]
    have = {int(_op_keys(eye[None])[0])}
    for g in gens:
        kg = int(_op_keys(POINT_OPS[g][None])[0])
        if kg in have:
            continue
        ws.append(POINT_OPS[g])
        ts.append(np.asarray(sc.translations[g], dtype=np.float64))
        slots.append(g)
        have.add(kg)
        while True:
            wa, ta = np.array(ws), np.array(ts)
            prod = np.rint(np.matmul(wa[:, None].astype(np.float64), wa[None].astype(np.float64))).astype(np.int64)
            keys = _op_keys(prod).reshape(len(wa), len(wa))
            tt = np.einsum("aij,bj->abi", wa.astype(np.float64), ta) + ta[:, None, :]
            new_w, new_t, new_s = [], [], []
            known = np.array(sorted(have), dtype=np.int64)
            pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
            for i, j in zip(*np.nonzero(known[pos] != keys)):
                k = int(keys[i, j])
                if k in have:
                    continue
                if k not in slot_of:
                    return None
                have.add(k)
                new_w.append(prod[i, j])
                new_t.append(np.mod(tt[i, j], 1.0))
                new_s.append(slot_of[k])
            if not new_w:
                break
            # where the composed translation is the found one (modulo centrings) the score is known
            nw, nt = np.array(new_w), np.array(new_t)
            known = _frac_dist(nt[:, None, :] - sc.translations[new_s][:, None, :] - tgroup[None], lattice).min(1) < 1e-4
            if np.any(scorer(nw[~known], nt[~known]) < thr - 1e-9):
                return None
            ws += new_w
            ts += new_t
            slots += new_s
    ws, ts = np.array(ws), np.array(ts)
    if not _closed(ws, ts, tgroup, lattice, tol):
        return None
    return slots, ws, ts


def _invariant_centrings(cens: list[int], sc: OperationScores, ws: np.ndarray):
    """Accepted centrings, lowest scores dropped until their translation group is invariant under ``ws``."""
    cens = sorted(cens, key=lambda i: -sc.scores[CENTRING_OFFSET + i])
    while True:
        tgroup = _translation_group([CENTRINGS[i][1] for i in cens], ws)
        if tgroup is not None:
            return cens, tgroup
        cens = cens[:-1]


def find_space_group(source, ladder=DEFAULT_LADDER, symprec: float = 0.1, n=24,
                     scores: OperationScores | None = None, isotropic: bool = False,
                     trivial_floor: float | None = None) -> SymopsResult:
    """Space group of a density, no training.

    ``source``: a :class:`DensityFrame`, or a pymatgen ``Structure`` (then :func:`frame_from_structure`
    with ``n``, ``isotropic`` and ``symprec`` as the lattice tolerance). ``ladder``: acceptance thresholds
    on the correlation, tried in order. ``symprec`` (Å): the tolerance of the closure test on
    translations and of spglib's naming. ``scores``: precomputed :func:`operation_scores` of the frame.
    ``trivial_floor`` (experimental, off by default; docs/benchmarks/fair.md): a rung whose group is the
    identity alone (P1, no centring) is passed over while a lower rung at or above this threshold names a
    non-trivial group — noise lowers every true operation's agreement below the first rung, where the
    identity alone is always a closed group.
    """
    from rhosym.symmetry import crystal_system, extinction_group, extinction_symbol

    if isinstance(source, DensityFrame):
        frame = source
    else:
        frame = frame_from_structure(source, n=n, symprec=symprec, isotropic=isotropic)
    ladder = [float(x) for x in ladder]
    if not ladder or any(not -1 <= x <= 1 for x in ladder):
        raise ValueError(f"ladder must be thresholds in [-1, 1], got {ladder}")
    sc = operation_scores(frame) if scores is None else scores
    scorer = _Scorer(frame)
    lattice = frame.lattice
    tested = np.flatnonzero(sc.mask[:N_POINT_SLOTS])
    order = [int(x) for x in tested[np.argsort(-sc.scores[tested], kind="stable")]]
    cen_idx = [i for i, (_nm, c) in enumerate(CENTRINGS) if c is not None]
    found = None
    for thr in ladder:
        slots = [s for s in order if sc.scores[s] >= thr]
        cens, tgroup = _invariant_centrings([i for i in cen_idx if sc.scores[CENTRING_OFFSET + i] >= thr], sc,
                                            POINT_OPS[slots])
        grp = _generate(slots, slots, sc, scorer, thr, tgroup, lattice, symprec)
        if grp is None:
            continue
        st = _identify(grp[1], grp[2], tgroup, lattice, symprec)
        if st is not None:
            trivial = len(grp[0]) == 1 and not cens
            if trivial and trivial_floor is not None and thr > trivial_floor:
                if found is None:
                    found = (thr, grp, cens, tgroup, st, True)  # kept unless a lower rung names more
                continue
            if not trivial or found is None:
                found = (thr, grp, cens, tgroup, st, True)
            break
        if found is not None and trivial_floor is not None and thr <= trivial_floor:
            break
    if found is None:  # no threshold gave a group: a greedy group at the first threshold
        thr = ladder[0]
        cand = [s for s in order if sc.scores[s] >= thr]
        eye = [s for s in cand if np.array_equal(POINT_OPS[s], np.eye(3, dtype=np.int64))]
        cens, tgroup = _invariant_centrings([i for i in cen_idx if sc.scores[CENTRING_OFFSET + i] >= thr], sc,
                                            np.eye(3, dtype=np.int64)[None])
        grp = _generate(eye, cand, sc, scorer, thr, tgroup, lattice, symprec)
        for s in cand:
            if s in grp[0] or _translation_group([CENTRINGS[i][1] for i in cens], POINT_OPS[grp[0] + [s]]) is None:
                continue
            trial = _generate(grp[0] + [s], cand, sc, scorer, thr, tgroup, lattice, symprec)
            if trial is not None:
                grp = trial
        st = _identify(grp[1], grp[2], tgroup, lattice, symprec)
        if st is None:  # last resort: P1
            grp, cens, tgroup = (eye, np.eye(3, dtype=np.int64)[None], np.zeros((1, 3))), [], np.zeros((1, 3))
            st = _identify(grp[1], grp[2], tgroup, lattice, symprec)
        found = (thr, grp, cens, tgroup, st, False)
    thr, (slots, ws, ts), cens, tgroup, st, ok = found
    sg = int(st.number)
    vals = np.array([sc.scores[s] for s in slots], dtype=np.float64)
    redo = _frac_dist(ts[:, None, :] - sc.translations[slots][:, None, :] - tgroup[None], lattice).min(1) >= 1e-4
    vals[redo] = scorer(ws[redo], ts[redo])
    ops = _op_dicts(slots, ws, ts, vals, lattice)
    return SymopsResult(space_group=sg, symbol=str(st.international_short), crystal_system=crystal_system(sg),
                        extinction_group=extinction_group(sg), extinction_symbol=extinction_symbol(sg),
                        threshold=thr, consistent=ok, bravais=frame.bravais,
                        centrings=[CENTRINGS[i][0] for i in sorted(cens)], operations=ops, scores=sc)


# --------------------------------------------------------------------------------------------------
# benchmark


def _one_thread():
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        import contextlib

        return contextlib.nullcontext()


def bench(structures, n=24, repeat: int = 3, symprec: float = 0.1, isotropic: bool = False) -> list[dict]:
    """Time density + scores + finder per structure (best of ``repeat``), one BLAS thread.

    Returns one dict per structure: ``ms`` (total wall time), ``cpu_ms`` (process CPU time of the same
    run: the single-core cost on a machine shared with other work), ``ms_density``, ``ms_scores``, ``ms_finder``,
    ``space_group`` found, ``bravais``, ``threshold``.
    """
    out = []
    structures = list(structures)
    with _one_thread():
        if structures:  # warm-up: imports and caches are not part of the per-structure cost
            find_space_group(structures[0], n=n, symprec=symprec, isotropic=isotropic)
        for s in structures:
            best = None
            for _ in range(max(1, repeat)):
                c0 = time.process_time()
                t0 = time.perf_counter()
                fr = frame_from_structure(s, n=n, symprec=symprec, isotropic=isotropic)
                t1 = time.perf_counter()
                sc = operation_scores(fr)
                t2 = time.perf_counter()
                res = find_space_group(fr, symprec=symprec, scores=sc)
                t3 = time.perf_counter()
                c3 = time.process_time()
                row = {"ms": 1e3 * (t3 - t0), "cpu_ms": 1e3 * (c3 - c0), "ms_density": 1e3 * (t1 - t0), "ms_scores": 1e3 * (t2 - t1),
                       "ms_finder": 1e3 * (t3 - t2), "space_group": res.space_group, "bravais": fr.bravais,
                       "threshold": res.threshold, "n_atoms": len(s), "shape": fr.shape}
                if best is None or row["ms"] < best["ms"]:
                    best = row
            out.append(best)
    return out


def load_prototypes(path) -> list[tuple[str, int, object]]:
    """``(aflow label, space group, Structure)`` of the AFLOW prototype file shipped with pymatgen."""
    import gzip
    import json

    from pymatgen.core import Structure

    with gzip.open(path, "rt") as fh:
        rows = json.load(fh)
    out = []
    for r in rows:
        label = r["tags"]["aflow"]
        sg = int(label.split("_")[2])
        out.append((label, sg, Structure.from_dict(r["snl"])))
    return out


def load_cdvae_csv(path, limit: int = 0) -> list[tuple[str, object]]:
    """``(id, Structure)`` of the rows of a CDVAE-format CSV (``cif`` column; ``material_id`` when present)."""
    import warnings

    import pandas as pd
    from pymatgen.core import Structure

    df = pd.read_csv(path)
    if "cif" not in df.columns:
        raise ValueError(f"{path}: no `cif` column")
    if limit:
        df = df.head(limit)
    ids = df["material_id"] if "material_id" in df.columns else df.index
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sid, cif in zip(ids, df["cif"]):
            out.append((str(sid), Structure.from_str(cif, fmt="cif")))
    return out


def _spglib_number(structure, symprec: float) -> int:
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())


def agreement(structures, n=24, symprec: float = 0.1, ref_symprec: float | None = None,
              ladder=DEFAULT_LADDER, isotropic: bool = False, trivial_floor: float | None = None) -> dict:
    """Fraction of ``structures`` whose found space group equals spglib's (at ``ref_symprec``, default
    ``symprec``), plus the mismatches ``(index, found, spglib)``."""
    ref_symprec = symprec if ref_symprec is None else ref_symprec
    hits, misses, errors = 0, [], []
    for i, s in enumerate(structures):
        try:
            ref = _spglib_number(s, ref_symprec)
            got = find_space_group(s, n=n, symprec=symprec, ladder=ladder, isotropic=isotropic,
                                   trivial_floor=trivial_floor).space_group
        except ValueError as exc:
            errors.append((i, str(exc)))
            continue
        if got == ref:
            hits += 1
        else:
            misses.append((i, got, ref))
    total = hits + len(misses)
    return {"n": total, "agree": hits, "rate": hits / total if total else float("nan"), "misses": misses,
            "errors": errors}


def _pyxtal_structures(count: int, seed: int):
    import warnings

    from pyxtal import pyxtal

    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        sg = int(rng.integers(1, 231))
        c = pyxtal()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c.from_random(3, sg, ["Ca", "O"], [int(rng.integers(1, 4)) * 2, int(rng.integers(1, 4)) * 4],
                              random_state=int(rng.integers(1 << 31)))
        except Exception:  # pyxtal gives up on incompatible compositions: draw another group
            continue
        if not c.valid:
            continue
        out.append((sg, c.to_pymatgen()))
    return out


def main(argv=None) -> int:
    """``python -m rhosym.symops --bench [--n 24 48] [--prototypes PATH] [--pyxtal K]``."""
    ap = argparse.ArgumentParser(prog="python -m rhosym.symops", description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="store_true", help="time density + scores + finder per structure")
    ap.add_argument("--agreement", action="store_true", help="compare the finder with spglib")
    ap.add_argument("--n", type=int, nargs="+", default=[24])
    ap.add_argument("--prototypes", help="pymatgen_aflow_prototypes.json.gz (default: built-in structures)")
    ap.add_argument("--csv", help="a CDVAE-format CSV (a `cif` column of P1 CIF strings), e.g. mp20_public.csv")
    ap.add_argument("--pyxtal", type=int, default=0, help="also K random pyxtal crystals")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--symprec", type=float, default=0.1)
    ap.add_argument("--ref-symprec", type=float, default=None, help="spglib tolerance of the reference")
    ap.add_argument("--ladder", type=float, nargs="+", default=list(DEFAULT_LADDER))
    ap.add_argument("--isotropic", action="store_true", help="n points per shortest axis, multiples on longer")
    ap.add_argument("--trivial-floor", type=float, default=None,
                    help="experimental: pass over an identity-only rung while a rung >= this names a group")
    args = ap.parse_args(argv)
    sets = []
    if args.prototypes:
        sets.append(("prototypes", [(lab, s) for lab, _sg, s in load_prototypes(args.prototypes)]))
    if args.csv:
        sets.append(("csv", load_cdvae_csv(args.csv, args.limit)))
    if args.pyxtal:
        sets.append(("pyxtal", [(f"pyxtal sg {sg}", s) for sg, s in _pyxtal_structures(args.pyxtal, args.seed)]))
    if not sets:
        sets.append(("builtin", list(example_structures().items())))
    for name, items in sets:
        if args.limit:
            items = items[: args.limit]
        structs = [s for _lab, s in items]
        for n in args.n:
            if args.bench:
                rows = bench(structs, n=n, repeat=args.repeat, symprec=args.symprec, isotropic=args.isotropic)
                for (lab, _s), r in zip(items, rows):
                    print(f"{name} n={n} {lab}: {r['ms']:.1f} ms, cpu {r['cpu_ms']:.1f} ms (density {r['ms_density']:.1f}, scores "
                          f"{r['ms_scores']:.1f}, finder {r['ms_finder']:.1f}) atoms {r['n_atoms']} grid {'x'.join(map(str, r['shape']))} "
                          f"{r['bravais']} -> SG {r['space_group']}")
                for key in ("ms", "cpu_ms"):
                    ms = np.array([r[key] for r in rows])
                    print(f"{name} n={n}: {len(ms)} structures, {'wall' if key == 'ms' else 'cpu'} median "
                          f"{np.median(ms):.1f} ms, mean {ms.mean():.1f} ms, p90 {np.percentile(ms, 90):.1f} ms, "
                          f"max {ms.max():.1f} ms, {np.mean(ms < 20):.1%} under 20 ms")
            if args.agreement:
                with _one_thread():
                    a = agreement(structs, n=n, symprec=args.symprec, ref_symprec=args.ref_symprec,
                                  ladder=args.ladder, isotropic=args.isotropic, trivial_floor=args.trivial_floor)
                print(f"{name} n={n}: agreement with spglib {a['agree']}/{a['n']} = {a['rate']:.3f}, "
                      f"{len(a['errors'])} errors")
                for i, got, ref in a["misses"]:
                    print(f"  mismatch {items[i][0]}: found {got}, spglib {ref}")
                for i, msg in a["errors"]:
                    print(f"  error {items[i][0]}: {msg}")
    return 0


def example_structures() -> dict:
    """Small structures, one per crystal system and centring letter (tests and the built-in benchmark)."""
    from pymatgen.core import Lattice, Structure

    fs = Structure.from_spacegroup
    return {
        "rutile P4_2/mnm": fs(136, Lattice.tetragonal(4.594, 2.959), ["Ti", "O"], [[0, 0, 0], [0.3048, 0.3048, 0]]),
        "NaCl Fm-3m": fs(225, Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "CsCl Pm-3m": fs(221, Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "wurtzite P6_3mc": fs(186, Lattice.hexagonal(3.25, 5.21), ["Zn", "O"],
                              [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]]),
        "corundum R-3c": fs(167, Lattice.hexagonal(4.759, 12.99), ["Al", "O"], [[0, 0, 0.3523], [0.3064, 0, 0.25]]),
        "C2/c monoclinic": fs(15, Lattice.monoclinic(9.7, 8.9, 5.3, 105.0), ["Ca", "Si", "O"],
                              [[0, 0.31, 0.25], [0.29, 0.09, 0.23], [0.12, 0.09, 0.14]]),
        "I4_1/amd tetragonal": fs(141, Lattice.tetragonal(3.78, 9.51), ["Ti", "O"], [[0, 0.75, 0.125], [0, 0.75, 0.3333]]),
        "Pnma orthorhombic": fs(62, Lattice.orthorhombic(5.5, 7.8, 5.5), ["Ca", "Ti", "O", "O"],
                                [[0.03, 0.25, 0.99], [0, 0, 0.5], [0.48, 0.25, 0.09], [0.29, 0.04, 0.71]]),
        "P-1 triclinic": fs(2, Lattice.from_parameters(5.1, 6.2, 7.3, 81, 77, 68), ["K", "S", "O"],
                            [[0.11, 0.23, 0.37], [0.61, 0.17, 0.29], [0.31, 0.71, 0.83]]),
        "Amm2 orthorhombic": fs(38, Lattice.orthorhombic(3.9, 4.1, 5.7), ["Ba", "Ti", "O"],
                                [[0, 0, 0], [0.5, 0, 0.48], [0, 0.31, 0.22]]),
    }


if __name__ == "__main__":
    sys.exit(main())
