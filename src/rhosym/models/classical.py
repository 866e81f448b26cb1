"""The classical finder as a model (``classical``): no weights, no training.

The symops stage (:func:`rhosym.symops.run_symops_shard`) finds each structure's space group from its
density's operation scores (Palatinus & van der Lee's method; rhosym.symops); this module only turns that
answer into the logits every other model produces, so the classical finder goes through the same
predictions, metrics, tables, figures and robustness curves as the networks. The answer is a one-hot
(logit 0 for the found class, −30 elsewhere: a probability of 1 up to 1e-13); a structure where nothing
was found (space group 0) gets uniform logits. The head size says what to answer: 230 (space group,
joint symmetry task), 101 (extinction group) or 7 (crystal system).
"""

from __future__ import annotations

import torch
from torch import nn

from rhosym.registry import CRYSTAL_SYSTEMS, ClassicalConfig


def _class_table(n_out: int) -> torch.Tensor:
    """Space group 0..230 → class index of a head of ``n_out`` (-1: no answer)."""
    from rhosym.symmetry import crystal_system, extinction_group

    table = torch.full((231,), -1, dtype=torch.long)
    for sg in range(1, 231):
        if n_out == 230:
            table[sg] = sg - 1
        elif n_out == 101:
            table[sg] = extinction_group(sg) - 1
        elif n_out == len(CRYSTAL_SYSTEMS):
            table[sg] = CRYSTAL_SYSTEMS.index(crystal_system(sg))
        else:
            raise ValueError(f"the classical finder answers symmetry tasks only, not a head of {n_out}")
    return table


class ClassicalFinder(nn.Module):
    def __init__(self, n_out: int, regression: bool):
        super().__init__()
        if regression:
            raise ValueError("the classical finder answers symmetry tasks only, not a regression")
        self.n_out = int(n_out)
        self.register_buffer("table", _class_table(self.n_out), persistent=False)

    def forward(self, batch: dict) -> torch.Tensor:
        found = batch["found"].long().clamp(0, 230)
        idx = self.table.to(found.device)[found]
        out = torch.full((len(found), self.n_out), -30.0, device=found.device)
        ok = idx >= 0
        out[ok, idx[ok]] = 0.0
        out[~ok] = 0.0
        return out


def build(n_out: int, regression: bool, in_features: int, cfg: ClassicalConfig) -> ClassicalFinder:
    return ClassicalFinder(n_out, regression)
