# Shared by all stages: the typed settings (a typo fails here, before any job), the experiments, the
# shards, and the input functions of the rules (get_*). Logic lives in rhosym.workflow.
from snakemake.exceptions import WorkflowError

from rhosym import layout as L
from rhosym import registry as R
from rhosym import settings as rs
from rhosym import workflow as rw

rs.apply_standalone(config, workflow.config_settings.overwrite_config)
try:
    S = rs.parse_config(config)
except rs.ConfigError as _exc:
    raise WorkflowError(str(_exc)) from None

RESULTS = S.results
DATASETS = list(S.datasets)
EXPERIMENTS = rw.expand_experiments(S)
TRANSFERS = rw.expand_transfers(S)
SHARDS = {ds: rw.dataset_shards(S, ds) for ds in DATASETS}
_BY_KEY = {(e.dataset, e.model, e.task, e.variant): e for e in EXPERIMENTS}
_TRANSFER_BY_KEY = {(t.target, t.experiment.model, t.experiment.task, t.variant): t for t in TRANSFERS}
SWEEP = rw.sweep_experiments(S, EXPERIMENTS)
ROBUST = rw.robust_experiments(S, EXPERIMENTS)
ALL_TARGETS = []


wildcard_constraints:
    ds="[A-Za-z0-9_]+",
    shard=r"\d{5}",
    model="|".join(R.STUDY_MODELS),
    task="|".join(R.TASKS),
    variant=L.VARIANT_CONSTRAINT,
    method="|".join(R.SAMPLINGS),
    kind="|".join(R.GRAPH_KINDS),
    split="|".join(R.SPLIT_RULES),


def path(pattern, **fields):
    """A results path with every field filled."""
    return L.path(RESULTS, pattern, **fields)


def wild(pattern, **fixed):
    """A results path pattern; unfilled fields stay Snakemake wildcards."""
    return L.pattern(RESULTS, pattern, **fixed)


def log_of(rule_name, *parts):
    return L.log(RESULTS, rule_name, *parts)


def bench_of(rule_name, *parts):
    return L.benchmark(RESULTS, rule_name, *parts)


def per_shard(pattern, ds, **fields):
    """``pattern`` (with {shard}) filled for every shard of ``ds``."""
    return [path(pattern, ds=ds, shard=s, **fields) for s in SHARDS[ds]]


def get_ingest_shards(wildcards):
    return per_shard(L.INGEST_SHARD, wildcards.ds)


def get_ingest_inputs(wildcards):
    return rw.ingest_inputs(S, wildcards.ds, wildcards.shard)


def get_experiment(wildcards):
    """The experiment (or zero-shot transfer) of a model/prediction job."""
    key = (wildcards.ds, wildcards.model, wildcards.task, wildcards.variant)
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key in _TRANSFER_BY_KEY:
        return _TRANSFER_BY_KEY[key]
    raise WorkflowError(f"no experiment {'/'.join(key)} in the config")


def get_stores(wildcards):
    """The per-shard input stores of an experiment (a transfer reads the target data set's stores)."""
    v = L.parse_variant(wildcards.variant)
    return rw.store_paths(S, wildcards.ds, v["input"], SHARDS[wildcards.ds])


def get_lattice_stores(wildcards):
    """The ingest shards a lattice-conditioned experiment (variant -lat) reads its cells from (none otherwise)."""
    return get_ingest_shards(wildcards) if L.parse_variant(wildcards.variant)["lattice"] else []


def get_split(wildcards):
    return path(L.SPLIT, ds=wildcards.ds, split=L.parse_variant(wildcards.variant)["split"])


def get_pretrained(wildcards):
    """The checkpoint a fine-tuned experiment starts from (none otherwise)."""
    e = get_experiment(wildcards)
    src = rw.pretrained_source(S, e) if isinstance(e, rw.Experiment) else None
    return [path(L.CHECKPOINT, ds=src.dataset, model=src.model, task=src.task, variant=src.variant)] if src else []


def get_checkpoint(wildcards):
    """The checkpoint a prediction job applies: the experiment's own, or the source's (zero-shot)."""
    e = get_experiment(wildcards)
    if isinstance(e, rw.Transfer):
        e = e.experiment
    return path(L.CHECKPOINT, ds=e.dataset, model=e.model, task=e.task, variant=e.variant)


def prediction_files(ds):
    """Test predictions of data set ``ds``: its experiments and the transfers into it."""
    out = [path(L.PREDICTION, ds=e.dataset, model=e.model, task=e.task, variant=e.variant)
           for e in EXPERIMENTS if e.dataset == ds]
    out += [path(L.PREDICTION, ds=t.target, model=t.experiment.model, task=t.experiment.task, variant=t.variant)
            for t in TRANSFERS if t.target == ds]
    return out


def get_predictions(wildcards):
    return prediction_files(wildcards.ds)


def get_sample_source(wildcards):
    """The dense store, or the ingest shard when the density is evaluated directly."""
    if rw.density_path(S, wildcards.ds) == "direct":
        return path(L.INGEST_SHARD, ds=wildcards.ds, shard=wildcards.shard)
    return path(L.DENSITY_SHARD, ds=wildcards.ds, shard=wildcards.shard)


def get_sweep_outputs(wildcards):
    return [path(L.SWEEP, ds=e.dataset, model=e.model, task=e.task, variant=e.variant, n=n)
            for e in SWEEP if e.dataset == wildcards.ds for n in S.figures.points_sweep]


def get_robust_outputs(wildcards):
    return [path(L.ROBUST, ds=e.dataset, model=e.model, task=e.task, variant=e.variant, perturbation="all")
            for e in ROBUST if e.dataset == wildcards.ds]
