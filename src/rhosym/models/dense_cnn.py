"""Dense 3D CNN with the same layout as the Sparse 3D CNN (stem, strided convolutions, residual blocks,
global max pooling, MLP head), for the sparse-vs-dense benchmark only. It takes the same collated
density batch and voxelizes it into a dense (B, F, Z, Y, X) box inside ``forward`` (empty voxels are
0; points sharing a voxel are averaged), so both models start from identical inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhosym.models.common import mlp_head, voxel_batch
from rhosym.registry import DenseCNNConfig


class DenseResBlock(nn.Module):
    def __init__(self, ch: int, kernel: int):
        super().__init__()
        self.conv1 = nn.Conv3d(ch, ch, kernel, padding=kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm3d(ch)
        self.conv2 = nn.Conv3d(ch, ch, kernel, padding=kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm3d(ch)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class DenseCNN(nn.Module):
    def __init__(self, in_features: int, n_out: int, regression: bool, cfg: DenseCNNConfig):
        super().__init__()
        c = cfg  # typed and resolved by rhosym.models.model_config
        k = c.kernel
        layers: list[nn.Module] = []
        prev = in_features
        for i, (ch, nb, st) in enumerate(zip(c.channels, c.blocks, c.strides)):
            if st > 1 or i == 0 or prev != ch:
                layers += [nn.Conv3d(prev, ch, k, stride=st, padding=k // 2, bias=False), nn.BatchNorm3d(ch),
                           nn.ReLU()]
            layers += [DenseResBlock(ch, k) for _ in range(nb)]
            prev = ch
        self.encoder = nn.Sequential(*layers)
        self.head = mlp_head(prev, c.head, n_out, norm="batch", dropout=c.dropout)

    @staticmethod
    def dense_input(batch: dict) -> torch.Tensor:
        feats, vox, b, n, (z, y, x) = voxel_batch(batch)
        dense = feats.new_zeros((n, z, y, x, feats.shape[1]))
        count = feats.new_zeros((n, z, y, x, 1))
        idx = (b, vox[:, 0], vox[:, 1], vox[:, 2])
        dense.index_put_(idx, feats, accumulate=True)
        count.index_put_(idx, torch.ones_like(feats[:, :1]), accumulate=True)
        dense = dense / count.clamp_min(1.0)
        return dense.permute(0, 4, 1, 2, 3).contiguous()

    def forward(self, batch: dict) -> torch.Tensor:
        x = self.encoder(self.dense_input(batch))
        return self.head(torch.amax(x, dim=(2, 3, 4)))


def build(n_out: int, regression: bool, in_features: int, cfg: DenseCNNConfig) -> DenseCNN:
    return DenseCNN(in_features, n_out, regression, cfg)
