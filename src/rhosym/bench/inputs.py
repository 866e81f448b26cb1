"""Preprocessing budgets on MP-20: ingest and labels, crystal graphs and powder XRD per structure.

``rhosym bench inputs [--n 200] [--csv PATH] [--repeats 2]`` or ``python -m rhosym.bench.inputs``.
Reads the first ``n`` rows of the MP-20 CSV (``cif`` column: P1 primitive cells) and runs each stage as
its Snakemake job runs it, one structure at a time, single-threaded:

* **ingest + labels**: :func:`rhosym.io.structures.read_csv_row` (the CIF string, gemmi hot path) and
  :func:`rhosym.ingest.process_record` (checks, spglib labels, the ``conventional`` density cell, its
  JSON); the same with pymatgen's CIF parser (``read_cif_blocks_pymatgen``) as the reference;
* **graphs** (cgcnn, coGN) and **XRD** (10,001-point profile): :func:`rhosym.graphs.build_graph` and
  :func:`rhosym.xrd.simulate` on the ingest's cells, from the ``structure`` JSON as the shard jobs do
  (the graph job passes the JSON text to ``build_graph``, which reads it into arrays; XRD decodes it),
  and pymatgen's ``XRDCalculator("CuKa1").get_pattern`` (its peak list only, no profile) on the same
  cells for the XRD ratio (and on the cells as read, MP-20's P1 primitive cells); ``spglib search``: the
  one ``spglib.get_symmetry_dataset`` call each graph needs, alone, on the same cells (its floor).

Times are CPU seconds of this process (``time.process_time``, the best of ``--repeats`` passes over the
structures): what a core spends, unaffected by other jobs on a shared machine; wall seconds are printed
beside them. Each stage is checked against its budget (:data:`BUDGETS`) and printed as a ratio with
PASS or FAIL, with the core-hours 200,000 structures would take. Returns 0 (1 without the CSV); the
budgets are reported, not enforced (``--strict``: exit 2 when one fails).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]  # the checkout (src/rhosym/bench/inputs.py)
# ../shared/data beside the checkout (as config.yaml's data_root and tests/conftest.py), else shared/data in it
_SHARED = next((p for p in (_ROOT.parent / "shared" / "data", _ROOT / "shared" / "data") if p.is_dir()),
               _ROOT.parent / "shared" / "data")
DEFAULT_CSV = _SHARED / "mp20_public" / "mp20_public.csv"


# Budgets, per structure: (kind, value). "max_ms": CPU ms at most; "min_ratio": pymatgen's time over ours.
BUDGETS = {
    "ingest + labels": ("max_ms", 10.0),
    "graph cgcnn": ("max_ms", 5.0),
    "graph cogn": ("max_ms", 5.0),
    "xrd": ("min_ratio", 2.0),
}
SCALE = 200_000  # structures, for the core-hour estimates


def machine() -> str:
    """One line: CPU model, cores, load average (the machine a number was measured on)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{model}, {os.cpu_count()} cores, load average {load}"


def timed(fn, items, repeats: int = 1) -> tuple[float, float, list]:
    """``(cpu s, wall s, results)`` of ``fn`` over ``items`` (the pass with the least CPU time of
    ``repeats``); an item whose call raises gives ``None``. pymatgen's cache of spglib results is cleared
    before each pass, so no pass reuses a search of an earlier one (within a structure it may, as in the
    pipeline)."""
    from pymatgen.symmetry.analyzer import _get_symmetry_dataset

    best = None
    for _ in range(max(1, repeats)):
        _get_symmetry_dataset.cache_clear()
        out = []
        c0, w0 = time.process_time(), time.perf_counter()
        for x in items:
            try:
                out.append(fn(x))
            except Exception:  # noqa: BLE001 - counted as failed by the caller
                out.append(None)
        c, w = time.process_time() - c0, time.perf_counter() - w0
        if best is None or c < best[0]:
            best = (c, w, out)
    return best


def verdict(name: str, ms: float, ratio: float | None = None) -> tuple[str, str]:
    """``(budget text, PASS/FAIL/-)`` of a stage (:data:`BUDGETS`)."""
    kind, value = BUDGETS.get(name, (None, None))
    if kind == "max_ms":
        return f"<= {value:g} ms", "PASS" if ms <= value else "FAIL"
    if kind == "min_ratio" and ratio is not None:
        return f">= {value:g}x pymatgen", "PASS" if ratio >= value else "FAIL"
    return "", "-"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rhosym bench inputs", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="structures (first rows of the CSV; default 200)")
    p.add_argument("--csv", default=str(DEFAULT_CSV), help="CDVAE-style CSV with a 'cif' column")
    p.add_argument("--repeats", type=int, default=2, help="passes per stage, the fastest counts (default 2)")
    p.add_argument("--strict", action="store_true", help="exit 2 when a budget fails")
    return p


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd

    from rhosym.graphs import build_graph
    from rhosym.ingest import process_record, structure_from_json
    from rhosym.io import structures as io_structures
    from rhosym.settings import IngestSettings, LabelsSettings
    from rhosym.xrd import XRDSettings, simulate

    args = _parser().parse_args(argv)
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, not {args.n}")
    if not Path(args.csv).is_file():
        print(f"no CSV at {args.csv}")
        return 1
    warnings.simplefilter("ignore")
    rows = [row for _, row in pd.read_csv(args.csv, nrows=args.n).iterrows()]
    labels, ingest = LabelsSettings(), IngestSettings()

    def ingest_row(i):
        rec = io_structures.read_csv_row(rows[i], None, args.csv, i)
        return process_record(rec, rec.extra["id"], "cdvae_csv", "00000", "conventional", labels, ingest)

    stages: dict[str, tuple[float, float, int]] = {}  # name -> (cpu s, wall s, failures)
    idx = list(range(len(rows)))
    ingest_row(0)  # warm-up (imports, caches) outside the timings
    c, w, out = timed(ingest_row, idx, args.repeats)
    ok_rows = [r for r in out if r is not None and r["status"] == "ok"]
    stages["ingest + labels"] = (c, w, len(rows) - len(ok_rows))
    pmg = getattr(io_structures, "read_cif_blocks_pymatgen", None)
    if pmg is not None:  # the reference: the same rows with pymatgen's CIF parser
        fast = io_structures.read_cif_blocks
        io_structures.read_cif_blocks = pmg
        try:
            c, w, out = timed(ingest_row, idx, args.repeats)
        finally:
            io_structures.read_cif_blocks = fast
        stages["ingest (pymatgen CIF)"] = (c, w, sum(r is None or r["status"] != "ok" for r in out))
    c, w, _ = timed(lambda i: io_structures.read_csv_row(rows[i], None, args.csv, i), idx, args.repeats)
    stages["  parse CIF"] = (c, w, 0)
    if pmg is not None:
        c, w, _ = timed(lambda i: pmg(rows[i]["cif"], ""), idx, args.repeats)
        stages["  parse CIF (pymatgen)"] = (c, w, 0)

    texts = [r["structure"] for r in ok_rows]
    cells = [structure_from_json(t) for t in texts]
    settings = XRDSettings()
    simulate(cells[0], settings)
    build_graph(cells[0], "cgcnn")
    sizes = {}
    for kind in ("cgcnn", "cogn"):  # the JSON text in, as run_graphs_shard passes it
        c, w, out = timed(lambda t, k=kind: build_graph(t, k), texts, args.repeats)
        stages[f"graph {kind}"] = (c, w, sum(g is None for g in out))
        sizes[kind] = [(len(g["z"]), len(g["edge_dist"])) for g in out if g is not None]
    import spglib

    from rhosym.settings import GraphSettings

    symprec = GraphSettings().symprec
    spg_cells = [(s.lattice.matrix, s.frac_coords, [sp.Z for sp in s.species]) for s in cells if s.is_ordered]
    c, w, _ = timed(lambda x: spglib.get_symmetry_dataset(x, symprec=symprec, angle_tolerance=5.0), spg_cells,
                    args.repeats)
    stages["  spglib search"] = (c, w, 0)  # the one symmetry search each graph needs: its floor
    c, w, out = timed(lambda t: simulate(structure_from_json(t), settings), texts, args.repeats)
    stages["xrd"] = (c, w, sum(x is None for x in out))
    c_ours, _w, _ = timed(lambda s: simulate(s, settings), cells, args.repeats)
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    calc = XRDCalculator("CuKa1")
    lo, hi = settings.two_theta_min, settings.two_theta_max
    c_pmg, _w, _ = timed(lambda s: calc.get_pattern(s, two_theta_range=(lo, hi)), cells, args.repeats)
    ratio = c_pmg / max(c_ours, 1e-12)
    read = [r.structure for r in (io_structures.read_csv_row(rows[i], None, args.csv, i) for i in idx) if r.ok]
    c_ours_p1, _w, _ = timed(lambda s: simulate(s, settings), read, args.repeats)
    c_pmg_p1, _w, _ = timed(lambda s: calc.get_pattern(s, two_theta_range=(lo, hi)), read, args.repeats)
    ratio_p1 = c_pmg_p1 / max(c_ours_p1, 1e-12)

    n_sites = [len(s) for s in cells]
    print(f"machine: {machine()}; CPU only, single-threaded stages")
    print(f"MP-20 {args.csv}: first {len(rows)} rows, {len(cells)} ingested ok; conventional cells of "
          f"{np.mean(n_sites):.1f} sites on average (max {max(n_sites)}); times: CPU (best of {args.repeats})")
    head = f"{'stage':<24}{'CPU ms':>9}{'wall ms':>9}{'failed':>8}  {'budget':<20}{'ratio':>8}  result  " \
           f"core-h/{SCALE // 1000}k"
    print(head)
    failed = False
    for name, (c, w, fails) in stages.items():
        n = len(rows) if name.startswith(("ingest", "  parse")) else len(texts)
        ms, wms = 1e3 * c / max(n, 1), 1e3 * w / max(n, 1)
        budget, result = verdict(name, ms, ratio if name == "xrd" else None)
        kind, value = BUDGETS.get(name, (None, None))
        r = f"{ratio:.2f}x" if name == "xrd" else f"{ms / value:.2f}" if kind == "max_ms" else ""
        failed |= result == "FAIL"
        print(f"{name:<24}{ms:>9.2f}{wms:>9.2f}{fails:>8}  {budget:<20}{r:>8}  {result:<6}  "
              f"{ms / 1e3 * SCALE / 3600:>8.2f}")
    print(f"xrd: rhosym {1e3 * c_ours / len(cells):.2f} ms (10,001-point profile, Ka1 + Ka2) vs pymatgen "
          f"{1e3 * c_pmg / len(cells):.2f} ms (peak list only) per structure: {ratio:.2f}x; on the cells as "
          f"read (MP-20's P1 primitive cells): {1e3 * c_ours_p1 / len(read):.2f} vs {1e3 * c_pmg_p1 / len(read):.2f} "
          f"ms, {ratio_p1:.2f}x ({verdict('xrd', 0.0, ratio_p1)[1]})")
    for kind, sz in sizes.items():
        if sz:
            a = np.asarray(sz)
            print(f"graph {kind}: {a[:, 0].mean():.1f} nodes, {a[:, 1].mean():.1f} edges per structure on average")
    print("ratio: CPU ms over the budget (<= 1 passes), or pymatgen's time over ours (>= the budget passes); "
          f"core-h: CPU hours for {SCALE:,} structures at this rate")
    return 2 if failed and args.strict else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
