"""``rhosym bench cctbx-compare STEP``: rhosym.symops's space-group finder against cctbx.symmetry_search.

Both on the same structures: the classical finder of :mod:`rhosym.symops` and ``cctbx.symmetry_search``
(Palatinus & van der Lee 2008, the same method in cctbx), for accuracy against spglib and CPU time.

cctbx is not a dependency of rhosym (optional extra ``cctbx``, a large compiled package kept out of the
project environment), so the comparison runs in two Python environments that exchange files; this module imports cctbx only inside
:func:`run_cctbx` and needs nothing but the standard library at import time. Steps:

``prepare`` (project venv)
    draws a seeded random subset of a CDVAE-format CSV (``material_id``, ``cif``), labels each row with
    spglib at ``--symprec`` (``SpacegroupAnalyzer``, as the project's labels) and writes a JSON list:
    id, label, cell parameters, element symbols, fractional coordinates, and the number of spglib
    operations in the input cell (for the supergroup / subgroup classification below).
``cctbx`` (a Python with ``cctbx-base``; ``PYTHONPATH=src``)
    per structure: ``xray.structure`` in P1 from the JSON, P1 structure factors
    ``xs.structure_factors(d_min=--d-min).f_calc()`` and
    ``symmetry_search.structure_factor_symmetry(f_in_p1)``, every atom with ``--b-iso`` (0.5 Å², the B of
    rhosym's densities; 0 gives point atoms) (the call of cctbx's own
    ``iotbx/command_line/symmetry_search.py`` and ``cctbx/symmetry_search/tests/tst_from_map.py``); the
    answer is ``space_group_info.type().number()``, or the exception's one-line message. Timed (CPU
    ``time.process_time`` and wall, best wall of ``--repeat`` runs) from the structure to the answer,
    structure factors included. Writes a CSV.
``rhosym`` (project venv)
    :func:`rhosym.symops.bench` on the same structures (density + scores + finder per structure, one BLAS
    thread, best of ``--repeat``), plus one untimed :func:`~rhosym.symops.find_space_group` per structure
    for the order of the group it found. Writes a CSV.
``merge`` (either venv)
    joins the two CSVs on ``id``, classifies each answer against the label and prints the summary:

    * ``right``: same space-group number as spglib;
    * ``supergroup``: more operations per Å³ than spglib's group and spglib's type is reached from the
      answer's type along chains of maximal subgroups (pymatgen's ``maximal_subgroups`` table, t- and
      k-subgroups: a relation of types, not a check of the operations themselves);
    * ``subgroup``: the converse; ``other``: anything else; ``raised``: an exception, no answer.

Example (from the repository root; ``docs/benchmarks/symops.md`` has the commands of the published run)::

    python -m rhosym.bench.cctbx_compare prepare --csv ../shared/data/mp20_public/mp20_public.csv \\
        --n 100 --seed 0 --out /tmp/cc/structures.json
    PYTHONPATH=src /tmp/cctbx-venv/bin/python -m rhosym.bench.cctbx_compare cctbx \\
        --structures /tmp/cc/structures.json --out /tmp/cc/cctbx.csv
    python -m rhosym.bench.cctbx_compare rhosym --structures /tmp/cc/structures.json --out /tmp/cc/rhosym.csv
    python -m rhosym.bench.cctbx_compare merge --cctbx /tmp/cc/cctbx.csv --rhosym /tmp/cc/rhosym.csv \\
        --out docs/benchmarks/symops-cctbx.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

CLASSES = ("right", "supergroup", "subgroup", "other", "raised")
CENTRING_ORDER = {"A": 2, "B": 2, "C": 2, "I": 2, "F": 4, "R_obv": 3, "R_rev": 3}


# --------------------------------------------------------------------------------------------- prepare


def prepare(csv_path, n: int = 100, seed: int = 0, symprec: float = 0.1) -> list[dict]:
    """Seeded subset of a CDVAE CSV (``DataFrame.sample(n, random_state=seed)``) as JSON-ready dicts."""
    import warnings

    import numpy as np
    import pandas as pd
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    df = pd.read_csv(csv_path)
    if "cif" not in df.columns:
        raise ValueError(f"{csv_path}: no `cif` column")
    if n < len(df):
        df = df.sample(n=n, random_state=seed)
    ids = df["material_id"] if "material_id" in df.columns else df.index
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sid, cif in zip(ids, df["cif"]):
            s = Structure.from_str(cif, fmt="cif")
            sga = SpacegroupAnalyzer(s, symprec=symprec)
            ds = sga.get_symmetry_dataset()
            lat = s.lattice
            out.append({"id": str(sid), "formula": s.composition.reduced_formula, "label": int(ds.number),
                        "label_symbol": str(ds.international), "label_n_ops": len(ds.rotations),
                        "volume": float(lat.volume), "cell": [*lat.abc, *lat.angles],
                        "matrix": np.asarray(lat.matrix).tolist(),
                        "species": [sp.symbol for sp in s.species], "frac": np.asarray(s.frac_coords).tolist()})
    return out


def _structure(rec: dict):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(rec["matrix"]), rec["species"], rec["frac"])


# ---------------------------------------------------------------------------------------------- cctbx


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (``at file:line`` of the raising frame when the message is empty)."""
    msg = str(exc).strip().splitlines()
    if msg:
        return f"{type(exc).__name__}: {msg[0].strip()}"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(exc).__name__}{where}"


def cctbx_symmetry(rec: dict, d_min: float = 0.7, b_iso: float = 0.5) -> dict:
    """cctbx's space group of one structure: P1 structure factors to ``d_min`` Å from the structure (every
    atom with isotropic ``b_iso`` Å², rhosym's density default), then
    ``symmetry_search.structure_factor_symmetry``. Raises what cctbx raises."""
    from cctbx import adptbx, crystal, symmetry_search, xray
    from cctbx.array_family import flex

    cs = crystal.symmetry(unit_cell=tuple(rec["cell"]), space_group_symbol="P 1")
    u = adptbx.b_as_u(b_iso)
    scat = flex.xray_scatterer([xray.scatterer(label=f"{el}{i}", site=tuple(x), u=u, scattering_type=el)
                                for i, (el, x) in enumerate(zip(rec["species"], rec["frac"]))])
    xs = xray.structure(crystal_symmetry=cs, scatterers=scat)
    f_p1 = xs.structure_factors(d_min=d_min).f_calc()
    ss = symmetry_search.structure_factor_symmetry(f_in_p1=f_p1)
    sgi = ss.space_group_info
    vol_prim = ss.f_in_p1.unit_cell().volume()  # primitive cell of the centrings cctbx found
    return {"cctbx_sg": sgi.type().number(), "cctbx_symbol": str(sgi), "n_refl": f_p1.size(),
            "cctbx_ops_per_A3": ss.space_group.order_z() / vol_prim}


def run_cctbx(records, d_min: float = 0.7, repeat: int = 1, b_iso: float = 0.5) -> list[dict]:
    """:func:`cctbx_symmetry` per record, timed (CPU and wall of the best-wall run of ``repeat``)."""
    if records:  # warm-up: imports and scattering tables are not part of the per-structure cost
        try:
            cctbx_symmetry(records[0], d_min, b_iso)
        except Exception:  # noqa: BLE001 - the timed runs record it
            pass
    rows = []
    for rec in records:
        best = None
        for _ in range(max(1, repeat)):
            row = {"id": rec["id"], "label": rec["label"], "cctbx_sg": "", "cctbx_symbol": "", "cctbx_error": "",
                   "n_refl": "", "cctbx_ops_per_A3": ""}
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                row.update(cctbx_symmetry(rec, d_min, b_iso))
            except Exception as exc:  # noqa: BLE001 - cctbx raises RuntimeError, AssertionError, ...
                row["cctbx_error"] = _one_line(exc)
            t1, c1 = time.perf_counter(), time.process_time()
            row["cctbx_cpu_ms"] = round(1e3 * (c1 - c0), 3)
            row["cctbx_wall_ms"] = round(1e3 * (t1 - t0), 3)
            if best is None or row["cctbx_wall_ms"] < best["cctbx_wall_ms"]:
                best = row
        rows.append(best)
        print(f"{rec['id']}: label {rec['label']} cctbx {best['cctbx_sg'] or best['cctbx_error']} "
              f"cpu {best['cctbx_cpu_ms']:.1f} ms", flush=True)
    return rows


# --------------------------------------------------------------------------------------------- rhosym


def _rhosym_ops_per_a3(res, frame) -> float:
    """Operations per Å³ of the group :func:`~rhosym.symops.find_space_group` found (conventional cell)."""
    import numpy as np

    from rhosym import symops as so

    vecs = [dict(so.CENTRINGS)[c] for c in res.centrings if dict(so.CENTRINGS)[c] is not None]
    ws = np.array([op["W"] for op in res.operations], dtype=np.int64)
    tg = so._translation_group(vecs, ws)
    n_t = len(tg) if tg is not None else 1
    return len(res.operations) * n_t / abs(float(np.linalg.det(frame.lattice)))


def run_rhosym(records, n: int = 24, repeat: int = 1, symprec: float = 0.1) -> list[dict]:
    """:func:`rhosym.symops.bench` on the records (its timing), plus the order of each found group."""
    from rhosym import symops as so

    structs = [_structure(r) for r in records]
    timed = so.bench(structs, n=n, repeat=repeat, symprec=symprec)
    rows = []
    for rec, s, t in zip(records, structs, timed):
        frame = so.frame_from_structure(s, n=n, symprec=symprec)
        res = so.find_space_group(frame, symprec=symprec)
        if res.space_group != t["space_group"]:
            raise RuntimeError(f"{rec['id']}: bench found {t['space_group']}, a second run {res.space_group}")
        rows.append({"id": rec["id"], "rhosym_sg": t["space_group"], "rhosym_symbol": res.symbol,
                     "rhosym_ops_per_A3": _rhosym_ops_per_a3(res, frame), "rhosym_cpu_ms": round(t["cpu_ms"], 3),
                     "rhosym_wall_ms": round(t["ms"], 3), "rhosym_ms_density": round(t["ms_density"], 3),
                     "rhosym_bravais": t["bravais"]})
    return rows


# ---------------------------------------------------------------------------------------------- merge


def _maximal_subgroups() -> dict[int, set[int]]:
    from pymatgen.symmetry.groups import SYMM_DATA

    return {int(k): {int(x) for x in v} for k, v in SYMM_DATA["maximal_subgroups"].items()}


def reaches(group: int, sub: int, table: dict[int, set[int]]) -> bool:
    """Whether space-group type ``sub`` is reached from ``group`` along maximal-subgroup chains."""
    seen, todo = {group}, [group]
    while todo:
        g = todo.pop()
        if g == sub:
            return True
        for h in table.get(g, ()):
            if h not in seen:
                seen.add(h)
                todo.append(h)
    return False


def classify(found, label: int, found_density, label_density: float, table) -> str:
    """One of :data:`CLASSES` for an answer ``found`` (None: raised) against spglib's ``label``."""
    if found in (None, ""):
        return "raised"
    found = int(found)
    if found == label:
        return "right"
    ratio = float(found_density) / label_density
    if ratio > 1 + 1e-6 and reaches(found, label, table):
        return "supergroup"
    if ratio < 1 - 1e-6 and reaches(label, found, table):
        return "subgroup"
    return "other"


def merge(records, cctbx_rows, rhosym_rows) -> list[dict]:
    table = _maximal_subgroups()
    cc = {r["id"]: r for r in cctbx_rows}
    rs = {r["id"]: r for r in rhosym_rows}
    out = []
    for rec in records:
        c, r = cc.get(rec["id"]), rs.get(rec["id"])
        if c is None or r is None:
            continue
        label_density = rec["label_n_ops"] / rec["volume"]
        row = {"id": rec["id"], "formula": rec["formula"], "n_atoms": len(rec["species"]), "label": rec["label"],
               "label_symbol": rec["label_symbol"]}
        row.update({k: c[k] for k in ("cctbx_sg", "cctbx_symbol", "cctbx_error")})
        row["cctbx_class"] = classify(c["cctbx_sg"] or None, rec["label"], c["cctbx_ops_per_A3"] or "nan",
                                      label_density, table)
        row.update({k: c[k] for k in ("cctbx_cpu_ms", "cctbx_wall_ms", "n_refl")})
        row.update({k: r[k] for k in ("rhosym_sg", "rhosym_symbol")})
        row["rhosym_class"] = classify(r["rhosym_sg"], rec["label"], r["rhosym_ops_per_A3"], label_density, table)
        row.update({k: r[k] for k in ("rhosym_cpu_ms", "rhosym_wall_ms", "rhosym_ms_density", "rhosym_bravais")})
        out.append(row)
    return out


def _pct(xs, q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100  # linear interpolation, as numpy.percentile's default
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(rows) -> str:
    lines = [f"n = {len(rows)}"]
    for who in ("cctbx", "rhosym"):
        counts = {c: sum(r[f"{who}_class"] == c for r in rows) for c in CLASSES}
        cpu = [float(r[f"{who}_cpu_ms"]) for r in rows]
        wall = [float(r[f"{who}_wall_ms"]) for r in rows]
        lines.append(f"{who}: " + ", ".join(f"{c} {counts[c]}" for c in CLASSES)
                     + f"; CPU median {statistics.median(cpu):.1f} ms, p90 {_pct(cpu, 90):.1f} ms, "
                       f"max {max(cpu):.1f} ms; wall median {statistics.median(wall):.1f} ms")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- files


def _write_csv(path, rows) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0]) if rows else []
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _read_json(path) -> list[dict]:
    return json.loads(Path(path).read_text())


def _timed_step(p: argparse.ArgumentParser) -> None:
    """The options both timed steps (cctbx, rhosym) share."""
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--out", required=True)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rhosym bench cctbx-compare", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="seeded subset + spglib labels -> JSON (project venv)")
    p.add_argument("--csv", required=True)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--symprec", type=float, default=0.1)
    p.add_argument("--out", required=True)
    p = sub.add_parser("cctbx", help="cctbx.symmetry_search per structure -> CSV (cctbx venv)")
    p.add_argument("--structures", required=True)
    p.add_argument("--d-min", type=float, default=0.7)
    p.add_argument("--b-iso", type=float, default=0.5, help="B (A^2) of every atom (rhosym's density default)")
    _timed_step(p)
    p = sub.add_parser("rhosym", help="rhosym.symops.bench per structure -> CSV (project venv)")
    p.add_argument("--structures", required=True)
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--symprec", type=float, default=0.1)
    _timed_step(p)
    p = sub.add_parser("merge", help="join both CSVs, classify, print the summary")
    p.add_argument("--structures", required=True)
    p.add_argument("--cctbx", required=True)
    p.add_argument("--rhosym", required=True)
    p.add_argument("--out", required=True)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.step == "prepare":
        recs = prepare(args.csv, n=args.n, seed=args.seed, symprec=args.symprec)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(recs))
        print(f"{len(recs)} structures -> {args.out}")
        return 0
    if args.step in ("cctbx", "rhosym"):
        recs = _read_json(args.structures)
        if args.limit:
            recs = recs[: args.limit]
        if args.step == "cctbx":
            rows = run_cctbx(recs, d_min=args.d_min, repeat=args.repeat, b_iso=args.b_iso)
        else:
            rows = run_rhosym(recs, n=args.n, repeat=args.repeat, symprec=args.symprec)
        _write_csv(args.out, rows)
        cpu = [float(r[f"{args.step}_cpu_ms"]) for r in rows]
        print(f"{len(rows)} rows -> {args.out}; CPU median {statistics.median(cpu):.1f} ms, "
              f"p90 {_pct(cpu, 90):.1f} ms")
        return 0
    rows = merge(_read_json(args.structures), _read_csv(args.cctbx), _read_csv(args.rhosym))
    _write_csv(args.out, rows)
    print(summary(rows))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
