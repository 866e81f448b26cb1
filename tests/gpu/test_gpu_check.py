"""The GPU check's dry run (tests/gpu/run.sh --cpu): every piece runs small on the CPU with the imports the
GPU machine lacks (zarr, gemmi, pymatgen, scipy, yaml, ...) blocked, and one JSON is written; a missing
spconv is one diagnostic line and the rest still runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _finite(rows, key="train_loss"):
    return all(math.isfinite(r[key]) for r in rows)


@pytest.mark.slow
def test_dry_run_writes_one_json_of_every_piece(tmp_path):
    """About 20 s on 2 cores, one torch thread (the two-rank DDP run through torchrun takes half)."""
    if os.getloadavg()[0] > 3:  # the script's own time budget (170 s) is for a machine doing only this
        pytest.skip(f"machine busy (load average {os.getloadavg()[0]:.1f}): the GPU check's dry run needs the cores")
    out = tmp_path / "gpu-check.json"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_TIMEOUT": "170"}
    proc = subprocess.run(["bash", "tests/gpu/run.sh", str(out), "--cpu", "--data", "synthetic"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    c = r["checks"]
    assert r["mode"] == "cpu-dry" and r["failed"] == []
    assert {k: v["status"] for k, v in c.items()} == {"imports": "ok", "cuda_ops": "ok", "throughput": "ok",
                                                      "mp20_train": "ok", "ddp": "ok", "pytest": "skipped"}
    assert all(m["status"] == "ok" and m["matches_cpu"] and m["fp32_finite"] for m in c["cuda_ops"]["models"])
    assert {row["model"] for row in c["throughput"]["rows"]} == {"sparse_cnn", "pointnet"}
    assert all(row["train_samples_per_s"] > 0 for row in c["throughput"]["rows"])
    assert c["mp20_train"]["model"] == "sparse_cnn" and len(c["mp20_train"]["history"]) == 2
    assert _finite(c["mp20_train"]["history"]) and _finite(c["ddp"]["history"])
    assert c["ddp"]["ranks"] == 2 and c["ddp"]["backend"] == "gloo"
    assert "gpu-check: wrote" in proc.stdout


def test_missing_spconv_is_one_diagnostic_and_the_rest_runs(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "tests/gpu/check.py", "--cpu", "--out", str(out), "--data", "synthetic",
                           "--deny", "spconv", "--epochs", "1", "--skip", "cuda_ops", "throughput", "ddp"],
                          cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 1  # a failed piece
    r = json.loads(out.read_text())
    assert r["checks"]["imports"]["status"] == "failed" and r["failed"] == ["imports"]
    line = next(d for d in r["diagnostics"] if d.startswith("imports: FAILED"))
    assert "spconv" in line and "gpu-bundle.sh" in line and "\n" not in line
    assert f"gpu-check: {line}" in proc.stdout
    assert r["checks"]["mp20_train"]["status"] == "ok" and r["checks"]["mp20_train"]["model"] == "pointnet"
    assert r["checks"]["cuda_ops"] == {"status": "skipped", "reason": "--skip"}
