"""``rhosym bench scale``: a 200,000-row manifest through ``split``, and 200,000 test predictions per
model through ``metrics`` and ``tables``, with wall time and peak memory against the budgets.

``rhosym bench scale [--rows 200000] [--seeds 1] [--out DIR] [--keep]``. Everything is made up:

* a manifest with the columns of :data:`rhosym.ingest.MANIFEST_COLUMNS` (ids, formulas drawn from a
  pool so that many rows share a reduced formula, space groups 1..230 with the crystal system,
  extinction group and symbol of :mod:`rhosym.symmetry`, lattice parameters of that crystal system,
  band gaps, ~1 % rejected rows; no densities);
* for each of six models (lattice, cogn, cgcnn, xrd_fcn, pointnet, sparse_cnn) a joint network
  (``symmetry``) answering crystal_system, extinction_group and space_group for ``--rows`` test
  structures, plus band_gap regression for cgcnn and sparse_cnn, in the prediction-file format of
  :mod:`rhosym.infer` (key columns, ``topk``/``topk_prob``), one file per (model, task, seed); each
  model misses a different ~3 % of the test ids, so the common test set is smaller than each model's.

Each step runs in a fresh Python process (``sys.executable``) so that its peak resident memory
(``VmHWM``, else ``getrusage``) is its own; its seconds are the wall time of the step's call in that
process (imports of rhosym done before, lazy imports inside the step count). Steps: ``split`` with
``group_by: formula`` and ``none`` (:func:`rhosym.splits.run_split`), ``metrics``
(:func:`rhosym.evaluate.evaluate_predictions`, bootstrap 1000) and ``tables``
(:func:`rhosym.figures.make_tables`). Prints ``step, rows, seconds, peak MB, budget`` and returns 1 if a
budget is missed (budgets are for 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATASET = "scale"
MODELS = ("lattice", "cogn", "cgcnn", "xrd_fcn", "pointnet", "sparse_cnn")
INPUT_OF = {"lattice": "lattice", "cogn": "cogn", "cgcnn": "cgcnn", "xrd_fcn": "xrd", "pointnet": "random",
            "sparse_cnn": "grid"}
REGRESSION_MODELS = ("cgcnn", "sparse_cnn")
#: space-group accuracy of each model's joint network (seeds add a little noise)
SG_ACCURACY = {"lattice": 0.30, "cogn": 0.78, "cgcnn": 0.72, "xrd_fcn": 0.66, "pointnet": 0.52, "sparse_cnn": 0.84}
#: band-gap error scale (eV)
BG_ERROR = {"cgcnn": 0.35, "sparse_cnn": 0.45}
SPLIT_RULE = "formula"
MISSING = 0.03  # fraction of the test ids a model has no prediction for
#: step -> (seconds, peak MB); ``None``: reported, no budget
BUDGETS: dict[str, tuple[float, float] | None] = {
    "make manifest": None, "make predictions": None,
    "split (formula)": (60.0, 2048.0), "split (none)": (60.0, 2048.0),
    "metrics": (120.0, 4096.0), "tables": (60.0, 2048.0),
}
ELEMENTS = ("H Li Be B C N O F Na Mg Al Si P S Cl K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Rb Sr Y "
            "Zr Nb Mo Ru Rh Pd Ag Cd In Sn Sb Te I Cs Ba La Ce Nd Sm Gd Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi").split()


# ------------------------------------------------------------------------------------------ made-up data
def _sg_tables():
    from rhosym.symmetry import crystal_system, extinction_group, sg_symbol

    sgs = np.arange(1, 231)
    cs = np.array([crystal_system(s) for s in sgs], dtype=object)
    eg = np.array([extinction_group(s) for s in sgs], dtype=np.int64)
    sym = np.array([sg_symbol(s) for s in sgs], dtype=object)
    return cs, eg, sym


def _formula_pool(n_pool: int, rng: np.random.Generator) -> list[tuple[tuple[str, int], ...]]:
    """Distinct reduced compositions (element, count) with 1-4 elements."""
    seen, pool = set(), []
    while len(pool) < n_pool:
        k = int(rng.choice([1, 2, 3, 4], p=[0.05, 0.35, 0.45, 0.15]))
        els = tuple(sorted(rng.choice(len(ELEMENTS), k, replace=False).tolist()))
        counts = rng.integers(1, 7, k)
        g = np.gcd.reduce(counts)
        key = (els, tuple((counts // g).tolist()))
        if key in seen:
            continue
        seen.add(key)
        pool.append(tuple((ELEMENTS[e], int(c)) for e, c in zip(*key)))
    return pool


def make_manifest(rows: int, seed: int = 0, rejected: float = 0.01):
    """A manifest of ``rows`` made-up rows (``MANIFEST_COLUMNS``, the manifest's dtypes)."""
    import pandas as pd

    from rhosym.ingest import _DTYPES, MANIFEST_COLUMNS

    rng = np.random.default_rng(seed)
    n = int(rows)
    cs_of, eg_of, sym_of = _sg_tables()
    # low-symmetry groups are common, as in real data
    w = np.ones(230)
    w[[0, 1, 3, 13, 14, 18, 32, 61, 62, 138, 165, 193, 215, 224, 226]] = [8, 30, 12, 60, 30, 15, 10, 30, 20, 10,
                                                                          12, 12, 8, 25, 10]
    sg = rng.choice(np.arange(1, 231), n, p=w / w.sum())
    cs = cs_of[sg - 1]
    # lattice parameters consistent with the crystal system
    a = rng.uniform(3.0, 12.0, n)
    b = rng.uniform(3.0, 12.0, n)
    c = rng.uniform(3.0, 16.0, n)
    al = np.full(n, 90.0)
    be = np.full(n, 90.0)
    ga = np.full(n, 90.0)
    tric, mono = cs == "triclinic", cs == "monoclinic"
    al[tric], be[tric], ga[tric] = (rng.uniform(70, 110, tric.sum()) for _ in range(3))
    be[mono] = rng.uniform(91, 120, mono.sum())
    tetra = np.isin(cs, ["tetragonal", "trigonal", "hexagonal"])
    b[tetra] = a[tetra]
    ga[np.isin(cs, ["trigonal", "hexagonal"])] = 120.0
    cub = cs == "cubic"
    b[cub] = c[cub] = a[cub]
    ca, cb, cg = (np.cos(np.radians(x)) for x in (al, be, ga))
    vol = a * b * c * np.sqrt(np.clip(1 - ca ** 2 - cb ** 2 - cg ** 2 + 2 * ca * cb * cg, 1e-6, None))
    # formulas: a pool of reduced compositions, each row one of them times Z in {1, 2, 4}, drawn so that
    # many rows share a reduced formula (frequencies falling as 1 / (rank + 20))
    pool = _formula_pool(max(2, n // 3), rng)
    fw = 1.0 / (np.arange(len(pool)) + 20.0)
    pick = rng.choice(len(pool), n, p=fw / fw.sum())
    z = rng.choice([1, 2, 4], n, p=[0.5, 0.35, 0.15])
    formula = [" ".join(f"{el}{k * zz}" for el, k in pool[p]) for p, zz in zip(pick.tolist(), z.tolist())]
    n_sites = np.array([sum(k for _, k in pool[p]) * zz for p, zz in zip(pick.tolist(), z.tolist())])
    ids = np.array([f"scale-{i}" for i in range(n)], dtype=object)
    status = np.where(rng.random(n) < rejected, "rejected", "ok").astype(object)
    bad = status == "rejected"
    bg = np.where(rng.random(n) < 0.4, 0.0, rng.gamma(2.0, 1.2, n))
    df = pd.DataFrame({
        "id": ids, "source": [f"cifs/{i}.cif" for i in ids], "block": ids, "kind": "cif", "formula": formula,
        "n_sites": n_sites, "volume": vol, "a": a, "b": b, "c": c, "alpha": al, "beta": be, "gamma": ga,
        "space_group": sg, "symbol": sym_of[sg - 1], "crystal_system": cs, "extinction_group": eg_of[sg - 1],
        "spglib_space_group": sg, "declared_space_group": np.where(rng.random(n) < 0.9, sg, -1),
        "label_source": "spglib", "label_symprec": 0.1, "cell": "conventional",
        "partial_occupancy": rng.random(n) < 0.02, "band_gap": bg, "formation_energy": -rng.gamma(2.0, 0.6, n),
        "task_id": None, "unit": [f"cifs/{i}.cif" for i in ids],
        "shard": [f"{i:05d}" for i in np.arange(n) // 1000], "status": status,
        "reason": np.where(bad, "atoms closer than 0.5 A", ""),
    }, columns=MANIFEST_COLUMNS)
    for col, t in _DTYPES.items():
        if t == "Int64":
            df[col] = pd.array(df[col].to_numpy(), dtype="Int64")
        elif t == "boolean":
            df[col] = df[col].astype("boolean")
        else:
            df[col] = df[col].astype(t)
    df.loc[df["declared_space_group"] == -1, "declared_space_group"] = pd.NA
    labels = ["n_sites", "volume", "a", "b", "c", "alpha", "beta", "gamma", "space_group", "symbol",
              "crystal_system", "extinction_group", "spglib_space_group", "label_source", "label_symprec", "cell",
              "formula", "band_gap", "formation_energy"]
    df.loc[bad, labels] = pd.NA
    return df


def _topk(pred: np.ndarray, truth: np.ndarray, n_classes: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) distinct class indices, best first: the prediction, then others; the true class is among them
    for about half of the wrong predictions."""
    n = len(pred)
    k = min(k, n_classes)
    r = rng.integers(1, max(2, (n_classes - 1) // max(k - 1, 1) + 1), n) if k > 1 else np.ones(n, np.int64)
    r = np.minimum(r, max(1, (n_classes - 1) // max(k - 1, 1)))
    out = (pred[:, None] + r[:, None] * np.arange(k)[None, :]) % n_classes
    if k > 1:
        wrong = (pred != truth) & ~(out == truth[:, None]).any(1) & (rng.random(n) < 0.5)
        pos = rng.integers(1, k, n)
        out[wrong, pos[wrong]] = truth[wrong]
    return out


def _label_strings(task: str) -> np.ndarray:
    from rhosym.registry import CRYSTAL_SYSTEMS

    if task == "crystal_system":
        return np.array(CRYSTAL_SYSTEMS, dtype=object)
    n = 230 if task == "space_group" else 101
    return np.array([str(i) for i in range(1, n + 1)], dtype=object)


def make_predictions(manifest, out_dir: str | Path, rows: int, seeds: int = 1, seed: int = 0) -> list[str]:
    """Prediction files under ``out_dir/predictions/{model}/{trained task}/{variant}.parquet``; returns
    their paths. Ids come from the ``ok`` rows of ``manifest`` (its labels are the truth)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rhosym import layout

    cs_names = list(_label_strings("crystal_system"))
    _, eg_of, _ = _sg_tables()
    ok = manifest[manifest["status"] == "ok"]
    universe = min(len(ok), int(round(rows / (1 - MISSING))))
    ok = ok.iloc[:universe]
    rows = min(rows, universe)
    ids_all = ok["id"].to_numpy(dtype=object)
    sg_true = ok["space_group"].to_numpy(dtype=np.int64) - 1  # class indices
    cs_index = {c: i for i, c in enumerate(cs_names)}
    cs_of_sg = np.array([cs_index[c] for c in _sg_tables()[0]])
    eg_of_sg = eg_of - 1
    bg_true = ok["band_gap"].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    paths = []
    root = Path(out_dir) / "predictions"
    for mi, model in enumerate(MODELS):
        keep = np.sort(rng.choice(universe, rows, replace=False))
        ids = pa.array(ids_all[keep], pa.large_string())
        inp = INPUT_OF[model]
        for s in range(seeds):
            mrng = np.random.default_rng([seed, mi, s])
            variant = layout.variant(inp, 1, SPLIT_RULE, s)
            group = layout.group_of(variant)
            key = {"dataset": DATASET, "model": model, "input": inp, "features": 1, "points": 0, "split": SPLIT_RULE,
                   "seed": s, "variant": variant, "group": group, "trained_on": DATASET}
            t = sg_true[keep]
            acc = SG_ACCURACY[model] + mrng.normal(0, 0.01)
            right = mrng.random(rows) < acc
            # wrong answers: half in the right crystal system's neighbourhood, half anywhere
            near = np.clip(t + mrng.integers(-6, 7, rows), 0, 229)
            wrong = np.where(mrng.random(rows) < 0.5, near, mrng.integers(0, 230, rows))
            wrong = np.where(wrong == t, (t + 1) % 230, wrong)
            sg_pred = np.where(right, t, wrong)
            tables = []
            for task, pred, truth, n_cls in (
                    ("crystal_system", cs_of_sg[sg_pred], cs_of_sg[t], 7),
                    ("extinction_group", eg_of_sg[sg_pred], eg_of_sg[t], 101),
                    ("space_group", sg_pred, t, 230)):
                names = _label_strings(task)
                top = _topk(pred, truth, n_cls, 5, mrng)
                k = top.shape[1]
                prob = np.sort(mrng.dirichlet(np.ones(k) * 0.7, rows), axis=1)[:, ::-1]
                offsets = pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32))
                cols = {name: pa.array(np.full(rows, v, dtype=object), pa.large_string()) if isinstance(v, str)
                        else pa.array(np.full(rows, v, dtype=np.int64)) for name, v in key.items()}
                cols["task"] = pa.array(np.full(rows, task, dtype=object), pa.large_string())
                cols["trained_task"] = pa.array(np.full(rows, "symmetry", dtype=object), pa.large_string())
                cols["id"] = ids
                cols["y_true"] = pa.array(names[truth], pa.string())
                cols["y_pred"] = pa.array(names[pred], pa.large_string())
                cols["topk"] = pa.ListArray.from_arrays(offsets, pa.array(names[top.ravel()], pa.string()))
                cols["topk_prob"] = pa.ListArray.from_arrays(offsets, pa.array(prob.ravel()))
                tables.append(_table(cols))
            paths.append(_write(pa.concat_tables(tables), root / model / "symmetry" / f"{variant}.parquet", pq))
            if model in REGRESSION_MODELS:
                yt = bg_true[keep]
                yp = np.clip(yt + mrng.laplace(0, BG_ERROR[model] * (1 + 0.03 * s), rows), 0, None)
                cols = {name: pa.array(np.full(rows, v, dtype=object), pa.large_string()) if isinstance(v, str)
                        else pa.array(np.full(rows, v, dtype=np.int64)) for name, v in key.items()}
                cols["task"] = pa.array(np.full(rows, "band_gap", dtype=object), pa.large_string())
                cols["trained_task"] = pa.array(np.full(rows, "band_gap", dtype=object), pa.large_string())
                cols["id"] = ids
                cols["y_true"] = pa.array(yt)
                cols["y_pred"] = pa.array(yp)
                paths.append(_write(_table(cols), root / model / "band_gap" / f"{variant}.parquet", pq))
    return paths


def _table(cols: dict):
    import pyarrow as pa

    from rhosym.infer import PREDICTION_COLUMNS

    order = PREDICTION_COLUMNS + [c for c in ("topk", "topk_prob") if c in cols]
    return pa.table({c: cols[c] for c in order})


def _write(table, path: Path, pq) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


# ------------------------------------------------------------------------------------------ steps
def step_make_manifest(work: Path, rows: int) -> dict:
    df = make_manifest(rows)
    df.to_parquet(work / "manifest.parquet", index=False)
    return {"rows": len(df)}


def step_split(work: Path, group_by: str) -> dict:
    from rhosym.settings import SplitSettings
    from rhosym.splits import run_split

    sp = run_split(str(work / "manifest.parquet"), [], str(work / f"split-{group_by}.parquet"),
                   str(work / f"distribution-{group_by}.csv"), SplitSettings(group_by=group_by))
    return {"rows": len(sp)}


def step_make_predictions(work: Path, rows: int, seeds: int) -> dict:
    import pandas as pd

    manifest = pd.read_parquet(work / "manifest.parquet", columns=["id", "status", "space_group", "band_gap"])
    paths = make_predictions(manifest, work, rows, seeds)
    (work / "predictions.json").write_text(json.dumps(paths))
    return {"rows": rows, "files": len(paths)}


def step_metrics(work: Path, bootstrap: int = 1000) -> dict:
    from rhosym.evaluate import evaluate_predictions

    paths = json.loads((work / "predictions.json").read_text())
    res = evaluate_predictions(paths, work / "metrics", DATASET, bootstrap=bootstrap)
    return {"rows": int(res["classification"]["n_full"].max()), "common": int(res["classification"]["n"].min())}


def step_tables(work: Path) -> dict:
    from rhosym.figures import make_tables

    outputs = {f"{k}_{e}": str(work / "tables" / f"table_{k}.{e}") for k in ("s1", "s2", "s3") for e in ("csv", "md")}
    make_tables({"classification": [str(work / "metrics" / "classification.csv")],
                 "regression": [str(work / "metrics" / "regression.csv")]}, outputs, {"datasets": [DATASET]})
    import pandas as pd

    return {"rows": len(pd.read_csv(outputs["s1_csv"]))}


STEPS = {"make manifest": lambda w, a: step_make_manifest(w, a["rows"]),
         "split (formula)": lambda w, a: step_split(w, "formula"),
         "split (none)": lambda w, a: step_split(w, "none"),
         "make predictions": lambda w, a: step_make_predictions(w, a["rows"], a["seeds"]),
         "metrics": lambda w, a: step_metrics(w, a.get("bootstrap", 1000)),
         "tables": lambda w, a: step_tables(w)}


def peak_mb() -> float:
    """Peak resident memory of this process in MB (``VmHWM``; ``getrusage`` where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def _child(argv: list[str]) -> int:
    """In a fresh process: run one step, write ``{rows, seconds, peak_mb, ...}`` to the result file."""
    step, work, args, result = argv[0], Path(argv[1]), json.loads(argv[2]), Path(argv[3])
    import pandas  # noqa: F401 - imported before the clock starts, as any stage has it loaded

    import rhosym.evaluate  # noqa: F401
    import rhosym.figures  # noqa: F401
    import rhosym.splits  # noqa: F401
    from rhosym.logs import setup_logging

    setup_logging()
    t0 = time.perf_counter()
    info = STEPS[step](work, args)
    info.update(seconds=time.perf_counter() - t0, peak_mb=peak_mb())
    result.write_text(json.dumps(info))
    return 0


def measure(step: str, work: str | Path, args: dict, timeout: float | None = None) -> dict:
    """Run ``step`` in a fresh Python process; its result with ``seconds`` and ``peak_mb``."""
    work = Path(work)
    result = work / f".result-{step.replace(' ', '_').replace('(', '').replace(')', '')}.json"
    result.unlink(missing_ok=True)
    code = "import sys; from rhosym.bench.scale import _child; sys.exit(_child(sys.argv[1:]))"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, step, str(work), json.dumps(args), str(result)],
                          timeout=timeout, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-20:]
        raise RuntimeError(f"step {step!r} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    info = json.loads(result.read_text())
    info["process_seconds"] = wall
    return info


def check_budgets(results: dict[str, dict], budgets: dict[str, tuple[float, float] | None] | None = None
                  ) -> list[str]:
    """One line per missed budget (seconds or peak MB); empty when every step is within its budget."""
    budgets = BUDGETS if budgets is None else budgets
    missed = []
    for step, r in results.items():
        b = budgets.get(step)
        if not b:
            continue
        sec, mb = b
        if r["seconds"] > sec:
            missed.append(f"{step}: {r['seconds']:.1f} s over the budget of {sec:g} s")
        if r["peak_mb"] > mb:
            missed.append(f"{step}: peak {r['peak_mb']:.0f} MB over the budget of {mb:g} MB")
    return missed


def format_table(results: dict[str, dict], budgets: dict | None = None) -> str:
    budgets = BUDGETS if budgets is None else budgets
    lines = [f"{'step':<18}{'rows':>10}{'seconds':>10}{'peak MB':>10}  budget"]
    for step, r in results.items():
        b = budgets.get(step)
        btxt = f"{b[0]:g} s / {b[1] / 1024:g} GB" if b else "-"
        lines.append(f"{step:<18}{r['rows']:>10}{r['seconds']:>10.1f}{r['peak_mb']:>10.0f}  {btxt}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rhosym bench scale", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000, help="manifest rows and test predictions per model")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per model (0..N-1)")
    p.add_argument("--out", default=None, help="work folder (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the metrics step")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rhosym-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    # the manifest must hold enough ok rows for the test predictions (each model misses ~3 % of them)
    manifest_rows = max(args.rows, int(args.rows / (1 - MISSING) / 0.985) + 10)
    cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"rhosym bench scale: {args.rows} rows, {args.seeds} seed(s), {cpu} CPU(s), "
          f"load {os.getloadavg()[0]:.2f}, work folder {work}", flush=True)
    results: dict[str, dict] = {}
    steps = [("make manifest", {"rows": manifest_rows}), ("split (formula)", {}), ("split (none)", {}),
             ("make predictions", {"rows": args.rows, "seeds": args.seeds}),
             ("metrics", {"bootstrap": args.bootstrap}), ("tables", {})]
    try:
        for step, a in steps:
            results[step] = measure(step, work, a)
            r = results[step]
            print(f"  {step}: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MB", flush=True)
        print(format_table(results))
        common = results["metrics"].get("common")
        print(f"common test set: {common} of {args.rows} per model; load now {os.getloadavg()[0]:.2f}")
        missed = check_budgets(results)
        for m in missed:
            print(f"BUDGET MISSED: {m}")
        if not missed:
            print("every step within its budget")
        return 1 if missed else 0
    finally:
        if args.keep or args.out:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
