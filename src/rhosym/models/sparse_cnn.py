"""Sparse 3D CNN (spconv 2.x): a ResNet-style encoder of submanifold and strided sparse convolutions,
global max pooling over each sample's active voxels and an MLP head.

Published defaults (torch-points3d ``ResNetDown`` layout, re-implemented on spconv): input projected
to 128 channels by a submanifold convolution, then per stage a strided sparse convolution (strides
[1, 2, 2, 2, 2], kernel 3; stage 0 has none) and residual blocks ([0, 1, 2, 2, 3]; regression
[0, 2, 3, 4, 3]) of two submanifold convolutions with BatchNorm/ReLU; channels
[128, 128, 256, 512, 1024]. Classification head 1024→512→256→n_out; regression head
1024→512→256→128→1 with BatchNorm and a linear output (negative values allowed).
"""

from __future__ import annotations

import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from torch import nn

from rhosym.models import spconv_shim
from rhosym.models.common import (
    SafeBatchNorm1d,
    mlp_head,
    segment_max,
    segment_mean,
    voxel_batch,
    with_lattice,
)
from rhosym.registry import SparseCNNConfig

spconv_shim.apply()


class SparseResBlock(spconv.SparseModule):
    """Two submanifold convolutions with BatchNorm, ReLU and an identity (or 1×1) shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel: int, key: str):
        super().__init__()
        self.conv1 = spconv.SubMConv3d(c_in, c_out, kernel, padding=kernel // 2, bias=False, indice_key=key)
        self.bn1 = SafeBatchNorm1d(c_out)
        self.conv2 = spconv.SubMConv3d(c_out, c_out, kernel, padding=kernel // 2, bias=False, indice_key=key)
        self.bn2 = SafeBatchNorm1d(c_out)
        self.skip = None
        if c_in != c_out:
            self.skip = nn.Sequential(nn.Linear(c_in, c_out, bias=False), SafeBatchNorm1d(c_out))

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        identity = x.features if self.skip is None else self.skip(x.features)
        out = self.conv1(x)
        out = out.replace_feature(F.relu(self.bn1(out.features)))
        out = self.conv2(out)
        return out.replace_feature(F.relu(self.bn2(out.features) + identity))


class _ConvBNReLU(spconv.SparseModule):
    def __init__(self, conv: nn.Module, c_out: int):
        super().__init__()
        self.conv = conv
        self.bn = SafeBatchNorm1d(c_out)

    def forward(self, x):
        x = self.conv(x)
        return x.replace_feature(F.relu(self.bn(x.features)))


class SparseCNN(nn.Module):
    def __init__(self, in_features: int, n_out: int, regression: bool, cfg: SparseCNNConfig, in_lattice: int = 0):
        super().__init__()
        c = cfg  # typed and resolved by rhosym.models.model_config
        self.config = c
        k = c.kernel
        layers: list[nn.Module] = []
        prev = in_features
        for i, (ch, nb, st) in enumerate(zip(c.channels, c.blocks, c.strides)):
            key = f"subm{i}"
            if st > 1:
                conv = spconv.SparseConv3d(prev, ch, k, stride=st, padding=k // 2, bias=False,
                                           indice_key=f"down{i}")
                layers.append(_ConvBNReLU(conv, ch))
            elif i == 0 or prev != ch:
                conv = spconv.SubMConv3d(prev, ch, k, padding=k // 2, bias=False, indice_key=key)
                layers.append(_ConvBNReLU(conv, ch))
            for _ in range(nb):
                layers.append(SparseResBlock(ch, ch, k, key))
            prev = ch
        self.encoder = spconv.SparseSequential(*layers)
        self.in_lattice = int(in_lattice)
        self.head = mlp_head(prev + self.in_lattice, c.head, n_out, norm="batch", dropout=c.dropout)
        self.regression = regression

    @staticmethod
    def sparse_input(batch: dict) -> spconv.SparseConvTensor:
        """The spconv tensor of a collated density batch; points sharing a voxel are averaged."""
        feats, vox, b, n_samples, shape = voxel_batch(batch)
        key = ((b * shape[0] + vox[:, 0]) * shape[1] + vox[:, 1]) * shape[2] + vox[:, 2]
        uniq, inverse = torch.unique(key, return_inverse=True)
        feats = segment_mean(feats, inverse, uniq.numel())  # sorted voxel order, duplicates averaged
        rest, x = torch.div(uniq, shape[2], rounding_mode="floor"), uniq % shape[2]
        rest, y = torch.div(rest, shape[1], rounding_mode="floor"), rest % shape[1]
        bb, z = torch.div(rest, shape[0], rounding_mode="floor"), rest % shape[0]
        indices = torch.stack([bb, z, y, x], 1).to(torch.int32).contiguous()
        return spconv.SparseConvTensor(feats.contiguous(), indices, shape, n_samples)

    def forward(self, batch: dict) -> torch.Tensor:
        x = self.sparse_input(batch)
        x = self.encoder(x)
        pooled = segment_max(x.features, x.indices[:, 0].long(), x.batch_size)
        return self.head(with_lattice(pooled, batch, self.in_lattice))


def build(n_out: int, regression: bool, in_features: int, cfg: SparseCNNConfig, in_lattice: int = 0) -> SparseCNN:
    return SparseCNN(in_features, n_out, regression, cfg, in_lattice)
