"""A learned model on the operation scores (``symops``): an MLP on the 79 scores of the density's
symmetry operations and centrings (rhosym.symops; 0 where an operation is not in the lattice's
holohedry), their mask and the lattice features of the conventional cell. It learns the thresholds that a
fixed rule gets wrong (pseudo-symmetry, noise, blur)."""

from __future__ import annotations

import torch
from torch import nn

from rhosym.models.common import mlp_head
from rhosym.registry import SymopsMLPConfig


class SymopsMLP(nn.Module):
    def __init__(self, in_features: int, n_out: int, cfg: SymopsMLPConfig):
        super().__init__()
        self.net = mlp_head(int(in_features), list(cfg.hidden), n_out, norm="layer", dropout=cfg.dropout)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["x"])


def build(n_out: int, regression: bool, in_features: int, cfg: SymopsMLPConfig) -> SymopsMLP:
    return SymopsMLP(in_features, n_out, cfg)
