"""Fast VASP CHGCAR reader and writer.

A CHGCAR holds ρ·V_cell on the FFT grid, x fastest (``data[ix + iy*nx + iz*nx*ny]``). The reader parses
the header (lattice, species, counts, coordinates), then each block with numpy
(``np.fromstring`` on the exact text slice of the block, located from newline positions), skipping the
augmentation sections. Plain, ``.gz``, ``.bz2`` and ``.xz`` files are read (by magic bytes). For
ISPIN=2 the second block is the magnetization ρ↑−ρ↓ (a non-collinear file's further blocks are
ignored).

Units and channels: densities are returned in e/Å³ (block / cell volume), indexed ``[ix, iy, iz]``
along the lattice vectors a, b, c. ``n_electrons`` is the mean of block 1 (the valence count) and
``magnetic_moment`` the mean of block 2 (μB). Four channels are (total, magnetization, up, down) with
up = (total+mag)/2 and down = (total−mag)/2; for a non-spin file asked for four channels,
magnetization = 0 and up = down = total/2.

A truncated or corrupt file, or NaN/Inf in a grid, raises ``ValueError`` with a one-line reason.
The test fixtures made with :func:`write_chgcar` live in ``tests/fixtures/`` (``make_fixtures.py``).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def _read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(6)
    try:
        if magic[:2] == b"\x1f\x8b":
            return gzip.decompress(path.read_bytes())
        if magic[:3] == b"BZh":
            return bz2.decompress(path.read_bytes())
        if magic[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(path.read_bytes())
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise ValueError(f"corrupt compressed file: {e}") from e
    return path.read_bytes()


def _is_ints(tokens: list[str]) -> bool:
    return bool(tokens) and all(re.fullmatch(r"\d+", t) for t in tokens)


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
    import io

    import pandas as pd

    try:
        df = pd.read_csv(io.BytesIO(text), sep=r"\s+", header=None, names=range(per_line), dtype=np.float64,
                         engine="c", keep_default_na=False, na_values=["", "NaN", "nan", "NAN"])
    except (ValueError, pd.errors.ParserError) as e:
        raise ValueError(f"truncated or corrupt {what}: {' '.join(str(e).split())[:200]}") from e
    values = df.to_numpy().ravel()
    n_last = int(df.iloc[-1].notna().sum()) if len(df) else 0
    return values[: values.size - (per_line - n_last)] if len(df) else values


def read_chgcar(path: str | Path) -> ChgcarData:
    """Read a CHGCAR (plain or compressed); raise ``ValueError`` with a one-line reason when broken."""
    buf = _read_bytes(path)
    if not buf.strip():
        raise ValueError("empty file")
    nl = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
    # The header is short: read it line by line.
    head_end = int(nl[min(len(nl) - 1, 5000)]) if len(nl) else len(buf)
    lines = buf[:head_end].decode("ascii", "replace").split("\n")
    try:
        scale = float(lines[1].split()[0])
        lattice = np.array([[float(x) for x in lines[i].split()[:3]] for i in (2, 3, 4)])
        if _is_ints(lines[5].split()):  # VASP 4: no species line
            counts = [int(t) for t in lines[5].split()]
            names = lines[0].split()
            species_names = names[: len(counts)] if len(names) >= len(counts) else ["X"] * len(counts)
            li = 6
        else:
            species_names = [t.split("/")[0].split("_")[0] for t in lines[5].split()]
            counts = [int(t) for t in lines[6].split()]
            li = 7
        if lines[li].strip()[:1] in ("s", "S"):
            li += 1
        cartesian = lines[li].strip()[:1] in ("c", "C", "k", "K")
        li += 1
        nat = sum(counts)
        coords = np.array([[float(x) for x in lines[li + k].split()[:3]] for k in range(nat)])
        li += nat
        while not lines[li].strip():
            li += 1
        dims = tuple(int(t) for t in lines[li].split()[:3])
    except (IndexError, ValueError) as e:
        raise ValueError(f"corrupt CHGCAR header: {e}") from e
    if len(dims) != 3 or min(dims) <= 0:
        raise ValueError(f"corrupt CHGCAR header: grid {dims}")
    if scale < 0:  # negative scale = target volume
        scale = (-scale / abs(np.linalg.det(lattice))) ** (1 / 3)
    lattice = lattice * scale
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise ValueError("degenerate lattice")
    if cartesian:
        coords = np.linalg.solve(lattice.T, (coords * scale).T).T
    species = [s for s, c in zip(species_names, counts) for _ in range(c)]
    # Byte offset of the line after the grid-size line.
    start = int(nl[li]) + 1 if li < len(nl) else len(buf)
    n = dims[0] * dims[1] * dims[2]
    total, end = _parse_block(buf, nl, start, n, "block 1")
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
