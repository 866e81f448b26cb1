"""PointNet (Qi et al. 2017) as published for electron densities: a shared per-point MLP (Conv1d
64/128/1024 with GroupNorm and ReLU) over (x, y, z, features) with xyz centred per sample, max pooling,
FC 512/256 with LayerNorm, dropout and a linear output; no T-Net.

Points of all samples are concatenated (no padding); the shared MLP is a Linear over points, GroupNorm
is computed per sample over its own points (:class:`SegmentGroupNorm`, equal to ``nn.GroupNorm`` on a
(1, C, n) tensor), and pooling is a scatter-max over the batch index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhosym.models.common import mlp_head, segment_max, segment_mean, with_lattice
from rhosym.registry import PointNetConfig


class SegmentGroupNorm(nn.Module):
    """GroupNorm of (N, C) point features where rows belong to samples given by a batch index: the
    statistics of each group of channels are taken over the points of one sample."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__()
        if channels % groups:
            raise ValueError(f"{channels} channels are not divisible into {groups} groups")
        self.groups, self.channels, self.eps = groups, channels, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, batch: torch.Tensor, n: int) -> torch.Tensor:
        g = x.view(x.shape[0], self.groups, -1)                     # (N, G, C/G)
        mean = segment_mean(g.mean(-1), batch, n)                     # (B, G)
        centred = g - mean[batch].unsqueeze(-1)
        var = segment_mean((centred**2).mean(-1), batch, n)           # biased, as nn.GroupNorm
        out = centred * torch.rsqrt(var[batch] + self.eps).unsqueeze(-1)
        return out.reshape_as(x) * self.weight + self.bias


class PointNet(nn.Module):
    def __init__(self, in_features: int, n_out: int, regression: bool, cfg: PointNetConfig, in_lattice: int = 0):
        super().__init__()
        channels = [int(c) for c in cfg.channels]
        groups = int(cfg.groups)
        head = [int(h) for h in cfg.head]
        self.center = bool(cfg.center)
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = 3 + in_features
        for ch in channels:
            self.layers.append(nn.Linear(prev, ch))  # == Conv1d(prev, ch, 1) over points
            self.norms.append(SegmentGroupNorm(min(groups, ch), ch))
            prev = ch
        self.in_lattice = int(in_lattice)
        self.head = mlp_head(prev + self.in_lattice, head, n_out, norm="layer", dropout=float(cfg.dropout))

    def forward(self, batch: dict) -> torch.Tensor:
        b = batch["batch"].long()
        n = int(batch["counts"].shape[0])
        xyz = batch["xyz"]
        if self.center:
            xyz = xyz - segment_mean(xyz, b, n)[b]
        h = torch.cat([xyz, batch["features"]], 1)
        for lin, norm in zip(self.layers, self.norms):
            h = F.relu(norm(lin(h), b, n))
        return self.head(with_lattice(segment_max(h, b, n), batch, self.in_lattice))


def build(n_out: int, regression: bool, in_features: int, cfg: PointNetConfig, in_lattice: int = 0) -> PointNet:
    return PointNet(in_features, n_out, regression, cfg, in_lattice)


