"""Fast VASP CHGCAR reader and writer, and the header reader (structure and grid without the data).

A CHGCAR holds ρ·V_cell on the FFT grid, x fastest (``data[ix + iy*nx + iz*nx*ny]``). The reader parses
the header (lattice, species, counts, coordinates) line by line from the stream (:func:`scan_header`),
then each block with pandas' C parser on the exact text slice of the block, located from newline
positions, skipping the augmentation sections. Plain, ``.gz``, ``.bz2`` and ``.xz`` files are read (by
magic bytes, :mod:`rhosym.io.compress`). For ISPIN=2 the second block is the magnetization ρ↑−ρ↓ (a
non-collinear file's further blocks are ignored).

Limits (:mod:`rhosym.io.limits`), all checked before the grid is read: header lines of at most 64 KiB,
the counts line against ``ingest.max_input_sites``, the grid line against ``ingest.max_grid_points``, and
the decompressed bytes against ``ingest.max_bytes`` (streamed).

Units and channels: densities are returned in e/Å³ (block / cell volume), indexed ``[ix, iy, iz]``
along the lattice vectors a, b, c. ``n_electrons`` is the mean of block 1 (the valence count) and
``magnetic_moment`` the mean of block 2 (μB). Four channels are (total, magnetization, up, down) with
up = (total+mag)/2 and down = (total−mag)/2; for a non-spin file asked for four channels,
magnetization = 0 and up = down = total/2.

A truncated or corrupt file, or NaN/Inf in a grid, raises ``ValueError`` with a one-line reason
(:class:`~rhosym.io.limits.LimitExceeded` over a limit). The test fixtures made with
:func:`write_chgcar` live in ``tests/fixtures/`` (``make_fixtures.py``).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosym.io.compress import open_binary, sniff
from rhosym.io.limits import Limits, check, exceeded, limits_of
from rhosym.io.records import StructureRecord, check_counts, one_line, poscar_counts

HEADER_LINE_MAX = 1 << 16  # bytes of one header line

CHANNELS_4 = ("total", "magnetization", "up", "down")


@dataclass
class ChgcarData:
    lattice: np.ndarray  # (3, 3) rows a, b, c in Å
    species: list[str]  # one per site
    frac_coords: np.ndarray  # (n_sites, 3)
    shape: tuple[int, int, int]  # (nx, ny, nz)
    total: np.ndarray  # ρ·V block 1, (nx, ny, nz) float64
    mag: np.ndarray | None  # ρ·V block 2 (ISPIN=2), or None

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def spin(self) -> bool:
        return self.mag is not None

    @property
    def n_electrons(self) -> float:
        return float(self.total.mean())

    @property
    def magnetic_moment(self) -> float | None:
        return None if self.mag is None else float(self.mag.mean())

    def structure(self):
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.species, self.frac_coords)

    def channels(self, n: int = 1) -> np.ndarray:
        """Density channels in e/Å³, float32, shape (n, nx, ny, nz); ``n`` is 1 (total) or 4."""
        v = self.volume
        total = self.total / v
        if n == 1:
            return total[None].astype(np.float32)
        if n != 4:
            raise ValueError(f"channels must be 1 or 4, not {n}")
        mag = self.mag / v if self.mag is not None else np.zeros_like(total)
        return np.stack([total, mag, (total + mag) / 2, (total - mag) / 2]).astype(np.float32)


@dataclass
class ChgcarHead:
    """The POSCAR-like header of a CHGCAR: its lines before the blank line, and the grid."""

    lines: list[str]
    grid: tuple[int, int, int]


def scan_header(fh, limits: Limits) -> ChgcarHead:
    """Read a CHGCAR header from the binary stream ``fh`` line by line, leaving ``fh`` at the first data
    line. Bounded: lines of at most 64 KiB, the counts line checked against ``max_input_sites`` and the
    coordinate lines bounded by it, the grid line against ``max_grid_points``. Raises ``ValueError``."""
    lines: list[str] = []
    max_lines = 100_000

    def readline() -> str:
        raw = fh.readline(HEADER_LINE_MAX + 1)
        if len(raw) > HEADER_LINE_MAX:
            raise ValueError(f"CHGCAR header line longer than {HEADER_LINE_MAX} bytes: not a CHGCAR")
        return raw.decode("latin-1")

    counted = False
    while True:
        line = readline()
        if line == "":
            raise ValueError("empty file" if not lines else "CHGCAR ends inside its header")
        if not line.strip() and lines:
            break
        lines.append(line.rstrip("\r\n"))
        if not counted and len(lines) >= 6:
            found = check_counts(lines, limits, "CHGCAR")
            if found is not None:
                counted = True
                max_lines = found[0] + 4 + sum(found[1])
            elif len(lines) >= 7:
                raise ValueError("corrupt CHGCAR header: no line of atom counts")
        if len(lines) > max_lines:
            raise ValueError("CHGCAR header has no blank line after the coordinates")
    grid_line = readline()
    for _ in range(10):
        if grid_line.strip():
            break
        grid_line = readline()
    try:
        grid = tuple(int(t) for t in grid_line.split())
    except ValueError:
        grid = ()
    if len(grid) != 3 or min(grid) <= 0:
        raise ValueError(f"bad CHGCAR grid line {grid_line.strip()!r}")
    n = grid[0] * grid[1] * grid[2]
    check(n, "max_grid_points", limits, f"grid {grid[0]}x{grid[1]}x{grid[2]} of {n} points")
    return ChgcarHead(lines, grid)  # type: ignore[arg-type]


def read_chgcar_grid(path: str | Path, limits=None) -> tuple[int, int, int]:
    """The grid of a CHGCAR from its header alone (:func:`scan_header`, within ``limits``)."""
    limits = limits_of(limits)
    with open_binary(path, limits.max_bytes) as fh:
        return scan_header(fh, limits).grid


def _parse_block(buf: bytes, nl: np.ndarray, start: int, n: int, what: str) -> tuple[np.ndarray, int]:
    """Parse ``n`` floats starting at byte ``start`` (beginning of a line); return (values, end)."""
    first_end = nl[np.searchsorted(nl, start)] if np.searchsorted(nl, start) < len(nl) else len(buf)
    per_line = len(buf[start:first_end].split())
    if per_line == 0:
        raise ValueError(f"truncated file: {what} has no data")
    n_lines = -(-n // per_line)
    i = np.searchsorted(nl, start) + n_lines - 1
    end = int(nl[i]) if i < len(nl) else len(buf)
    values = _parse_floats(buf[start:end], per_line, what)[:n]
    if values.size != n:
        raise ValueError(f"truncated or corrupt {what}: {values.size} of {n} values")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} holds {int((~np.isfinite(values)).sum())} NaN/Inf values")
    return values, end + 1


def _parse_floats(text: bytes, per_line: int, what: str) -> np.ndarray:
    """Whitespace-separated floats, ``per_line`` to a line (the last may be short), with pandas' C parser."""
    import pandas as pd

    try:
        df = pd.read_csv(io.BytesIO(text), sep=r"\s+", header=None, names=range(per_line), dtype=np.float64,
                         engine="c", keep_default_na=False, na_values=["", "NaN", "nan", "NAN"])
    except (ValueError, pd.errors.ParserError) as e:
        raise ValueError(f"truncated or corrupt {what}: {' '.join(str(e).split())[:200]}") from e
    values = df.to_numpy().ravel()
    n_last = int(df.iloc[-1].notna().sum()) if len(df) else 0
    return values[: values.size - (per_line - n_last)] if len(df) else values


def read_chgcar(path: str | Path, limits=None) -> ChgcarData:
    """Read a CHGCAR (plain or compressed) within ``limits`` (default: those in force); raise
    ``ValueError`` with a one-line reason when broken or over a limit."""
    limits = limits_of(limits)
    with open_binary(path, limits.max_bytes) as fh:
        head = scan_header(fh, limits)
        buf = fh.read()  # the grid blocks and what follows them
    nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
    lines = head.lines
    try:
        scale = float(lines[1].split()[0])
        lattice = np.array([[float(x) for x in lines[i].split()[:3]] for i in (2, 3, 4)])
        li, counts = poscar_counts(lines)  # type: ignore[misc] - scan_header found them
        if li == 5:  # VASP 4: no species line
            names = lines[0].split()
            species_names = names[: len(counts)] if len(names) >= len(counts) else ["X"] * len(counts)
        else:
            species_names = [t.split("/")[0].split("_")[0] for t in lines[5].split()]
        li += 1
        if lines[li].strip()[:1] in ("s", "S"):
            li += 1
        cartesian = lines[li].strip()[:1] in ("c", "C", "k", "K")
        li += 1
        nat = sum(counts)
        coords = np.array([[float(x) for x in lines[li + k].split()[:3]] for k in range(nat)])
    except (IndexError, ValueError, TypeError) as e:
        raise ValueError(f"corrupt CHGCAR header: {e}") from e
    dims = head.grid
    if scale < 0:  # negative scale = target volume
        scale = (-scale / abs(np.linalg.det(lattice))) ** (1 / 3)
    lattice = lattice * scale
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise ValueError("degenerate lattice")
    if cartesian:
        coords = np.linalg.solve(lattice.T, (coords * scale).T).T
    species = [s for s, c in zip(species_names, counts) for _ in range(c)]
    n = dims[0] * dims[1] * dims[2]
    total, end = _parse_block(buf, nl, 0, n, "block 1")
    mag = None
    pat = re.compile(rb"^[ \t]*%d[ \t]+%d[ \t]+%d[ \t]*\r?$" % dims, re.M)
    m = pat.search(buf, end)
    if m:
        s2 = m.end() + 1
        mag, _ = _parse_block(buf, nl, s2, n, "block 2 (magnetization)")
    order = (dims[2], dims[1], dims[0])
    total = total.reshape(order).transpose(2, 1, 0)
    if mag is not None:
        mag = mag.reshape(order).transpose(2, 1, 0)
    return ChgcarData(lattice, species, coords, dims, total, mag)


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


def read_chgcar_header(path: str | Path, check_data: bool = True, limits=None) -> ChgcarHeader:
    """The structure and grid of a CHGCAR from its POSCAR-like header (:func:`scan_header`, within
    ``limits``), without parsing the grid.

    With ``check_data``, checks that the file holds the ``NGX*NGY*NGZ`` values its header declares.
    VASP writes fixed-width lines, so for plain files the line where the last value must be is read
    directly; for gzip files the uncompressed size in the gzip trailer must reach that line (and not pass
    ``max_bytes``); for bzip2/xz the values are counted (streamed, capped). Raises ``ValueError`` with a
    one-line reason.
    """
    from pymatgen.io.vasp import Poscar

    limits = limits_of(limits)
    p = str(path)
    mode = {"gz": "gz", "bz2": "stream", "xz": "stream"}.get(sniff(p), "plain")
    with open_binary(p, limits.max_bytes) as fh:
        def readline() -> str:
            raw = fh.readline(HEADER_LINE_MAX + 1)
            if len(raw) > HEADER_LINE_MAX:
                raise ValueError(f"CHGCAR data line longer than {HEADER_LINE_MAX} bytes")
            return raw.decode("latin-1")

        head = scan_header(fh, limits)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Poscar.from_str("\n".join(head.lines) + "\n", read_velocities=False).structure
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"unparsable CHGCAR header: {one_line(exc)}") from exc
        grid = head.grid
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
        if size > limits.max_bytes:  # a gzip trailer's size can only understate the content
            raise exceeded(f"decompresses to {size} bytes", "max_bytes", limits.max_bytes)
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


def read_chgcar_structure(path: str | Path, check_data: bool = True, limits=None) -> StructureRecord:
    """The structure of a CHGCAR's header as a record (``extra["grid"]``), or the reason it is unusable."""
    try:
        h = read_chgcar_header(path, check_data, limits)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        return StructureRecord(str(path), "", None, one_line(exc))
    return StructureRecord(str(path), "", h.structure, "", {"grid": list(h.grid)})


def _format_block(values: np.ndarray) -> str:
    flat = np.asarray(values, dtype=np.float64).transpose(2, 1, 0).ravel()  # x fastest
    s = [f" {v:.11E}" for v in flat]
    lines = ["".join(s[i:i + 5]) for i in range(0, len(s), 5)]
    return "\n".join(lines) + "\n"


def write_chgcar(path: str | Path, structure, total: np.ndarray, mag: np.ndarray | None = None,
                 comment: str = "rhosym") -> Path:
    """Write a CHGCAR (gzip when ``path`` ends in .gz): ``total`` and ``mag`` in e/Å³, shape (nx, ny, nz).

    The file holds ρ·V like VASP; ``mag`` (ρ↑−ρ↓) makes it an ISPIN=2 file.
    """
    path = Path(path)
    lat = structure.lattice.matrix
    v = structure.volume
    species: list[str] = []
    counts: list[int] = []
    for site in structure:
        sym = site.specie.symbol
        if species and species[-1] == sym:
            counts[-1] += 1
        else:
            species.append(sym)
            counts.append(1)
    out = [comment, "   1.00000000000000"]
    out += ["  " + " ".join(f"{x:12.6f}" for x in row) for row in lat]
    out += ["   " + "   ".join(species), "   " + "   ".join(str(c) for c in counts), "Direct"]
    out += ["  " + " ".join(f"{x:10.6f}" for x in site.frac_coords) for site in structure]
    dims = "   ".join(str(d) for d in total.shape)
    text = "\n".join(out) + "\n \n   " + dims + "\n" + _format_block(total * v)
    if mag is not None:
        text += " " + " ".join(["0.000000000000E+00"] * len(structure)) + "\n"
        text += "   " + dims + "\n" + _format_block(mag * v)
    data = text.encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path
