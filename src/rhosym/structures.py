"""Reading structures from files and table rows: CIF (every data block), POSCAR, CHGCAR headers, CDVAE CSV rows.

Readers return :class:`StructureRecord` objects, one per structure a source holds. A structure that
cannot be read still yields a record, with ``structure=None`` and a one-line ``error``, so callers can
count and report it instead of losing it.

CIFs are parsed with pymatgen's :class:`~pymatgen.io.cif.CifParser`, one data block at a time, with
``occupancy_tolerance``: a site whose total occupancy lies between 1 and the tolerance is scaled back
to 1 (pymatgen does the scaling); above it the block is rejected. Sites with zero or negative
occupancy are rejected (pymatgen would drop them silently). Isotropic displacement parameters
(``_atom_site_B_iso_or_equiv``, or ``_atom_site_U_iso_or_equiv`` × 8π²) become the site property
``b_iso`` (Å²) when every site has one.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("rhosym.structures")

EIGHT_PI2 = 8.0 * math.pi**2


@dataclass
class StructureRecord:
    """One structure read from a source (or the reason it could not be read)."""

    source: str
    block: str = ""
    structure: object | None = None  # pymatgen Structure
    error: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.structure is not None and not self.error


def one_line(msg: object, limit: int = 300) -> str:
    """A message squeezed onto one line (for ``reason`` / ``error`` fields)."""
    s = re.sub(r"\s+", " ", str(msg)).strip()
    return s[:limit] + ("..." if len(s) > limit else "")


def open_text(path: str | Path):
    """Open a text file, decompressing ``.gz``, ``.bz2`` and ``.xz``."""
    p = str(path)
    if p.endswith(".gz"):
        return gzip.open(p, "rt")
    if p.endswith(".bz2"):
        return bz2.open(p, "rt")
    if p.endswith(".xz"):
        return lzma.open(p, "rt")
    return open(p)


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


def read_cif_blocks(text: str, source: str = "", occupancy_tolerance: float = 1.05) -> list[StructureRecord]:
    """Every data block of a CIF text, each as a :class:`StructureRecord` (``block`` = block name).

    A text that cannot be split into blocks at all gives one record with an error and ``block=""``.
    Blocks without atom sites (e.g. a publication block) are skipped when another block has atoms.
    """
    from pymatgen.io.cif import CifFile, CifParser

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
        if "_atom_site_label" not in data:  # pymatgen needs labels; fall back on the type symbols
            data["_atom_site_label"] = list(data["_atom_site_type_symbol"])
        bad = _bad_occupancies(data)
        if bad:
            out.append(StructureRecord(source, blk, None,
                                       one_line(f"zero or negative occupancy: {', '.join(bad[:5])}")))
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


def read_cif(path: str | Path, occupancy_tolerance: float = 1.05) -> list[StructureRecord]:
    """Every data block of a CIF file (plain or compressed)."""
    try:
        with open_text(path) as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        return [StructureRecord(str(path), "", None, f"unreadable file: {one_line(exc)}")]
    return read_cif_blocks(text, str(path), occupancy_tolerance)


# ------------------------------------------------------------------------------------- POSCAR / CHGCAR

def read_poscar(path: str | Path) -> StructureRecord:
    from pymatgen.io.vasp import Poscar

    try:
        with open_text(path) as fh:
            text = fh.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = Poscar.from_str(text, read_velocities=False).structure
    except Exception as exc:  # noqa: BLE001
        return StructureRecord(str(path), "", None, f"unparsable POSCAR: {one_line(exc)}")
    return StructureRecord(str(path), "", s)


@dataclass
class ChgcarHeader:
    structure: object
    grid: tuple[int, int, int]
    data_offset: int  # byte offset of the first data line (uncompressed files) or -1


def _check_data_length_stream(fh, first_line: str, n_values: int) -> None:
    """Count values line by line until ``n_values`` are seen (compressed files)."""
    count = len(first_line.split())
    for line in fh:
        if count >= n_values:
            return
        toks = line.split()
        if not toks:
            break
        count += len(toks)
    if count < n_values:
        raise ValueError(f"CHGCAR data shorter than its header: {count} of {n_values} values")


def _gzip_isize(path: str) -> int:
    """Uncompressed size recorded in a gzip trailer (modulo 2**32)."""
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return int.from_bytes(fh.read(4), "little")


def read_chgcar_header(path: str | Path, check_data: bool = True) -> ChgcarHeader:
    """The structure and grid of a CHGCAR from its POSCAR-like header, without parsing the grid.

    With ``check_data``, checks that the file holds the ``NGX*NGY*NGZ`` values its header declares.
    VASP writes fixed-width lines, so for plain files the line where the last value must be is read
    directly; for ``.gz`` files the uncompressed size in the gzip trailer must reach that line; for
    ``.bz2``/``.xz`` the values are counted. Raises ``ValueError`` with a one-line reason.
    """
    from pymatgen.io.vasp import Poscar

    p = str(path)
    if p.endswith(".gz"):
        mode = "gz"
        fh = gzip.open(p, "rb")
    elif p.endswith((".bz2", ".xz")):
        mode = "stream"
        fh = bz2.open(p, "rb") if p.endswith(".bz2") else lzma.open(p, "rb")
    else:
        mode = "plain"
        fh = open(p, "rb")
    with fh:
        def readline() -> str:
            return fh.readline().decode("latin-1")

        lines = []
        while True:
            line = readline()
            if line == "":
                raise ValueError("CHGCAR ends inside its header")
            if not line.strip():
                break
            lines.append(line.rstrip("\n"))
            if len(lines) > 100_000:
                raise ValueError("CHGCAR header has no blank line after the coordinates")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Poscar.from_str("\n".join(lines) + "\n", read_velocities=False).structure
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"unparsable CHGCAR header: {one_line(exc)}") from exc
        grid_line = readline()
        try:
            grid = tuple(int(t) for t in grid_line.split())
        except ValueError:
            grid = ()
        if len(grid) != 3 or min(grid) <= 0:
            raise ValueError(f"bad CHGCAR grid line {grid_line.strip()!r}")
        n_values = grid[0] * grid[1] * grid[2]
        offset = fh.tell()
        if not check_data:
            return ChgcarHeader(structure, grid, offset)  # type: ignore[arg-type]
        first = readline()
        toks = first.split()
        if not toks:
            raise ValueError("CHGCAR has no data after its grid line")
        try:
            [float(t) for t in toks]
        except ValueError as exc:
            raise ValueError(f"CHGCAR data not numeric: {one_line(first)}") from exc
        per_line = len(toks)
        if mode == "stream":
            _check_data_length_stream(io.TextIOWrapper(fh, encoding="latin-1"), first, n_values)
            return ChgcarHeader(structure, grid, offset)  # type: ignore[arg-type]
        width = len(first.encode("latin-1"))
        n_lines = -(-n_values // per_line)
        last_start = offset + (n_lines - 1) * width
        expect_last = n_values - (n_lines - 1) * per_line
        size = _gzip_isize(p) if mode == "gz" else os.fstat(fh.fileno()).st_size
        need = last_start + expect_last * (width - 1) // per_line
        if size < need and not (mode == "gz" and os.path.getsize(p) > 2**32 // 8):
            raise ValueError(f"CHGCAR truncated: {size} bytes, data of {grid[0]}x{grid[1]}x{grid[2]} "
                             f"needs at least {need}")
        if mode == "gz":
            return ChgcarHeader(structure, grid, offset)  # type: ignore[arg-type]
        fh.seek(last_start)
        last = fh.readline().decode("latin-1").split()
        ok = len(last) == expect_last
        if ok:
            try:
                [float(t) for t in last]
            except ValueError:
                ok = False
        if not ok:  # not fixed width, or corrupt: count for real
            fh.seek(offset)
            text_fh = io.TextIOWrapper(fh, encoding="latin-1")
            _check_data_length_stream(text_fh, text_fh.readline(), n_values)
        return ChgcarHeader(structure, grid, offset)  # type: ignore[arg-type]


def read_chgcar_structure(path: str | Path, check_data: bool = True) -> StructureRecord:
    try:
        h = read_chgcar_header(path, check_data)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        return StructureRecord(str(path), "", None, one_line(exc))
    return StructureRecord(str(path), "", h.structure, "", {"grid": list(h.grid)})


# ----------------------------------------------------------------------------------------------- CSV

DEFAULT_COLUMNS = {"id": "material_id", "cif": "cif", "band_gap": "band_gap",
                   "formation_energy": "formation_energy_per_atom", "space_group": "spacegroup.number"}


def read_csv_table(path: str | Path):
    """A CDVAE-style CSV as a DataFrame (CIF strings hold newlines)."""
    import pandas as pd

    return pd.read_csv(path)


def _float_or_nan(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def read_csv_row(row, columns: dict | None = None, source: str = "", index: int = 0,
                 occupancy_tolerance: float = 1.05) -> StructureRecord:
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
    recs = read_cif_blocks(text, src, occupancy_tolerance)
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
             occupancy_tolerance: float = 1.05) -> Iterator[StructureRecord]:
    """Every structure of a file, whatever its kind (see :func:`sniff_kind`)."""
    kind = sniff_kind(path)
    if kind == "cif":
        yield from read_cif(path, occupancy_tolerance)
    elif kind == "chgcar":
        yield read_chgcar_structure(path)
    elif kind == "csv":
        try:
            df = read_csv_table(path)
        except Exception as exc:  # noqa: BLE001
            yield StructureRecord(str(path), "", None, f"unreadable CSV: {one_line(exc)}")
            return
        for i, (_, row) in enumerate(df.iterrows()):
            yield read_csv_row(row, csv_columns, str(path), i, occupancy_tolerance)
    else:
        yield read_poscar(path)


def min_distance_violation(structure, min_distance: float) -> str:
    """A one-line reason when two atoms are closer than ``min_distance`` Å, else ``""``.

    Two partially occupied sites whose occupancies add up to at most 1 may be close: that is a
    split (disordered) position, not a clash, and is accepted.
    """
    if min_distance <= 0 or len(structure) == 0:
        return ""
    centers, points, _images, dists = structure.get_neighbor_list(min_distance)
    if len(centers) == 0:
        return ""
    occ = np.array([sum(site.species.values()) for site in structure])
    for i, j, d in zip(centers, points, dists):
        if i == j and d < 1e-8:
            continue
        if i != j and occ[i] + occ[j] <= 1.0 + 1e-3:
            continue
        a, b = structure[int(i)], structure[int(j)]
        return one_line(f"atoms closer than {min_distance} A: {a.species_string} and {b.species_string} "
                        f"at {d:.3f} A")
    return ""
