"""The networks and the contract between them and the trainer.

Models and their input kind
---------------------------
``MODELS`` are the five networks of the study; ``INPUT_KIND`` says which store feeds each:

=============  ========  =====================================================================
model          input     module
=============  ========  =====================================================================
sparse_cnn     density   :mod:`rhosym.models.sparse_cnn` (spconv 2.x, ResNet-style encoder)
pointnet       density   :mod:`rhosym.models.pointnet`
xrd_fcn        xrd       :mod:`rhosym.models.xrd_fcn` (13 Conv1D layers, ~2.8 M parameters)
cgcnn          cgcnn     :mod:`rhosym.models.cgcnn` (Xie & Grossman 2018)
cogn           cogn      :mod:`rhosym.models.cogn` (Ruff et al. 2023, asymmetric-unit graphs)
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
(unknown keys are errors) and passes the resolved dict to the module's ``build``.
"""

from __future__ import annotations

import importlib

from rhosym.registry import MODELS as SPECS
from rhosym.registry import STUDY_MODELS

MODELS = STUDY_MODELS
INPUT_KIND = {name: spec.input_kind for name, spec in SPECS.items()}

__all__ = ["MODELS", "INPUT_KIND", "build_model", "collate", "sample_size", "input_kind", "model_config"]


def input_kind(name: str) -> str:
    """The input kind (density, xrd, cgcnn, cogn, lattice) of model ``name``."""
    if name not in SPECS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name].input_kind


def model_config(name: str, cfg: dict | None, regression: bool) -> dict:
    """The architecture settings of ``name``: defaults of its registry class, then ``cfg``."""
    c = SPECS[name].config.model_validate(dict(cfg or {}))
    return c.resolved(regression) if hasattr(c, "resolved") else c.model_dump()


def build_model(name: str, n_out: int, regression: bool, in_features: int, cfg: dict | None = None):
    """Build model ``name`` (a ``torch.nn.Module``) with ``n_out`` outputs.

    ``in_features``: F (density feature channels) for density models, A (atom feature length) for the
    graph models, the lattice feature count for the lattice control, ignored for xrd_fcn. ``cfg``: the
    model's architecture block (rhosym.registry), validated here.
    """
    input_kind(name)
    mod = importlib.import_module(f"rhosym.models.{name}")
    return mod.build(n_out=int(n_out), regression=bool(regression), in_features=int(in_features),
                     cfg=model_config(name, cfg, bool(regression)))


def collate(name: str, samples: list[dict]) -> dict:
    """Batch per-sample numpy dicts for model ``name`` (see the module docstring)."""
    import numpy as np
    import torch

    if not samples:
        raise ValueError("collate: no samples")
    kind = input_kind(name)
    out: dict[str, torch.Tensor] = {}

    def cat(key, dtype, width=None):
        arrs = [np.asarray(s[key], dtype=dtype) for s in samples]
        if width is not None:
            arrs = [a.reshape(-1, width) for a in arrs]
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(arrs, axis=0)))

    if kind == "density":
        counts = np.array([len(s["xyz"]) for s in samples], dtype=np.int64)
        nfeat = next((np.asarray(s["features"]).shape[1] for s in samples
                      if np.asarray(s["features"]).ndim == 2), 1)
        out["xyz"] = cat("xyz", np.float32, 3)
        out["features"] = cat("features", np.float32, nfeat)
        out["voxels"] = cat("voxels", np.int32, 3)
        out["batch"] = torch.from_numpy(np.repeat(np.arange(len(samples), dtype=np.int64), counts))
        out["counts"] = torch.from_numpy(counts)
        shapes = np.array([np.asarray(s["spatial_shape"], dtype=np.int64) for s in samples])
        out["spatial_shape"] = torch.from_numpy(shapes.max(axis=0))
    elif kind == "lattice":
        out["lattice"] = torch.from_numpy(np.stack([np.asarray(s["lattice"], dtype=np.float32) for s in samples]))
    elif kind == "xrd":
        length = min(len(s["pattern"]) for s in samples)
        out["pattern"] = torch.from_numpy(
            np.stack([np.asarray(s["pattern"], dtype=np.float32)[:length] for s in samples]))
    else:  # cgcnn, cogn
        n_nodes = np.array([len(s["atom_fea"]) for s in samples], dtype=np.int64)
        n_edges = np.array([np.asarray(s["edge_index"]).reshape(-1, 2).shape[0] for s in samples])
        offsets = np.concatenate([[0], np.cumsum(n_nodes)[:-1]])
        width = np.asarray(samples[0]["atom_fea"]).shape[1]
        out["atom_fea"] = cat("atom_fea", np.float32, width)
        ei = [np.asarray(s["edge_index"], dtype=np.int64).reshape(-1, 2) + o for s, o in zip(samples, offsets)]
        out["edge_index"] = torch.from_numpy(np.concatenate(ei, axis=0))
        out["edge_dist"] = cat("edge_dist", np.float32).reshape(-1)
        out["batch"] = torch.from_numpy(np.repeat(np.arange(len(samples), dtype=np.int64), n_nodes))
        out["counts"] = torch.from_numpy(n_nodes)
        out["edge_counts"] = torch.from_numpy(n_edges.astype(np.int64))
        if kind == "cogn":
            out["node_weight"] = cat("node_weight", np.float32).reshape(-1)
            if all("edge_vec" in s for s in samples):
                out["edge_vec"] = cat("edge_vec", np.float32, 3)
    if all("y" in s for s in samples):
        ys = np.array([s["y"] for s in samples]).reshape(len(samples), -1).squeeze(-1)
        dtype = torch.int64 if np.issubdtype(ys.dtype, np.integer) else torch.float32
        out["y"] = torch.as_tensor(ys, dtype=dtype)
    return out


def sample_size(name: str, sample: dict) -> int:
    """Cost of one sample for budget batching: points (density), pattern length (xrd, at most the
    8,192 points read), nodes + edges (graphs)."""
    import numpy as np

    kind = input_kind(name)
    if kind == "density":
        return int(len(sample["xyz"]))
    if kind == "xrd":
        return int(min(len(sample["pattern"]), 8192))
    if kind == "lattice":
        return 1
    return int(len(sample["atom_fea"]) + np.asarray(sample["edge_index"]).reshape(-1, 2).shape[0])
