"""``rhosym bench KIND [ARGS...]``: run the benchmark ``rhosym.bench.<kind>.main(ARGS)``."""

from __future__ import annotations

import argparse

HELP = "Run a benchmark: density, inputs, train, scale (modules of rhosym.bench)."


def add_arguments(parser) -> None:
    parser.add_argument("kind", help="benchmark name: module rhosym.bench.<kind>")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")


def run(args) -> int:
    import importlib
    import pkgutil

    import rhosym.bench

    kinds = [m.name for m in pkgutil.iter_modules(rhosym.bench.__path__)]
    name = args.kind.replace("-", "_")
    if name not in kinds:
        raise ValueError(f"unknown benchmark {args.kind!r}; known: {', '.join(sorted(kinds))}")
    mod = importlib.import_module(f"rhosym.bench.{name}")
    return int(mod.main(list(args.args)) or 0)
