"""Helpers shared by the ``rhosym`` commands: the error contract, the ingest check options, and reading
one structure the way ingest does.

Error contract (applied by :func:`rhosym.cli.main` around every command): bad input ends the command
with ONE line on stderr, ``rhosym <command>: <file>[#block]: <reason>``, and exit status 1 (a command
may ask for another status, e.g. ``predict`` exits 2 when the checkpoint cannot be used); ``rhosym
--debug <command> ...`` prints the traceback as well. A command names the file (and block or row) an
exception is about with :func:`about`; without it, the file is the ``OSError``'s file name, or else
the command's main input argument.

Kept light: nothing heavy is imported at module level (``rhosym --help`` must start quickly).
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("rhosym.commands")

# the attributes an exception carries once a command said what it is about
SOURCE_ATTR = "rhosym_source"
STATUS_ATTR = "rhosym_status"


class InputError(ValueError):
    """Bad input found by a command (the message is the reason; ``source`` the file, block or row)."""

    def __init__(self, reason: str, source: str | None = None, status: int | None = None):
        super().__init__(reason)
        if source is not None:
            setattr(self, SOURCE_ATTR, str(source))
        if status is not None:
            setattr(self, STATUS_ATTR, int(status))


@contextmanager
def about(source, status: int | None = None):
    """Exceptions raised inside are about ``source`` (a path, ``path#block``), unless they already name
    one (an ``OSError`` with a file name names its own file); ``status``: the exit status they should
    give (default 1)."""
    try:
        yield
    except Exception as exc:
        own = isinstance(exc, OSError) and bool(exc.filename)
        if getattr(exc, SOURCE_ATTR, None) is None and not own:
            try:
                setattr(exc, SOURCE_ATTR, str(source))
            except AttributeError:  # pragma: no cover - exception types without a __dict__
                pass
        if status is not None and getattr(exc, STATUS_ATTR, None) is None:
            try:
                setattr(exc, STATUS_ATTR, int(status))
            except AttributeError:  # pragma: no cover
                pass
        raise


def _default(cls, name: str):
    return cls.model_fields[name].default


def _ingest_default(name: str, defaults: str | None) -> str:
    """``default X`` (or ``default: <defaults>, else X``) for the help of an ingest setting's option."""
    from rhosym.settings import IngestSettings

    v = _default(IngestSettings, name)
    return f"default: {defaults}, else {v}" if defaults else f"default {v}"


def add_settings_options(parser, cls, names, group: str | None = None) -> None:
    """``--<name>`` options for fields of a settings class, typed and described from the class itself (its
    description and default: written once); an option not given is None (the setting's default)."""
    import typing

    g = parser.add_argument_group(group) if group else parser
    for name in names:
        f = cls.model_fields[name]
        choices = typing.get_args(f.annotation) if typing.get_origin(f.annotation) is typing.Literal else None
        kind = type(choices[0]) if choices else f.annotation
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, choices=choices,
                       help=f"{f.description or name} (default {f.default})".replace("%", "%%"))


def add_check_options(parser, occupancy: bool = True, defaults: str | None = None) -> None:
    """``--min-distance``, ``--max-volume``, ``--max-sites`` (and ``--occupancy-tolerance``): ingest's
    structure checks (rhosym.settings.IngestSettings; the defaults are read from there); and the input
    limits (:func:`add_limit_options`)."""
    g = parser.add_argument_group("structure checks (as ingest; rhosym.settings.IngestSettings)")
    for flag, kind, metavar, what in (
            ("--min-distance", float, "A", "reject two atoms closer than this, in A"),
            ("--max-volume", float, "A3", "reject density cells larger than this, in A^3"),
            ("--max-sites", int, "N", "reject density cells with more sites"),
            ("--occupancy-tolerance", float, "X", "largest total site occupancy accepted")):
        if occupancy or flag != "--occupancy-tolerance":
            g.add_argument(flag, type=kind, metavar=metavar,
                           help=f"{what} ({_ingest_default(flag[2:].replace('-', '_'), defaults)})")
    add_limit_options(parser, defaults)


def add_limit_options(parser, defaults: str | None = None) -> None:
    """``--max-input-sites``, ``--max-bytes``, ``--max-grid-points``: the input limits (rhosym.io.limits,
    the settings ``ingest.max_*``), checked before a file is parsed."""
    g = parser.add_argument_group("input limits (checked before parsing; rhosym.io.limits)")
    for flag, metavar, what in (
            ("--max-input-sites", "N", "refuse a file whose cell, as given, holds more sites"),
            ("--max-bytes", "BYTES", "refuse a file larger than this once decompressed"),
            ("--max-grid-points", "N", "refuse a CHGCAR, JSON or map whose grid has more points")):
        g.add_argument(flag, type=int, metavar=metavar,
                       help=f"{what} ({_ingest_default(flag[2:].replace('-', '_'), defaults)})")


LIMIT_KEYS = ("max_input_sites", "max_bytes", "max_grid_points")


def check_overrides(args) -> dict:
    """The ingest settings given on the command line (only those given)."""
    keys = ("min_distance", "max_volume", "max_sites", "occupancy_tolerance") + LIMIT_KEYS
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def ingest_settings(args, base=None):
    """``rhosym.settings.IngestSettings``: ``base`` (default: the class defaults) with the options given."""
    from rhosym.settings import IngestSettings, section

    return section(IngestSettings, {**section(IngestSettings, base).model_dump(), **check_overrides(args)})


def cell_choices() -> list[str]:
    from rhosym.registry import CELLS

    return list(CELLS)


def require_file(path: str | Path) -> None:
    """``FileNotFoundError`` / ``IsADirectoryError`` naming ``path`` unless it is a file."""
    p = str(path)
    if not os.path.exists(p):
        raise FileNotFoundError(errno.ENOENT, "no such file", p)
    if os.path.isdir(p):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", p)


def is_charge_density(path: str | Path) -> bool:
    """A CHGCAR (any name rhosym.shards.is_chgcar knows) or an MP charge-density JSON."""
    from rhosym.shards import is_chgcar, is_density_json

    name = Path(path).name
    return is_chgcar(name) or is_density_json(name)


def read_structure(path: str | Path, ingest) -> tuple[object, str]:
    """``(StructureRecord, source)`` of the one structure a file holds, read as ingest reads it, within
    its input limits (rhosym.io.structures.read_any; an MP charge-density JSON with
    rhosym.ingest.read_json_structure).

    ``source`` is the path, with ``#block`` / ``#row`` when the file holds several structures; then the
    first is used (a warning names it). Raises :class:`InputError` (file unreadable, no structure) or
    ``OSError`` (no such file)."""
    from rhosym.io.limits import limits_of
    from rhosym.io.structures import read_any
    from rhosym.shards import is_density_json

    p = str(path)
    require_file(p)
    limits = limits_of(ingest)
    if is_density_json(Path(p).name):
        from rhosym.ingest import read_json_structure

        records = [read_json_structure(p, limits)[0]]
    else:
        records = list(read_any(p, occupancy_tolerance=float(ingest.occupancy_tolerance), limits=limits))
    if not records:
        raise InputError("no structure in the file", p)
    rec = records[0]
    if rec.block:  # a CIF data block
        source = f"{p}#{rec.block}"
    elif rec.source and rec.source.startswith(p):  # the path, or path#row of a CSV
        source = rec.source
    else:
        source = p
    if len(records) > 1:
        log.warning("%s holds %d structures; using the first (%s)", p, len(records), source)
    if not rec.ok:
        raise InputError(rec.error or "no structure", source)
    return rec, source


def prepare_structure(rec, source: str, cell: str, ingest, labels=None):
    """``(density-cell structure, labels)`` through rhosym.ingest.prepare (ingest's checks, labels and
    cell); a rejection raises rhosym.ingest.StructureRejected naming ``source``."""
    from rhosym.ingest import prepare
    from rhosym.settings import LabelsSettings, section

    with about(source):
        return prepare(rec.structure, cell, section(LabelsSettings, labels), ingest,
                       (rec.extra or {}).get("declared_space_group"))


def remove_output(path: str | Path) -> None:
    """Remove what a failed command wrote at ``path`` (a store folder or a file), quietly."""
    import shutil

    p = Path(path)
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError as exc:  # pragma: no cover - nothing more to do
        log.warning("could not remove %s: %s", p, exc)
