"""Crystal Graph Convolutional Neural Network (Xie & Grossman, PRL 120, 145301, 2018).

Atom features are embedded to 64; each of 3 convolutions updates atom i from its neighbours j through
z_ij = [v_i, v_j, u_ij] (u_ij: Gaussian expansion of the distance, 0–8 Å in 0.2 Å steps):
v_i ← softplus(v_i + BN(Σ_j σ(z_ij W_f + b_f) ⊙ softplus(z_ij W_s + b_s))) with a BatchNorm on the
gated pre-activations, as in the reference code. Mean pooling over the atoms of a crystal, a hidden
layer of 128 with softplus, and a linear output (any number of classes, or one regression value).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rhosym.models.common import GaussianExpansion, SafeBatchNorm1d, segment_mean, segment_sum, with_lattice
from rhosym.registry import CGCNNConfig


class CGConv(nn.Module):
    def __init__(self, atom_fea_len: int, nbr_fea_len: int):
        super().__init__()
        self.fc = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = SafeBatchNorm1d(2 * atom_fea_len)
        self.bn2 = SafeBatchNorm1d(atom_fea_len)

    def forward(self, v: torch.Tensor, edge_index: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        c, nb = edge_index[:, 0], edge_index[:, 1]
        z = self.bn1(self.fc(torch.cat([v[c], v[nb], u], 1)))
        gate, core = z.chunk(2, dim=1)
        msg = torch.sigmoid(gate) * F.softplus(core)
        agg = self.bn2(segment_sum(msg, c, v.shape[0]))
        return F.softplus(v + agg)


class CGCNN(nn.Module):
    def __init__(self, in_features: int, n_out: int, regression: bool, cfg: CGCNNConfig, in_lattice: int = 0):
        super().__init__()
        width, hidden_width = cfg.atom_fea_len, cfg.h_fea_len
        self.expand = GaussianExpansion(0.0, cfg.dmax, step=cfg.step)
        self.embedding = nn.Linear(in_features, width)
        self.convs = nn.ModuleList([CGConv(width, self.expand.n) for _ in range(cfg.n_conv)])
        self.in_lattice = int(in_lattice)
        hidden: list[nn.Module] = [nn.Linear(width + self.in_lattice, hidden_width), nn.Softplus()]
        for _ in range(cfg.n_h - 1):
            hidden += [nn.Linear(hidden_width, hidden_width), nn.Softplus()]
        self.hidden = nn.Sequential(*hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(hidden_width, n_out)

    def forward(self, batch: dict) -> torch.Tensor:
        edge_index = batch["edge_index"].long()
        u = self.expand(batch["edge_dist"])
        v = self.embedding(batch["atom_fea"])
        for conv in self.convs:
            v = conv(v, edge_index, u)
        crys = segment_mean(v, batch["batch"].long(), int(batch["counts"].shape[0]))
        return self.out(self.dropout(self.hidden(with_lattice(crys, batch, self.in_lattice))))


def build(n_out: int, regression: bool, in_features: int, cfg: CGCNNConfig, in_lattice: int = 0) -> CGCNN:
    return CGCNN(in_features, n_out, regression, cfg, in_lattice)
