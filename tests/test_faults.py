"""Faults injected on purpose: SIGKILL while a stage writes its output, SIGKILL mid-epoch and resume, and a
full disk (ENOSPC) during a write.

How the kills are made deterministic: each stage runs in a child process (``python -m tests.fault_child``)
that monkeypatches a pause point into itself (after the first array of a zarr store, after the temporary
Parquet file, or inside training epoch k) and writes a marker file when it gets there; the test then
SIGKILLs it. Nothing in the package knows about it. The full disk is injected in process at the lowest
Python level each writer uses (zarr's LocalStore file write, pyarrow's write_table, the file write of a
checkpoint).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym import checkpoint as C
from rhosym import store as S
from tests.conftest import ROOT
from tests.fault_child import STAGES, train_job

CIF_DIR = ROOT / "tests" / "fixtures" / "cif_tiny"
CIFS = {"nacl": "NaCl_cubic.cif", "zno": "ZnO_wurtzite_hexagonal.cif", "rutile": "TiO2_rutile_tetragonal.cif"}
# 0.3 Å is too coarse for rutile's electron count (≈91 of 76 e): it is rejected, which the counts check
DENSITY = {"spacing": 0.3, "tolerance": 0.02}
SAMPLE = {"threshold": 0.05, "voxel": 0.5, "frame": 32.0}
CHILD_TIMEOUT_S = 120


# ============================================================================================ fixtures
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """An ingest shard of three CIFs, their dense store, and tiny training stores + a stand-in checkpoint."""
    import warnings

    from pymatgen.core import Structure

    from rhosym.density import run_density_shard
    from rhosym.train import TrainJob, train
    from tests.test_train_fixtures import standin_registry, write_density_stores, write_manifest_split

    root = tmp_path_factory.mktemp("faults")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sid, name in CIFS.items():
            s = Structure.from_file(CIF_DIR / name)
            rows.append({"id": sid, "kind": "cif", "status": "ok", "structure": json.dumps(s.as_dict()),
                         "chgcar_path": None})
    ingest = root / "ingest" / "shard-00000.parquet"
    ingest.parent.mkdir()
    pd.DataFrame(rows).to_parquet(ingest, index=False)
    dense = root / "density" / "shard-00000.zarr"
    run_density_shard(ingest, dense, DENSITY)

    tr = root / "train"
    man, sp = write_manifest_split(tr, 24)
    stores = write_density_stores(tr, man["id"].tolist())
    with torch_threads():
        ck_dir = tr / "standin"
        train(TrainJob(model="sparse_cnn", task="crystal_system", input="grid", stores=stores,
                       manifest=tr / "manifest.parquet", split=tr / "split.parquet", out_dir=ck_dir,
                       cfg={"epochs": 1, "lr": 0.01, "batch_budget": 200, "max_batch_size": 8}, seed=1,
                       device="cpu", threads=1, registry=standin_registry(), cache_mb=0))
    return types.SimpleNamespace(root=root, ingest=ingest, dense=dense, train=tr, stores=stores,
                                 manifest=tr / "manifest.parquet", split=tr / "split.parquet", split_df=sp,
                                 checkpoint=ck_dir / "checkpoint.pt")


class torch_threads:  # noqa: N801 - context manager
    """train(threads=1) sets torch's thread count for the whole process: put it back afterwards."""

    def __enter__(self):
        import torch

        self.n = torch.get_num_threads()

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.n)
        return False


# ============================================================================================ helpers
def run_and_kill(stage: str, args: dict, pause: dict, workdir: Path) -> dict:
    """Run ``stage`` in a child until its pause point, SIGKILL it; returns the child's marker info."""
    workdir.mkdir(parents=True, exist_ok=True)
    marker = workdir / f"{stage}.paused"
    spec = {"stage": stage, "args": args, "pause": pause, "marker": str(marker)}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    with open(workdir / f"{stage}.child.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.fault_child", json.dumps(spec, default=str)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"{stage} child exited ({proc.returncode}) before its pause point:\n"
                            + (workdir / f"{stage}.child.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"{stage} child did not reach its pause point in {CHILD_TIMEOUT_S} s")
            time.sleep(0.05)
        info = json.loads(marker.read_text())
        assert info["pid"] == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return info


def leftovers(out: Path) -> list[str]:
    """Everything next to ``out`` that belongs to it (the final path, temporaries)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name == out.name or p.name.startswith(out.name + ".")
                  or p.name.startswith(f".{out.name}."))


def assert_killed_cleanly(out: Path, info: dict) -> Path:
    """No final path, only the killed child's temporary (with what it had written)."""
    tmp = out.with_name(f"{out.name}.tmp-{info['pid']}")
    assert not os.path.lexists(out), f"{out} exists after the job was killed"
    assert Path(info["tmp"]).resolve() == tmp.resolve()
    assert leftovers(out) == [tmp.name]
    assert tmp.exists() and (not tmp.is_dir() or any(tmp.iterdir()))  # it was killed mid-write
    return tmp


def assert_snakemake_sees_missing(out: Path, workdir: Path) -> None:
    """What ``--rerun-incomplete`` relies on: the killed job's output is simply missing for Snakemake, so the
    job is scheduled again; a partial directory at the final path (a non-atomic writer) would look done."""
    partial = out.parent / "nonatomic.zarr"
    partial.mkdir()
    (partial / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    snakefile = workdir / "Snakefile"
    rel = os.path.relpath(out, workdir)
    rel_partial = os.path.relpath(partial, workdir)
    snakefile.write_text(
        f'rule all:\n    input: "{rel}", "{rel_partial}"\n\n'
        f'rule killed_store:\n    output: directory("{rel}")\n    shell: "exit 1"\n\n'
        f'rule nonatomic_store:\n    output: directory("{rel_partial}")\n    shell: "exit 1"\n')
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run([str(snakemake), "-n", "-s", str(snakefile), "-d", str(workdir), "--nolock", "--cores", "1"],
                          capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert "rule killed_store:" in text, text[-3000:]
    assert "Missing output files" in text or "missing output" in text.lower(), text[-3000:]
    assert "rule nonatomic_store:" not in text, text[-3000:]
    S._remove(partial)


# ============================================================================== 1 + 4. kill while writing
def _stage_case(stage: str, inputs, out_root: Path):
    """``(args, output path, check(result))`` of each stage."""
    from rhosym.store import read_attrs, read_store

    if stage == "density":
        out = out_root / "density" / "shard-00000.zarr"
        args = {"ingest": str(inputs.ingest), "out": str(out), "cfg": DENSITY}

        def check(counts):
            from rhosym.density import iter_density_store

            a = read_attrs(out)
            assert counts == {"ok": 2, "rejected": 1} == a["counts"]
            assert a["ids"] == ["nacl", "zno"] and list(a["rejected"]) == ["rutile"]
            got = list(iter_density_store(out))
            assert [g[0] for g in got] == ["nacl", "zno"] and all(np.isfinite(g[1]).all() for g in got)
    elif stage == "samples":
        out = out_root / "samples" / "grid" / "shard-00000.zarr"
        args = {"source": str(inputs.dense), "out": str(out), "method": "grid", "cfg": SAMPLE, "seed": 0}

        def check(counts):
            arrays, a = read_store(out)
            assert counts == {"ok": 2, "rejected": 1} == a["counts"] and a["ids"] == ["nacl", "zno"]
            assert "rutile" in a["rejected"]
            assert arrays["offsets"][-1] == len(arrays["xyz"]) == len(arrays["features"]) == len(arrays["voxels"])
            assert (np.diff(arrays["offsets"]) > 0).all()
    elif stage == "xrd":
        out = out_root / "xrd" / "shard-00000.zarr"
        args = {"ingest": str(inputs.ingest), "out": str(out), "cfg": {}}

        def check(counts):
            arrays, a = read_store(out)
            assert counts == {"ok": 3, "rejected": 0} == a["counts"] and a["ids"] == list(CIFS)
            assert arrays["patterns"].shape == (3, 10001) and np.isfinite(arrays["patterns"]).all()
            assert arrays["sticks_offsets"][-1] == len(arrays["sticks_d"]) == len(arrays["sticks_f2"])
    elif stage == "graphs":
        out = out_root / "graphs" / "cgcnn" / "shard-00000.zarr"
        args = {"ingest": str(inputs.ingest), "out": str(out), "kind": "cgcnn", "cfg": {}}

        def check(counts):
            from rhosym.graphs import read_graphs

            a = read_attrs(out)
            assert counts["ok"] == 3 == a["counts"]["ok"] and a["ids"] == list(CIFS)
            assert [g["id"] for g in read_graphs(out)] == list(CIFS)
    elif stage == "predict":
        out = out_root / "predictions" / "test.parquet"
        args = {"checkpoint": str(inputs.checkpoint), "stores": inputs.stores, "manifest": str(inputs.manifest),
                "split": str(inputs.split), "out": str(out)}
        test_ids = sorted(inputs.split_df.loc[inputs.split_df["split"] == "test", "id"])

        def check(res):
            df = pd.read_parquet(out)
            assert res == {"rows": len(test_ids)} and sorted(df["id"]) == test_ids
            assert df["y_pred"].notna().all()
    else:
        raise ValueError(stage)
    return args, out, check


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["density", "samples", "xrd", "graphs", "predict"])
def test_sigkill_while_writing_leaves_no_output_and_rerun_completes(stage, inputs, tmp_path):
    args, out, check = _stage_case(stage, inputs, tmp_path / "results")
    pause = {"at": "parquet" if stage == "predict" else "store"}
    info = run_and_kill(stage, args, pause, tmp_path / "child")
    tmp = assert_killed_cleanly(out, info)
    if stage == "density":
        assert_snakemake_sees_missing(out, tmp_path)
    # the rerun (another pid) completes, and removes the dead child's temporary
    check(STAGES[stage](args))
    assert not tmp.exists()
    assert leftovers(out) == [out.name]


def test_stale_temporary_of_a_live_process_is_kept(tmp_path):
    """Only temporaries of processes that no longer run are removed (a live writer's are left alone)."""
    out = tmp_path / "x.zarr"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (tmp_path / f"x.zarr.tmp-{live.pid}").mkdir()
        (tmp_path / f"x.zarr.tmp-{dead.pid}").mkdir()
        (tmp_path / f".x.zarr.tmp-{dead.pid}").write_text("partial")
        (tmp_path / "x.zarr.tmp-notapid").mkdir()
        S.write_store(out, {"a": np.arange(3)}, {"ids": ["a"], "counts": {"ok": 1, "rejected": 0}})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["x.zarr", f"x.zarr.tmp-{live.pid}", "x.zarr.tmp-notapid"])
        assert S.read_store(out)[0]["a"].tolist() == [0, 1, 2]
    finally:
        live.kill()
        live.wait()


# ============================================================================== 2. kill training mid-epoch
def _train_args(inputs, out_dir: Path, epochs: int) -> dict:
    return {"stores": inputs.stores, "manifest": str(inputs.manifest), "split": str(inputs.split),
            "out_dir": str(out_dir), "epochs": epochs, "seed": 3}


def _tensors_equal(a, b, where="") -> None:
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _tensors_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _tensors_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and np.isnan(a) and np.isnan(b)), f"{where}: {a!r} != {b!r}"


RESULT_COLUMNS = ["epoch", "train_loss", "val_loss", "val_metric", "metric", "lr"]  # not timings, not memory


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(inputs, tmp_path, monkeypatch):
    from rhosym import train as T

    epochs, kill_epoch = 4, 3
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    with torch_threads():
        T.train(train_job(_train_args(inputs, ref_dir, epochs)))

    info = run_and_kill("train", _train_args(inputs, run_dir, epochs),
                        {"at": "epoch", "epoch": kill_epoch, "batch": 1}, tmp_path / "child")
    assert info["epoch"] == kill_epoch
    last = C.load(run_dir / "last.pt")
    assert last["training"]["epoch"] == kill_epoch - 1  # killed in epoch k, after last.pt of epoch k-1
    assert len(pd.read_csv(run_dir / "history.csv")) == kill_epoch - 1
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name]  # it was not killed while saving
    # Snakemake removes the outputs of the killed job (checkpoint.pt, history.csv) before rerunning it
    (run_dir / "checkpoint.pt").unlink()
    (run_dir / "history.csv").unlink()

    resumed = []
    orig = T.resume_state

    def spy(*a, **k):
        st = orig(*a, **k)
        resumed.append(st.epoch)
        return st

    monkeypatch.setattr(T, "resume_state", spy)
    with torch_threads():
        summary = T.train(train_job(_train_args(inputs, run_dir, epochs)))
    assert resumed == [kill_epoch - 1]  # resumed from last.pt, not from scratch
    assert summary["epochs_run"] == epochs

    ref_hist, hist = pd.read_csv(ref_dir / "history.csv"), pd.read_csv(run_dir / "history.csv")
    assert hist["epoch"].tolist() == list(range(1, epochs + 1))
    ref_best, best = C.load(ref_dir / "checkpoint.pt"), C.load(run_dir / "checkpoint.pt")
    ref_last, last = C.load(ref_dir / "last.pt"), C.load(run_dir / "last.pt")
    # checkpoint.pt is the validation-best epoch (rewritten from last.pt when that epoch came before the kill)
    assert best["meta"].best_epoch == int(hist["val_metric"].idxmax()) + 1 == ref_best["meta"].best_epoch
    # the resumed run is the uninterrupted one, bit for bit
    pd.testing.assert_frame_equal(hist[RESULT_COLUMNS], ref_hist[RESULT_COLUMNS])
    _tensors_equal(best["state_dict"], ref_best["state_dict"], "checkpoint.pt")
    _tensors_equal(last["state_dict"], ref_last["state_dict"], "last.pt")
    for key in ("optimizer", "scheduler", "best_state_dict", "torch_rng", "best_epoch", "best_metric"):
        _tensors_equal(last["training"][key], ref_last["training"][key], f"last.pt training.{key}")


# ============================================================================== 3. disk full
def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _assert_disk_full(exc_info, path: Path) -> None:
    err = exc_info.value
    msg = str(err)
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert "\n" not in msg and "no space left on device" in msg and "disk full" in msg, msg
    assert msg.endswith(f"while writing {path}"), msg
    assert err.__cause__ is not None  # the original error is chained


def install_full_zarr_disk(monkeypatch) -> None:
    """zarr's LocalStore writes files through ``_put``: every chunk write writes part of its file and fails
    with ENOSPC (the metadata documents succeed, so a partial temporary exists when the error comes)."""
    import zarr.storage._local as local

    orig = local._put

    def put(path, value, exclusive=False):
        if "/c/" in Path(path).as_posix().split(".tmp-", 1)[-1]:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(bytes(value.as_buffer_like())[:10])
            raise _enospc()
        return orig(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)


@pytest.fixture
def rhosym_logging():
    """job_logging reconfigures the rhosym logger for the process: put it back afterwards."""
    import logging

    logger = logging.getLogger("rhosym")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    yield
    for h in list(logger.handlers):
        logger.removeHandler(h)
        if h not in saved[0]:
            h.close()
    for h in saved[0]:
        logger.addHandler(h)
    logger.propagate, logger.level = saved[1], saved[2]


def test_disk_full_zarr_store_one_line_and_no_output(inputs, tmp_path, monkeypatch, rhosym_logging):
    from rhosym.logs import job_logging

    install_full_zarr_disk(monkeypatch)
    out = tmp_path / "density" / "shard-00000.zarr"
    log_file = tmp_path / "logs" / "density.log"
    with pytest.raises(OSError) as exc_info, job_logging(str(log_file)):
        STAGES["density"]({"ingest": str(inputs.ingest), "out": str(out), "cfg": DENSITY})
    _assert_disk_full(exc_info, out)
    assert leftovers(out) == []  # neither the store nor its temporary
    errors = [line for line in log_file.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(f"stage failed: no space left on device (disk full) while "
                                                   f"writing {out}"), log_file.read_text()
    assert "Traceback" not in log_file.read_text()


def test_disk_full_write_store_keeps_the_old_store(tmp_path, monkeypatch):
    out = tmp_path / "xrd" / "shard-00000.zarr"
    S.write_store(out, {"a": np.arange(5)}, {"ids": ["x"]})
    install_full_zarr_disk(monkeypatch)
    with pytest.raises(OSError) as exc_info:
        S.write_store(out, {"a": np.arange(7)}, {"ids": ["y"]})
    _assert_disk_full(exc_info, out)
    assert leftovers(out) == [out.name]
    arrays, attrs = S.read_store(out)
    assert arrays["a"].tolist() == list(range(5)) and attrs["ids"] == ["x"]


@pytest.fixture
def full_parquet_disk(monkeypatch):
    """pyarrow's write_table writes part of the file, then fails as Arrow does on ENOSPC."""
    import pyarrow.parquet as pq

    def write_table(table, where, *args, **kwargs):
        if hasattr(where, "write"):
            where.write(b"PAR1partial")
        else:
            Path(where).write_bytes(b"PAR1partial")
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pq, "write_table", write_table)


def test_disk_full_parquet_ingest_and_predictions(inputs, tmp_path, full_parquet_disk):
    from rhosym.ingest import write_parquet

    out = tmp_path / "ingest" / "shard-00000.parquet"
    with pytest.raises(OSError) as exc_info:
        write_parquet(pd.DataFrame({"id": ["a"]}), out)
    _assert_disk_full(exc_info, out)
    assert leftovers(out) == []

    args, pred, _ = _stage_case("predict", inputs, tmp_path / "results")
    with pytest.raises(OSError) as exc_info:
        STAGES["predict"](args)
    _assert_disk_full(exc_info, pred)
    assert leftovers(pred) == []


def install_full_file_disk(monkeypatch) -> None:
    """Files written by rhosym.store (checkpoints) get half their bytes, then ENOSPC."""
    import builtins

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            data = memoryview(data)
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise _enospc()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
            return False

    def full_open(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        return Full(f) if "w" in mode else f

    monkeypatch.setattr(S, "open", full_open, raising=False)


@pytest.fixture
def full_file_disk(monkeypatch):
    install_full_file_disk(monkeypatch)


def test_disk_full_checkpoint_save_keeps_the_old_file(tmp_path, monkeypatch):
    import torch

    meta = C.CheckpointMeta(dataset="toy", model="m", task="crystal_system", regression=False, n_out=7,
                            label_values=[], input="grid", input_kind="density", features=1, in_features=1,
                            model_cfg={})
    path = tmp_path / "last.pt"
    C.save(path, meta, {"w": torch.ones(3)})
    install_full_file_disk(monkeypatch)
    with pytest.raises(OSError) as exc_info:
        C.save(path, meta, {"w": torch.zeros(3)})
    _assert_disk_full(exc_info, path)
    assert leftovers(path) == [path.name]
    assert torch.equal(C.load(path)["state_dict"]["w"], torch.ones(3))


def test_disk_full_during_training_fails_with_one_line(inputs, tmp_path, full_file_disk):
    from rhosym.train import TrainJob, train
    from tests.test_train_fixtures import standin_registry

    out = tmp_path / "model"
    with torch_threads(), pytest.raises(OSError) as exc_info:
        train(TrainJob(model="sparse_cnn", task="crystal_system", input="grid", stores=inputs.stores,
                       manifest=inputs.manifest, split=inputs.split, out_dir=out,
                       cfg={"epochs": 1, "lr": 0.01, "batch_budget": 200, "max_batch_size": 8}, seed=1,
                       device="cpu", threads=1, registry=standin_registry(), cache_mb=0))
    _assert_disk_full(exc_info, out / "checkpoint.pt")
    assert sorted(p.name for p in out.iterdir()) == []  # no checkpoint, no last.pt, no temporaries


def test_disk_full_detection():
    """ENOSPC and EDQUOT anywhere in the chain (or in an exception group of concurrent writes) are a full
    disk; the message is one line naming the path; the Snakemake log line says so."""
    from rhosym.logs import disk_full_message

    group = ExceptionGroup("writes", [ValueError("other"), OSError(errno.EDQUOT, "Disk quota exceeded")])
    assert S.disk_full(group) and not S.disk_full(OSError(errno.EACCES, "Permission denied"))
    err = S.disk_full_error("/r/x.zarr", group)
    assert err.errno == errno.EDQUOT and str(err) == f"[Errno {errno.EDQUOT}] disk quota exceeded while writing /r/x.zarr"
    try:
        try:
            raise _enospc()
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed") from exc
    except RuntimeError as exc:
        assert S.disk_full(exc)
    raw = OSError(errno.ENOSPC, "No space left on device", "/r/a.csv")
    assert disk_full_message(raw) == "No space left on device while writing /r/a.csv"
    assert disk_full_message(S.disk_full_error("/r/b", raw)) == "no space left on device (disk full) while writing /r/b"
    assert disk_full_message(ValueError("x")) is None
