"""A periodic fractional-grid network (``periodic_cnn``): a dense 3D CNN over the density sampled on the
N³ fractional grid of the conventional cell of its lattice (rhosym.symops), with circular padding, so an
origin shift by whole grid steps is a cyclic permutation of the voxels that the convolutions follow and
the global pooling forgets: the origin does not matter by construction. Every symmetry operation of the
lattice is a permutation of the grid. The head reads the pooled features (max and mean) and, with
``lattice: true``, the lattice features of the conventional cell (``batch["lattice"]``)."""

from __future__ import annotations

import torch
from torch import nn

from rhosym.models.common import mlp_head
from rhosym.registry import PeriodicCNNConfig


class PeriodicCNN(nn.Module):
    def __init__(self, in_features: int, n_out: int, cfg: PeriodicCNNConfig):
        super().__init__()
        if len(cfg.channels) != len(cfg.strides):
            raise ValueError(f"channels and strides must have the same length: {cfg.model_dump()}")
        layers: list[nn.Module] = []
        prev = 1
        for ch, st in zip(cfg.channels, cfg.strides):
            layers += [nn.Conv3d(prev, ch, 3, stride=st, padding=1, padding_mode="circular", bias=False),
                       nn.BatchNorm3d(ch), nn.ReLU(inplace=True)]
            prev = ch
        self.encoder = nn.Sequential(*layers)
        self.use_lattice = bool(cfg.lattice)
        n_in = 2 * prev + (int(in_features) if self.use_lattice else 0)
        self.head = mlp_head(n_in, list(cfg.head), n_out, norm="layer", dropout=cfg.dropout)

    def forward(self, batch: dict) -> torch.Tensor:
        h = self.encoder(batch["grid"])
        pooled = [torch.amax(h, dim=(2, 3, 4)), torch.mean(h, dim=(2, 3, 4))]
        if self.use_lattice:
            pooled.append(batch["lattice"])
        return self.head(torch.cat(pooled, dim=1))


def build(n_out: int, regression: bool, in_features: int, cfg: PeriodicCNNConfig) -> PeriodicCNN:
    return PeriodicCNN(in_features, n_out, cfg)
