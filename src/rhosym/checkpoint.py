"""The checkpoint format (version 2), shared by ``train``, ``infer`` and ``predict``.

A checkpoint file is a ``torch.save`` of a dict that loads with ``torch.load(weights_only=True)``, so
opening a checkpoint someone sent you cannot run code: only tensors and plain data (dict, list, str,
int, float, bool, None) are allowed, and anything else is refused::

    {"format": 2,
     "meta": {...CheckpointMeta as a plain dict...},
     "state_dict": {name: tensor},            # the weights (checkpoint.pt: the validation-best epoch)
     "training": {...}}                         # last.pt only: what resuming needs (below)

``meta`` (:class:`CheckpointMeta`) says what the network is and how to rebuild its inputs: the
experiment (data set, model, task, input, features, points, split, seed, pretrained source), where
its inputs came from (``provenance``: the data set's kind, density cell, label and ingest settings), the
architecture (``model_cfg``, validated against rhosym.registry), the output space (``n_out``,
``label_values``, ``answers`` of a joint task), the input store's settings (``input_store``: the
attributes of the training store, so ``rhosym predict`` rebuilds inputs exactly), the normalization
(``norm``) and target scaling (``target``) computed on the TRAINING split, the standardization of the
lattice features of a lattice-conditioned network (``lattice``, rhosym.conditioning; None otherwise), the
result-affecting training settings (``train_config``), counts, the validation-best epoch and metric, and the
fingerprint that allows resuming (``resume_key``).

``training`` (last.pt): ``epoch``, ``optimizer``, ``scheduler``, ``scaler``, ``torch_rng``, ``history``
(list of plain dicts), ``best_metric``, ``best_epoch``, ``bad_epochs``, ``stopped_early`` and
``best_state_dict`` (the validation-best weights, so a rerun after Snakemake removed checkpoint.pt
writes the best epoch again, never the last one).

Checkpoints of format 1 (rhosym 0.1) were full pickles: they are refused with a message; convert a
file you trust with ``rhosym convert-checkpoint OLD NEW``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

FORMAT = 2
CONVERT_HINT = ("if you trust where it came from, convert it with `rhosym convert-checkpoint OLD.pt NEW.pt` "
                "(that unpickles it once)")


class CheckpointError(ValueError):
    """A file that is not a usable rhosym checkpoint (the message says why, on one line)."""


@dataclass
class CheckpointMeta:
    """What a trained network is (module docstring). Plain data only."""

    dataset: str
    model: str
    task: str
    regression: bool
    n_out: int
    label_values: list
    input: str
    input_kind: str
    features: int
    in_features: int
    model_cfg: dict
    format: int = FORMAT
    answers: list = field(default_factory=list)
    points: int = 0
    split: str = ""
    seed: int = 0
    pretrained: str | None = None
    input_store: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)  # the data set's kind, cell, labels and ingest settings
    norm: dict | None = None
    target: dict | None = None
    # lattice-conditioned networks (rhosym.conditioning): the standardization of the 13 lattice features fitted on
    # the TRAINING split (features, mean, std, n_structures); None: the network reads no lattice features
    lattice: dict | None = None
    train_config: dict = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0
    skipped: dict = field(default_factory=dict)
    resume_key: str = ""
    best_epoch: int = 0
    best_metric: float | None = None
    epochs_run: int = 0
    temperature: float = 1.0  # softmax temperature fitted on the VALIDATION split (rhosym.train.calibrate)
    rhosym_version: str = ""

    def to_dict(self) -> dict:
        from rhosym.store import jsonable

        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> CheckpointMeta:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def save(path: str | Path, meta: CheckpointMeta, state_dict: dict, training: dict | None = None) -> None:
    """Write a checkpoint atomically (``.<name>.tmp-<pid>``, then rename; ``rhosym.store.atomic_file``).

    The checkpoint is serialized in memory and written with Python file I/O, so a full disk surfaces as
    ``OSError(ENOSPC)`` (torch's own file writer reports it as a bare "file write failed") and is raised
    as one line naming ``path``; the temporary is removed and ``path`` is left as it was."""
    import io

    import torch

    from rhosym.store import write_bytes_atomic

    path = Path(path)
    obj = {"format": FORMAT, "meta": meta.to_dict(), "state_dict": dict(state_dict)}
    if training is not None:
        obj["training"] = training
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getbuffer(), hidden=True)


def load(path: str | Path, map_location="cpu") -> dict:
    """``{"meta": CheckpointMeta, "state_dict": ..., "training": ... or None}``; refuses anything that is
    not a format-2 checkpoint of tensors and plain data (:class:`CheckpointError`)."""
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if not zipfile.is_zipfile(p):
        raise CheckpointError(f"{p}: not a readable checkpoint (not a torch.save zip file)")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{p}: refused: it holds Python objects other than tensors and plain data, which "
                              f"could run code when loaded ({first}); a rhosym 0.1 checkpoint is such a pickle: "
                              f"{CONVERT_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - not a torch file at all
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{p}: not a rhosym checkpoint (no format field)")
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{p}: checkpoint format {obj['format']}, this rhosym reads format {FORMAT}; "
                              f"{CONVERT_HINT}")
    try:
        meta = CheckpointMeta.from_dict(obj["meta"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{p}: checkpoint metadata incomplete ({exc})") from None
    return {"meta": meta, "state_dict": obj["state_dict"], "training": obj.get("training")}


def convert_v1(old: str | Path, new: str | Path) -> CheckpointMeta:
    """Rewrite a format-1 checkpoint (a pickle: load only files you trust) in format 2."""
    import torch

    state = torch.load(old, map_location="cpu", weights_only=False)  # noqa: S614 - explicit, trusted-only
    if not isinstance(state, dict) or state.get("format") != 1:
        raise CheckpointError(f"{old}: not a format-1 rhosym checkpoint")
    names = {f.name for f in fields(CheckpointMeta)}
    meta = {k: v for k, v in state.items() if k in names and k != "format"}
    meta.setdefault("answers", [state["task"]])
    m = CheckpointMeta(**meta)
    save(new, m, state["state_dict"])
    return m
