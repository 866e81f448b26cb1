"""``rhosym bench KIND [ARGS...]``: run the benchmark ``rhosym.bench.<kind>.main(ARGS)``.

An unknown KIND is one line on stderr listing the known kinds (the modules of rhosym.bench), exit 1.
"""

from __future__ import annotations

import argparse


def kinds() -> list[str]:
    """The benchmark kinds: the modules of :mod:`rhosym.bench` (cheap: nothing is imported)."""
    import pkgutil

    import rhosym.bench

    return sorted(m.name for m in pkgutil.iter_modules(rhosym.bench.__path__) if not m.name.startswith("_"))


HELP = f"Run a benchmark: {', '.join(k.replace('_', '-') for k in kinds())} (modules of rhosym.bench)."


def add_arguments(parser) -> None:
    parser.add_argument("kind", help=f"benchmark name: module rhosym.bench.<kind> ({', '.join(kinds())})")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")


def run(args) -> int:
    import importlib

    known = kinds()
    name = args.kind.replace("-", "_")
    if name not in known:
        raise ValueError(f"unknown benchmark {args.kind!r}; known: {', '.join(known)}")
    mod = importlib.import_module(f"rhosym.bench.{name}")
    return int(mod.main(list(args.args)) or 0)
