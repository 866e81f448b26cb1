"""Measured densities on a grid: CCP4/MRC maps (and CHGCAR-like files), on the same footing as the
computed dense grids (point ``[i, j, k]`` at fractional ``(i/nx, j/ny, k/nz)``, lattice rows a, b, c).

A CCP4/MRC map (``MAP`` at byte 208; plain, gzip, bzip2 or xz, by magic bytes) is read with gemmi as a
**P1 grid over its cell**: the space group of its header (ISPG, word 23) is reported
(:attr:`MapData.space_group`), never used to expand the map, so a map must cover the whole unit cell
(sampling MX, MY, MZ); one that holds only an asymmetric unit is refused. The grid is reordered to axes
a, b, c whatever MAPC/MAPR/MAPS; values in map units; the cell from the header, oriented like gemmi/PDB
(a along x, b in the xy plane). Anything else is read as a CHGCAR (:func:`rhosym.io.chgcar.read_chgcar`):
ρ·V divided by the cell volume, e/Å³, the file's lattice, no space group.

Limits (:mod:`rhosym.io.limits`), before gemmi reads the data: the grid of the header (the larger of
NC·NR·NS and MX·MY·MZ) against ``ingest.max_grid_points``; the decompressed bytes against
``ingest.max_bytes`` (a compressed map is streamed, capped, to a temporary file for gemmi).
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosym.io.compress import open_binary, sniff
from rhosym.io.limits import LimitExceeded, Limits, check, limits_of

HEADER_BYTES = 1024


@dataclass
class MapData:
    """A measured density: ``rho`` (nx, ny, nz) float32, ``lattice`` (3, 3) rows a, b, c in Å, and the
    space group number the map's header declares (reported only; None for a CHGCAR or ISPG 0)."""

    rho: np.ndarray
    lattice: np.ndarray
    space_group: int | None
    kind: str  # "ccp4" | "chgcar"


def _header_words(head: bytes) -> tuple[str, tuple[int, ...]]:
    """``(byte order, the first 56 int32 words)`` of a CCP4/MRC header (machine stamp at byte 212)."""
    order = ">" if head[212:213] == b"\x11" else "<"
    return order, struct.unpack(f"{order}56i", head[:224])


def check_map_header(head: bytes, limits: Limits) -> int | None:
    """Refuse a map whose header grid is over ``max_grid_points``; return the header's space group."""
    _order, w = _header_words(head)
    nx, ny, nz, mx, my, mz = w[0], w[1], w[2], w[7], w[8], w[9]
    dims = max((nx, ny, nz), (mx, my, mz), key=lambda d: d[0] * d[1] * d[2])
    n = dims[0] * dims[1] * dims[2]
    check(n, "max_grid_points", limits, f"map grid {dims[0]}x{dims[1]}x{dims[2]} of {n} points")
    return w[22] if 1 <= w[22] <= 230 else None


def _read_ccp4(path: Path, compressed: bool, limits: Limits) -> MapData:
    import gemmi

    tmp = None
    try:
        if compressed:  # gemmi decompresses by file name only, and without a cap
            fd, tmp = tempfile.mkstemp(suffix=".ccp4")
            with os.fdopen(fd, "wb") as out, open_binary(path, limits.max_bytes) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        m = gemmi.read_ccp4_map(tmp or str(path))
        space_group = m.header_i32(23)
        m.grid.spacegroup = gemmi.find_spacegroup_by_name("P 1")  # a P1 grid over the cell: not expanded
        m.setup(float("nan"), gemmi.MapSetup.Full)  # the full unit cell, axes x, y, z
    finally:
        if tmp:
            os.unlink(tmp)
    rho = np.array(m.grid, dtype=np.float32, copy=True)
    if rho.ndim != 3 or rho.size == 0:
        raise ValueError(f"map grid has shape {rho.shape}")
    nan = int(np.isnan(rho).sum())
    if nan:
        raise ValueError(f"map does not cover the unit cell ({nan} of {rho.size} points missing; the "
                         f"header's space group {space_group} is not used to fill it)")
    if not np.isfinite(rho).all():
        raise ValueError("map holds Inf values")
    cell = m.grid.unit_cell
    if cell.volume <= 0:
        raise ValueError(f"map cell is degenerate: {cell}")
    lattice = np.array(cell.orth.mat, dtype=np.float64).T  # rows a, b, c; a along x (CCP4/PDB convention)
    return MapData(rho, lattice, space_group if 1 <= space_group <= 230 else None, "ccp4")


def read_map(path, limits=None) -> MapData:
    """A measured density on a grid (see the module's docstring), within ``limits`` (default: those in
    force). Raises ``ValueError`` with a one-line reason when unreadable or over a limit."""
    path = Path(path)
    limits = limits_of(limits)
    try:
        with open_binary(path, limits.max_bytes) as fh:
            head = fh.read(HEADER_BYTES)
        if len(head) >= 224 and head[208:212] == b"MAP ":
            check_map_header(head, limits)
            return _read_ccp4(path, bool(sniff(path)), limits)
        from rhosym.io.chgcar import read_chgcar

        data = read_chgcar(path, limits)
        return MapData((data.total / data.volume).astype(np.float32), np.asarray(data.lattice, dtype=np.float64),
                       None, "chgcar")
    except LimitExceeded as e:
        raise LimitExceeded(f"cannot read map {path.name}: {e}") from e
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, struct.error) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"cannot read map {path.name}: {reason}") from e
