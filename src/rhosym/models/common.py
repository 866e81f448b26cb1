"""Layers shared by the models: segment reductions over a batch index, a batch norm safe for one
sample, Gaussian distance expansion, MLP builders and the lattice hook of lattice-conditioned networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def segment_sum(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Sum rows of ``x`` into ``n`` segments given by ``index`` (int64, one per row)."""
    out = x.new_zeros((n,) + tuple(x.shape[1:]))
    return out.index_add(0, index, x)


def segment_count(index: torch.Tensor, n: int, dtype=torch.float32) -> torch.Tensor:
    return torch.zeros(n, dtype=dtype, device=index.device).index_add(
        0, index, torch.ones_like(index, dtype=dtype))


def segment_mean(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    cnt = segment_count(index, n, x.dtype).clamp_min(1.0)
    return segment_sum(x, index, n) / cnt.view((n,) + (1,) * (x.dim() - 1))


def segment_max(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Max of rows per segment (empty segments give 0); differentiable (scatter_reduce 'amax')."""
    out = x.new_zeros((n,) + tuple(x.shape[1:]))
    idx = index.view((-1,) + (1,) * (x.dim() - 1)).expand_as(x)
    return out.scatter_reduce(0, idx, x, reduce="amax", include_self=False)


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that, in training mode with a single row, normalizes with the running statistics
    instead of failing (a budgeted batch may hold one sample)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] <= 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False,
                                0.0, self.eps)
        return super().forward(x)


class GaussianExpansion(nn.Module):
    """exp(-(d - mu_k)^2 / sigma^2) for centres ``mu_k`` evenly spaced in [dmin, dmax]."""

    def __init__(self, dmin: float = 0.0, dmax: float = 8.0, step: float | None = 0.2,
                 bins: int | None = None, sigma: float | None = None):
        super().__init__()
        if bins is None:
            bins = int(round((dmax - dmin) / step)) + 1
        centres = torch.linspace(dmin, dmax, bins)
        spacing = (dmax - dmin) / max(bins - 1, 1)
        self.register_buffer("centres", centres)
        self.sigma = float(sigma if sigma is not None else (step if step is not None else spacing))
        self.n = bins

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((d.unsqueeze(-1) - self.centres) ** 2) / self.sigma**2)


def mlp_head(n_in: int, hidden: list[int], n_out: int, norm: str | None = None, dropout: float = 0.0,
             act=nn.ReLU) -> nn.Sequential:
    """Linear layers ``n_in -> hidden... -> n_out``; the last layer is linear (no activation), so a
    regression output may be negative. ``norm``: None, 'batch' or 'layer' after each hidden Linear."""
    layers: list[nn.Module] = []
    d = n_in
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if norm == "batch":
            layers.append(SafeBatchNorm1d(h))
        elif norm == "layer":
            layers.append(nn.LayerNorm(h))
        layers.append(act())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def voxel_batch(batch: dict):
    """``(features (N, F), voxels (N, 3) long [z, y, x], sample index (N,) long, samples, [Z, Y, X])`` of a
    collated density batch (rhosym.inputs.density), what the sparse and the dense CNN start from."""
    shape = [int(v) for v in batch["spatial_shape"].tolist()]
    return batch["features"], batch["voxels"].long(), batch["batch"].long(), int(batch["counts"].shape[0]), shape


def with_lattice(pooled: torch.Tensor, batch: dict, in_lattice: int) -> torch.Tensor:
    """The input of a network's head: its pooled representation (B, C), followed by the ``in_lattice``
    lattice features of each sample's cell (``batch["lattice_features"]``, rhosym.conditioning) when the
    network is lattice-conditioned (``in_lattice`` > 0; the head was built ``in_lattice`` wider)."""
    if not in_lattice:
        return pooled
    f = batch.get("lattice_features")
    if f is None or f.shape != (pooled.shape[0], in_lattice):
        got = "none" if f is None else tuple(f.shape)
        raise ValueError(f"this network is lattice-conditioned (+lattice): its batch needs lattice_features of "
                         f"shape ({pooled.shape[0]}, {in_lattice}), got {got}")
    return torch.cat([pooled, f.to(pooled.dtype)], 1)
