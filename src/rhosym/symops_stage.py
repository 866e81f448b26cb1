"""The symops stage (rule ``symops_shard``): per ingest shard, each structure's density in the
conventional cell of its lattice, its operation scores and the classical finder's answer (rhosym.symops).

Store ``symops/shard-NNNNN.zarr`` (one row per structure, in ``ids`` order):

* ``scores`` (n, 79) float32: the agreement of each canonical operation and centring slot
  (``rhosym.symops.SLOT_NAMES``; NaN where the lattice's holohedry has no such operation), ``mask`` (n, 79)
  bool (tested), ``translations`` (n, 79, 3) float32 (the refined translation of each slot);
* ``grid`` (n, N, N, N) float32: the band-limited density on the N³ fractional grid of the conventional
  cell (what ``periodic_cnn`` reads), ``params`` (n, 6) float64: that cell's a, b, c, α, β, γ;
* ``found`` (n,) int16: the classical finder's space group (``classical`` reads it), ``threshold`` (n,)
  float32: the ladder threshold used, ``consistent`` (n,) bool.

Attributes: ``ids``, ``rejected`` (id → one-line reason), ``counts``, ``symops`` (the settings), ``kind``.
Structure-derived densities are computed exactly as structure factors (``density.b_iso``, ``blur``);
charge densities (``mp_chgcar``) are read from the CHGCAR or MP JSON and resampled by Fourier
interpolation. No symmetry finder looks at the atoms: the cell comes from the lattice metric alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("rhosym.symops_stage")


def lattice_params(lattice: np.ndarray) -> np.ndarray:
    """a, b, c (Å), α, β, γ (degrees) of lattice rows."""
    m = np.asarray(lattice, dtype=np.float64)
    a, b, c = np.linalg.norm(m, axis=1)

    def angle(u, v):
        return float(np.degrees(np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))))

    return np.array([a, b, c, angle(m[1], m[2]), angle(m[0], m[2]), angle(m[0], m[1])])


def record(frame, settings) -> dict:
    """The per-structure arrays of the store for one :class:`rhosym.symops.DensityFrame`."""
    from rhosym.symops import find_space_group, operation_scores

    sc = operation_scores(frame)
    res = find_space_group(frame, ladder=tuple(settings.ladder), symprec=settings.symprec, scores=sc,
                           trivial_floor=settings.trivial_floor)
    return {"scores": sc.scores.astype(np.float32), "mask": sc.mask.astype(bool),
            "translations": np.nan_to_num(sc.translations, nan=0.0).astype(np.float32),
            "grid": np.asarray(frame.grid, dtype=np.float32), "params": lattice_params(frame.lattice),
            "found": np.int16(res.space_group), "threshold": np.float32(res.threshold),
            "consistent": bool(res.consistent),
            # not stored: what rhosym predict reports beside the answer
            "report": {"space_group": int(res.space_group), "symbol": res.symbol, "threshold": float(res.threshold),
                       "consistent": bool(res.consistent), "bravais": res.bravais, "centrings": list(res.centrings),
                       "operations": [f"{o['seitz']} ({o['score']:.3f})" for o in res.operations]}}


def of_structure(structure, settings, density=None) -> dict:
    """:func:`record` of a structure's all-electron density (``density``: rhosym.settings.DensitySettings)."""
    from rhosym.symops import frame_from_structure

    frame = frame_from_structure(structure, n=settings.n, symprec=settings.lattice_symprec,
                                 b_iso=None if density is None else density.b_iso,
                                 blur=None if density is None else density.blur)
    return record(frame, settings)


def of_grid(rho: np.ndarray, lattice: np.ndarray, settings) -> dict:
    """:func:`record` of a dense periodic density (nx, ny, nz) over ``lattice`` (rows, Å)."""
    from rhosym.symops import frame_from_grid

    return record(frame_from_grid(np.asarray(rho, dtype=np.float64), lattice, n=settings.n,
                                  symprec=settings.lattice_symprec), settings)


def run_symops_shard(ingest_path: str | Path, out_path: str | Path, settings, density) -> dict:
    """The symops store of one ingest shard (module docstring); returns the counts."""
    from rhosym.density import density_of_row
    from rhosym.ingest import read_ingest, structure_from_json
    from rhosym.logs import progress
    from rhosym.store import write_store

    rows = read_ingest(ingest_path, ["id", "kind", "structure", "chgcar_path"])
    ids: list[str] = []
    rejected: dict[str, str] = {}
    recs: list[dict] = []
    for row in progress(rows, desc="symops"):
        sid = str(row["id"])
        try:
            if row["kind"] == "mp_chgcar":
                rho, attrs = density_of_row(row, density.model_copy(update={"channels": 1}))
                rec = of_grid(rho[0], np.asarray(attrs["cell"]), settings)
            else:
                rec = of_structure(structure_from_json(row["structure"]), settings, density)
        except (ValueError, ArithmeticError) as exc:
            rejected[sid] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            continue
        ids.append(sid)
        recs.append(rec)
    n = int(settings.n)
    arrays = {k: (np.stack([r[k] for r in recs]) if recs else np.zeros((0, *shape), dtype))
              for k, shape, dtype in (("scores", (79,), np.float32), ("mask", (79,), bool),
                                      ("translations", (79, 3), np.float32), ("grid", (n, n, n), np.float32),
                                      ("params", (6,), np.float64), ("found", (), np.int16),
                                      ("threshold", (), np.float32), ("consistent", (), bool))}
    counts = {"ok": len(ids), "rejected": len(rejected)}
    found = arrays["found"]
    log.info("symops %s: %d ok, %d rejected; classical finder answered %d, consistent %d", out_path, counts["ok"],
             counts["rejected"], int((found > 0).sum()), int(arrays["consistent"].sum()))
    write_store(out_path, arrays, {"ids": ids, "rejected": rejected, "counts": counts, "kind": "symops",
                                   "symops": settings.model_dump(), "density": density.model_dump()})
    return counts
