"""Reading structures from files and table rows: CIF (every data block), POSCAR, CDVAE CSV rows, and
:func:`read_any` (CHGCAR headers: :mod:`rhosym.io.chgcar`).

Readers return :class:`StructureRecord` objects, one per structure a source holds. A structure that
cannot be read still yields a record, with ``structure=None`` and a one-line ``error``, so callers can
count and report it instead of losing it.

CIFs are read as pymatgen's :class:`~pymatgen.io.cif.CifParser` reads them, one data block at a time,
with ``occupancy_tolerance``: a site whose total occupancy lies between 1 and the tolerance is scaled
back to 1; above it the block is rejected. The hot path parses the text once with gemmi
(``gemmi.cif.read_string``) and builds each structure as pymatgen does (:func:`_gemmi_structure`: same
sites in the same order, species, occupancies, labels; about 1 ms instead of 2 for an MP-20 row); a text
it does not cover (magnetic CIFs, oxidation states, no explicit symmetry operations, symbols pymatgen
would have to guess, or an error to report) is read by pymatgen's parser (:func:`read_cif_blocks_pymatgen`),
so the records are the same either way. Sites with zero or negative
occupancy are rejected (pymatgen would drop them silently). Isotropic displacement parameters
(``_atom_site_B_iso_or_equiv``, or ``_atom_site_U_iso_or_equiv`` × 8π²) become the site property
``b_iso`` (Å²) when every site has one.

Limits (:mod:`rhosym.io.limits`; each reader takes ``limits``, default: those in force): a file is read
through :mod:`rhosym.io.compress` (refused past ``ingest.max_bytes`` once decompressed), and a cell that
holds more than ``ingest.max_input_sites`` sites as the file gives it is refused before its structure is
built: for a CIF block the distinct atom-site positions expanded by its symmetry operations, counted with
gemmi's fast CIF reader (:func:`cif_site_count`); for a POSCAR its counts line.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from rhosym.io.compress import open_binary, read_text
from rhosym.io.limits import LimitExceeded, Limits, exceeded, limits_of
from rhosym.io.records import StructureRecord, check_counts, one_line, poscar_counts  # noqa: F401 - re-exported

log = logging.getLogger("rhosym.io.structures")

EIGHT_PI2 = 8.0 * math.pi**2


# ----------------------------------------------------------------------------------------------- CIF

def _str2float(text: str) -> float:
    """A CIF number, dropping the standard uncertainty in brackets (``0.512(3)``)."""
    t = str(text).strip()
    if t in ("?", "."):
        raise ValueError(f"missing value {t!r}")
    return float(re.sub(r"\(.*?\)$", "", t))


def _site_b_iso(data: dict) -> dict[str, float]:
    """``{atom_site_label: B_iso (Å²)}`` from a pymatgen CifBlock's data."""
    labels = data.get("_atom_site_label")
    if not labels:
        return {}
    if isinstance(labels, str):
        labels = [labels]
    out: dict[str, float] = {}
    for key, scale in (("_atom_site_B_iso_or_equiv", 1.0), ("_atom_site_U_iso_or_equiv", EIGHT_PI2)):
        vals = data.get(key)
        if not vals:
            continue
        if isinstance(vals, str):
            vals = [vals]
        for lab, v in zip(labels, vals):
            if lab in out:
                continue
            try:
                out[lab] = _str2float(v) * scale
            except ValueError:
                continue
    return out


def _aniso_b_eq(data: dict, lattice) -> dict[str, float]:
    """``{label: B_eq}`` from ``_atom_site_aniso_U_ij`` / ``_B_ij``: B_eq = 8π²·(1/3)·Σ U^ij a*_i a*_j a_i·a_j."""
    labels = data.get("_atom_site_aniso_label")
    if not labels:
        return {}
    if isinstance(labels, str):
        labels = [labels]
    g = lattice.metric_tensor  # a_i . a_j
    astar = np.array(lattice.reciprocal_lattice_crystallographic.abc)
    out: dict[str, float] = {}
    for prefix, scale in (("_atom_site_aniso_U_", EIGHT_PI2), ("_atom_site_aniso_B_", 1.0)):
        cols = {ij: data.get(f"{prefix}{ij}") for ij in ("11", "22", "33", "12", "13", "23")}
        if any(v is None for v in cols.values()):
            continue
        cols = {k: [v] if isinstance(v, str) else v for k, v in cols.items()}
        for n, lab in enumerate(labels):
            try:
                u = np.zeros((3, 3))
                for ij, vals in cols.items():
                    i, j = int(ij[0]) - 1, int(ij[1]) - 1
                    u[i, j] = u[j, i] = _str2float(vals[n])
            except (ValueError, IndexError):
                continue
            ueq = float(np.einsum("ij,i,j,ij->", u, astar, astar, g)) / 3.0
            out.setdefault(lab, ueq * scale)
    return out


def _bad_occupancies(data: dict) -> list[str]:
    """Labels of atom sites whose occupancy is zero or negative."""
    occ = data.get("_atom_site_occupancy")
    labels = data.get("_atom_site_label")
    if not occ:
        return []
    if isinstance(occ, str):
        occ = [occ]
    if isinstance(labels, str):
        labels = [labels]
    labels = labels or [str(i) for i in range(len(occ))]
    bad = []
    for lab, v in zip(labels, occ):
        try:
            if _str2float(v) <= 0:
                bad.append(f"{lab}={v}")
        except ValueError:
            continue
    return bad


def _attach_b_iso(structure, b_of_label: dict[str, float]) -> None:
    """Set the ``b_iso`` site property from the sites' CIF labels when every site has a value."""
    if not b_of_label:
        return
    vals = []
    for site in structure:
        lab = site.label
        b = b_of_label.get(lab)
        if b is None and lab:
            b = b_of_label.get(re.sub(r"_fix\d+$", "", lab))
        if b is None:
            log.debug("no B factor for site label %r; b_iso not set", lab)
            return
        vals.append(float(b))
    structure.add_site_property("b_iso", vals)


def _position(x: float, y: float, z: float) -> tuple | None:
    if not all(math.isfinite(v) for v in (x, y, z)):
        return None
    return tuple(round(v % 1.0, 3) % 1.0 for v in (x, y, z))


def cif_site_count(block, bound: int | None = None) -> tuple[int, bool]:
    """``(n, exact)``: the sites of a gemmi CIF block's cell as the CIF gives it: the distinct atom-site
    positions expanded by the block's symmetry operations (gemmi's ``get_all_unit_cell_sites``, special
    positions merged). Given ``bound``, counted only as far as a comparison with it needs: ``(n, False)``
    is the number of distinct positions before the expansion, a lower bound, when that is already over
    ``bound``, when the expansion cannot pass ``bound`` or when it would be too large to count (over
    50 × ``bound`` and a million sites; pymatgen's parse is then checked)."""
    import gemmi

    st = gemmi.make_small_structure_from_block(block)
    asym = {_position(s.fract.x, s.fract.y, s.fract.z) for s in st.sites} - {None}
    n = len(asym)
    ops = len(st.spacegroup.operations()) if st.spacegroup is not None else 1
    if ops == 1:
        return n, True
    if bound is not None and (n > bound or n * ops <= bound or n * ops > max(50 * bound, 1_000_000)):
        return n, False
    cell = {_position(s.fract.x, s.fract.y, s.fract.z) for s in st.get_all_unit_cell_sites()} - {None}
    return len(cell), True


def _cif_site_counts(text: str, bound: int) -> dict[str, tuple[int, bool]] | None:
    """:func:`cif_site_count` of every block with atom sites, by block name (None: gemmi cannot read the
    text; pymatgen's reader then says why or counts the rows itself)."""
    import gemmi

    try:
        doc = gemmi.cif.read_string(text)
        return {b.name: cif_site_count(b, bound) for b in doc if b.find_values("_atom_site_fract_x")}
    except Exception:  # noqa: BLE001 - pymatgen reads what gemmi refuses, or gives the reason
        return None


def _block_refusal(data: dict, counted: tuple[int, bool] | None, limits: Limits) -> str:
    """Why a CIF block is refused before its structure is built (too many sites, a zero or negative
    occupancy), else ``""``. Blocks without labels get their type symbols as labels (as pymatgen needs)."""
    if "_atom_site_label" not in data:
        data["_atom_site_label"] = list(data["_atom_site_type_symbol"])
    too_many = _too_many_sites(data, counted, limits)
    if too_many:
        return too_many
    bad = _bad_occupancies(data)
    return one_line(f"zero or negative occupancy: {', '.join(bad[:5])}") if bad else ""


def _too_many_sites(data: dict, counted: tuple[int, bool] | None, limits: Limits) -> str:
    """The refusal of a block whose cell holds more than ``max_input_sites`` sites, else ``""``."""
    if counted is None:  # no gemmi count: the distinct positions of pymatgen's rows, a lower bound
        cols = [data.get(f"_atom_site_fract_{a}") for a in "xyz"]
        if not all(isinstance(c, list) for c in cols):
            return ""
        counted = (len(set(zip(*cols))), False)
    n, exact = counted
    if n <= limits.max_input_sites:
        return ""
    return str(exceeded(f"{'' if exact else 'at least '}{n} sites in the cell as read", "max_input_sites",
                        limits.max_input_sites))


class _NeedPymatgen(Exception):
    """A block the gemmi path does not cover: the whole text is read by pymatgen instead."""


_SYMOP_TAGS = ("_symmetry_equiv_pos_as_xyz", "_symmetry_equiv_pos_as_xyz_", "_space_group_symop_operation_xyz",
               "_space_group_symop_operation_xyz_")
_SPECIAL_SYMBOLS = re.compile("Hw|Ow|Wat|wat|OH|OH2|NO3")  # pymatgen's special symbols (water, nitrate)
_RE_ROT = re.compile(r"([+-]?)([\d\.]*)/?([\d\.]*)([x-z])")
_RE_TRANS = re.compile(r"([+-]?)([\d\.]+)/?([\d\.]*)(?![x-z])")


def _pmg_float(text: str) -> float:
    """pymatgen's CIF ``str2float``: brackets dropped, ``.`` is 0, ``?`` raises ``ValueError``."""
    try:
        return float(re.sub(r"\(.+\)*", "", text))
    except ValueError:
        if text.strip() == ".":
            return 0.0
        raise


@lru_cache(maxsize=4096)
def _affine(xyz: str) -> np.ndarray:
    """The 4×4 affine matrix of an ``x, y, z`` symmetry operation, parsed as pymatgen's
    ``SymmOp.from_xyz_str`` parses it (same regular expressions, same floats)."""
    rot = np.zeros((3, 3))
    trans = np.zeros(3)
    for i, tok in enumerate(xyz.strip().replace(" ", "").lower().split(",")):
        for m in _RE_ROT.finditer(tok):
            factor = -1.0 if m[1] == "-" else 1.0
            if m[2] != "":
                factor *= float(m[2]) / float(m[3]) if m[3] != "" else float(m[2])
            rot[i, ord(m[4]) - 120] = factor
        for m in _RE_TRANS.finditer(tok):
            num = float(m[2]) / float(m[3]) if m[3] != "" else float(m[2])
            trans[i] = num * (-1 if m[1] == "-" else 1)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = trans
    out.setflags(write=False)
    return out


def _element_symbol(sym: str) -> str:
    """pymatgen's ``CifParser._parse_symbol`` where it is unambiguous (a site's element); raises
    :class:`_NeedPymatgen` where pymatgen would use a special symbol, guess with a warning, or skip."""
    from pymatgen.core import Element

    if not sym or _SPECIAL_SYMBOLS.match(sym):
        raise _NeedPymatgen(f"symbol {sym!r}")
    if Element.is_valid_symbol(sym[:2].title()):
        parsed = sym[:2].title()
    elif Element.is_valid_symbol(sym[0].upper()):
        parsed = sym[0].upper()
    else:
        raise _NeedPymatgen(f"symbol {sym!r}")
    if not re.match(rf"{parsed}\d*", sym):
        raise _NeedPymatgen(f"symbol {sym!r} guessed")
    return parsed


def _block_data(block) -> dict:
    """A gemmi CIF block as pymatgen's ``CifBlock.data``: tag -> unquoted string (pairs) or list of
    strings (loop columns)."""
    import gemmi

    data: dict = {}
    for item in block:
        if item.pair is not None:
            tag, value = item.pair
            if tag in data:
                raise _NeedPymatgen(f"repeated tag {tag}")
            data[tag] = gemmi.cif.as_string(value)
        elif item.loop is not None:
            loop = item.loop
            width = loop.width()
            values = [gemmi.cif.as_string(v) for v in loop.values]
            for k, tag in enumerate(loop.tags):
                if tag in data:
                    raise _NeedPymatgen(f"repeated tag {tag}")
                data[tag] = values[k::width]
        elif item.frame is not None:
            raise _NeedPymatgen("save frame")
    return data


def _gemmi_structure(data: dict, occupancy_tolerance: float, site_tolerance: float = 1e-4,
                     frac_tolerance: float = 1e-4):
    """``(structure, warnings)`` of one block's data, as ``CifParser(occupancy_tolerance=...)
    .parse_structures(primitive=False, check_occu=True)`` builds it (pymatgen 2026.10: lattice from the
    six parameters, 1/3 and 2/3 made exact, rows at one position merged into one site, symmetry
    expansion in the operations' order, sites grouped by composition, then sorted by
    electronegativity). Raises :class:`_NeedPymatgen` for anything else."""
    from itertools import groupby

    from pymatgen.core import Composition, Element, Lattice, Structure

    if any("magn" in t or "_atom_site_moment" in t for t in data) or "_atom_type_oxidation_number" in data:
        raise _NeedPymatgen("magnetic CIF or oxidation states")
    if any(_pmg_float(v) != 0 for v in data.get("_atom_site_attached_hydrogens", []) if v not in ("?",)):
        raise _NeedPymatgen("implicit hydrogens")
    labels = data.get("_atom_site_label")
    columns = [data.get(f"_atom_site_fract_{a}") for a in "xyz"]
    symbols = data.get("_atom_site_type_symbol")
    occus = data.get("_atom_site_occupancy")
    n = len(labels) if isinstance(labels, list) else -1
    for col in (*columns, symbols, occus):
        if col is not None and not (isinstance(col, list) and len(col) == n):
            raise _NeedPymatgen("atom sites not one loop")
    if n <= 0 or any(c is None for c in columns):
        raise _NeedPymatgen("no fractional atom sites")
    if symbols is not None and any(" + " in s for s in symbols):
        raise _NeedPymatgen("Pauling-file symbols")
    try:
        lattice = Lattice.from_parameters(*[_pmg_float(data[f"_cell_length_{x}"]) for x in "abc"],
                                          *[_pmg_float(data[f"_cell_angle_{x}"]) for x in ("alpha", "beta", "gamma")])
    except (KeyError, ValueError, TypeError) as exc:
        raise _NeedPymatgen("cell") from exc
    if min(lattice.d_hkl((1, 0, 0)), lattice.d_hkl((0, 1, 0)), lattice.d_hkl((0, 0, 1))) < 0.01:
        raise _NeedPymatgen("thin cell")
    xyz = next((data[t] for t in _SYMOP_TAGS if data.get(t)), None)
    if xyz is None:
        raise _NeedPymatgen("no symmetry operations")
    warns = []
    if isinstance(xyz, str):
        warns.append("A 1-line symmetry op P1 CIF is detected!")
        xyz = [xyz]
    try:
        ops = np.stack([_affine(x) for x in xyz])
    except (ValueError, IndexError) as exc:
        raise _NeedPymatgen("symmetry operations") from exc
    try:
        frac = np.array([[_pmg_float(v) for v in col] for col in columns], dtype=np.float64).T
    except ValueError as exc:
        raise _NeedPymatgen("coordinates") from exc
    n_round = 0
    for ideal in (1 / 3, 2 / 3):  # pymatgen's _sanitize_data: finite-precision thirds made exact
        near = np.abs(frac / ideal - 1) <= frac_tolerance
        n_round += int(near.sum())
        frac[near] = float(str(ideal))
    if n_round:
        warns.append(f"{n_round} fractional coordinates rounded to ideal values to avoid issues with "
                     "finite precision.")
    keys: list[tuple] = []  # distinct positions, in order of appearance
    comps: list = []
    site_labels: list[str] = []
    for i in range(n):
        el = Element(_element_symbol(symbols[i] if symbols is not None else labels[i]))
        try:
            occu = _pmg_float(occus[i]) if occus is not None else 1.0
        except ValueError:
            occu = 1.0
        if occu <= 0:
            continue
        comp = Composition({el: max(occu, 1e-8)})
        match = -1
        if keys:
            images = ops[:, :3, :3] @ frac[i] + ops[:, :3, 3]  # every operation applied to the row
            diff = np.asarray(keys)[None, :, :] - images[:, None, :]
            diff -= np.round(diff)
            close = np.all(np.abs(diff) < site_tolerance, axis=2)  # (ops, positions)
            hit = np.flatnonzero(close.any(axis=1))
            if len(hit):
                match = int(np.flatnonzero(close[hit[0]])[0])
        if match < 0:
            keys.append(tuple(frac[i]))
            comps.append(comp)
            site_labels.append(labels[i])
        else:
            comps[match] = comps[match] + comp
            site_labels[match] = labels[i]
    if not keys:
        raise _NeedPymatgen("no sites")
    if any(set(c.elements) == {Element("O"), Element("H")} for c in comps):
        raise _NeedPymatgen("O-H site")
    all_species, all_coords, all_labels = [], [], []
    order = sorted(range(len(keys)), key=lambda k: comps[k])  # pymatgen: sorted by composition (stable)
    for comp, group in groupby(order, key=lambda k: comps[k]):
        out: list[np.ndarray] = []
        for k in group:
            images = np.asarray(keys[k]) @ ops[:, :3, :3].transpose(0, 2, 1) + ops[:, :3, 3]
            images -= np.floor(images)
            for img in images:
                if out:
                    d = np.asarray(out) - img
                    d -= np.round(d)
                    if np.any(np.all(np.abs(d) < site_tolerance, axis=1)):
                        continue
                out.append(img)
                all_labels.append(site_labels[k])
        total = sum(comp.values())
        if total > occupancy_tolerance:
            raise _NeedPymatgen("occupancy over tolerance")  # pymatgen gives the reason
        species = comp / total if total > 1 else comp
        all_species += [species] * len(out)
        all_coords += out
    s = Structure(lattice, all_species, all_coords, site_properties={},
                  labels=all_labels if any(all_labels) else None)
    return s.get_sorted_structure(), warns


def _read_cif_blocks_gemmi(text: str, source: str, occupancy_tolerance: float,
                           limits: Limits) -> list[StructureRecord] | None:
    """:func:`read_cif_blocks` through gemmi (the hot path); None when any block needs pymatgen."""
    import gemmi

    from rhosym.symmetry import declared_space_group

    try:
        doc = gemmi.cif.read_string(text)
    except Exception:  # noqa: BLE001 - pymatgen reads what gemmi refuses, or gives the reason
        return None
    try:
        blocks = [(b.name, b, _block_data(b)) for b in doc]
        names = [name for name, _b, _d in blocks]
        with_atoms = [x for x in blocks if "_atom_site_label" in x[2] or "_atom_site_type_symbol" in x[2]]
        if not with_atoms or len(set(names)) != len(names):
            return None
        multi = len(with_atoms) > 1
        out: list[StructureRecord] = []
        for name, block, data in with_atoms:
            blk = name if multi else ""
            why = _block_refusal(data, cif_site_count(block, limits.max_input_sites)
                                 if data.get("_atom_site_fract_x") else None, limits)
            if why:
                out.append(StructureRecord(source, blk, None, why))
                continue
            s, warns = _gemmi_structure(data, occupancy_tolerance)
            too_many = _too_many_sites(data, (len(s), True), limits)
            if too_many:
                out.append(StructureRecord(source, blk, None, too_many))
                continue
            _attach_b_iso(s, {**_aniso_b_eq(data, s.lattice), **_site_b_iso(data)})
            extra = {"declared_space_group": declared_space_group(data)}
            if warns:
                extra["warnings"] = [one_line(w, 200) for w in warns]
            out.append(StructureRecord(source, blk, s, "", extra))
        return out
    except _NeedPymatgen as exc:
        log.debug("%s: read by pymatgen (%s)", source, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - anything unexpected: the reference path decides
        log.debug("%s: gemmi path failed (%s: %s); read by pymatgen", source, type(exc).__name__, exc)
        return None


def read_cif_blocks(text: str, source: str = "", occupancy_tolerance: float = 1.05,
                    limits=None) -> list[StructureRecord]:
    """Every data block of a CIF text, each as a :class:`StructureRecord` (``block`` = block name).

    A text that cannot be split into blocks at all gives one record with an error and ``block=""``.
    Blocks without atom sites (e.g. a publication block) are skipped when another block has atoms. A
    block whose cell holds more than ``ingest.max_input_sites`` sites (``limits``) is refused before
    its structure is built.

    Hot path: gemmi reads the text and :func:`_gemmi_structure` builds each block's structure the way
    pymatgen's ``CifParser`` does (same sites, order, species, occupancies and labels); a text with
    anything that path does not cover (magnetic CIFs, oxidation states, symbols pymatgen would guess,
    no explicit symmetry operations, an error to report, ...) is read by pymatgen as a whole
    (:func:`read_cif_blocks_pymatgen`).
    """
    limits = limits_of(limits)
    fast = _read_cif_blocks_gemmi(text, source, occupancy_tolerance, limits)
    if fast is not None:
        return fast
    return read_cif_blocks_pymatgen(text, source, occupancy_tolerance, limits)


def read_cif_blocks_pymatgen(text: str, source: str = "", occupancy_tolerance: float = 1.05,
                             limits=None) -> list[StructureRecord]:
    """:func:`read_cif_blocks` with pymatgen's ``CifParser`` for every block (the reference path)."""
    from pymatgen.io.cif import CifFile, CifParser

    limits = limits_of(limits)
    counts = _cif_site_counts(text, limits.max_input_sites)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cif = CifFile.from_str(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure becomes a reason
        return [StructureRecord(source, "", None, f"unparsable CIF: {one_line(exc)}")]
    blocks = list(cif.data.items())
    if not blocks:
        return [StructureRecord(source, "", None, "unparsable CIF: no data block")]
    with_atoms = [(name, b) for name, b in blocks if "_atom_site_label" in b.data or "_atom_site_type_symbol" in b.data]
    if not with_atoms:
        return [StructureRecord(source, name, None, "unparsable CIF: no atom sites in block")
                for name, _ in blocks[:1]]
    multi = len(with_atoms) > 1
    out: list[StructureRecord] = []
    for name, block in with_atoms:
        blk = name if multi else ""
        data = block.data
        why = _block_refusal(data, (counts or {}).get(name), limits)
        if why:
            out.append(StructureRecord(source, blk, None, why))
            continue
        b_of_label = _site_b_iso(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parser = CifParser.from_str(f"data_{name}\n" + _block_body(block),
                                            occupancy_tolerance=occupancy_tolerance)
                structs = parser.parse_structures(primitive=False, check_occu=True, on_error="raise")
        except Exception as exc:  # noqa: BLE001
            msg = one_line(exc).replace("No structure parsed for section 1 in CIF. ", "")
            if "exceeded tolerance" in msg:
                msg = f"site occupancy above occupancy_tolerance {occupancy_tolerance}: {msg}"
            out.append(StructureRecord(source, blk, None, f"unparsable CIF: {msg}"))
            continue
        s = structs[0]
        if len(s) == 0:
            out.append(StructureRecord(source, blk, None, "unparsable CIF: no atoms"))
            continue
        too_many = _too_many_sites(data, (len(s), True), limits)
        if too_many:
            out.append(StructureRecord(source, blk, None, too_many))
            continue
        _attach_b_iso(s, {**_aniso_b_eq(data, s.lattice), **b_of_label})
        from rhosym.symmetry import declared_space_group

        extra = {"declared_space_group": declared_space_group(data)}
        if parser.warnings:
            extra["warnings"] = [one_line(w, 200) for w in parser.warnings]
        out.append(StructureRecord(source, blk, s, "", extra))
    return out


def _block_body(block) -> str:
    """The text of a pymatgen CifBlock without its ``data_`` header line."""
    text = str(block)
    lines = text.splitlines()
    if lines and lines[0].startswith("data_"):
        lines = lines[1:]
    return "\n".join(lines) + "\n"


def read_cif(path: str | Path, occupancy_tolerance: float = 1.05, limits=None) -> list[StructureRecord]:
    """Every data block of a CIF file (plain or compressed)."""
    limits = limits_of(limits)
    try:
        text = read_text(path, limits.max_bytes)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        return [StructureRecord(str(path), "", None, f"unreadable file: {one_line(exc)}")]
    except ValueError as exc:  # over max_bytes, not text, or a damaged compressed file
        return [StructureRecord(str(path), "", None, one_line(exc))]
    return read_cif_blocks(text, str(path), occupancy_tolerance, limits)


# ------------------------------------------------------------------------------------------- POSCAR

def read_poscar(path: str | Path, limits=None) -> StructureRecord:
    """The structure of a POSCAR (plain or compressed); its counts line is checked before the parse."""
    from pymatgen.io.vasp import Poscar

    limits = limits_of(limits)
    try:
        text = read_text(path, limits.max_bytes)
        check_counts(text.split("\n", 8)[:8], limits)
    except LimitExceeded as exc:
        return StructureRecord(str(path), "", None, one_line(exc))
    except (OSError, UnicodeDecodeError, EOFError, ValueError) as exc:
        return StructureRecord(str(path), "", None, f"unparsable POSCAR: {one_line(exc)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = Poscar.from_str(text, read_velocities=False).structure
    except Exception as exc:  # noqa: BLE001
        return StructureRecord(str(path), "", None, f"unparsable POSCAR: {one_line(exc)}")
    return StructureRecord(str(path), "", s)


# ----------------------------------------------------------------------------------------------- CSV

DEFAULT_COLUMNS = {"id": "material_id", "cif": "cif", "band_gap": "band_gap",
                   "formation_energy": "formation_energy_per_atom", "space_group": "spacegroup.number"}


def read_csv_table(path: str | Path, limits=None):
    """A CDVAE-style CSV (plain or compressed; refused past ``max_bytes``) as a DataFrame (CIF strings
    hold newlines)."""
    import pandas as pd

    with open_binary(path, limits_of(limits).max_bytes) as fh:
        return pd.read_csv(fh)


def _float_or_nan(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def read_csv_row(row, columns: dict | None = None, source: str = "", index: int = 0,
                 occupancy_tolerance: float = 1.05, limits=None) -> StructureRecord:
    """One CDVAE CSV row (a pandas Series or dict): the CIF string plus id and property columns.

    ``extra`` holds ``id``, ``band_gap``, ``formation_energy`` (NaN when the column is absent) and
    ``declared_space_group`` (the ``space_group`` column when present, else what the CIF declares).
    """
    cols = {**DEFAULT_COLUMNS, **(columns or {})}
    get = row.get if hasattr(row, "get") else row.__getitem__
    rid = get(cols["id"], None)
    rid = str(rid) if rid is not None and not (isinstance(rid, float) and math.isnan(rid)) else f"row-{index}"
    extra = {"id": rid, "band_gap": _float_or_nan(get(cols["band_gap"], None)),
             "formation_energy": _float_or_nan(get(cols["formation_energy"], None))}
    src = f"{source}#{index}" if source else f"#{index}"
    text = get(cols["cif"], None)
    if not isinstance(text, str) or not text.strip():
        return StructureRecord(src, "", None, f"no CIF string in column {cols['cif']!r}", extra)
    recs = read_cif_blocks(text, src, occupancy_tolerance, limits)
    rec = recs[0]
    rec.block = ""
    declared = _float_or_nan(get(cols["space_group"], None))
    if declared == declared and 1 <= declared <= 230:  # a number, not NaN
        extra["declared_space_group"] = int(declared)
    rec.extra.update(extra)
    if len(recs) > 1:
        log.warning("%s: CIF string holds %d blocks; using the first", src, len(recs))
    return rec


# ----------------------------------------------------------------------------------------- any file

def sniff_kind(path: str | Path) -> str:
    """``cif``, ``chgcar``, ``csv`` or ``poscar`` from the file name."""
    from rhosym.shards import is_chgcar

    name = os.path.basename(str(path))
    base = re.sub(r"\.(gz|bz2|xz)$", "", name).lower()
    if base.endswith((".cif", ".mmcif", ".mcif")):
        return "cif"
    if is_chgcar(name) or base.startswith(("chg", "aeccar", "locpot", "parchg")):
        return "chgcar"
    if base.endswith(".csv"):
        return "csv"
    return "poscar"


def read_any(path: str | Path, csv_columns: dict | None = None,
             occupancy_tolerance: float = 1.05, limits=None) -> Iterator[StructureRecord]:
    """Every structure of a file, whatever its kind (see :func:`sniff_kind`), within ``limits``
    (:mod:`rhosym.io.limits`; default: those in force)."""
    limits = limits_of(limits)
    kind = sniff_kind(path)
    if kind == "cif":
        yield from read_cif(path, occupancy_tolerance, limits)
    elif kind == "chgcar":
        from rhosym.io.chgcar import read_chgcar_structure

        yield read_chgcar_structure(path, limits=limits)
    elif kind == "csv":
        try:
            df = read_csv_table(path, limits)
        except LimitExceeded as exc:
            yield StructureRecord(str(path), "", None, one_line(exc))
            return
        except Exception as exc:  # noqa: BLE001
            yield StructureRecord(str(path), "", None, f"unreadable CSV: {one_line(exc)}")
            return
        for i, (_, row) in enumerate(df.iterrows()):
            yield read_csv_row(row, csv_columns, str(path), i, occupancy_tolerance, limits)
    else:
        yield read_poscar(path, limits)
