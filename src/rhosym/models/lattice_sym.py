"""The strengthened lattice-only control (``lattice_sym``): :mod:`rhosym.models.lattice`'s MLP on the
lattice features plus the Bravais lattice the metric admits (:mod:`rhosym.inputs.lattice_sym`)."""

from rhosym.models.lattice import build

__all__ = ["build"]
