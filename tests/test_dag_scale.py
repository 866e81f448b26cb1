"""A dry-run of `all` on a 200,000-row data set builds its DAG in under 60 s."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

N_ROWS = 200_000


@pytest.mark.slow
def test_dry_run_of_200k_rows_builds_quickly(tmp_path):
    csv = tmp_path / "big.csv"
    with csv.open("w") as f:
        f.write("material_id,cif,band_gap,formation_energy_per_atom\n")
        for i in range(N_ROWS):
            f.write(f'mp-{i},"data_{i}\n_cell_length_a 3.0\n",0.5,-1.0\n')
    cfg = {
        "standalone": True,
        "results": str(tmp_path / "results"),
        "shard_size": 1000,
        "datasets": {"big": {"kind": "cdvae_csv", "path": str(csv)}},
        "experiments": [{"datasets": ["big"], "models": ["lattice", "sparse_cnn", "pointnet", "xrd_fcn", "cgcnn",
                                                        "cogn"],
                         "tasks": ["symmetry", "crystal_system", "extinction_group", "space_group",
                                   "band_gap", "formation_energy"],
                         "features": [1], "sampling": ["grid", "random"], "seeds": [0, 1, 2]}],
    }
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).parent / "snakemake"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(snakemake), "all", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT), "--configfile", str(cfg_path),
         "--nolock", "-n", "--quiet", "rules"],
        capture_output=True, text=True, timeout=300,
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    print(f"\n200k-row dry-run of all: {elapsed:.1f} s\n{out[-1500:]}")
    assert "ingest_shard" in out and "256" in out  # 200 shards of 1,000 rounded up to a power of two
    assert elapsed < 60, f"DAG took {elapsed:.1f} s to build"
