"""Symmetry labels: crystal system, space group and the 101 extinction groups.

Extinction groups
-----------------
A reflection ``h = (h, k, l)`` (a row vector) is *systematically absent* for a space group when some
operation ``(R, t)`` of the group (lattice-centring translations included; spglib convention
``x' = R x + t`` on fractional coordinates) has ``h R = h`` and ``h . t`` not an integer.

:func:`compute_extinction_table` enumerates every setting in spglib's Hall-symbol database (530 Hall
numbers: monoclinic unique axes and cell choices, the six orthorhombic axis permutations, origin
choices, ...), computes the set of absent reflections of each setting over the box
``-12 <= h, k, l <= 12`` (translations are multiples of 1/12, so phases repeat with period 12 along
every lattice row; the partition below is already final at ``|h| <= 4`` and unchanged up to 18, which
``tests/test_symmetry.py`` checks), and
merges space groups with union-find: two space groups of the same crystal system share an extinction
group when some setting of each has the same absence set. The rhombohedral-axes settings of the seven
R groups are left out (their indices refer to a different cell, so equal index sets would not mean
equal absences); the R groups are compared in their hexagonal-axes (obverse) settings. The result is
101 groups: triclinic 1, monoclinic 6, orthorhombic 33, tetragonal 31, trigonal 6, hexagonal 7,
cubic 17. Group ids 1..101 are ordered by each group's lowest space-group number.

Extinction symbols
------------------
Full ITA diffraction symbols (Table 3.1.4.1) are not generated. Instead each group gets a readable,
deterministic *reflection-condition key*, computed in the standard setting (spglib's lowest Hall
number) of the group's lowest-numbered space group::

    <Laue class> <lattice letter>|<class>:<conditions>|<class>:<conditions>...

e.g. ``2/m P|h0l:l=2n|0k0:k=2n`` (P2_1/c), ``mmm P|0kl:l=2n|h0l:h=2n`` (Pca2_1, Pbcm),
``m-3m F|0kl:k,l=2n; k+l=4n|h00:h=4n`` (Fd-3, Fd-3m), ``-1 P`` (P1, P-1). The highest Laue class
(``-1, 2/m, mmm, 4/mmm, -3m, 6/mmm, m-3m``) names the crystal system, so that equal conditions in
different systems (trigonal and hexagonal ``P`` with no condition, say) give different symbols.
The lattice letter carries the general (``hkl``) condition. The reflection classes are those of ITA
for the crystal system (orthorhombic/monoclinic: ``0kl, h0l, hk0, h00, 0k0, 00l``; tetragonal:
``hk0, 0kl, hhl, 00l, 0k0, hh0``; trigonal/hexagonal, three-index hexagonal axes: ``h-h0l, hh-2hl,
000l``; cubic: ``0kl, hhl, h00``). A class is listed only when its condition is not implied by the
lattice and the classes containing it; when listed, its *full* condition (as in ITA) is given: first
single-index conditions (``k,l=2n``), then linear combinations (``k+l=4n``, ``2h+l=4n``, ``h+l=3n``),
simplest first, added until they describe the sub-lattice of allowed reflections exactly. The keys of the 101 groups are distinct.
"""

from __future__ import annotations

import itertools
import logging
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger("rhosym.symmetry")

from rhosym.registry import CRYSTAL_SYSTEMS  # noqa: E402 - the one list of crystal systems

TABLE_COLUMNS = ("space_group", "crystal_system", "extinction_group", "extinction_symbol")
EXPECTED_COUNTS = {"triclinic": 1, "monoclinic": 6, "orthorhombic": 33, "tetragonal": 31, "trigonal": 6,
                   "hexagonal": 7, "cubic": 17}
TABLE_NAME = "extinction_groups.csv"

# Highest Laue class of each crystal system: the first word of an extinction symbol.
SYSTEM_LAUE_CLASS = {"triclinic": "-1", "monoclinic": "2/m", "orthorhombic": "mmm", "tetragonal": "4/mmm",
             "trigonal": "-3m", "hexagonal": "6/mmm", "cubic": "m-3m"}
# Highest space-group number of each crystal system, in CRYSTAL_SYSTEMS order.
_SYSTEM_LAST_SG = (2, 15, 74, 142, 167, 194, 230)
_PERIOD = 12  # every translation component is a multiple of 1/12
_BOX = 12     # |h|, |k|, |l| <= _BOX; the partition is final from 4 on (3 gives 98 groups)

# Reflection classes (name, parameter letters, rows of the map params -> hkl), then the classes of each
# crystal system, in the order their conditions are read.
_CLASS = {c[0]: c for c in (
    ("0kl", "kl", ((0, 1, 0), (0, 0, 1))), ("h0l", "hl", ((1, 0, 0), (0, 0, 1))),
    ("hk0", "hk", ((1, 0, 0), (0, 1, 0))), ("h00", "h", ((1, 0, 0),)), ("0k0", "k", ((0, 1, 0),)),
    ("00l", "l", ((0, 0, 1),)), ("hhl", "hl", ((1, 1, 0), (0, 0, 1))), ("hh0", "h", ((1, 1, 0),)),
    ("h-h0l", "hl", ((1, -1, 0), (0, 0, 1))), ("hh-2hl", "hl", ((1, 1, 0), (0, 0, 1))), ("000l", "l", ((0, 0, 1),)),
)}
_ORTHO = ("0kl", "h0l", "hk0", "h00", "0k0", "00l")
_CLASSES = {system: tuple(_CLASS[n] for n in names) for system, names in {
    "triclinic": (), "monoclinic": _ORTHO, "orthorhombic": _ORTHO,
    "tetragonal": ("hk0", "0kl", "hhl", "00l", "0k0", "hh0"),
    "trigonal": ("h-h0l", "hh-2hl", "000l"),
    "cubic": ("0kl", "hhl", "h00"),
}.items()}
_CLASSES["hexagonal"] = _CLASSES["trigonal"]


# --------------------------------------------------------------------------------------------------
# crystal systems


def crystal_system(sg: int) -> str:
    """Crystal system of space group ``sg`` (1..230)."""
    sg = int(sg)
    if not 1 <= sg <= 230:
        raise ValueError(f"space group number out of range 1..230: {sg}")
    for name, last in zip(CRYSTAL_SYSTEMS, _SYSTEM_LAST_SG):
        if sg <= last:
            return name
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------
# absences from spglib's Hall-setting database


def _settings(rhombohedral_axes: bool = False) -> list[dict]:
    """Every Hall setting (rhombohedral-axes ones excluded unless asked) with its integer operations.

    ``t12`` holds translations times 12 (integers), reduced modulo 12. Cached: treat as read-only.
    """
    return [s for s in _all_settings() if rhombohedral_axes or s["choice"] != "R"]


@lru_cache(maxsize=1)
def _all_settings() -> tuple[dict, ...]:
    import warnings

    import spglib

    out = []
    for hall in range(1, 531):
        with warnings.catch_warnings():  # spglib 2.x: OLD_ERROR_HANDLING deprecation, once per call
            warnings.simplefilter("ignore", DeprecationWarning)
            st = spglib.get_spacegroup_type(hall)
            sym = spglib.get_symmetry_from_database(hall)
        t12 = np.rint(np.asarray(sym["translations"]) * _PERIOD).astype(np.int64)
        if not np.allclose(t12, np.asarray(sym["translations"]) * _PERIOD, atol=1e-6):
            raise ValueError(f"Hall {hall}: translation not a multiple of 1/{_PERIOD}")
        out.append({"hall": hall, "number": st.number, "symbol": st.international_short, "choice": st.choice, "hall_symbol": st.hall_symbol,
                    "lattice": st.hall_symbol.lstrip("-")[0],
                    "rotations": np.asarray(sym["rotations"], dtype=np.int64), "t12": t12 % _PERIOD})
    return tuple(out)


def _hkl_box(n: int | None = None) -> np.ndarray:
    n = _BOX if n is None else n
    r = np.arange(-n, n + 1)
    return np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)


def _absent_mask(rotations: np.ndarray, t12: np.ndarray, hkl: np.ndarray) -> np.ndarray:
    """Boolean mask over ``hkl`` rows: systematically absent under the operations given."""
    absent = np.zeros(len(hkl), dtype=bool)
    rot_keys: dict[bytes, list[int]] = {}
    for i, r in enumerate(rotations):
        rot_keys.setdefault(r.tobytes(), []).append(i)
    for idx in rot_keys.values():
        r = rotations[idx[0]]
        ts = np.unique(t12[idx], axis=0)
        ts = ts[np.any(ts != 0, axis=1)]
        if not len(ts):
            continue
        fixed = np.all(hkl @ r == hkl, axis=1)
        if not fixed.any():
            continue
        phase = (hkl[fixed] @ ts.T) % _PERIOD  # (n_fixed, n_t)
        absent[np.flatnonzero(fixed)[np.any(phase != 0, axis=1)]] = True
    return absent


class _UnionFind:
    def __init__(self, items):
        self.parent = {i: i for i in items}

    def find(self, x):
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


# --------------------------------------------------------------------------------------------------
# reflection-condition keys


def _class_translations(rotations: np.ndarray, t12: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Translations (x12) of the operations whose rotation fixes every reflection of the class."""
    keep = [i for i, r in enumerate(rotations) if np.array_equal(basis @ r, basis)]
    return np.unique(t12[keep], axis=0)


def _allowed(params: np.ndarray, basis: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Mask over ``params`` rows: reflection ``params @ basis`` allowed by every translation in ``ts``."""
    if not len(ts):
        return np.ones(len(params), dtype=bool)
    return np.all(((params @ basis) @ ts.T) % _PERIOD == 0, axis=1)


def _fmt_combo(coeffs, letters) -> str:
    out = ""
    for c, x in zip(coeffs, letters):
        if c == 0:
            continue
        mag = "" if abs(c) == 1 else str(abs(c))
        sign = "-" if c < 0 else ("+" if out else "")
        out += f"{sign}{mag}{x}"
    return out


def _condition_string(member: np.ndarray, params: np.ndarray, letters: str) -> str:
    """Readable conditions describing exactly the sub-lattice ``params[member]`` of Z^n."""
    n = params.shape[1]
    present = params[member]

    def holds(c, m):
        return bool(np.all((present @ np.asarray(c)) % m == 0))

    def lattice(conds):
        mask = np.ones(len(params), dtype=bool)
        for c, m in conds:
            mask &= (params @ np.asarray(c)) % m == 0
        return mask

    singles = []
    for j in range(n):
        g = math.gcd(*(int(v) for v in present[:, j])) if len(present) else 0
        if g > 1:
            singles.append((tuple(int(i == j) for i in range(n)), g))
    combos = []
    if not np.array_equal(lattice(singles), member):
        cands = []
        for c in itertools.product(range(-2, 3), repeat=n):
            if sum(1 for x in c if x) < 2:
                continue
            for m in (12, 6, 4, 3, 2):
                if holds(c, m):
                    cands.append((sum(1 for x in c if x), sum(abs(x) for x in c),
                                  sum(1 for x in c if x < 0), tuple(-x for x in c), -m, c, m))
        cands.sort()
        for *_, c, m in cands:
            cur = lattice(singles + combos)
            if np.array_equal(cur, member):
                break
            if not np.array_equal(cur & lattice([(c, m)]), cur):
                combos.append((c, m))
        # a single condition implied by the combinations alone is left out (2h+l=4n, not l=2n; 2h+l=4n)
        singles = [(c, m) for c, m in singles
                   if not np.array_equal(lattice(combos) & lattice([(c, m)]), lattice(combos))]
    if not np.array_equal(lattice(singles + combos), member):
        raise ValueError(f"could not express reflection conditions on {letters}")
    parts = []
    by_mod: dict[int, list[str]] = {}
    for c, m in singles:
        by_mod.setdefault(m, []).append(letters[c.index(1)])
    for m, xs in sorted(by_mod.items(), key=lambda kv: letters.index(kv[1][0])):
        parts.append(f"{','.join(xs)}={m}n")
    parts += [f"{_fmt_combo(c, letters)}={m}n" for c, m in combos]
    return "; ".join(parts)


def reflection_key(setting: dict, system: str) -> str:
    """Reflection-condition key (see module docstring) of one setting."""
    rot, t12 = setting["rotations"], setting["t12"]
    grid = np.arange(_PERIOD)
    parts = [f"{SYSTEM_LAUE_CLASS[system]} {setting['lattice']}"]
    listed: list[tuple[np.ndarray, np.ndarray]] = []  # (basis, translations) of listed classes
    general = _class_translations(rot, t12, np.eye(3, dtype=np.int64))
    for name, letters, rows in _CLASSES[system]:
        basis = np.asarray(rows, dtype=np.int64)
        params = np.stack(np.meshgrid(*([grid] * len(rows)), indexing="ij"), -1).reshape(-1, len(rows))
        actual = _allowed(params, basis, _class_translations(rot, t12, basis))
        implied = _allowed(params, basis, general)
        for b, ts in listed:
            # a listed class containing this one implies its condition here
            if np.linalg.matrix_rank(np.vstack([b, basis])) == np.linalg.matrix_rank(b):
                implied &= _allowed(params, basis, ts)
        if np.array_equal(actual, implied):
            continue
        listed.append((basis, _class_translations(rot, t12, basis)))
        parts.append(f"{name}:{_condition_string(actual, params, letters)}")
    return "|".join(parts)


# --------------------------------------------------------------------------------------------------
# the table


def compute_extinction_table(rhombohedral_axes: bool = False):
    """The 230-row extinction-group table, computed from spglib's space-group operations.

    Columns ``space_group, crystal_system, extinction_group, extinction_symbol``. ``rhombohedral_axes``
    (for checks only) also compares the rhombohedral-axes settings of the R groups, which wrongly
    merges R3 & co. (no absences on a primitive rhombohedral cell) with trigonal P groups: 100 groups.
    """
    import pandas as pd

    settings = _settings(rhombohedral_axes)
    hkl = _hkl_box()
    uf = _UnionFind(range(1, 231))
    seen: dict[tuple[str, bytes], int] = {}
    for s in settings:
        system = crystal_system(s["number"])
        key = (system, np.packbits(_absent_mask(s["rotations"], s["t12"], hkl)).tobytes())
        if key in seen:
            uf.union(seen[key], s["number"])
        else:
            seen[key] = s["number"]
    roots = sorted({uf.find(sg) for sg in range(1, 231)})  # a root is its group's lowest number
    group_id = {root: i + 1 for i, root in enumerate(roots)}
    standard = {}
    for s in settings:
        if s["choice"] != "R":  # R groups are named in hexagonal axes
            standard.setdefault(s["number"], s)  # lowest Hall number = spglib's standard setting
    symbol = {root: reflection_key(standard[root], crystal_system(root)) for root in roots}
    rows = [(sg, crystal_system(sg), group_id[uf.find(sg)], symbol[uf.find(sg)]) for sg in range(1, 231)]
    df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    counts = df.groupby("crystal_system")["extinction_group"].nunique().to_dict()
    log.info("extinction groups: %d (%s)", df["extinction_group"].nunique(),
             ", ".join(f"{c} {counts.get(c, 0)}" for c in CRYSTAL_SYSTEMS))
    if df["extinction_symbol"].nunique() != df["extinction_group"].nunique():
        raise AssertionError("extinction symbols are not distinct across groups")
    return df


def table_path() -> Path:
    """The shipped table (package data, the only copy)."""
    import rhosym

    return Path(rhosym.__file__).resolve().parent / "data" / TABLE_NAME


@lru_cache(maxsize=1)
def _load_cached():
    import pandas as pd

    path = table_path()
    df = pd.read_csv(path)
    if list(df.columns) != list(TABLE_COLUMNS) or len(df) != 230:
        raise ValueError(f"{path}: not a 230-row extinction table with columns {TABLE_COLUMNS}")
    return df


def load_extinction_table():
    """The shipped table; a fresh copy each call."""
    return _load_cached().copy()


@lru_cache(maxsize=1)
def _lookup() -> dict[int, tuple[int, str]]:
    df = _load_cached()
    return {int(r.space_group): (int(r.extinction_group), str(r.extinction_symbol)) for r in df.itertuples()}


def extinction_group(sg: int) -> int:
    """Extinction group id (1..101) of space group ``sg``."""
    crystal_system(sg)  # range check
    return _lookup()[int(sg)][0]


def extinction_symbol(sg: int) -> str:
    """Extinction-group key (see module docstring) of space group ``sg``."""
    crystal_system(sg)
    return _lookup()[int(sg)][1]


def write_extinction_table(df=None) -> Path:
    """Write the (re)computed table to the shipped location; returns the path."""
    df = compute_extinction_table() if df is None else df
    p = table_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p, index=False)
    _load_cached.cache_clear()
    _lookup.cache_clear()
    return p


# --------------------------------------------------------------------------------------------------
# labelling structures


def _label_once(structure, symprec: float, angle_tolerance: float) -> dict:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    where = f"(symprec={symprec}, angle_tolerance={angle_tolerance})"  # callers prefix their own context
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
        data = sga.get_symmetry_dataset()
    except Exception as exc:  # spglib raises SymmetryUndeterminedError & co. on bad cells
        msg = " ".join(str(exc).split()) or "no message"
        raise ValueError(f"spglib {where}: {type(exc).__name__}: {msg}") from exc
    if data is None:
        raise ValueError(f"spglib {where} found no symmetry")
    sg = int(data.number)
    return {
        "space_group": sg,
        "symbol": str(sga.get_space_group_symbol()),
        "crystal_system": crystal_system(sg),
        "extinction_group": extinction_group(sg),
        "extinction_symbol": extinction_symbol(sg),
        "symprec": float(symprec),
    }


def label_structure(structure, symprec: float = 0.1, angle_tolerance: float = 5.0, ladder=()) -> dict:
    """Symmetry labels of a pymatgen ``Structure``.

    Returns ``space_group`` (int), ``symbol`` (Hermann-Mauguin, e.g. ``Fm-3m``), ``crystal_system``,
    ``extinction_group``, ``extinction_symbol`` and ``symprec`` (the tolerance that gave them). When
    spglib finds no symmetry at ``symprec``, the tolerances of ``ladder`` are tried in turn (labels.ladder:
    0.05, 0.01, 1e-3, 1e-5). Raises ``ValueError`` with a one-line reason when none works.
    """
    tried = [float(symprec)] + [float(t) for t in ladder if float(t) != float(symprec)]
    errors = []
    for tol in tried:
        try:
            return _label_once(structure, tol, angle_tolerance)
        except ValueError as exc:
            errors.append(str(exc))
    raise ValueError(errors[0] + (f" (and at symprec {', '.join(f'{t:g}' for t in tried[1:])})" if len(tried) > 1
                                  else ""))


@lru_cache(maxsize=1)
def _hm_symbols() -> dict[int, str]:
    import warnings

    import spglib

    out: dict[int, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for hall in range(1, 531):
            t = spglib.get_spacegroup_type(hall)
            out.setdefault(int(t.number), str(t.international_short))
    return out


def sg_symbol(sg: int) -> str:
    """Short Hermann-Mauguin symbol of space group ``sg`` in its standard setting (``Fm-3m``)."""
    crystal_system(sg)
    return _hm_symbols()[int(sg)]


def declared_space_group(data: dict) -> int | None:
    """The space-group number a CIF block declares (``_space_group_IT_number`` or
    ``_symmetry_Int_Tables_number``), else from its Hermann-Mauguin symbol; None when absent."""
    for key in ("_space_group_IT_number", "_symmetry_Int_Tables_number", "_space_group.IT_number"):
        v = data.get(key)
        if isinstance(v, list):
            v = v[0] if v else None
        if v is None:
            continue
        try:
            n = int(str(v).strip().split("(")[0])
        except ValueError:
            continue
        if 1 <= n <= 230:
            return n
    for key in ("_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M"):
        v = data.get(key)
        if isinstance(v, list):
            v = v[0] if v else None
        if not v or str(v).strip() in ("?", "."):
            continue
        try:
            import gemmi

            sg = gemmi.find_spacegroup_by_name(str(v).strip().strip("'\""))
        except Exception:  # noqa: BLE001
            sg = None
        if sg is not None:
            return int(sg.number)
    return None


__all__ = [
    "CRYSTAL_SYSTEMS", "TABLE_COLUMNS", "EXPECTED_COUNTS", "crystal_system", "compute_extinction_table",
    "load_extinction_table", "extinction_group", "extinction_symbol", "label_structure",
    "write_extinction_table", "reflection_key", "table_path", "SYSTEM_LAUE_CLASS", "declared_space_group",
    "sg_symbol",
]
