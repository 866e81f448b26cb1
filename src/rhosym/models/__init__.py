"""The networks and the contract between them and the trainer.

Models and their input kind
---------------------------
``MODELS`` are the six models of the study (five networks and the lattice-only control);
``INPUT_KIND`` says which input kind (:mod:`rhosym.inputs`) feeds each:

=============  ========  =====================================================================
model          input     module
=============  ========  =====================================================================
sparse_cnn     density   :mod:`rhosym.models.sparse_cnn` (spconv 2.x, ResNet-style encoder)
pointnet       density   :mod:`rhosym.models.pointnet`
xrd_fcn        xrd       :mod:`rhosym.models.xrd_fcn` (13 Conv1D layers, ~2.8 M parameters)
cgcnn          cgcnn     :mod:`rhosym.models.cgcnn` (Xie & Grossman 2018)
cogn           cogn      :mod:`rhosym.models.cogn` (Ruff et al. 2023, asymmetric-unit graphs)
lattice        lattice   :mod:`rhosym.models.lattice` (MLP on the lattice features, the control)
=============  ========  =====================================================================

``dense_cnn`` (:mod:`rhosym.models.dense_cnn`, input ``density``) is also built by :func:`build_model`
but is not one of ``MODELS``: it serves the sparse-vs-dense benchmark (``rhosym bench train``).

Per-sample dicts (numpy arrays, produced by the trainer from the stores)
------------------------------------------------------------------------
* density: ``xyz`` (n, 3) float32 Å; ``features`` (n, F) float32, already normalized by the trainer;
  ``voxels`` (n, 3) int32 ``[z, y, x]``; ``spatial_shape`` (3,) ints (the virtual frame).
* xrd: ``pattern`` (L,) float32; the model reads the first 8,192 points (``n_points``).
* cgcnn: ``atom_fea`` (N, A) float32; ``edge_index`` (E, 2) int64 ``[center, neighbour]`` local to the
  sample; ``edge_dist`` (E,) float32 Å.
* cogn: ``atom_fea`` (N, A) float32 (one row per asymmetric-unit node); ``node_weight`` (N,) float32
  (multiplicities); ``edge_index`` (E, 2) int64 ``[asym node, asym node of the neighbour]``;
  ``edge_dist`` (E,) float32; ``edge_vec`` (E, 3) float32 (carried, not used by the default model).
* optional ``lattice_features`` (41,) float32 in any kind (lattice-conditioned networks, rhosym.conditioning):
  the standardized lattice features of the sample's cell; :func:`collate` stacks them into
  ``batch["lattice_features"]`` (B, 41), which the head of a network built with ``in_lattice`` reads.
* optional ``y`` in any kind: the target (int class index or float value); :func:`collate` stacks it
  into ``batch["y"]`` (int64 when integer, float32 otherwise) when every sample has it.

Batches (:func:`collate`)
-------------------------
A dict of tensors on the CPU; the trainer moves every value with ``.to(device)``.

* density: ``xyz`` (N, 3), ``features`` (N, F), ``voxels`` (N, 3) int32, ``batch`` (N,) int64 sample
  index, ``counts`` (B,) int64 points per sample, ``spatial_shape`` (3,) int64 (elementwise max). The
  sparse CNN builds its ``spconv.SparseConvTensor`` (int32 indices ``[batch, z, y, x]``) inside
  ``forward``; PointNet centres ``xyz`` per sample and pools with a scatter-max over ``batch``.
* xrd: ``pattern`` (B, L) float32.
* cgcnn / cogn: the per-sample arrays concatenated, ``edge_index`` shifted to batch-global node
  numbers, ``batch`` (N,) int64 node → sample, ``counts`` (B,) int64 nodes per sample (and
  ``node_weight``, ``edge_vec`` for cogn).

``model(batch)`` returns a (B, n_out) tensor: logits for classification (use cross-entropy), or one
unconstrained value per sample for regression (``n_out=1``; no head ends in a ReLU, so negative targets
such as formation energies are reachable). :func:`sample_size` gives the cost measure used to batch
under a budget: points (density), pattern length (xrd), nodes + edges (graphs).

Configuration
-------------
Each model's architecture settings are a class in :mod:`rhosym.registry` (``MODELS[name].config``),
with the published values as defaults; :func:`build_model` validates the ``model`` block against it
(unknown keys are errors) and passes the typed, resolved settings object to the module's ``build``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from rhosym import inputs
from rhosym.registry import MODELS as SPECS
from rhosym.registry import STUDY_MODELS

MODELS = STUDY_MODELS


class _InputKinds(Mapping):
    """model name → the name of its input kind, read from the registry at each call (plugins included)."""

    def __getitem__(self, name: str) -> str:
        return inputs.of_model(name).name

    def __iter__(self):
        return iter(SPECS)

    def __len__(self) -> int:
        return len(SPECS)


INPUT_KIND = _InputKinds()

__all__ = ["MODELS", "INPUT_KIND", "build_model", "collate", "sample_size", "model_config"]


def model_config(name: str, cfg: dict | None, regression: bool):
    """The architecture settings of ``name``, typed (its registry class): defaults, then ``cfg``, resolved
    for the task kind where the class says how (``resolved``)."""
    c = cfg if isinstance(cfg, SPECS[name].config) else SPECS[name].config.model_validate(dict(cfg or {}))
    return c.resolved(regression) if hasattr(c, "resolved") else c


def build_model(name: str, n_out: int, regression: bool, in_features: int, cfg: dict | None = None,
                in_lattice: int = 0):
    """Build model ``name`` (a ``torch.nn.Module``) with ``n_out`` outputs.

    ``in_features``: F (density feature channels) for density models, A (atom feature length) for the
    graph models, the lattice feature count for the lattice control, ignored for xrd_fcn. ``cfg``: the
    model's architecture block (rhosym.registry), validated here. ``in_lattice`` > 0: a lattice-conditioned
    network (rhosym.conditioning), whose head also reads that many lattice features
    (``batch["lattice_features"]``); its module's ``build`` takes ``in_lattice``
    (:func:`rhosym.models.common.with_lattice`), and only models of ``rhosym.registry.LATTICE_MODELS`` do.
    """
    from rhosym.registry import LATTICE_MODELS

    inputs.of_model(name)
    mod = importlib.import_module(f"rhosym.models.{name}")
    kw = {}
    if in_lattice:
        if name not in LATTICE_MODELS:
            raise ValueError(f"{name} takes no lattice features: its input holds the cell already")
        kw["in_lattice"] = int(in_lattice)
    return mod.build(n_out=int(n_out), regression=bool(regression), in_features=int(in_features),
                     cfg=model_config(name, cfg, bool(regression)), **kw)


def collate(name: str, samples: list[dict]) -> dict:
    """Batch per-sample numpy dicts for model ``name`` (its input kind's collate; module docstring)."""
    return inputs.of_model(name).collate(samples)


def sample_size(name: str, sample: dict) -> int:
    """Cost of one sample for budget batching: points (density), pattern length (xrd, at most the
    8,192 points read), nodes + edges (graphs), 1 (lattice)."""
    return inputs.of_model(name).size(sample)
