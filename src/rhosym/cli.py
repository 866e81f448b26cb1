"""The ``rhosym`` console command.

Each sub-command lives in its own module under :mod:`rhosym.commands`; the module
name with ``_`` replaced by ``-`` is the command name. A command module defines

* ``HELP``: one line for ``rhosym --help``;
* ``add_arguments(parser)``: its options;
* ``run(args) -> int``: the work, importing heavy libraries inside the function so
  that ``rhosym --help`` and light commands start quickly.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from rhosym import __version__, commands


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        yield info.name.replace("_", "-"), f"rhosym.commands.{info.name}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rhosym",
        description="Crystal symmetry and properties from 3D electron density.",
    )
    parser.add_argument("--version", action="version", version=f"rhosym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in _command_modules():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "HELP", ""))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
