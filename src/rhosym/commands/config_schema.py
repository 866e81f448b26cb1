"""``rhosym config-schema``: the configuration reference and JSON schemas, from the typed settings."""

from __future__ import annotations

HELP = "Print docs/config.md (the configuration reference); --write also rewrites workflow/schemas/."


def add_arguments(parser) -> None:
    parser.add_argument("--write", action="store_true",
                        help="rewrite docs/config.md and workflow/schemas/*.schema.yaml in the checkout")
    parser.add_argument("--check", metavar="CONFIG", nargs="*",
                        help="validate these config files (layered as Snakemake does) and report every problem")


def run(args) -> int:
    import sys

    from rhosym import configdoc

    if args.check:
        from rhosym.settings import ConfigError, layered, parse_config

        try:
            parse_config(layered(args.check))
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{', '.join(args.check)}: valid")
        return 0
    if args.write:
        for p in configdoc.write():
            print(f"wrote {p}", file=sys.stderr)
        return 0
    sys.stdout.write(configdoc.render())
    return 0
