"""Connectivity-optimized graph network (coGN; Ruff, Reiser, Stühmer & Friederich, Digital Discovery
2023), re-implemented in PyTorch after the structure of the published kgcnn configuration
(``crystal_asymmetric_unit_graphs``), which is TensorFlow only.

* Nodes are the asymmetric unit (one per symmetry-distinct site, weighted by its multiplicity); an edge
  joins an asymmetric node to a neighbour within the cutoff, labelled with the neighbour's asymmetric
  node, so each message is computed once per symmetry-distinct bond.
* Input block: atom features → Linear(units); distances → 32 Gaussians on [0, 8] Å → Linear(units).
* ``depth`` (5) processing blocks: edge update e'_ij = MLP_e([e_ij, h_i, h_j]) (5 layers of 128, swish),
  sum over the edges of each node, node update h_i ← h_i + MLP_n(Σ_j e'_ij) (1 layer, swish, residual);
  the edge features fed to every block are the embedded distances (kgcnn: edges are not updated).
* Readout: multiplicity-weighted mean of the node features (Σ m_i h_i / Σ m_i, i.e. the mean over all
  atoms of the cell), then the head (published: a single linear layer; ``head`` adds hidden layers).
"""

from __future__ import annotations

import torch
from torch import nn

from rhosym.models.common import GaussianExpansion, mlp_head, segment_sum, with_lattice
from rhosym.registry import CoGNConfig


def _mlp(n_in: int, units: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(d, units), nn.SiLU()]
        d = units
    return nn.Sequential(*layers)


class CoGNBlock(nn.Module):
    def __init__(self, units: int, edge_layers: int, node_layers: int):
        super().__init__()
        self.edge_mlp = _mlp(3 * units, units, edge_layers)
        self.node_mlp = _mlp(units, units, node_layers)

    def forward(self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        c, nb = edge_index[:, 0], edge_index[:, 1]
        msg = self.edge_mlp(torch.cat([e, h[c], h[nb]], 1))
        return h + self.node_mlp(segment_sum(msg, c, h.shape[0]))


class CoGN(nn.Module):
    def __init__(self, in_features: int, n_out: int, regression: bool, cfg: CoGNConfig, in_lattice: int = 0):
        super().__init__()
        units = cfg.units
        self.expand = GaussianExpansion(0.0, cfg.cutoff, step=None, bins=cfg.bins)
        self.node_embed = nn.Linear(in_features, units)
        self.edge_embed = nn.Linear(cfg.bins, units)
        self.blocks = nn.ModuleList([CoGNBlock(units, cfg.edge_layers, cfg.node_layers) for _ in range(cfg.depth)])
        self.in_lattice = int(in_lattice)
        self.head = mlp_head(units + self.in_lattice, list(cfg.head), n_out, dropout=cfg.dropout, act=nn.SiLU)

    def forward(self, batch: dict) -> torch.Tensor:
        edge_index = batch["edge_index"].long()
        b = batch["batch"].long()
        n = int(batch["counts"].shape[0])
        h = self.node_embed(batch["atom_fea"])
        e = self.edge_embed(self.expand(batch["edge_dist"]))
        for block in self.blocks:
            h = block(h, e, edge_index)
        w = batch["node_weight"].to(h.dtype).unsqueeze(1)
        pooled = segment_sum(h * w, b, n) / segment_sum(w, b, n).clamp_min(1e-12)
        return self.head(with_lattice(pooled, batch, self.in_lattice))


def build(n_out: int, regression: bool, in_features: int, cfg: CoGNConfig, in_lattice: int = 0) -> CoGN:
    return CoGN(in_features, n_out, regression, cfg, in_lattice)
