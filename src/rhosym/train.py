"""One trainer for every model: classification (full class sets), joint symmetry (one network, three
consistent answers; rhosym.hierarchy) and regression (standardized L1).

:func:`train` runs a :class:`TrainJob` in named steps: :func:`prepare_data` (TRAINING and VALIDATION
structures of the split, never the test split; normalization and target scaling from TRAIN only),
:func:`build_network` (optionally initialized from a pretrained checkpoint), :func:`make_optimizer`,
:func:`make_scheduler`, :func:`make_criterion`, :func:`resume_state` (continue a killed run from
``last.pt`` when settings, inputs and split are unchanged), :func:`run_epochs` (early stopping and the
learning-rate schedule look at the VALIDATION split only) and :func:`finish`. Every epoch rewrites
``history.csv``, ``last.pt`` and, when the validation metric improved, ``checkpoint.pt``, all atomically.
``last.pt`` also holds the validation-best weights, so a rerun whose ``checkpoint.pt`` was removed (by
Snakemake, before a job) writes the best epoch again, never the last one. File format:
:mod:`rhosym.checkpoint`. With ``train.processes`` N > 1 the same steps run in N data-parallel ranks
(DDP under torchrun); what that changes, and what stays exact, is in :mod:`rhosym.distributed`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from rhosym import checkpoint as C
from rhosym import loaders as L
from rhosym.logs import progress
from rhosym.registry import TASKS
from rhosym.runtime import autocast, forward, peak_memory_mb, pick_device, to_device
from rhosym.settings import TrainParams

log = logging.getLogger("rhosym.train")

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_metric", "metric", "lr", "seconds", "samples_per_s",
                   "peak_mem_mb"]


@dataclass
class TrainJob:
    """Everything one training run needs, typed. ``cfg``: the result-affecting training settings
    (:class:`rhosym.settings.TrainParams`, resolved once by ``Config.train_params``; a partial dict is
    resolved here by the same :func:`rhosym.settings.train_params`); the last group of fields are job
    resources that never change the result. :meth:`to_json` / :meth:`from_json` serialize a job, so
    that ``rhosym train JOB.json`` runs it outside Snakemake (a launcher of several processes starts that)."""

    model: str
    task: str
    input: str
    stores: list
    manifest: object  # path or DataFrame
    split: object  # path or DataFrame
    out_dir: str | Path
    features: int = 1
    points: int = 0
    cfg: object = None  # TrainParams (or a partial dict of train keys)
    seed: int = 0
    dataset: str = ""
    split_rule: str = ""
    pretrained: str | None = None  # checkpoint initializing the network (fine-tuning)
    pretrained_from: str | None = None  # its data set
    provenance: dict = field(default_factory=dict)  # the data set's kind, cell, labels, ingest settings
    device: str = "auto"
    num_workers: int = 0
    threads: int = 0
    resume: bool = True
    cache_mb: int = 4000
    fraction: float = 1.0  # of the training split (learning curves; :func:`training_subset`)
    lattice_stores: list = field(default_factory=list)  # ingest shards: the cells of a lattice-conditioned network
    registry: object = None  # tests pass a stand-in (build_model, collate, INPUT_KIND)

    def __post_init__(self):
        from rhosym.settings import train_params

        if not isinstance(self.cfg, TrainParams):
            self.cfg = train_params(self.model, self.task, dict(self.cfg or {}), validate_model=self.registry is None)

    def to_json(self, path: str | Path) -> None:
        """Write the job as JSON (paths only: a job made with DataFrames cannot be serialized)."""
        from rhosym.store import atomic_file

        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("registry", "cfg")}
        for k in ("manifest", "split"):
            if not isinstance(d[k], str | Path):
                raise ValueError(f"a job with an in-memory {k} cannot be written as JSON")
        d.update(out_dir=str(self.out_dir), manifest=str(self.manifest), split=str(self.split),
                 stores=[str(p) for p in self.stores], lattice_stores=[str(p) for p in self.lattice_stores],
                 cfg=self.cfg.model_dump(), format=JOB_FORMAT)
        with atomic_file(path) as tmp:
            Path(tmp).write_text(json.dumps(d, indent=1, default=str))

    @classmethod
    def from_json(cls, path: str | Path) -> TrainJob:
        """A job written by :meth:`to_json`; ValueError (one line) for anything else."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: not a training job file ({' '.join(str(exc).split())})") from None
        if not isinstance(d, dict) or d.pop("format", None) != JOB_FORMAT:
            raise ValueError(f"{path}: not a training job file of format {JOB_FORMAT}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown job keys {sorted(unknown)}")
        d["cfg"] = TrainParams.model_validate(d.get("cfg") or {})
        return cls(**d)


JOB_FORMAT = 1


def training_subset(ids: list[str], fraction: float) -> list[str]:
    """The first ``ceil(fraction × n)`` training ids in a fixed hash order: subsets of one split are
    nested (1/8 ⊂ 1/4 ⊂ 1/2 ⊂ all) and the same for every model and seed; the split order is kept."""
    import hashlib
    import math

    if fraction >= 1.0:
        return list(ids)
    rank = sorted(ids, key=lambda i: hashlib.blake2b(f"fraction:{i}".encode(), digest_size=8).digest())
    keep = set(rank[:max(1, math.ceil(fraction * len(ids)))])
    return [i for i in ids if i in keep]


def _registry(job: TrainJob):
    if job.registry is not None:
        return job.registry
    import rhosym.models as registry_module

    return registry_module


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2 ** 32)  # noqa: NPY002 - legacy global RNG some libraries still use
    torch.manual_seed(seed)


def atomic_csv(df: pd.DataFrame, path: str | Path) -> None:
    from rhosym.store import atomic_file

    with atomic_file(path, hidden=True) as tmp:
        df.to_csv(tmp, index=False)


def _read_table(t) -> pd.DataFrame:
    return t if isinstance(t, pd.DataFrame) else pd.read_parquet(t)


# ============================================================================================ steps
@dataclass
class TrainData:
    input: object  # rhosym.inputs.InputKind
    kind: str  # classification | regression | joint
    items: dict
    datasets: dict
    norm: dict | None
    target: dict | None
    in_features: int
    lattice: dict | None = None  # the lattice features' standardization of a lattice-conditioned network
    in_lattice: int = 0  # how many lattice features its head reads

    @property
    def regression(self) -> bool:
        return self.kind == "regression"


def prepare_data(job: TrainJob, cfg: TrainParams, pretrained: dict | None = None, ctx=None) -> TrainData:
    """Train and val datasets, label maps, normalization and target scaling (all from TRAIN only; a
    fine-tuned network keeps its pretrained normalization). With data-parallel ranks (``ctx``, a
    :class:`rhosym.distributed.Context`) the normalization is computed on rank 0 and broadcast."""
    from rhosym import inputs

    source = inputs.kind(_registry(job).INPUT_KIND[job.model])
    kind = TASKS[job.task].kind
    manifest, split = _read_table(job.manifest), _read_table(job.split)
    labels = L.encode_labels(manifest, job.task)
    ids = {s: split.loc[split["split"] == s, "id"].astype(str).tolist() for s in ("train", "val")}
    if job.fraction < 1.0:
        n_all = len(ids["train"])
        ids["train"] = training_subset(ids["train"], job.fraction)
        log.info("learning curve: %d of %d training structures (fraction %g)", len(ids["train"]), n_all, job.fraction)
    index = L.index_stores(list(job.stores), source)
    items = {s: L.build_items(ids[s], labels, list(job.stores), source, name=s, index=index,
                              max_points=job.points) for s in ("train", "val")}
    if len(items["train"]) == 0:
        raise ValueError(f"no training structures for {job.model}/{job.task}: every one is missing from the "
                         f"stores or has no label ({items['train'].skipped})")
    augment = cfg.augment
    datasets = {
        "train": L.StoreDataset(items["train"], source, job.features, max_points=job.points, seed=job.seed,
                                augment=augment, cache_mb=job.cache_mb),
        "val": L.StoreDataset(items["val"], source, job.features, max_points=job.points, seed=job.seed,
                              cache_mb=job.cache_mb),
    }
    norm = target = None
    if pretrained is not None:
        norm, target = pretrained["meta"].norm, pretrained["meta"].target
    else:
        if kind == "regression":
            yt = np.asarray(items["train"].y)
            target = {"mean": float(yt.mean()), "std": float(yt.std()) if yt.std() > 0 else 1.0}
        fit = partial(datasets["train"].fit_norm, cfg.norm_max_structures, job.seed)
        norm = ctx.on_main(fit) if ctx is not None else fit()
    for d in datasets.values():
        d.norm = norm
    lattice = lattice_conditioning(job, cfg, items, datasets, pretrained)
    in_features = source.in_features(job.features, datasets["train"][0]["sample"])
    return TrainData(source, kind, items, datasets, norm, target, in_features, lattice,
                     len(lattice["features"]) if lattice else 0)


def lattice_conditioning(job: TrainJob, cfg: TrainParams, items: dict, datasets: dict,
                         pretrained: dict | None = None) -> dict | None:
    """A lattice-conditioned network (``cfg.with_lattice``, rhosym.conditioning): the cells of the job's
    ``lattice_stores`` (the data set's ingest shards), their features standardized on the TRAINING
    structures (a fine-tuned network keeps its pretrained standardization), attached to every sample of
    ``datasets``. Returns the standardization (the checkpoint's ``lattice``), or None when off."""
    if not cfg.with_lattice:
        return None
    from rhosym import conditioning as K

    if not job.lattice_stores:
        raise ValueError(f"{job.model}/{job.task}: a lattice-conditioned network (with_lattice) needs the data "
                         f"set's ingest shards (TrainJob.lattice_stores)")
    table = K.CellTable(job.lattice_stores)
    if pretrained is not None:
        norm = pretrained["meta"].lattice
        if not norm:
            raise ValueError(f"{job.pretrained}: not a lattice-conditioned checkpoint; a +lattice network is "
                             f"fine-tuned from a +lattice one")
    else:
        norm = K.fit(table, items["train"].ids, job.seed)
    for d in datasets.values():
        d.lattice = K.LatticeFeatures(table, norm)
    log.info("lattice-conditioned: %d lattice features of the data set's cell from %d ingest shards",
             len(norm["features"]), len(job.lattice_stores))
    return norm


def make_loader(dataset, sizes, collate, cfg: TrainParams, shuffle: bool, seed: int, device, num_workers: int = 0,
                rank: int = 0, replicas: int = 1, pad: bool = True, weights=None):
    """DataLoader over the budget batcher; with ``replicas`` > 1 this rank's batches of the global list
    (:class:`rhosym.loaders.BudgetBatchSampler`)."""
    import torch
    from torch.utils.data import DataLoader

    sampler = L.BudgetBatchSampler(sizes, cfg.batch_budget, cfg.max_batch_size, shuffle=shuffle, seed=seed,
                                   rank=rank, replicas=replicas, pad=pad, weights=weights)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=int(num_workers),
                        worker_init_fn=L.seed_worker, generator=torch.Generator().manual_seed(seed),
                        persistent_workers=False, pin_memory=device.type == "cuda")
    return loader, sampler


def build_network(job: TrainJob, cfg: TrainParams, data: TrainData, device, pretrained: dict | None = None):
    """The network of the job, on ``device``; a fine-tuned job starts from the pretrained weights."""
    reg = _registry(job)
    kw = {"in_lattice": data.in_lattice} if data.in_lattice else {}
    model = reg.build_model(job.model, TASKS[job.task].n_out, data.regression, data.in_features, cfg.model, **kw)
    if pretrained is not None:
        model.load_state_dict(pretrained["state_dict"], strict=True)
        log.info("initialized from %s (%s)", job.pretrained, job.pretrained_from)
    return model.to(device)


def make_optimizer(model, cfg: TrainParams):
    import torch

    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def make_scheduler(opt, cfg: TrainParams):
    import torch

    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(int(cfg.epochs), 1))
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor,
                                                          patience=cfg.plateau_patience)
    if cfg.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}")


def class_weight_vector(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights from the training labels (mean 1 over present classes; absent → 1)."""
    counts = np.bincount(y.astype(np.int64), minlength=n_classes).astype(float)
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return w


def make_criterion(job: TrainJob, cfg: TrainParams, data: TrainData, device):
    import torch

    if data.kind == "regression":
        return torch.nn.L1Loss()
    if data.kind == "joint":
        from rhosym.hierarchy import JointLoss

        return JointLoss(device, cfg.label_smoothing)
    weight = None
    if cfg.class_weights:
        w = class_weight_vector(np.asarray(data.items["train"].y), TASKS[job.task].n_out)
        weight = torch.as_tensor(w, dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=float(cfg.label_smoothing))


def metric(out, y, kind: str, y_std: float) -> float:
    """Validation metric: MAE in physical units (regression), accuracy (classification), mean of the
    three accuracies (joint)."""
    if len(y) == 0:
        return float("nan")
    if kind == "regression":
        return float((out - y).abs().mean()) * y_std
    if kind == "joint":
        from rhosym.hierarchy import index_maps, marginal_probabilities

        prob = np.asarray(out.softmax(1).double())
        yy = np.asarray(y)
        accs = [float((marginal_probabilities(prob, t).argmax(1) == m[yy]).mean()) for t, m in index_maps().items()]
        return float(np.mean(accs))
    return float((out.argmax(1) == y).float().mean())


def better(a: float, b: float | None, regression: bool) -> bool:
    if b is None or not np.isfinite(b):
        return np.isfinite(a)
    return a < b if regression else a > b


def evaluate(model, loader, device, cfg: TrainParams, regression: bool, criterion=None):
    """Loss (when ``criterion`` is given), raw outputs (float32, CPU), labels and ids over ``loader``."""
    import torch

    model.eval()
    outs, ys, ids = [], [], []
    loss_sum, n = 0.0, 0
    with torch.no_grad():
        for batch, y, bid in loader:
            batch, y = to_device(batch, device), y.to(device)
            with autocast(device, cfg.amp, cfg.amp_dtype):
                out = forward(model, batch, regression)
            if criterion is not None:
                loss_sum += float(criterion(out, y)) * len(y)
            n += len(y)
            outs.append(out.detach().float().cpu())
            ys.append(y.cpu())
            ids.extend(bid)
    if not outs:
        return float("nan"), torch.empty(0), torch.empty(0), []
    return (loss_sum / max(n, 1) if criterion is not None else float("nan")), torch.cat(outs), torch.cat(ys), ids


def resume_key(meta: C.CheckpointMeta, ids: dict, pretrained_key: str = "") -> str:
    """Fingerprint of what a resumed run must share with the killed one: the experiment, the model and
    training settings (except length and job resources), the input store's settings, the split ids and
    the pretrained checkpoint."""
    from rhosym.settings import RESUME_FREE_KEYS

    train_cfg = {k: v for k, v in meta.train_config.items() if k not in RESUME_FREE_KEYS}
    key = {k: getattr(meta, k) for k in ("model", "model_cfg", "task", "features", "points", "input", "n_out",
                                          "input_store", "seed")}
    key.update(train=train_cfg, ids=ids, pretrained=pretrained_key)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class LoopState:
    epoch: int = 0  # last finished epoch
    history: list = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    best_state_dict: dict | None = None


def resume_state(job: TrainJob, meta: C.CheckpointMeta, model, opt, sched, scaler) -> LoopState:
    """The loop state from ``last.pt`` when it was made with the same settings, inputs and split."""
    import torch

    last = Path(job.out_dir) / "last.pt"
    if not (job.resume and last.exists()):
        return LoopState()
    try:
        state = C.load(last)
    except C.CheckpointError as exc:
        log.warning("%s not usable (%s); training from scratch", last, exc)
        return LoopState()
    t = state["training"] or {}
    if state["meta"].resume_key != meta.resume_key or not t:
        log.warning("%s was made with other settings, inputs or split; training from scratch", last)
        return LoopState()
    model.load_state_dict(state["state_dict"])
    opt.load_state_dict(t["optimizer"])
    try:
        sched.load_state_dict(t["scheduler"])
    except Exception as exc:  # noqa: BLE001 - a different scheduler asked for on resume
        log.warning("scheduler state not restored (%s)", exc)
    if t.get("scaler"):
        scaler.load_state_dict(t["scaler"])
    if t.get("torch_rng") is not None:
        torch.set_rng_state(t["torch_rng"].cpu())
    st = LoopState(int(t["epoch"]), list(t["history"]), t.get("best_metric"), int(t.get("best_epoch", 0)),
                   int(t.get("bad_epochs", 0)), bool(t.get("stopped_early", False)), t.get("best_state_dict"))
    log.info("resuming from %s after epoch %d (best %s at epoch %d)", last, st.epoch, st.best_metric, st.best_epoch)
    return st


def _plain(row: dict) -> dict:
    return {k: (float(v) if isinstance(v, float | np.floating) else int(v) if isinstance(v, np.integer) else v)
            for k, v in row.items()}


def _save(job: TrainJob, meta: C.CheckpointMeta, model, opt, sched, scaler, st: LoopState, best: bool) -> None:
    import copy

    import torch

    out = Path(job.out_dir)
    meta.best_epoch, meta.best_metric, meta.epochs_run = st.best_epoch, st.best_metric, len(st.history)
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if best:
        st.best_state_dict = copy.deepcopy(weights)
        C.save(out / "checkpoint.pt", meta, weights)
    training = {"epoch": st.epoch, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None, "torch_rng": torch.get_rng_state(),
                "history": [_plain(h) for h in st.history], "best_metric": st.best_metric,
                "best_epoch": st.best_epoch, "bad_epochs": st.bad_epochs, "stopped_early": st.stopped_early,
                "best_state_dict": st.best_state_dict}
    C.save(out / "last.pt", meta, weights, training)
    atomic_csv(pd.DataFrame(st.history, columns=HISTORY_COLUMNS), out / "history.csv")


def run_epochs(job, cfg, data, model, loaders, opt, sched, scaler, criterion, device, meta, st: LoopState,
               ctx=None, net=None) -> LoopState:
    """Train until ``epochs`` or early stopping (VALIDATION metric), saving after every epoch.

    Data-parallel (``ctx``, :mod:`rhosym.distributed`): ``net`` is ``model`` wrapped in DDP and trains;
    each rank's loss is scaled by its batch's share of the step (exact gradient of the step's mean loss,
    padding batches contribute nothing); ``model`` evaluates this rank's validation batches, which rank 0
    gathers; the metric and the summed training loss are broadcast from rank 0, so every rank takes the
    same scheduler and early-stopping decisions; rank 0 alone saves."""
    from contextlib import nullcontext

    import torch

    from rhosym.distributed import Context

    ctx = ctx or Context()
    net = model if net is None else net
    regression = data.regression
    y_std = (data.target or {"std": 1.0})["std"]
    accumulate = max(1, int(cfg.accumulate))
    for epoch in range(st.epoch + 1, int(cfg.epochs) + 1):
        if st.stopped_early:
            break
        t0 = time.time()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        net.train()
        train_loader, train_sampler = loaders["train"]
        train_sampler.set_epoch(epoch)
        data.datasets["train"].set_epoch(epoch)
        lr = opt.param_groups[0]["lr"]
        loss_sum, n_seen = 0.0, 0
        opt.zero_grad(set_to_none=True)
        n_batches = len(train_sampler)
        shares = train_sampler.shares() if ctx.enabled else None
        for step, (batch, y, _) in enumerate(progress(train_loader, desc=f"epoch {epoch}", total=n_batches), 1):
            batch, y = to_device(batch, device), y.to(device)
            with autocast(device, cfg.amp, cfg.amp_dtype):
                out = forward(net, batch, regression)
            loss = criterion(out, y)
            share = 1.0 if shares is None else shares[step - 1]
            sync = step % accumulate == 0 or step == n_batches
            scaled = loss if shares is None else loss * (share * ctx.world)
            with net.no_sync() if ctx.enabled and not sync else nullcontext():
                scaler.scale(scaled / accumulate).backward()
            if sync:
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg.grad_clip))
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
            n = len(y) if share > 0 else 0  # a padding batch counts nothing
            loss_sum += float(loss.detach()) * n
            n_seen += n
        train_seconds = time.time() - t0
        val_loss, out, yv, _ = evaluate(model, loaders["val"][0], device, cfg, regression, criterion)
        if ctx.enabled:
            loss_sum, n_seen, val_loss, out, yv = _gather_epoch(ctx, loss_sum, n_seen, val_loss, out, yv)
        val_metric = metric(out, yv, data.kind, y_std) if ctx.main else float("nan")
        val_loss, val_metric, loss_sum, n_seen = ctx.broadcast((val_loss, val_metric, loss_sum, n_seen))
        if cfg.scheduler == "plateau":
            sched.step(val_loss if np.isfinite(val_loss) else loss_sum / max(n_seen, 1))
        else:
            sched.step()
        row = {"epoch": epoch, "train_loss": loss_sum / max(n_seen, 1), "val_loss": val_loss,
               "val_metric": val_metric, "metric": "mae" if regression else "accuracy", "lr": lr,
               "seconds": time.time() - t0, "samples_per_s": n_seen / max(train_seconds, 1e-9),
               "peak_mem_mb": peak_memory_mb(device)}
        st.history.append(row)
        st.epoch = epoch
        improved = better(val_metric, st.best_metric, regression) or (st.best_epoch == 0 and not np.isfinite(val_metric))
        if improved:
            st.best_metric = float(val_metric) if np.isfinite(val_metric) else None
            st.best_epoch, st.bad_epochs = epoch, 0
        else:
            st.bad_epochs += 1
        if cfg.patience and st.bad_epochs >= int(cfg.patience):
            st.stopped_early = True
            log.info("early stop after epoch %d: no better val %s for %d epochs", epoch, row["metric"], st.bad_epochs)
        st.stopped_early = ctx.broadcast(st.stopped_early)  # rank 0 decides (all ranks agree by construction)
        log.info("epoch %d: train loss %.4f, val loss %.4f, val %s %.4f, lr %.2e, %.1f s, %.1f samples/s, "
                 "peak %.0f MB", epoch, row["train_loss"], val_loss, row["metric"], val_metric, lr, row["seconds"],
                 row["samples_per_s"], row["peak_mem_mb"])
        if ctx.main:
            _save(job, meta, model, opt, sched, scaler, st, improved)
    return st


def _gather_epoch(ctx, loss_sum, n_seen, val_loss, out, yv):
    """On rank 0: the training-loss sums and the validation outputs of every rank (the full validation set);
    elsewhere the inputs unchanged (rank 0's values are broadcast afterwards)."""
    import torch

    nv = len(yv)
    parts = ctx.gather((loss_sum, n_seen, val_loss * nv if nv else 0.0, nv, out, yv))
    if not ctx.main:
        return loss_sum, n_seen, val_loss, out, yv
    nv = sum(p[3] for p in parts)
    full = [p for p in parts if p[3]]
    return (sum(p[0] for p in parts), sum(p[1] for p in parts),
            sum(p[2] for p in full) / nv if nv else float("nan"),
            torch.cat([p[4] for p in full]) if full else torch.empty(0),
            torch.cat([p[5] for p in full]) if full else torch.empty(0))


def finish(job: TrainJob, meta: C.CheckpointMeta, st: LoopState) -> None:
    """Make sure checkpoint.pt (the validation-best weights) and history.csv exist after a rerun that had
    nothing left to train (Snakemake removes the outputs of a job before running it)."""
    out = Path(job.out_dir)
    if not (out / "checkpoint.pt").exists():
        if st.best_state_dict is None:
            raise RuntimeError(f"{out}: no validation-best weights to write (last.pt lacks them)")
        meta.best_epoch, meta.best_metric, meta.epochs_run = st.best_epoch, st.best_metric, len(st.history)
        C.save(out / "checkpoint.pt", meta, st.best_state_dict)
        log.info("checkpoint.pt rewritten from last.pt: the validation-best epoch %d", st.best_epoch)
    if not (out / "history.csv").exists():
        atomic_csv(pd.DataFrame(st.history, columns=HISTORY_COLUMNS), out / "history.csv")


def fit_free(job: TrainJob, cfg: TrainParams, data: TrainData, model, loaders, device, meta: C.CheckpointMeta,
             criterion, ctx) -> dict:
    """A model without trainable parameters (a fixed rule such as the classical finder): nothing to fit.
    Its validation metric is measured once and written as epoch 0 of ``history.csv``, and the checkpoint
    holds its (empty or fixed) state, so predictions, metrics and robustness treat it like any model."""
    t0 = time.time()
    y_std = (data.target or {"std": 1.0})["std"]
    val_loss, out, yv, _ = evaluate(model, loaders["val"][0], device, cfg, data.regression, criterion)
    val_metric = metric(out, yv, data.kind, y_std) if len(yv) else float("nan")
    row = {"epoch": 0, "train_loss": float("nan"), "val_loss": val_loss, "val_metric": val_metric,
           "metric": "mae" if data.regression else "accuracy", "lr": 0.0, "seconds": time.time() - t0,
           "samples_per_s": float("nan"), "peak_mem_mb": peak_memory_mb(device)}
    meta.best_epoch, meta.best_metric, meta.epochs_run = 0, (float(val_metric) if np.isfinite(val_metric) else None), 0
    if ctx.main:
        out_dir = Path(job.out_dir)
        C.save(out_dir / "checkpoint.pt", meta, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        atomic_csv(pd.DataFrame([row], columns=HISTORY_COLUMNS), out_dir / "history.csv")
    log.info("%s/%s has nothing (more) to fit: val %s %.4f (%d structures)", job.model, job.task, row["metric"], val_metric,
             meta.n_val)
    return {"best_epoch": 0, "best_metric": meta.best_metric, "epochs_run": 0, "stopped_early": False,
            "n_train": meta.n_train, "n_val": meta.n_val}


def _collect(loader) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of every structure a loader yields once (a padded sampler's repeats dropped)."""
    xs, ys, seen = [], [], set()
    for batch, y, ids in loader:
        for i, sid in enumerate(ids):
            if sid not in seen:
                seen.add(sid)
                xs.append(batch["lattice"][i].numpy())
                ys.append(y[i].numpy())
    if not xs:
        return np.empty((0, 0), np.float32), np.empty(0)
    return np.stack(xs), np.stack(ys)


def fit_boosted(job: TrainJob, cfg: TrainParams, data: TrainData, model, loaders, device, meta: C.CheckpointMeta,
                criterion, ctx, collate) -> dict:
    """A tree ensemble (``ModelSpec.boosted``, rhosym.models.lattice_gbm): its library fits it on the
    prepared TRAINING features, stopping on the VALIDATION split; then, like a fit-free model, its
    validation metric is epoch 0 of ``history.csv`` and its state (the ensemble's text) the checkpoint;
    the temperature is fitted on the validation split as for a network."""
    if ctx.enabled:
        raise ValueError(f"{job.model} is fitted in one process: set train.processes to 1")
    x, y = _collect(loaders["train"][0])
    xv, yv = _collect(loaders["val"][0])
    if not len(x):
        raise ValueError(f"{job.model}/{job.task}: no training structures")
    t0 = time.time()
    info = model.fit(x, y, xv, yv, seed=job.seed, threads=job.threads or 1)
    log.info("%s/%s: %d boosting rounds (validation early stopping), %d classes, %d bytes of model text in "
             "%.1f s", job.model, job.task, info["rounds"], info["classes"], info["bytes"], time.time() - t0)
    summary = fit_free(job, cfg, data, model, loaders, device, meta, criterion, ctx)
    calibrate(job, cfg, data, model, collate, device)
    return summary


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The softmax temperature T minimizing the negative log-likelihood of ``y`` under softmax(logits / T)
    (Guo et al. 2017), by a log-spaced search over [0.05, 20] refined around its minimum; 1.0 without
    data. Accuracy is unchanged (the ranking of the classes is)."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 81))
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = best * np.exp(np.linspace(-0.06, 0.06, 25))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def calibrate(job: TrainJob, cfg: TrainParams, data: TrainData, model, collate, device) -> float | None:
    """Fit the temperature of the validation-best network on the VALIDATION split and record it in
    ``checkpoint.pt`` (classification and joint tasks; the joint network's 230-way head, whose
    marginals then follow). Returns T, or None for a regression or an empty validation split."""
    out = Path(job.out_dir)
    if data.regression or not len(data.items["val"]) or not (out / "checkpoint.pt").exists():
        return None
    state = C.load(out / "checkpoint.pt")
    if state["state_dict"]:
        model.load_state_dict(state["state_dict"])
    loader, _ = make_loader(data.datasets["val"], data.items["val"].size, collate, cfg, False, job.seed, device)
    _, logits, y, _ = evaluate(model, loader, device, cfg, False)
    t = fit_temperature(logits.numpy(), y.numpy())
    state["meta"].temperature = t
    C.save(out / "checkpoint.pt", state["meta"], state["state_dict"])
    log.info("temperature %.3f fitted on %d validation structures", t, len(y))
    return t


def sample_weights(job: TrainJob, cfg: TrainParams, data: TrainData) -> np.ndarray | None:
    """Per training item, its weight in the mean loss: its class weight for a class-weighted
    classification loss, else ``None`` (every item weighs 1)."""
    if data.kind != "classification" or not cfg.class_weights:
        return None
    y = np.asarray(data.items["train"].y).astype(np.int64)
    return class_weight_vector(y, TASKS[job.task].n_out)[y]


def train(job: TrainJob) -> dict:
    """Train one experiment; returns a summary dict (module docstring). With ``train.processes`` N > 1 it
    runs in each of N ranks started by torchrun (:mod:`rhosym.distributed`; ``rhosym train JOB.json``
    starts them); ValueError (one line) when the number of ranks is not N."""
    import torch

    from rhosym import distributed as D

    ctx = D.context()
    D.check_world(ctx, int(job.cfg.processes))
    if not ctx.main:  # rank 0 logs for all
        logging.getLogger("rhosym").setLevel(logging.WARNING)
    if job.threads:
        torch.set_num_threads(D.rank_threads(job.threads, ctx))
    with D.session(ctx, pick_device(job.device)) as device:
        return _train(job, ctx, device)


def _train(job: TrainJob, ctx, device) -> dict:
    import torch

    from rhosym import __version__
    from rhosym import distributed as D

    cfg = job.cfg
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    seed_everything(job.seed)
    job.stores = [str(s) for s in job.stores]
    pretrained = C.load(job.pretrained) if job.pretrained else None
    data = prepare_data(job, cfg, pretrained, ctx)
    reg = _registry(job)
    target = data.target or {"mean": 0.0, "std": 1.0}
    collate = L.Collate(reg.collate, job.model, data.regression, target["mean"], target["std"])
    weights = sample_weights(job, cfg, data) if ctx.enabled else None
    loaders = {s: make_loader(data.datasets[s], data.items[s].size, collate, cfg, s == "train", job.seed, device,
                              job.num_workers, rank=ctx.rank, replicas=ctx.world, pad=s == "train",
                              weights=weights if s == "train" else None) for s in ("train", "val")}
    model = D.sync_batchnorm(build_network(job, cfg, data, device, pretrained), ctx, device)
    criterion = make_criterion(job, cfg, data, device)
    meta = C.CheckpointMeta(
        dataset=job.dataset, model=job.model, task=job.task, regression=data.regression,
        n_out=TASKS[job.task].n_out, label_values=L.label_values(job.task), input=job.input,
        input_kind=data.input.name, features=int(job.features), in_features=data.in_features,
        model_cfg=cfg.model, answers=list(TASKS[job.task].answers or (job.task,)), points=int(job.points),
        split=job.split_rule, seed=int(job.seed), pretrained=job.pretrained_from,
        input_store=data.input.store_meta(job.stores[0]) if job.stores else {}, provenance=dict(job.provenance),
        norm=data.norm, target=data.target, lattice=data.lattice,
        train_config=cfg.model_dump(), n_train=len(data.items["train"]), n_val=len(data.items["val"]),
        skipped={s: data.items[s].skipped for s in data.items}, rhosym_version=__version__)
    meta.resume_key = resume_key(meta, {s: list(data.items[s].ids) for s in ("train", "val")},
                                 pretrained["meta"].resume_key if pretrained else "")
    if getattr(model, "boosted", False):  # a tree ensemble (lattice_gbm): its own library fits it
        return fit_boosted(job, cfg, data, model, loaders, device, meta, criterion, ctx, collate)
    if not any(p.requires_grad for p in model.parameters()):  # a rule, not a network (the classical finder)
        return fit_free(job, cfg, data, model, loaders, device, meta, criterion, ctx)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    use_amp = bool(cfg.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and cfg.amp_dtype != "bf16")
    st = resume_state(job, meta, model, opt, sched, scaler)
    if meta.n_val == 0:
        log.warning("no validation structures: the checkpoint is the last epoch and early stopping is off")
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s/%s (%s, f%d%s) on %s: %d train, %d val, %d parameters, epochs %d..%d", job.model, job.task,
             job.input, job.features, f", {job.points} points" if job.points else "", device, meta.n_train,
             meta.n_val, n_params, st.epoch + 1, cfg.epochs)
    if ctx.enabled:
        log.info("data-parallel: %d ranks (%s), %d steps per epoch of one batch per rank", ctx.world,
                 "nccl" if device.type == "cuda" else "gloo", len(loaders["train"][1]))
    net = D.wrap(model, ctx, device)
    st = run_epochs(job, cfg, data, model, loaders, opt, sched, scaler, criterion, device, meta, st, ctx, net)
    if ctx.main:
        finish(job, meta, st)
        calibrate(job, cfg, data, model, collate, device)
    summary = {"best_epoch": st.best_epoch, "best_metric": st.best_metric, "epochs_run": len(st.history),
               "stopped_early": st.stopped_early, "n_train": meta.n_train, "n_val": meta.n_val}
    log.info("done: best val %s %s at epoch %d", "mae" if data.regression else "accuracy", st.best_metric,
             st.best_epoch)
    return summary
