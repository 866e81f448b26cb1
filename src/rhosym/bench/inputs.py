"""Speed of the baseline inputs on MP-20: seconds per structure for XRD patterns and each graph kind.

``rhosym bench inputs [--n 100] [--csv PATH]`` or ``python -m rhosym.bench.inputs``. Reads the first
``n`` rows of the MP-20 CSV (``cif`` column, P1 primitive cells), parses them with pymatgen (timed
separately) and times :func:`rhosym.xrd.simulate` and :func:`rhosym.graphs.build_graph` (cgcnn, cogn)
one structure at a time, single-threaded. Prints a small table and returns 0.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]  # the checkout (src/rhosym/bench/inputs.py)
# ../shared/data beside the checkout (as config.yaml's data_root and tests/conftest.py), else shared/data in it
_SHARED = next((p for p in (_ROOT.parent / "shared" / "data", _ROOT / "shared" / "data") if p.is_dir()),
               _ROOT.parent / "shared" / "data")
DEFAULT_CSV = _SHARED / "mp20_public" / "mp20_public.csv"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rhosym bench inputs", description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="structures (first rows of the CSV)")
    p.add_argument("--csv", default=str(DEFAULT_CSV), help="CDVAE-style CSV with a 'cif' column")
    return p


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import pandas as pd
    from pymatgen.core import Structure

    from rhosym.graphs import build_graph
    from rhosym.xrd import XRDSettings, simulate

    args = _parser().parse_args(argv)
    if not Path(args.csv).is_file():
        print(f"no CSV at {args.csv}")
        return 1
    df = pd.read_csv(args.csv, nrows=args.n)
    t0 = time.perf_counter()
    structures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cif in df["cif"]:
            structures.append(Structure.from_str(cif, fmt="cif"))
    t_parse = time.perf_counter() - t0
    settings = XRDSettings()
    # warm-up (imports, table caches) outside the timings
    simulate(structures[0], settings)
    build_graph(structures[0], "cgcnn")
    results = {"parse CIF": (t_parse, len(structures), 0)}
    jobs = {
        "xrd": lambda s: simulate(s, settings),
        "graph cgcnn": lambda s: build_graph(s, "cgcnn"),
        "graph cogn": lambda s: build_graph(s, "cogn"),
    }
    sizes = {"graph cgcnn": [], "graph cogn": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in jobs.items():
            fails = 0
            t0 = time.perf_counter()
            for s in structures:
                try:
                    out = fn(s)
                except Exception:  # noqa: BLE001 - counted
                    fails += 1
                    continue
                if name in sizes:
                    sizes[name].append((len(out["z"]), len(out["edge_dist"])))
            results[name] = (time.perf_counter() - t0, len(structures), fails)
    n_sites = [len(s) for s in structures]
    print(f"MP-20 {args.csv}: {len(structures)} structures, {np.mean(n_sites):.1f} sites on average "
          f"(max {max(n_sites)})")
    print(f"{'step':<14}{'s/structure':>14}{'total s':>10}{'failed':>8}")
    for name, (t, n, fails) in results.items():
        print(f"{name:<14}{t / max(n, 1):>14.5f}{t:>10.2f}{fails:>8}")
    for name, sz in sizes.items():
        if sz:
            a = np.asarray(sz)
            print(f"{name}: {a[:, 0].mean():.1f} nodes, {a[:, 1].mean():.1f} edges per structure on average")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
