"""Fully convolutional network over powder XRD patterns (Lee et al.): 13 Conv1D layers (kernel 5, same
padding, ReLU), each followed by max-pool(2) and dropout, channels rising 16→512 then 64; 8,192 input
points are pooled 2^13-fold to one position, and a 1×1 convolution gives the outputs (logits, or one
linear regression value). About 2.79 M parameters with the published channels. Convolutions are
He-initialized. A lattice-conditioned network (``in_lattice``) gives the 1×1 output convolution the lattice
features beside the pooled channels."""

from __future__ import annotations

import torch
from torch import nn

from rhosym.models.common import with_lattice
from rhosym.registry import XrdFCNConfig


class XrdFCN(nn.Module):
    def __init__(self, n_out: int, regression: bool, cfg: XrdFCNConfig, in_lattice: int = 0):
        super().__init__()
        channels = [int(c) for c in cfg.channels]
        kernel = int(cfg.kernel)
        dropout = float(cfg.dropout)
        self.n_points = int(cfg.n_points)
        layers: list[nn.Module] = []
        prev = 1
        for ch in channels:
            layers += [nn.Conv1d(prev, ch, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(2),
                       nn.Dropout(dropout)]
            prev = ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveMaxPool1d(1)  # identity for 8,192 points and 13 layers
        self.in_lattice = int(in_lattice)
        self.out = nn.Conv1d(prev + self.in_lattice, n_out, 1)
        # He-normal initialization: a plain 13-layer ReLU stack with PyTorch's default init barely moves
        # its loss in the first hundreds of steps (checked in tests/test_models.py).
        for m in self.features:
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["pattern"][:, : self.n_points].unsqueeze(1)
        pooled = with_lattice(self.pool(self.features(x)).squeeze(-1), batch, self.in_lattice)
        return self.out(pooled.unsqueeze(-1)).squeeze(-1)


def build(n_out: int, regression: bool, in_features: int, cfg: XrdFCNConfig, in_lattice: int = 0) -> XrdFCN:
    return XrdFCN(n_out, regression, cfg, in_lattice)
