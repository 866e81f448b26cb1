"""What the Snakemake rules need at DAG-build time: experiments, shards, inputs of each rule, targets.

Everything derives from the typed settings (:mod:`rhosym.settings`), the registry (:mod:`rhosym.registry`)
and the layout (:mod:`rhosym.layout`); kept in the package (not in ``common.smk``) so that tests
exercise it directly. Light: no numpy, pandas or torch.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

from rhosym import layout as L
from rhosym import registry as R


@dataclass(frozen=True)
class Experiment:
    """One training run: a model on a task of a data set, with an input, a split rule and a seed."""

    dataset: str
    model: str
    task: str
    input: str
    features: int = 1
    points: int = 0
    split: str = "formula"
    seed: int = 0
    pretrained: str | None = None  # fine-tuned from this data set's checkpoint
    robust: bool = False  # trained with the robustness augmentations too
    augment: str = ""  # trained with these geometric augmentations (registry.AUGMENTATIONS)
    fraction: float = 1.0  # of the training split (a learning-curve point)
    lattice: bool = False  # the head also reads the lattice features of the cell (rhosym.conditioning)

    @property
    def variant(self) -> str:
        return L.variant(self.input, self.features, self.split, self.seed, self.points, self.pretrained,
                         robust=self.robust, augment=self.augment, fraction=self.fraction, lattice=self.lattice)

    @property
    def group(self) -> str:
        return L.group_of(self.variant)

    @property
    def path(self) -> str:
        """``{model}/{task}/{variant}``, relative to the data set's models/ or predictions/ folder."""
        return f"{self.model}/{self.task}/{self.variant}"

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.path}"

    @property
    def answers(self) -> tuple[str, ...]:
        return R.answers_of(self.task)


@dataclass(frozen=True)
class Transfer:
    """Predictions of a trained experiment on another data set's test split (zero-shot), or on its own
    test split with transformed inputs (``test``: an augmentation it was trained with)."""

    experiment: Experiment
    target: str
    target_split: str
    test: str = ""

    @property
    def variant(self) -> str:
        e = self.experiment
        source = e.dataset if self.target != e.dataset else None
        return L.variant(e.input, e.features, self.target_split, e.seed, e.points, None, source=source,
                         robust=e.robust, augment=e.augment, test=self.test, fraction=e.fraction,
                         lattice=e.lattice)


def expand_block(cfg, block) -> list[Experiment]:
    """The experiments of one ``experiments:`` block, in a stable order.

    Feature sets other than 1 and ``points`` apply to density models only; the others read one input.
    """
    out: dict[Experiment, None] = {}
    datasets = block.datasets or list(cfg.datasets)
    for ds, model, task, feats, sampling, points, aug, frac, lat in itertools.product(
            datasets, block.models, block.tasks, block.features, block.sampling, block.points, block.augment,
            block.fractions, block.lattice):
        spec = R.MODELS[model]
        density = spec.sampled
        seeds = list(cfg.seeds_of(block))
        if spec.fit_free:  # nothing is trained: one "seed" (the first), not copies of the same answer
            seeds = seeds[:1]
        for split in block.splits or [cfg.primary_split(ds)]:
            for seed in seeds:
                e = Experiment(ds, model, task, spec.input_for(sampling), int(feats) if density else 1,
                               int(points) if density else 0, split, int(seed), block.pretrained, block.robust,
                               aug if density and aug != "none" else "", float(frac), bool(lat))
                out[e] = None
    return list(out)


def expand_experiments(cfg) -> list[Experiment]:
    """Every experiment the ``experiments:`` section asks for (duplicates removed; order stable)."""
    return list(dict.fromkeys(e for block in cfg.experiments for e in expand_block(cfg, block)))


def pretrained_source(cfg, e: Experiment) -> Experiment | None:
    """The experiment whose checkpoint initializes ``e`` (fine-tuning), on its data set's primary split."""
    if not e.pretrained:
        return None
    return Experiment(e.pretrained, e.model, e.task, e.input, e.features, e.points,
                      cfg.primary_split(e.pretrained), e.seed, None, e.robust, e.augment, lattice=e.lattice)


def expand_transfers(cfg) -> list[Transfer]:
    """Zero-shot predictions asked for by ``experiments[].transfer_to``, and the predictions of every
    augmented experiment on its own test split transformed as it was trained (beside its plain ones). A
    block whose ``augment`` axis names a transform beside ``none`` also tests its plain density models
    with that transform: what a model trained on one frame does on rotated inputs, beside the
    rotation-trained one (the rotation study)."""
    out: dict[Transfer, None] = {}
    for block in cfg.experiments:
        transforms = [a for a in block.augment if a != "none"] if "none" in block.augment else []
        for e in expand_block(cfg, block):
            if e.augment:
                out[Transfer(e, e.dataset, e.split, test=e.augment)] = None
            elif R.MODELS[e.model].sampled:
                for a in transforms:
                    out[Transfer(e, e.dataset, e.split, test=a)] = None
            for target in block.transfer_to:
                out[Transfer(e, target, cfg.primary_split(target))] = None
    return list(out)


_ASSIGNED: dict[tuple, dict] = {}


def assigned(cfg, ds: str) -> dict:
    """``{shard: units}`` of data set ``ds``, computed once per config object (the DAG asks often)."""
    from rhosym.shards import assign

    d = cfg.datasets[ds]
    key = (id(cfg), ds, d.model_dump_json(), cfg.shard_size)
    if key not in _ASSIGNED:
        _ASSIGNED[key] = assign(d, cfg.shard_size)
    return _ASSIGNED[key]


def dataset_shards(cfg, ds: str) -> list[str]:
    """Shard names of ``ds``. A missing ``mp_chgcar`` folder has none yet (a warning says to run its
    ``download_mp_<ds>`` target first), so that the download target can be built; any other missing
    input is an error."""
    d = cfg.datasets[ds]
    try:
        return list(assigned(cfg, ds))
    except FileNotFoundError:
        if d.kind != "mp_chgcar":
            raise
        warnings.warn(f"data set {ds!r}: {d.path!r} does not exist yet; run `snakemake download_mp_{ds}` first",
                      stacklevel=2)
        return []


def ingest_inputs(cfg, ds: str, shard: str) -> list[str]:
    """The raw files one ingest shard reads: its own files (file kinds), the CSV(s), or none."""
    d = cfg.datasets[ds]
    if d.kind == "synthetic":
        return []
    if R.DATASET_KINDS[d.kind].files:
        files = [str(u.ref) for u in assigned(cfg, ds).get(shard, [])]
    else:
        files = list(d.paths)
    if d.kind == "mp_chgcar" and d.metadata:
        files.append(d.metadata)
    return files


def ingest_units(cfg, ds: str, shard: str) -> list[list]:
    """The units of one ingest shard as ``[key, ref]`` pairs (the ``params`` of ingest_shard)."""
    return [[u.key, list(u.ref) if isinstance(u.ref, tuple) else u.ref] for u in assigned(cfg, ds).get(shard, [])]


def density_path(cfg, ds: str) -> str:
    """``dense`` or ``direct`` for data set ``ds`` of a ``rhosym.settings.Config`` (``mp_chgcar`` is
    always dense)."""
    if cfg.datasets[ds].kind == "mp_chgcar":
        return "dense"
    return cfg.density.path


def _inputs_needed(cfg, ds: str, always, among: tuple[str, ...], experiments, transfers: bool) -> list[str]:
    """``always`` plus the inputs of ``among`` that an experiment (or, with ``transfers``, a transfer) of
    ``ds`` reads, in a stable order."""
    experiments = expand_experiments(cfg) if experiments is None else experiments
    reads = [e.input for e in experiments if e.dataset == ds]
    if transfers:
        reads += [t.experiment.input for t in expand_transfers(cfg) if t.target == ds]
    return list(dict.fromkeys([*always, *(i for i in reads if i in among)]))


def sample_methods_needed(cfg, ds: str, experiments: list[Experiment] | None = None) -> list[str]:
    """Down-sampling methods some experiment (or transfer) of ``ds`` reads, plus ``sample.methods``."""
    return _inputs_needed(cfg, ds, cfg.sample.methods, R.SAMPLINGS, experiments, transfers=True)


def graph_kinds_needed(cfg, ds: str, experiments: list[Experiment] | None = None) -> list[str]:
    """Graph kinds some experiment of ``ds`` reads, plus ``graphs.kinds``."""
    return _inputs_needed(cfg, ds, cfg.graphs.kinds, R.GRAPH_KINDS, experiments, transfers=False)


def splits_needed(cfg, ds: str, experiments: list[Experiment] | None = None) -> list[str]:
    """Split rules of ``ds``: its primary one and any an experiment or transfer uses."""
    experiments = expand_experiments(cfg) if experiments is None else experiments
    rules = dict.fromkeys([cfg.primary_split(ds)])
    for e in experiments:
        if e.dataset == ds:
            rules[e.split] = None
    return list(rules)


def store_paths(cfg, ds: str, input_name: str, shards: list[str]) -> list[str]:
    """The per-shard stores of an input (for a data set)."""
    pat = R.INPUTS[input_name].store
    return [L.path(cfg.results, L.STORE, ds=ds, store=pat.format(shard=s)) for s in shards]


def model_input_name(model: str) -> str:
    return R.MODELS[model].inputs[0]


__all__ = ["Experiment", "Transfer", "expand_block", "expand_experiments", "expand_transfers", "pretrained_source",
           "dataset_shards", "ingest_inputs", "ingest_units", "sample_methods_needed", "graph_kinds_needed",
           "splits_needed", "store_paths", "model_input_name"]


# ------------------------------------------------------------------------------------------- evaluation
def sweep_experiments(cfg, experiments: list[Experiment]) -> list[Experiment]:
    """Experiments the figS8_sweep points sweep re-runs: density classifiers named in ``figures:``."""
    f = cfg.figures
    if not f.points_sweep:
        return []
    return [e for e in experiments if e.model in f.points_sweep_models and e.task in f.points_sweep_tasks
            and not e.points]


def _has_class_answer(task: str) -> bool:
    return any(a in R.CLASS_TASKS for a in R.answers_of(task))


def figure_datasets(cfg, which: str, experiments: list[Experiment], transfers: list[Transfer]) -> list[str]:
    """The data sets a figure input of kind ``which`` covers (rhosym.registry.FigureSpec)."""
    trained = [(e.dataset, e) for e in experiments] + [(t.target, t.experiment) for t in transfers]
    if which == "all":
        keep = set(cfg.datasets)
    elif which == "evaluated":
        keep = {ds for ds, _ in trained}
    elif which == "classification":
        keep = {ds for ds, e in trained if _has_class_answer(e.task)}
    elif which == "trained_sizes":
        keep = {ds for ds, e in trained if e.points and _has_class_answer(e.task)}
    elif which == "sweep":
        keep = {e.dataset for e in sweep_experiments(cfg, experiments)}
    elif which == "robust":
        keep = set(robust_datasets(cfg, experiments))
    else:
        raise ValueError(f"unknown figure input kind {which!r}")
    return [ds for ds in cfg.datasets if ds in keep]


def figure_inputs(cfg, spec, experiments: list[Experiment], transfers: list[Transfer]) -> tuple[dict, list[str]]:
    """``({input name: [paths]}, data sets)`` of a figure (:class:`rhosym.registry.FigureSpec`)."""
    inputs: dict[str, list[str]] = {}
    datasets: list[str] = []
    for name, (rel, which) in spec.inputs.items():
        if which == "experiments":
            inputs[name] = [L.path(cfg.results, L.MODEL_DIR + "/" + rel, ds=e.dataset, model=e.model, task=e.task,
                                   variant=e.variant) for e in experiments]
            continue
        datasets = figure_datasets(cfg, which, experiments, transfers)
        inputs[name] = [f"{cfg.results}/{ds}/{rel}".replace("{split}", cfg.primary_split(ds)) for ds in datasets]
    return inputs, datasets


def figure_outputs(cfg, spec) -> dict[str, str]:
    if spec.outputs == "tables":
        return {k: L.path(cfg.results, L.TABLE, name=f) for k, f in R.TABLE_FILES.items()}
    return {ext: L.path(cfg.results, L.FIGURE, name=spec.name, ext=ext) for ext in ("png", "pdf")}


def _robust_kind(r, e: Experiment) -> bool:
    """A model, task and variant the robustness settings ``r`` evaluate (any data set, split or seed)."""
    return e.model in r.models and e.task in r.tasks and not e.points and (r.lattice_conditioned or not e.lattice)


def robust_datasets(cfg, experiments: list[Experiment]) -> list[str]:
    """Data sets the robustness evaluation covers: those with a trained model of robustness.models/tasks."""
    r = cfg.robustness
    have = {e.dataset for e in experiments if _robust_kind(r, e)}
    wanted = r.datasets if r.datasets is not None else list(cfg.datasets)
    return [ds for ds in wanted if ds in have]


def robust_experiments(cfg, experiments: list[Experiment]) -> list[Experiment]:
    """Trained experiments the robustness evaluation runs (robustness.models / tasks / datasets)."""
    keep = set(robust_datasets(cfg, experiments))
    r = cfg.robustness
    out = [e for e in experiments if e.dataset in keep and _robust_kind(r, e) and not e.pretrained
           and e.split == cfg.primary_split(e.dataset)]
    if r.seeds is not None:
        return [e for e in out if e.seed in r.seeds]
    first = {}
    for e in out:
        first.setdefault((e.dataset, e.model, e.task, L.group_of(e.variant)), e.seed)
    return [e for e in out if e.seed == first[(e.dataset, e.model, e.task, L.group_of(e.variant))]]
