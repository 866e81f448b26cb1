"""One network, three consistent answers (task ``symmetry``).

The network has one 230-way space-group head. Its softmax probabilities are summed over the space
groups of each extinction group and of each crystal system (the 230 → 101 → 7 table of
:mod:`rhosym.symmetry`), so the three answers can never contradict each other: the predicted crystal
system is the most probable system, not necessarily the system of the most probable space group, but
every probability is a sum over space groups. Training minimizes the sum of the three negative
log-likelihoods of the true space group, extinction group and crystal system (all derived from the
space-group label), so the network is rewarded for getting the coarse answers right even when the
space group is hard. Chosen over three independent heads because consistent answers are what a
crystallographer expects and the coarse levels pool the scarce space-group classes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rhosym.registry import CRYSTAL_SYSTEMS, TASKS


@lru_cache(maxsize=1)
def index_maps() -> dict[str, np.ndarray]:
    """``{task: (230,) int array}``: the class index of each space-group index (0..229) at each level."""
    from rhosym.symmetry import load_extinction_table

    t = load_extinction_table().sort_values("space_group")
    cs = np.array([CRYSTAL_SYSTEMS.index(c) for c in t["crystal_system"]], dtype=np.int64)
    eg = t["extinction_group"].to_numpy(dtype=np.int64) - 1
    return {"crystal_system": cs, "extinction_group": eg, "space_group": np.arange(230, dtype=np.int64)}


def marginal_probabilities(sg_prob: np.ndarray, task: str) -> np.ndarray:
    """(B, n_classes(task)) probabilities summed from (B, 230) space-group probabilities."""
    idx = index_maps()[task]
    out = np.zeros((sg_prob.shape[0], TASKS[task].n_classes), dtype=np.float64)
    np.add.at(out.T, idx, np.asarray(sg_prob, dtype=np.float64).T)
    return out


class JointLoss:
    """Sum of the NLLs of the true class at the three levels, from 230 logits (torch)."""

    def __init__(self, device, label_smoothing: float = 0.0):
        import torch

        self.maps = {k: torch.as_tensor(v, device=device) for k, v in index_maps().items()}
        self.n = {k: TASKS[k].n_classes for k in self.maps}
        self.smoothing = float(label_smoothing)

    def level_log_prob(self, logits, task: str):
        """(B, n) log-probabilities of the classes of ``task`` (sums of space-group probabilities)."""
        import torch

        logp = torch.log_softmax(logits.float(), dim=1)
        if task == "space_group":
            return logp
        idx = self.maps[task].expand(logits.shape[0], -1)
        p = torch.zeros((logits.shape[0], self.n[task]), device=logits.device).scatter_add(1, idx, logp.exp())
        return torch.log(p.clamp_min(1e-12))

    def __call__(self, logits, y_sg):
        import torch.nn.functional as F

        total = 0.0
        for task, m in self.maps.items():
            logp = self.level_log_prob(logits, task)
            y = m[y_sg]
            nll = F.nll_loss(logp, y)
            if self.smoothing:
                nll = (1 - self.smoothing) * nll - self.smoothing * logp.mean(1).mean()
            total = total + nll
        return total
