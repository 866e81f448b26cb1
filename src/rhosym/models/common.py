"""Layers shared by the models: segment reductions over a batch index, a batch norm safe for one
sample, Gaussian distance expansion and MLP builders."""

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


def cfg_get(cfg: dict | None, key: str, default):
    """``cfg[key]`` when present and not None, else ``default``."""
    if cfg and cfg.get(key) is not None:
        return cfg[key]
    return default


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Published defaults of the Sparse 3D CNN (shared by the dense 3D CNN of the benchmark).
RESNET_DEFAULTS = {
    "channels": [128, 128, 256, 512, 1024],
    "blocks": [0, 1, 2, 2, 3],
    "blocks_regression": [0, 2, 3, 4, 3],
    "strides": [1, 2, 2, 2, 2],
    "kernel": 3,
    "head": [512, 256],
    "head_regression": [512, 256, 128],
    "dropout": 0.0,
}


def resnet_config(cfg: dict | None, regression: bool) -> dict:
    """Resolve channels/blocks/strides/kernel/head/dropout of a ResNet-style 3D encoder."""
    d = RESNET_DEFAULTS
    out = {
        "channels": [int(c) for c in cfg_get(cfg, "channels", d["channels"])],
        "blocks": [int(b) for b in cfg_get(cfg, "blocks", d["blocks_regression"] if regression else d["blocks"])],
        "strides": [int(s) for s in cfg_get(cfg, "strides", d["strides"])],
        "kernel": int(cfg_get(cfg, "kernel", d["kernel"])),
        "head": [int(h) for h in cfg_get(cfg, "head", d["head_regression"] if regression else d["head"])],
        "dropout": float(cfg_get(cfg, "dropout", d["dropout"])),
    }
    n = len(out["channels"])
    if len(out["blocks"]) != n or len(out["strides"]) != n:
        raise ValueError(f"channels, blocks and strides must have the same length: {out}")
    return out
