"""The lattice-only control (``lattice``): an MLP on the lattice parameters of the density cell.

It reads the same cell the density models see (the manifest's ``a, b, c, alpha, beta, gamma`` of the
data set's ``cell``), through the same trainer, split and test ids, so that every table shows how much
of an answer the cell shape alone carries. Input features (:func:`rhosym.loaders.lattice_features`): the
three lengths and the three angles, their cosines, the length ratios and the cube root of the volume,
standardized with training-split statistics by the trainer.
"""

from __future__ import annotations

import torch
from torch import nn

from rhosym.models.common import mlp_head
from rhosym.registry import LatticeMLPConfig


class LatticeMLP(nn.Module):
    def __init__(self, in_features: int, n_out: int, cfg: LatticeMLPConfig):
        super().__init__()
        self.net = mlp_head(int(in_features), [int(h) for h in cfg.hidden], n_out, norm="layer",
                            dropout=float(cfg.dropout))

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["lattice"])


def build(n_out: int, regression: bool, in_features: int, cfg: LatticeMLPConfig) -> LatticeMLP:
    return LatticeMLP(in_features, n_out, cfg)
