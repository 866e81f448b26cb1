"""Checks for tests/slurm/run.sh: a SLURM run's results against a local run of the same config.

    python tests/slurm/check_outputs.py SLURM_RESULTS LOCAL_RESULTS

1. No half-written store is left: no ``*.tmp-*`` path anywhere under either tree.
2. Every per-shard store can be read: each ``shard-*.parquet`` with pandas, each ``shard-*.zarr``
   with zarr (its ``counts`` attribute, and every array read in full).
3. Both trees hold the same files (logs and benchmarks aside: their names are the same, their
   contents are timings).
4. Deterministic outputs are bitwise identical (manifests, ingest shards, splits, XRD, graphs,
   densities, samples; the ``zarr.json`` metadata is compared as JSON). Files that are not bitwise
   deterministic (checkpoints, training histories with timings, predictions and metrics computed
   from them, figures) are only listed.
Exit status 0 when all checks pass; one line per problem on stderr otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

# Relative paths (POSIX, under results/) whose bytes must match between the two runs.
DETERMINISTIC = re.compile(
    r"^[^/]+/(manifest\.parquet|split\.parquet|split_distribution\.csv|ingest/.*|xrd/.*|graphs/.*"
    r"|density/.*|samples/.*)$"
)
# Not compared at all: run records.
IGNORED = re.compile(r"^(logs|benchmarks)/")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def same_content(rel: str, a: Path, b: Path) -> bool:
    if sha256(a) == sha256(b):
        return True
    if rel.endswith("zarr.json"):
        return json.loads(a.read_text()) == json.loads(b.read_text())
    return False


def check_readable(root: Path) -> list[str]:
    import warnings

    import pandas as pd
    import zarr

    # Snakemake's .snakemake_timestamp inside directory() outputs is not part of the zarr hierarchy
    warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
    problems = []
    for p in sorted(root.rglob("shard-*.parquet")):
        try:
            pd.read_parquet(p)
        except Exception as e:  # noqa: BLE001 - any failure is a problem to report
            problems.append(f"unreadable shard {p}: {type(e).__name__}: {e}")
    for p in sorted(root.rglob("shard-*.zarr")):
        try:
            g = zarr.open_group(str(p), mode="r")
            counts = g.attrs["counts"]
            assert set(counts) >= {"ok", "rejected"}, f"counts {counts}"
            for _name, arr in g.arrays():
                arr[...]
        except Exception as e:  # noqa: BLE001
            problems.append(f"unreadable store {p}: {type(e).__name__}: {e}")
    return problems


def compare(slurm: Path, local: Path) -> tuple[list[str], list[str], int]:
    problems: list[str] = []
    for root in (slurm, local):
        left = sorted(str(p) for p in root.rglob("*.tmp-*"))
        problems += [f"half-written output left behind: {p}" for p in left]
        problems += check_readable(root)
    fs, fl = files(slurm), files(local)
    ks, kl = set(fs), set(fl)
    problems += [f"only in the SLURM run: {k}" for k in sorted(ks - kl)]
    problems += [f"only in the local run: {k}" for k in sorted(kl - ks)]
    differing_ok: list[str] = []
    n_same = 0
    for rel in sorted(ks & kl):
        if IGNORED.match(rel):
            continue
        if same_content(rel, fs[rel], fl[rel]):
            n_same += 1
        elif DETERMINISTIC.match(rel):
            problems.append(f"deterministic output differs between SLURM and local runs: {rel}")
        else:
            differing_ok.append(rel)
    return problems, differing_ok, n_same


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    slurm, local = (Path(a) for a in argv)
    for root in (slurm, local):
        if not root.is_dir():
            print(f"check_outputs: no results folder {root}", file=sys.stderr)
            return 1
    problems, differing_ok, n_same = compare(slurm, local)
    n_files = len(files(slurm))
    print(f"check_outputs: {n_files} files in the SLURM run; {n_same} identical to the local run; "
          f"{len(differing_ok)} differ and are not expected to be bitwise deterministic")
    for rel in differing_ok:
        print(f"check_outputs:   differs (allowed): {rel}")
    for p in problems:
        print(f"check_outputs: FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
