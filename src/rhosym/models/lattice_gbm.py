"""The gradient-boosted lattice control (``lattice_gbm``): LightGBM on the strengthened control's features
(:mod:`rhosym.inputs.lattice_sym`: the 13 lattice features and the Bravais lattice the metric admits).

A lattice-only model must be the strongest honest one, so that a margin over it means something; on a
few dozen tabular features a boosted tree ensemble is the usual stronger learner than an MLP. It goes
through the same trainer, split, predictions, metrics and tables as every model
(:func:`rhosym.train.fit_boosted`): the trainer collects the prepared TRAINING and VALIDATION features,
:meth:`LatticeGBM.fit` grows the trees with early stopping on the VALIDATION split only (multi-class log
loss; L1 for a regression), and the checkpoint is the usual format-2 file.

* **Safe format.** The ensemble is LightGBM's own text dump (``Booster.model_to_string``), zlib-compressed,
  held as a uint8 tensor (``booster``) in the state dict, with the trained class indices (``classes``):
  the checkpoint still loads with ``torch.load(weights_only=True)`` and no pickle is ever made or read.
* **Classes.** Only the classes present in the training split get trees (a 230-way space-group head has
  ~100 on MP-20); every other class gets the logit −30. A joint symmetry task is a 230-way head like the
  networks', whose marginals give crystal system and extinction group.
* **Outputs.** Raw scores (multi-class logits; the standardized target for a regression), so softmax,
  temperature calibration and top-k behave as for a network.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn

from rhosym.registry import LatticeGBMConfig

ABSENT_LOGIT = -30.0


class LatticeGBM(nn.Module):
    boosted = True  # fitted by rhosym.train.fit_boosted, not by gradient descent on torch parameters

    def __init__(self, n_out: int, regression: bool, in_features: int, cfg: LatticeGBMConfig):
        super().__init__()
        self.n_out, self.regression, self.cfg = int(n_out), bool(regression), cfg
        self.register_buffer("booster", torch.zeros(0, dtype=torch.uint8))
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long))
        self._model = None

    # ---------------------------------------------------------------- state (variable-size buffers)
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for name, dtype in (("booster", torch.uint8), ("classes", torch.long)):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, state_dict[key].detach().clone().to(dtype))
            elif strict:
                missing_keys.append(key)
        self._model = None

    @property
    def fitted(self) -> bool:
        return len(self.booster) > 0

    def model_text(self) -> str:
        """The ensemble as LightGBM's text model."""
        return zlib.decompress(self.booster.numpy().tobytes()).decode()

    def _booster(self):
        if self._model is None:
            import lightgbm

            if not self.fitted:
                raise RuntimeError("lattice_gbm: the ensemble is not fitted (an empty checkpoint)")
            self._model = lightgbm.Booster(model_str=self.model_text())
        return self._model

    # ---------------------------------------------------------------- fitting
    def params(self, seed: int, threads: int, n_class: int) -> dict:
        c = self.cfg
        out = {"learning_rate": c.learning_rate, "num_leaves": c.num_leaves, "min_data_in_leaf": c.min_child_samples,
               "feature_fraction": c.feature_fraction, "lambda_l2": c.lambda_l2, "max_bin": c.max_bin,
               "seed": int(seed), "num_threads": max(int(threads), 1), "deterministic": True,
               "force_col_wise": True, "verbose": -1}
        if self.regression:
            return {**out, "objective": "l1", "metric": "l1"}
        return {**out, "objective": "multiclass", "num_class": max(n_class, 2), "metric": "multi_logloss"}

    def fit(self, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int = 0,
            threads: int = 1) -> dict:
        """Grow the ensemble on (x, y), stopping on the validation loss of (xv, yv); returns what it did."""
        import lightgbm

        x, xv = np.asarray(x, np.float64), np.asarray(xv, np.float64)
        if self.regression:
            yt, yvt, classes = np.asarray(y, np.float64), np.asarray(yv, np.float64), np.zeros(0, np.int64)
        else:
            classes = np.unique(np.asarray(y, np.int64))
            index = {int(c): i for i, c in enumerate(classes)}
            yt = np.array([index[int(v)] for v in y], np.int64)
            keep = np.isin(np.asarray(yv, np.int64), classes)  # a validation class the trees cannot answer
            xv, yvt = xv[keep], np.array([index[int(v)] for v in np.asarray(yv, np.int64)[keep]], np.int64)
        params = self.params(seed, threads, len(classes))
        train = lightgbm.Dataset(x, yt, free_raw_data=False)
        callbacks, valid = [], []
        if len(yvt):
            valid = [lightgbm.Dataset(xv, yvt, reference=train)]
            callbacks.append(lightgbm.early_stopping(int(self.cfg.early_stopping), verbose=False))
        booster = lightgbm.train(params, train, num_boost_round=int(self.cfg.n_estimators), valid_sets=valid,
                                 callbacks=callbacks)
        text = booster.model_to_string(num_iteration=booster.best_iteration or None)
        self.booster = torch.from_numpy(np.frombuffer(zlib.compress(text.encode(), 6), dtype=np.uint8).copy())
        self.classes = torch.as_tensor(classes, dtype=torch.long)
        self._model = None
        return {"rounds": int(booster.best_iteration or booster.current_iteration()), "classes": int(len(classes)),
                "bytes": int(len(self.booster))}

    # ---------------------------------------------------------------- prediction
    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["lattice"]
        raw = np.asarray(self._booster().predict(x.detach().cpu().double().numpy(), raw_score=True,
                                                 num_threads=1), np.float32)
        if self.regression:
            return torch.from_numpy(raw.reshape(-1, 1)).to(x.device)
        raw = raw.reshape(len(x), -1)[:, :len(self.classes)]
        out = torch.full((len(x), self.n_out), ABSENT_LOGIT)
        out[:, self.classes] = torch.from_numpy(raw)
        return out.to(x.device)


def build(n_out: int, regression: bool, in_features: int, cfg: LatticeGBMConfig) -> LatticeGBM:
    return LatticeGBM(n_out, regression, in_features, cfg)
