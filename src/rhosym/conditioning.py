"""Lattice-conditioned networks (``experiments[].lattice: [true]``, variant ``-lat``, shown as
``<model>+lattice``): any network of :data:`rhosym.registry.LATTICE_MODELS` given the lattice control's
features of the same cell its input came from, concatenated to its pooled representation before its head.
Its margin over the lattice control then measures what the density, pattern or graph adds to what the
cell already says.

* **Which cell.** The six parameters a, b, c, α, β, γ of the data set's cell, read from the ingest shards
  (``status == "ok"`` rows), the cell the lattice control reads: for density and XRD inputs the density
  cell those inputs were made from; for the graph inputs (built on spglib's primitive cell with
  ``graphs.cell: primitive``) the data set's cell, not the graph's. ``rhosym predict`` uses the cell of
  the structure it is given, after the same preparation (:func:`rhosym.ingest.prepare`: the training data
  set's cell), a CHGCAR's or a map's own cell; robustness uses the test structure's ingest row.
* **Features.** The strengthened lattice control's (:mod:`rhosym.inputs.lattice_sym`, 41 of them: the 13
  plain lattice features and the lattice's metric symmetry, a Bravais one-hot at two tolerances from the
  cell alone), standardized with the mean and standard deviation of the TRAINING structures (:func:`fit`,
  the lattice_sym kind's ``fit_norm``); the statistics are the checkpoint's ``lattice`` field, so
  predictions rebuild the same inputs. A checkpoint trained on the 13 plain features (before the
  strengthened set) still loads and reads those: :func:`features` follows the checkpoint's feature list.
* **Plumbing.** A dataset given a :class:`LatticeFeatures` adds ``lattice_features`` (41,) float32 to every
  prepared sample; :meth:`rhosym.inputs.InputKind.collate` stacks them into ``batch["lattice_features"]``
  (B, 41); each network's head takes ``in_lattice`` more inputs (:func:`rhosym.models.common.with_lattice`).
  A raw sample made outside the stores (predict, robustness) carries its cell as :data:`CELL` (the six
  parameters), turned into features by :func:`rhosym.infer.prepare_sample`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rhosym.inputs.base import LATTICE_FEATURES_KEY as KEY  # in a prepared sample and in a batch
from rhosym.inputs.lattice import FEATURES as PLAIN_FEATURES
from rhosym.inputs.lattice import LATTICE, PARAMS
from rhosym.inputs.lattice_sym import FEATURES, LATTICE_SYM

#: the input kind whose features a lattice-conditioned network reads: the strongest lattice-only control's
SOURCE = LATTICE_SYM

#: key of the six cell parameters in a raw sample made outside the stores (predict, robustness)
CELL = "cell_params"
#: the width a network's head grows by
WIDTH = len(FEATURES)


class CellTable:
    """The six cell parameters of every ``ok`` structure of a data set's ingest shards, by id."""

    def __init__(self, paths: Sequence[str]):
        ids: list[str] = []
        params = []
        for p in paths:
            h = LATTICE.open(str(p))
            ids += h["ids"]
            params.append(h["params"])
        self.row = {sid: i for i, sid in enumerate(ids)}
        self.params = np.concatenate(params) if params else np.empty((0, 6))
        self.paths = [str(p) for p in paths]

    def __contains__(self, sid: str) -> bool:
        return str(sid) in self.row

    def __getitem__(self, sid: str) -> np.ndarray:
        try:
            return self.params[self.row[str(sid)]]
        except KeyError:
            raise KeyError(f"{sid}: no lattice parameters in the ingest shards ({len(self.paths)} read)") from None


def fit(table: CellTable, ids: Sequence[str], seed: int = 0) -> dict:
    """The standardization of the lattice features over the TRAINING structures ``ids``."""
    ids = [str(i) for i in ids]
    if not ids:
        raise ValueError("lattice conditioning: no training structures to standardize the lattice features on")
    norm = SOURCE.fit_norm(lambda i: {"lattice": table[ids[i]]}, len(ids), 1, len(ids), seed)
    return {**norm, "params": list(PARAMS), "cell": "the data set's cell (ingest a, b, c, alpha, beta, gamma)"}


def features(params, norm: dict) -> np.ndarray:
    """(41,) float32 standardized features of one cell's six parameters (a, b, c in Å, angles in degrees);
    (13,) for a checkpoint standardized on the plain lattice features alone."""
    kind = LATTICE if list(norm.get("features", FEATURES)) == list(PLAIN_FEATURES) else SOURCE
    return kind.prepare({"lattice": np.asarray(params, np.float64).reshape(6)}, 1, norm)["lattice"]


def params_of_lattice(matrix) -> np.ndarray:
    """(6,) a, b, c, α, β, γ of a lattice given as its row vectors (Å)."""
    m = np.asarray(matrix, np.float64).reshape(3, 3)
    lengths = np.linalg.norm(m, axis=1)

    def angle(i: int, j: int) -> float:
        return float(np.degrees(np.arccos(np.clip(m[i] @ m[j] / (lengths[i] * lengths[j]), -1.0, 1.0))))

    return np.array([*lengths, angle(1, 2), angle(0, 2), angle(0, 1)])


def params_of_row(row) -> np.ndarray:
    """(6,) cell parameters of an ingest row (a mapping with a, b, c, alpha, beta, gamma)."""
    return np.array([float(row[k]) for k in PARAMS])


class LatticeFeatures:
    """What a dataset needs to attach the features: the cells (by id) and the training statistics. A
    structure's features are computed once (the metric symmetry costs two spglib calls) and kept: every
    epoch reads the same cell."""

    def __init__(self, table: CellTable, norm: dict):
        self.table, self.norm = table, norm
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, sid: str) -> np.ndarray:
        sid = str(sid)
        if sid not in self._cache:
            self._cache[sid] = features(self.table[sid], self.norm)
        return self._cache[sid]


def attach(prepared: dict, params, norm: dict | None) -> dict:
    """``prepared`` with the features of the cell ``params`` (six parameters) when ``norm`` is given (a
    lattice-conditioned checkpoint); ValueError when the checkpoint needs a cell and none came."""
    if not norm:
        return prepared
    if params is None:
        raise ValueError("this network reads the lattice features of its input's cell (+lattice), and the "
                         "sample carries no cell")
    return {**prepared, KEY: features(params, norm)}


__all__ = ["KEY", "CELL", "WIDTH", "SOURCE", "FEATURES", "CellTable", "fit", "features", "params_of_lattice", "params_of_row",
           "LatticeFeatures", "attach"]
