"""``rhosym ingest CONFIG DATASET``: ingest one data set outside Snakemake (every shard in turn)."""

from __future__ import annotations

HELP = "Ingest one data set of a config (every shard, one after another) and write its manifest."


def add_arguments(parser) -> None:
    parser.add_argument("config", help="config YAML (e.g. config.tiny.yaml)")
    parser.add_argument("dataset", help="data-set name under datasets:")
    parser.add_argument("--out", default=None, help="output folder (default: <results>/<dataset>)")


def run(args) -> int:
    import yaml

    from rhosym.ingest import ingest_dataset
    from rhosym.logs import setup_logging

    setup_logging()
    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    if args.dataset not in (config.get("datasets") or {}):
        raise SystemExit(f"no data set {args.dataset!r} in {args.config}")
    df = ingest_dataset(config, args.dataset, args.out)
    print(df["status"].value_counts().to_string())
    return 0
