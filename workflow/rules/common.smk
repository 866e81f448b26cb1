# Shared by all stages. Config validation (defaults from the schemas) and helper functions.
import glob
import os

from snakemake.utils import validate

from rhosym import workflow as rw

validate(config, workflow.source_path("../schemas/config.schema.yaml"))
for _schema in sorted(glob.glob(os.path.join(workflow.basedir, "workflow/schemas/sections/*.schema.yaml"))):
    _section = os.path.basename(_schema).split(".")[0]
    if config.get(_section) is None:
        config[_section] = {}
    validate(config[_section], _schema)

RESULTS = config["results"]
DATASETS = list(config["datasets"])
EXPERIMENTS = rw.expand_experiments(config)
ALL_TARGETS = []


def shards(ds):
    """Shard names of a data set, known when the DAG is built (no checkpoints)."""
    return rw.dataset_shards(config, ds)


def per_shard(pattern, ds, **kw):
    """``pattern`` (with {shard}) filled for every shard of ``ds``."""
    return [pattern.format(shard=s, ds=ds, **kw) for s in shards(ds)]


def log_path(rule_name, *parts):
    return os.path.join(RESULTS, "logs", rule_name, *parts) + ".log"


def bench_path(rule_name, *parts):
    return os.path.join(RESULTS, "benchmarks", rule_name, *parts) + ".tsv"
