"""``rhosym bench dag [--rows 200000] [--budget 60]``: time a dry-run of ``all`` on a big data set.

Writes a CDVAE-style CSV of ``--rows`` made-up rows (the CIF strings are never parsed by a dry-run) and a
standalone config with all six models, every task, both samplings and three seeds, then runs
``snakemake all -n`` on it and prints the wall time, the number of ingest shards and the job count.
Exit status 1 when the build takes longer than ``--budget`` seconds (budgets are for 2 cores).
tests/test_dag_scale.py checks the same DAG's shape without timing it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout (src/rhosym/bench/dag.py)
MODELS = ["lattice", "sparse_cnn", "pointnet", "xrd_fcn", "cgcnn", "cogn"]
TASKS = ["symmetry", "crystal_system", "extinction_group", "space_group", "band_gap", "formation_energy"]


def write_inputs(folder: Path, rows: int, shard_size: int = 1000) -> Path:
    """The CSV and the config of a ``rows``-row data set under ``folder``; returns the config path."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "big.csv"
    with csv.open("w") as f:
        f.write("material_id,cif,band_gap,formation_energy_per_atom\n")
        for i in range(rows):
            f.write(f'mp-{i},"data_{i}\n_cell_length_a 3.0\n",0.5,-1.0\n')
    cfg = {
        "standalone": True, "results": str(folder / "results"), "shard_size": shard_size,
        "datasets": {"big": {"kind": "cdvae_csv", "path": str(csv)}},
        "experiments": [{"datasets": ["big"], "models": MODELS, "tasks": TASKS, "features": [1],
                         "sampling": ["grid", "random"], "seeds": [0, 1, 2]}],
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dry_run(config: Path, timeout: float = 600) -> tuple[float, subprocess.CompletedProcess]:
    """``(seconds, process)`` of ``snakemake all -n --quiet rules`` on ``config``."""
    snakemake = Path(sys.executable).parent / "snakemake"
    t0 = time.perf_counter()
    proc = subprocess.run([str(snakemake), "all", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT),
                           "--configfile", str(config), "--nolock", "-n", "--quiet", "rules"],
                          capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t0, proc


def job_counts(text: str) -> dict[str, int]:
    """``{rule: count}`` of a dry-run's job table."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", text, re.M)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rhosym bench dag", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--budget", type=float, default=60.0, help="seconds allowed for the build")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rhosym-dag-") as tmp:
        seconds, proc = dry_run(write_inputs(Path(tmp), args.rows))
    if proc.returncode != 0:
        print(f"rhosym bench dag: the dry-run failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return 1
    counts = job_counts(proc.stdout + proc.stderr)
    print(f"{args.rows} rows: DAG of {counts.get('total', '?')} jobs ({counts.get('ingest_shard', '?')} ingest "
          f"shards) built in {seconds:.1f} s (budget {args.budget:.0f} s)")
    return 0 if seconds <= args.budget else 1
