"""``rhosym ingest CONFIG DATASET``: ingest one data set outside Snakemake (every shard in turn).

A config that cannot be read or validated, an unknown data set or a data-set path that does not exist:
one line on stderr naming the config (or the file), exit status 1 (rhosym.cli).
"""

from __future__ import annotations

HELP = "Ingest one data set of a config (every shard, one after another) and write its manifest."


def add_arguments(parser) -> None:
    parser.add_argument("config", help="config YAML (e.g. config.tiny.yaml)")
    parser.add_argument("dataset", help="data-set name under datasets:")
    parser.add_argument("--out", default=None, help="output folder (default: <results>/<dataset>)")


def run(args) -> int:
    import yaml

    from rhosym.commands._common import InputError, require_file
    from rhosym.ingest import ingest_dataset
    from rhosym.logs import setup_logging

    setup_logging()
    require_file(args.config)
    try:
        with open(args.config) as fh:
            config = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {' '.join(str(exc).split())}", args.config) from exc
    if not isinstance(config, dict):
        raise InputError(f"not a config (a YAML mapping), but {type(config).__name__}", args.config)
    datasets = config.get("datasets") or {}
    if args.dataset not in datasets:
        known = ", ".join(sorted(map(str, datasets))) if isinstance(datasets, dict) else "none"
        raise InputError(f"no data set {args.dataset!r} (data sets: {known or 'none'})", args.config)
    df = ingest_dataset(config, args.dataset, args.out)
    print(df["status"].value_counts().to_string())
    return 0
