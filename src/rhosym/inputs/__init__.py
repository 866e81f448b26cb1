"""Input kinds: one module per kind of model input, behind one small interface (:class:`InputKind`).

A model reads one input (``rhosym.registry.INPUTS``); each input belongs to a kind
(``rhosym.registry.INPUT_KINDS``: the name and the ``module:attribute`` of its implementation). Everything
that depends on what an input *is* lives in that implementation and nowhere else:

==================  ===========================================================================
method              what it does
==================  ===========================================================================
``open``            open one per-shard store (a zarr group, an ingest Parquet table)
``index``           the ids of a store and each row's size (points, nodes, 1)
``context``         the store-level facts a transform needs (cells, voxel, frame), read once
``read``            one stored row as a per-sample dict (raw: density values in e/Å³)
``size``            the cost of a sample for the batch budget
``fit_norm``        normalization statistics from TRAINING samples (None: the kind has none)
``augment``         training-time transforms of a raw sample (seeded generator given)
``prepare``         a raw sample made ready for the network (channels, normalization)
``in_features``     the feature width a network of this kind is built with
``collate``         a list of prepared samples → a batch of tensors
``from_structure``  a raw sample made from a prepared structure (``rhosym predict``, robustness)
``from_density``    a raw sample made from a dense periodic density (kinds that read densities)
``perturbed``       the perturbed inputs of one test structure (robustness)
==================  ===========================================================================

Adding a kind is one module here defining an :class:`InputKind` subclass instance plus one entry in
``rhosym.registry.INPUT_KINDS`` (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from functools import cache

from rhosym.inputs.base import InputKind

__all__ = ["InputKind", "kind", "of_model", "of_input", "of_checkpoint"]


@cache
def _load(target: str) -> InputKind:
    mod, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(mod), attr)
    return obj() if isinstance(obj, type) else obj


def kind(name: str) -> InputKind:
    """The implementation of input kind ``name`` (``rhosym.registry.INPUT_KINDS``)."""
    from rhosym.registry import INPUT_KINDS

    if name not in INPUT_KINDS:
        raise ValueError(f"unknown input kind {name!r}; known: {', '.join(INPUT_KINDS)}")
    return _load(INPUT_KINDS[name].impl)


def of_input(input_name: str) -> InputKind:
    """The kind of input ``input_name`` (``grid``, ``random``, ``xrd``, ...)."""
    from rhosym.registry import INPUTS

    if input_name not in INPUTS:
        raise ValueError(f"unknown input {input_name!r}; known: {', '.join(INPUTS)}")
    return kind(INPUTS[input_name].kind)


def of_model(model: str) -> InputKind:
    """The kind of what model ``model`` reads (``rhosym.registry.MODELS``)."""
    from rhosym.registry import MODELS

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
    return kind(MODELS[model].input_kind)


def of_checkpoint(meta: dict) -> InputKind:
    """The kind of what a trained network reads (its checkpoint's ``meta``)."""
    return kind(meta["input_kind"])
