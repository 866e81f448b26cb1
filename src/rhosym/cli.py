"""The ``rhosym`` console command.

Each sub-command lives in its own module under :mod:`rhosym.commands`; the module
name with ``_`` replaced by ``-`` is the command name. A command module defines

* ``HELP``: one line for ``rhosym --help``;
* ``add_arguments(parser)``: its options;
* ``run(args) -> int``: the work, importing heavy libraries inside the function so
  that ``rhosym --help`` and light commands start quickly (only the options of the command
  being run are built, so ``add_arguments`` may read defaults from :mod:`rhosym.settings`).

Errors (one contract for every command): bad input ends a command with ONE line on stderr,

    rhosym <command>: <file>[#block or #row]: <reason>

and exit status 1: ``ValueError`` (rhosym.ingest.StructureRejected, rhosym.checkpoint.CheckpointError,
pydantic's ValidationError, UnicodeDecodeError...), ``OSError`` (a missing file, gzip errors), ``KeyError``,
``EOFError``, zip/lzma/zlib/pickle/YAML errors. Any other exception is a bug: the same one line says
``internal error (rerun with --debug for the traceback)``. ``rhosym --debug <command> ...`` prints the
full traceback before that line. Commands that read several inputs (``labels``, ``predict``) report a bad
input on its own output line (``{"source", "error"}`` on stdout) and go on; they exit 1 only when every
input failed. ``predict`` exits 2 when the checkpoint cannot be used (missing, unreadable, unsafe, or a
setting differs from the checkpoint's). Usage errors (argparse) exit 2; an interrupt exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from rhosym import __version__, commands

INTERNAL = "internal error (rerun with --debug for the traceback)"
# the argument naming the file a command is about, when the error does not say (first present wins)
_SOURCE_ARGS = ("input", "file", "store", "config", "old")


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        yield info.name.replace("_", "-"), f"rhosym.commands.{info.name}"


def _chosen_command(argv: list[str] | None) -> str | None:
    """The command named in ``argv`` (the first word after the global options), if any."""
    for tok in sys.argv[1:] if argv is None else argv:
        if tok == "--":
            return None
        if not tok.startswith("-"):
            return tok
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with ``only``, the options of that command alone are built (the
    others are listed with their help line; ``""``: no command's options)."""
    parser = argparse.ArgumentParser(
        prog="rhosym",
        description="Crystal symmetry and properties from 3D electron density.",
        epilog="Errors: one line 'rhosym COMMAND: FILE: REASON' on stderr and exit status 1 (predict: 2 "
               "when the checkpoint cannot be used; usage errors: 2); --debug shows the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"rhosym {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full traceback (default: one line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in _command_modules():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "HELP", ""))
        if only is None or only == name:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line(text: object, limit: int = 600) -> str:
    s = " ".join(str(text).split())
    return s[:limit] + ("..." if len(s) > limit else "")


def _expected(exc: BaseException) -> bool:
    """An error from bad input (as opposed to a bug)."""
    import lzma
    import pickle
    import zipfile
    import zlib

    if isinstance(exc, ValueError | OSError | KeyError | EOFError | zipfile.BadZipFile | lzma.LZMAError
                  | zlib.error | pickle.UnpicklingError):
        return True
    mod = type(exc).__module__ or ""
    return mod == "yaml" or mod.startswith(("yaml.", "pydantic", "zarr"))


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):  # pydantic
        try:
            parts = [f"{'.'.join(str(x) for x in e.get('loc', ())) or 'value'}: {e.get('msg', '')}"
                     for e in exc.errors()]
            return _one_line(f"invalid settings: {'; '.join(parts)}")
        except Exception:  # noqa: BLE001 - fall back on the text
            pass
    if isinstance(exc, OSError):
        text = exc.strerror if exc.strerror else str(exc)
        if getattr(exc, "filename2", None):
            text = f"{text} ({exc.filename2})"
        return _one_line(text) or type(exc).__name__
    if isinstance(exc, UnicodeDecodeError):
        return _one_line(f"not a text file ({exc.encoding} cannot decode byte {exc.start}: {exc.reason})")
    if isinstance(exc, ValueError):
        return _one_line(exc) or type(exc).__name__
    msg = _one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def error_line(command: str, exc: BaseException, args=None) -> str:
    """The one line that reports ``exc`` (see the module docstring)."""
    from rhosym.commands._common import SOURCE_ATTR

    source = getattr(exc, SOURCE_ATTR, None)
    if source is None and isinstance(exc, OSError) and exc.filename:
        source = str(exc.filename)
    if source is None and args is not None:
        for name in _SOURCE_ARGS:
            v = getattr(args, name, None)
            if isinstance(v, str | bytes) or hasattr(v, "__fspath__"):
                source = str(v)
                break
    reason = _reason(exc)
    if source:
        prefix = f"{source}: "  # the reason may name the file already (CheckpointError does)
        if reason.startswith(prefix) and len(reason) > len(prefix):
            reason = reason[len(prefix):]
    if not _expected(exc):
        reason = f"{INTERNAL}: {reason}"
    head = f"rhosym {command}: "
    return f"{head}{source}: {reason}" if source else f"{head}{reason}"


def exit_status(exc: BaseException) -> int:
    from rhosym.commands._common import STATUS_ATTR

    status = getattr(exc, STATUS_ATTR, None)
    return int(status) if isinstance(status, int) and status > 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Run ``rhosym`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    chosen = _chosen_command(argv)
    known = {name for name, _ in _command_modules()}
    parser = build_parser(only=chosen if chosen in known else "")  # no command: none of their options
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f"rhosym {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one error contract of every command
        try:
            sys.stdout.flush()
        except OSError:
            pass
        if args.debug:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        print(error_line(args.command, exc, args), file=sys.stderr)
        sys.stderr.flush()
        return exit_status(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
