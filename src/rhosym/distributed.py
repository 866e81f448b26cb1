"""Data-parallel training: PyTorch's ``DistributedDataParallel`` (DDP), one process (rank) per GPU or
per CPU slot, started by ``torchrun``.

``train.processes`` (N, a result-affecting setting: it is in the job's params and in the resume
fingerprint) sets the ranks. The ``train_model`` rule and ``rhosym train JOB.json`` start

    python -m torch.distributed.run --standalone --nproc_per_node N -m rhosym.cli train JOB.json

themselves when N > 1 (:func:`launch`); several nodes are started by hand with ``srun`` and
``torchrun --nnodes`` (docs/slurm.md). The world size a job is started with must equal N.

What each rank does (:func:`rhosym.train.train`):

* **Same data, same order.** Every rank packs the same global batches (budget batcher, same seeded
  order); step ``k`` of an epoch is the global batches ``kN .. kN+N-1``, one per rank
  (:class:`rhosym.loaders.BudgetBatchSampler`). The list is padded to a multiple of N by repeating its
  first batches, so that every rank takes the same number of steps.
* **Exact gradients.** A rank's mean-reduced loss is scaled by ``N × (its batch's share of the step's
  samples)`` (class weights counted for a class-weighted loss), so that DDP's gradient average is the
  gradient of the mean loss over the step's real samples: a padding batch has share 0 and contributes
  nothing, and batches of unequal sizes are weighted as one batch would weigh them. Hence N ranks of
  ``max_batch_size`` B train exactly (up to float summation order) like one process whose batches are
  the unions of N consecutive B-batches: when the budget does not bind, the one-process run with
  ``max_batch_size`` N·B. Approximate: BatchNorm (SyncBatchNorm on CUDA; per-rank statistics on CPU,
  and padding batches enter the statistics), dropout (every rank draws from the same random stream),
  and the recorded ``train_loss``/``val_loss`` of a class-weighted loss (averages of per-batch weighted
  means, which depend on how samples are grouped into batches, as with one process; the gradients stay
  exact). Measured (tests/test_ddp.py, lattice MLP, gloo): losses agree to ~1e-7 relative, weights to
  3e-8, validation accuracy equal; the tests assert rtol 1e-4.
* **Validation** is split between the ranks (no padding) and gathered on rank 0, which computes the
  metric over the full validation set (exact), decides early stopping and broadcasts both; the
  learning-rate schedule steps on every rank with the same values.
* **Normalization** statistics are computed on rank 0 and broadcast (identical on every rank).
* **Files**: rank 0 alone writes ``checkpoint.pt``, ``last.pt`` and ``history.csv`` (state dicts of the
  unwrapped network, loadable without DDP); on a rerun every rank resumes from ``last.pt``.
* **Devices**: CUDA: backend ``nccl``, ``cuda:<LOCAL_RANK>``, BatchNorm converted to SyncBatchNorm;
  CPU: backend ``gloo``. ``threads`` (the job's cores) is divided among the ranks of a node.

A rank that dies makes ``torchrun`` stop the others and exit non-zero; rerunning the job resumes from
the last finished epoch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

#: how long a rank waits for the others at a collective (rank 0 saving, slow validation shards)
TIMEOUT = timedelta(minutes=30)


@dataclass
class Context:
    """Where this process stands: its rank, the world size and its rank on the node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj):
        """``obj`` of rank 0, on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn):
        """``fn()`` computed on rank 0 and broadcast to every rank."""
        return self.broadcast(fn() if self.main else None)

    def gather(self, obj) -> list | None:
        """The ``obj`` of every rank, in rank order, on rank 0 (``None`` elsewhere)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out


def context() -> Context:
    """The context ``torchrun`` (or ``srun`` + ``torchrun``) set in the environment; one process without."""
    env = os.environ

    def num(key: str, default: int) -> int:
        try:
            return int(env.get(key, default))
        except ValueError:
            raise ValueError(f"environment variable {key}={env[key]!r} is not an integer") from None

    world = num("WORLD_SIZE", 1)
    return Context(num("RANK", 0), world, num("LOCAL_RANK", 0), num("LOCAL_WORLD_SIZE", world))


def check_world(ctx: Context, processes: int) -> None:
    """ValueError (one line) unless the job was started with ``processes`` ranks."""
    if ctx.world == processes:
        return
    if ctx.world == 1:
        raise ValueError(f"train.processes is {processes}: start the job with `rhosym train JOB.json` (it starts "
                         f"torchrun) or `torchrun --nproc_per_node {processes} -m rhosym.cli train JOB.json`")
    raise ValueError(f"started as {ctx.world} processes (WORLD_SIZE) but train.processes is {processes}: "
                     "the number of ranks changes the result, so it must match")


@contextmanager
def session(ctx: Context, device):
    """The process group of the ranks around a training run (nothing with one process); yields the device
    of this rank: ``cuda:<LOCAL_RANK>`` (nccl) or the CPU (gloo)."""
    if not ctx.enabled:
        yield device
        return
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        device = torch.device("cuda", ctx.local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT, **({"device_id": device} if backend == "nccl" else {}))
    try:
        yield device
    finally:
        dist.destroy_process_group()


def wrap(model, ctx: Context, device):
    """``model`` wrapped in DDP for training (itself with one process)."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index], output_device=device.index)
    return DistributedDataParallel(model)


def sync_batchnorm(model, ctx: Context, device):
    """BatchNorm layers converted to SyncBatchNorm (CUDA with several ranks only: the batch statistics
    are then those of the step's global batch)."""
    if not (ctx.enabled and device.type == "cuda"):
        return model
    import torch

    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def rank_threads(threads: int, ctx: Context) -> int:
    """Torch threads of one rank: the job's ``threads`` (cores) divided among the ranks of its node."""
    return max(1, int(threads) // max(1, ctx.local_world))


def gpu_request(gpus: int, processes: int, device: str) -> int:
    """The ``gpu`` resource of a training job: one GPU per rank when the job uses GPUs (``train.gpus`` > 0
    and device cuda or auto), else ``train.gpus`` unchanged."""
    if int(gpus) > 0 and device in ("cuda", "auto"):
        return max(int(processes), 1)
    return int(gpus)


def launch_command(job_file: str, processes: int, args: list[str] | tuple = ()) -> list[str]:
    """``torchrun --standalone`` (as ``python -m torch.distributed.run``) running ``rhosym train`` on one
    node with ``processes`` ranks."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
            str(int(processes)), "-m", "rhosym.cli", "train", str(job_file), *args]


def launch(job_file: str, processes: int, args: list[str] | tuple = (), log_file: str | None = None) -> int:
    """Run :func:`launch_command` and return its exit status (non-zero when any rank failed); its output
    goes to ``log_file`` (appended) when given, else to this process's stdout and stderr."""
    cmd = launch_command(job_file, processes, args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if log_file is None:
        return subprocess.call(cmd, env=env)
    with open(log_file, "a") as log:
        log.flush()
        return subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
