"""``rhosym bench KIND [ARGS...]``: run the benchmark ``rhosym.bench_<kind>.main(ARGS)``."""

from __future__ import annotations

import argparse

HELP = "Run a benchmark: density (rhosym.bench_density), train, ... (rhosym.bench_<kind>)."


def add_arguments(parser) -> None:
    parser.add_argument("kind", help="benchmark name: module rhosym.bench_<kind>")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")


def run(args) -> int:
    import importlib

    try:
        mod = importlib.import_module(f"rhosym.bench_{args.kind.replace('-', '_')}")
    except ModuleNotFoundError as e:
        if e.name != f"rhosym.bench_{args.kind.replace('-', '_')}":
            raise
        raise SystemExit(f"unknown benchmark {args.kind!r}: no module rhosym.bench_{args.kind}") from e
    return int(mod.main(list(args.args)) or 0)
