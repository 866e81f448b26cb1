"""Data-parallel training (rhosym.distributed): ranks under torchrun through the entry point the train rule
uses (`torchrun ... -m rhosym.cli train job.json`), on CPU (gloo), with the lattice control MLP (LayerNorm,
no BatchNorm, dropout 0) on tiny synthetic stores.

Tolerance: two ranks of ``max_batch_size`` B train like one process of 2B up to float summation order
(DDP averages two half-batch gradients where one process sums one batch): training and validation losses
agree to rtol 1e-4 and the validation accuracy is equal, every epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from rhosym import checkpoint as C
from rhosym import distributed as D
from rhosym import loaders as L
from rhosym import train as T
from tests.conftest import ROOT
from tests.test_train_fixtures import write_lattice_shards, write_manifest_split

B = 5  # per-rank max_batch_size; 28 training structures: steps of 5+5, 5+5, 5+3 (unequal last step)
EPOCHS = 3
RTOL = 1e-4
CFG = {"epochs": EPOCHS, "patience": 0, "lr": 1e-2, "batch_budget": 10_000, "model": {"hidden": [16],
                                                                                    "dropout": 0.0}}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
       "PYTHONPATH": str(ROOT)}


def _job(data, out, processes, max_batch_size):
    return T.TrainJob(model="lattice", task="crystal_system", input="lattice", stores=data["stores"],
                      manifest=str(data["manifest"]), split=str(data["split"]), out_dir=str(out), seed=1,
                      cfg={**CFG, "processes": processes, "max_batch_size": max_batch_size}, device="cpu",
                      threads=1, cache_mb=0)


def _run(cmd, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process with batches of 2B (in process) and two gloo ranks with batches of B (torchrun)."""
    root = tmp_path_factory.mktemp("ddp")
    man, split = write_manifest_split(root, 47)  # 28 train, 9 val
    data = {"stores": write_lattice_shards(root, man["id"].tolist()), "manifest": root / "manifest.parquet",
            "split": root / "split.parquet", "root": root}
    one = _job(data, root / "one", 1, 2 * B)
    summary_one = T.train(one)
    job = _job(data, root / "two", 2, B)
    job.to_json(root / "two.json")
    proc = _run(D.launch_command(str(root / "two.json"), 2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**data, "summary_one": summary_one, "proc": proc, "one": root / "one", "two": root / "two"}


def test_two_gloo_ranks_equal_one_process_with_the_doubled_batch(runs):
    assert runs["summary_one"]["n_train"] == 28
    summary = json.loads(runs["proc"].stdout.strip().splitlines()[-1])  # printed by rank 0 only
    assert summary["epochs_run"] == EPOCHS and summary["n_train"] == 28
    assert "data-parallel: 2 ranks (gloo)" in runs["proc"].stderr
    a, b = pd.read_csv(runs["one"] / "history.csv"), pd.read_csv(runs["two"] / "history.csv")
    assert b["epoch"].tolist() == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=RTOL)
    np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=RTOL)
    np.testing.assert_array_equal(b["val_metric"], a["val_metric"])
    ca, cb = C.load(runs["one"] / "checkpoint.pt"), C.load(runs["two"] / "checkpoint.pt")
    assert cb["meta"].train_config["processes"] == 2 and cb["meta"].best_epoch == ca["meta"].best_epoch
    assert set(cb["state_dict"]) == set(ca["state_dict"])  # the unwrapped network: no "module." prefix
    for k, v in ca["state_dict"].items():
        torch.testing.assert_close(cb["state_dict"][k], v, rtol=RTOL, atol=1e-6)
    assert cb["meta"].resume_key != ca["meta"].resume_key  # processes and batch size are in the fingerprint


def test_a_killed_rank_fails_the_job_and_the_rerun_resumes(runs, tmp_path):
    """Rank 1 SIGKILLs itself after the first step of epoch 2: torchrun stops rank 0 and exits non-zero;
    `rhosym train job.json` (which starts torchrun itself) then resumes from last.pt of epoch 1 and ends as
    the uninterrupted two-rank run."""
    job = _job(runs, tmp_path / "run", 2, B)
    job.to_json(tmp_path / "job.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_child.py"), "1", "2", str(tmp_path / "job.json")]
    proc = _run(cmd)
    assert proc.returncode != 0 and "Signal 9 (SIGKILL) received" in proc.stderr, proc.stderr[-3000:]
    last = C.load(tmp_path / "run" / "last.pt")
    assert last["training"]["epoch"] == 1 and len(pd.read_csv(tmp_path / "run" / "history.csv")) == 1
    (tmp_path / "run" / "checkpoint.pt").unlink()  # Snakemake removes the failed job's outputs
    (tmp_path / "run" / "history.csv").unlink()

    proc = _run([sys.executable, "-m", "rhosym.cli", "train", str(tmp_path / "job.json")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stderr and "after epoch 1" in proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["epochs_run"] == EPOCHS
    ref, hist = pd.read_csv(runs["two"] / "history.csv"), pd.read_csv(tmp_path / "run" / "history.csv")
    assert hist["epoch"].tolist() == list(range(1, EPOCHS + 1))
    cols = ["train_loss", "val_loss", "val_metric", "lr"]
    np.testing.assert_allclose(hist[cols].to_numpy(float), ref[cols].to_numpy(float), rtol=1e-6)
    assert C.load(tmp_path / "run" / "checkpoint.pt")["meta"].epochs_run == EPOCHS


# ------------------------------------------------------------------------------------- small units
def test_sampler_shards_global_batches_and_weights_shares():
    sizes = [1] * 28
    one = L.BudgetBatchSampler(sizes, 100, 2 * B, seed=4)
    ranks = [L.BudgetBatchSampler(sizes, 100, B, seed=4, rank=r, replicas=2) for r in (0, 1)]
    for s in (one, *ranks):
        s.set_epoch(3)
    plans = [r.plan() for r in ranks]
    assert len(plans[0][0]) == len(plans[1][0]) == 3  # every rank takes the same number of steps
    for k, big in enumerate(one.batches()):  # step k of the two ranks = batch k of one process with 2B
        assert plans[0][0][k] + plans[1][0][k] == big
        assert plans[0][1][k] + plans[1][1][k] == pytest.approx(1.0)
    assert plans[0][1][-1] == pytest.approx(5 / 8) and plans[1][1][-1] == pytest.approx(3 / 8)
    # padding: 3 batches on 2 ranks → the first batch again, with share 0 (it adds nothing)
    pad = [L.BudgetBatchSampler([1] * 12, 100, 4, shuffle=False, rank=r, replicas=2) for r in (0, 1)]
    assert pad[1].plan() == ([[4, 5, 6, 7], [0, 1, 2, 3]], [0.5, 0.0])
    assert pad[0].plan()[1] == [0.5, 1.0]
    # evaluation: no padding, rank 1 has one batch fewer; weights (class weights) set the shares
    assert L.BudgetBatchSampler([1] * 12, 100, 4, shuffle=False, rank=1, replicas=2, pad=False).batches() == [
        [4, 5, 6, 7]]
    w = L.BudgetBatchSampler([1] * 4, 100, 2, shuffle=False, rank=0, replicas=2, weights=[3, 1, 1, 1])
    assert w.shares() == [pytest.approx(4 / 6)]
    with pytest.raises(ValueError, match="rank 2 is not in 0..1"):
        L.BudgetBatchSampler(sizes, 100, B, rank=2, replicas=2)


def test_processes_must_match_the_ranks(runs, monkeypatch):
    job = _job(runs, runs["root"] / "bad", 2, B)
    with pytest.raises(ValueError, match=r"train.processes is 2: start the job with `rhosym train JOB.json`"):
        T.train(job)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="started as 3 processes .* but train.processes is 2"):
        T.train(job)


def test_processes_is_a_result_setting():
    from rhosym import settings as S

    assert "processes" in S.PARAM_KEYS and "processes" not in S.RESUME_FREE_KEYS  # params and fingerprint
    assert S.train_params("lattice", "crystal_system", {"processes": 3}).processes == 3
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        S.train_params("lattice", "crystal_system", {"processes": 0})


def test_gpu_request_follows_processes():
    assert D.gpu_request(1, 4, "auto") == 4 and D.gpu_request(1, 4, "cuda") == 4
    assert D.gpu_request(0, 4, "auto") == 0 and D.gpu_request(1, 4, "cpu") == 1
    assert D.gpu_request(1, 1, "auto") == 1
    assert D.rank_threads(8, D.Context(0, 4, 0, 4)) == 2 and D.rank_threads(1, D.Context(0, 2, 0, 2)) == 1
