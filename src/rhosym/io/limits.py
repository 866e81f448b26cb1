"""The input limits, checked before the expensive step of every reader, and the refusal they raise.

* ``ingest.max_bytes`` (default 2 GiB): bytes of one input file once decompressed; compressed files are
  streamed and reading stops at the limit (:mod:`rhosym.io.compress`), so memory stays under it;
* ``ingest.max_grid_points`` (default 30 M): points of the grid of a CHGCAR, charge-density JSON or
  CCP4/MRC map, from its header (a JSON: the array's shape) before the data is parsed;
* ``ingest.max_input_sites`` (default 5000): sites of the cell as the file gives it: a CIF block's
  atom-site positions expanded by its symmetry operations (gemmi, before pymatgen's parse), a POSCAR's or
  CHGCAR's counts line, a charge-density JSON's site list.

``ingest.max_sites`` and ``ingest.max_volume`` bound the density cell made later (rhosym.ingest); a
structure file larger than ``max_input_sites`` is refused before its parse and symmetry search, which
grow faster than linearly with the number of sites.

A refusal is a :class:`LimitExceeded` (a ``ValueError``) whose message is one line naming the limit and
the setting that raises it. The limits in force are those given to a reader; a reader given none uses
:func:`current`: the defaults, or what an enclosing :func:`use_limits` set (the ``rhosym`` commands set
their ingest settings so, and so reach readers they do not call themselves). The density stage reads
only files ingest accepted, with the same limits (its rule passes them, and ``density.max_voxels``, which
it checks from a CHGCAR's header before the data).

Kept light (no numpy): rhosym.settings imports the defaults from here while Snakemake builds its DAG.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields

MAX_BYTES = 2 * 1024**3
MAX_GRID_POINTS = 30_000_000
MAX_INPUT_SITES = 5000


class LimitExceeded(ValueError):
    """An input over one of the limits; the message is the one-line reason."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_grid_points: int = MAX_GRID_POINTS
    max_input_sites: int = MAX_INPUT_SITES


_CURRENT: ContextVar[Limits | None] = ContextVar("rhosym_io_limits", default=None)
_DEFAULTS = Limits()


def current() -> Limits:
    """The limits in force (the defaults unless :func:`use_limits` set others)."""
    return _CURRENT.get() or _DEFAULTS


def limits_of(obj=None) -> Limits:
    """``Limits`` from ``obj``: itself, an object or dict with the fields (``rhosym.settings.IngestSettings``:
    fields it lacks keep :func:`current`'s), or None (:func:`current`)."""
    if isinstance(obj, Limits):
        return obj
    base = current()
    if obj is None:
        return base
    get = obj.get if isinstance(obj, dict) else (lambda k, d: getattr(obj, k, d))
    return Limits(**{f.name: int(get(f.name, None) or getattr(base, f.name)) for f in fields(Limits)})


@contextmanager
def use_limits(obj):
    """Make ``limits_of(obj)`` the limits in force inside the block."""
    token = _CURRENT.set(limits_of(obj))
    try:
        yield current()
    finally:
        _CURRENT.reset(token)


def exceeded(what: str, name: str, limit: int) -> LimitExceeded:
    """The refusal: ``<what>: over the limit ingest.<name> = <limit> (raise it in the config or with
    --<name>)``."""
    flag = "--" + name.replace("_", "-")
    return LimitExceeded(f"{what}: over the limit ingest.{name} = {limit} "
                         f"(raise it in the config or with {flag})")


def check(value: int, name: str, limits: Limits, what: str) -> None:
    """Raise :func:`exceeded` when ``value`` is above the limit ``name`` of ``limits``."""
    limit = int(getattr(limits, name))
    if value > limit:
        raise exceeded(what, name, limit)
