"""Typed settings: one pydantic class per config section, defaults written once, unknown keys are errors.

:func:`parse_config` turns the merged config dict (what Snakemake's ``config`` holds) into a
:class:`Config`. A typo fails before any job runs with one message per problem naming the key, where
it is and the closest valid name::

    config: unknown key 'trian' at the top level; did you mean 'train'?
    config: unknown key 'chanels' in train.models.sparse_cnn.model; did you mean 'channels'?

The JSON schemas under ``workflow/schemas/`` and ``docs/config.md`` are generated from these classes
(``rhosym config-schema --write``; ``tests/test_settings.py`` checks that they are up to date).

Defaults are the published method's values (0.06 Å grids, 0.25 Å voxels, 5,000-30,000 random points,
published network widths); ``config.yaml`` (the demo) shrinks them.

Which settings reach a rule's ``params`` (and so make Snakemake rerun it when they change) is decided
here too: job resources (``threads``, ``mem_mb``, ``runtime``, ``gpus``, ``device``, ``num_workers``)
never do, see :meth:`Config.train_params` and :data:`RESOURCE_KEYS`.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from rhosym import registry as R
from rhosym.io.limits import MAX_BYTES, MAX_GRID_POINTS, MAX_INPUT_SITES
from rhosym.registry import Strict


class Registered:
    """Marks a name that must be one of ``names()`` (read from the registry when a config is parsed)."""

    def __init__(self, what: str, names: Callable[[], tuple]):
        self.what, self.names = what, names

    def check(self, v: str) -> str:
        valid = self.names()
        if v not in valid:
            raise ValueError(f"unknown {self.what} {v!r}{_suggest(v, valid)}")
        return v


def registered(what: str, names: Callable[[], tuple]) -> Any:
    """A name that must be one of ``names()``, read from the registry when a config is parsed (a model a
    plugin registers later is valid without reloading this module); the schema lists today's names."""
    r = Registered(what, names)
    return Annotated[str, r, AfterValidator(r.check),
                     Field(json_schema_extra=lambda s: s.update(enum=list(names())))]


ModelName = registered("model", lambda: R.STUDY_MODELS)
DensityModelName = registered("density model", lambda: R.DENSITY_MODELS)
TaskName = registered("task", lambda: tuple(R.TASKS))
SamplingName = registered("sampling", lambda: R.SAMPLINGS)
CellName = Literal[tuple(R.CELLS)]  # type: ignore[valid-type]
SplitRule = Literal[tuple(R.SPLIT_RULES)]  # type: ignore[valid-type]
KindName = Literal[tuple(R.DATASET_KINDS)]  # type: ignore[valid-type]


class ConfigError(ValueError):
    """A config that cannot be used: one line per problem."""


# ================================================================================================ sections
class LabelsSettings(Strict):
    """Symmetry labels of every structure (spglib through pymatgen)."""

    symprec: float = Field(0.1, gt=0, description="spglib distance tolerance (Å); 0.1 as the Materials Project uses.")
    angle_tolerance: float = Field(5.0, description="spglib angle tolerance (degrees).")
    ladder: list[float] = Field([0.05, 0.01, 1e-3, 1e-5], description="Tolerances tried in turn when spglib "
                                "finds no symmetry at symprec; the one used is recorded in the manifest.")
    source: Literal["spglib", "declared"] = Field(
        "spglib", description="Label from spglib, or the space group the CIF/CSV declares (spglib when it "
        "declares none); the other is kept in the manifest and their agreement reported.")


class IngestSettings(Strict):
    """Structure checks and input limits (the same code runs in `rhosym density|sample|xrd|graph|predict`)."""

    min_distance: float = Field(0.5, description="Reject structures with two atoms closer than this (Å).")
    max_volume: float = Field(5000.0, description="Reject density cells larger than this (Å³).")
    max_sites: int = Field(500, description="Reject density cells with more sites than this.")
    occupancy_tolerance: float = Field(1.05, description="Largest total occupancy of a site accepted "
                                       "(renormalised to 1 above 1).")
    max_input_sites: int = Field(MAX_INPUT_SITES, ge=1, description="Refuse a structure whose cell, as the file "
                                 "gives it, holds more sites than this (a CIF's atom-site positions expanded "
                                 "by its symmetry operations, a POSCAR's or CHGCAR's counts line), before the "
                                 "full parse and the symmetry search (rhosym.io.limits).")
    max_bytes: int = Field(MAX_BYTES, ge=1, description="Refuse an input file larger than this once decompressed "
                           "(bytes); compressed files are streamed and reading stops there.")
    max_grid_points: int = Field(MAX_GRID_POINTS, ge=1, description="Refuse a CHGCAR, charge-density JSON or "
                                 "CCP4/MRC map whose grid has more points, read from its header before the data.")


class SplitSettings(Strict):
    """One seeded train/val/test split per data set and rule, shared by every model."""

    fractions: list[float] = Field([0.8, 0.1, 0.1], min_length=3, max_length=3, description="train, val, test fractions.")
    seed: int = Field(42, description="Seed of the split.")
    group_by: SplitRule = Field("formula", description="The data set's primary split rule: keep groups of "
                                "near-duplicates on one side (reduced formula, StructureMatcher groups, or none). "
                                "Experiments may add others (experiments[].splits).")


class SplitOverride(Strict):
    fractions: list[float] | None = Field(None, min_length=3, max_length=3)
    seed: int | None = None
    group_by: SplitRule | None = None


class ColumnsSettings(Strict):
    """cdvae_csv: column names."""

    id: str = Field("material_id", description="Column with the structure id.")
    cif: str = Field("cif", description="Column with the CIF string.")
    band_gap: str = Field("band_gap", description="Column with the band gap (eV).")
    formation_energy: str = Field("formation_energy_per_atom", description="Column with the formation energy (eV/atom).")
    space_group: str = Field("spacegroup.number", description="Column with a declared space-group number "
                             "(compared with spglib's; used as label with labels.source: declared).")


class DatasetSettings(Strict):
    """One data set. Keys other than ``kind``, ``cell``, ``shards``, ``subsample`` and ``split`` apply to
    some kinds only (rhosym.registry.DATASET_KINDS)."""

    kind: KindName = Field(description="mp_chgcar, cif_dir, cdvae_csv or synthetic.")
    path: str | list[str] | None = Field(None, description="Folder (mp_chgcar, cif_dir) or CSV file(s) "
                                         "(cdvae_csv; a list is read as one data set). '{data_root}' is replaced. mp_chgcar without a "
                                         "path: <resources>/mp/<name>, where download_mp puts what it fetches.")
    metadata: str | None = Field(None, description="mp_chgcar: CSV/JSON with material_id (and task_id), band_gap, "
                                 "formation_energy_per_atom (default without a path: <resources>/mp/<name>/"
                                 "metadata.csv).")
    columns: ColumnsSettings | None = Field(None, description="cdvae_csv: column mapping.")
    cell: CellName | None = Field(None, description="Density cell: conventional (lattice transformation of the input, "
                                  "not symmetrized), conventional_refined (spglib's idealized standard cell, paper-like), "
                                  "niggli (from the lattice alone), as_is, primitive (idealized). Default: as_is for "
                                  "mp_chgcar, conventional otherwise.")
    shards: int | None = Field(None, ge=1, description="Number of shards (default: the power of two at or above "
                               "units / shard_size, so adding inputs moves no unit between existing shards).")
    subsample: int | None = Field(None, ge=1, description="Keep a seeded subset of this many input units.")
    split: SplitOverride | None = Field(None, description="Per-data-set overrides of split:.")
    n: int | None = Field(None, ge=1, description="synthetic: number of structures.")
    space_groups: Literal["all"] | list[int] | None = Field(None, description="synthetic: 'all' or a list of numbers.")
    max_atoms: int | None = Field(None, ge=1, description="synthetic: most atoms in the conventional cell (24).")
    elements: list[str] | None = Field(None, description="synthetic: elements to draw from.")
    mp_ids: list[str] | None = Field(None, description="mp_chgcar: material ids the download_mp target fetches.")
    download_workers: int | None = Field(None, ge=1, description="mp_chgcar: parallel downloads (4).")

    @model_validator(mode="after")
    def _kind_keys(self):
        allowed = set(R.DATASET_KINDS[self.kind].keys)
        bad = sorted(k for k in self.model_fields_set if k not in allowed and getattr(self, k) is not None)
        if bad:
            raise ValueError(f"key(s) {', '.join(bad)} do not apply to kind {self.kind} "
                             f"(its keys: {', '.join(sorted(allowed))})")
        if self.kind not in ("synthetic", "mp_chgcar") and not self.path:  # mp_chgcar: resources/mp/<ds>
            raise ValueError(f"kind {self.kind} needs a path")
        if self.kind == "mp_chgcar" and self.cell not in (None, "as_is"):
            raise ValueError("mp_chgcar densities keep the CHGCAR's own cell and grid: cell must be as_is")
        return self

    @property
    def resolved_cell(self) -> str:
        return self.cell or R.DATASET_KINDS[self.kind].default_cell

    @property
    def paths(self) -> list[str]:
        return [] if self.path is None else [self.path] if isinstance(self.path, str) else list(self.path)


class ExperimentBlock(Strict):
    """A product of data sets × models × tasks × features × samplings × points × fractions × augmentations
    × lattice conditioning × splits × seeds."""

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v):
        if not v or any(not 0 < f <= 1 for f in v):
            raise ValueError(f"fractions must be in (0, 1], got {v}")
        return v


    datasets: list[str] | None = Field(None, description="Data sets (default: all).")
    models: list[ModelName] = Field(description="Models (rhosym.registry.MODELS).")
    tasks: list[TaskName] = Field(description="Tasks; 'symmetry' trains one network for crystal system, "
                                  "extinction group and space group.")
    features: list[Literal[1, 4]] = Field([1], description="Density features (4: total, magnetization, up, down).")
    sampling: list[SamplingName] = Field(["grid"], description="Density down-sampling (density models).")
    points: list[int] = Field([0], description="Train and test density models on at most N points per structure "
                              "(seeded subsets; 0: as sampled). figS8 plots accuracy against N.")
    splits: list[SplitRule] | None = Field(None, description="Split rules (default: the data set's group_by).")
    seeds: list[int] | None = Field(None, description="Training seeds (default: train.seeds).")
    pretrained: str | None = Field(None, description="Fine-tune from this data set's checkpoint of the same model, "
                                   "task, input and seed (its primary split).")
    transfer_to: list[str] = Field([], description="Also predict these data sets' test splits with the trained "
                                   "models (zero-shot transfer).")
    robust: bool = Field(False, description="Train with the robustness augmentations too (robustness.train_augment, "
                         "on top of train.augment); the variant is tagged -aug.")
    fractions: list[float] = Field([1.0], description="Learning curves: train on these fractions of the training "
                                   "split (nested seeded subsets, 0 < f <= 1; validation and test ids never change); "
                                   "the variant is tagged -fr<per mille>.")
    augment: list[Literal[("none", *R.AUGMENTATIONS)]] = Field(  # type: ignore[valid-type]
        ["none"], description="Geometric augmentation of density models, an experiment axis: none (the paper), "
        "shift (random periodic origin shift), rot (random rotation) or shiftrot. An augmented experiment's "
        "variant is tagged -a<name>, and it is also tested on inputs transformed the same way (-t<name>); with "
        "none beside a transform, the plain density models are tested transformed too.")
    lattice: list[bool] = Field([False], description="Lattice-conditioned networks, an experiment axis: true gives "
                                "the network's head the lattice features of the data set's cell (the strengthened control's: "
                                "the 13 lattice features and the metric's Bravais lattice, standardized on the training "
                                "split) beside its pooled representation; "
                                "the variant is tagged -lat and the model shown as <model>+lattice, and its margin over "
                                "the lattice control is what its input adds to the cell. Not for models whose input "
                                "holds the cell already (lattice, lattice_sym, symops, periodic_cnn, classical).")


class DensitySettings(Strict):
    """Dense electron densities per ingest shard (rhosym.density)."""

    path: Literal["dense", "direct"] = Field("dense", description="dense: a dense store per shard, then sampling; "
                                             "direct: structure-derived densities evaluated at the sampled positions.")
    spacing: float = Field(0.06, gt=0, description="Grid spacing (Å) for structure-derived densities (paper: 0.06).")
    channels: Literal[1, 4] = Field(4, description="mp_chgcar: 1 (total) or 4 (total, magnetization, up, down).")
    b_iso: float = Field(0.5, gt=0, description="Isotropic B (Å²) of sites without a b_iso site property.")
    blur: float = Field(0.0, ge=0, description="Extra B (Å²) added to every atom (gemmi blur).")
    cutoff: float = Field(1e-5, gt=0, description="Atom densities are truncated below this (e/Å³).")
    tolerance: float = Field(0.005, gt=0, description="Reject a structure whose ∫ρ differs from Σ Z·occ by more (relative).")
    max_voxels: int = Field(30_000_000, ge=1, description="Reject structures whose grid has more points.")


class SampleSettings(Strict):
    """Down-sampling densities to point clouds and sparse voxels (rhosym.sampling)."""

    methods: list[SamplingName] = Field([], description="Methods sampled for every data set besides those experiments read.")
    threshold: float = Field(0.0, description="Keep positions whose total density is above this (e/Å³); paper: > 0.")
    points_per_A3: float = Field(20.0, gt=0, description="random: points per Å³, clipped to [min_points, max_points].")
    min_points: int = Field(5000, ge=1, description="random: fewest points per structure (paper: 5,000).")
    max_points: int = Field(30000, ge=1, description="random: most points per structure (paper: 30,000).")
    voxel: float = Field(0.25, gt=0, description="Voxel edge (Å) of grid sampling and sparse coordinates (paper: 0.25).")
    frame: float = Field(64.0, gt=0, description="Edge (Å) of the virtual cubic frame of the voxel coordinates.")


class XrdSettings(Strict):
    """Simulated powder XRD patterns (rhosym.xrd), the input of the XRD FCN."""

    wavelengths: list[float] = Field([1.54056, 1.54439], min_length=1, description="Wavelengths (Å): Cu Kα1, Kα2.")
    wavelength_ratios: list[float] = Field([1.0, 0.5], min_length=1, description="Intensity relative to the first.")
    two_theta_min: float = Field(5.0, description="First 2θ (degrees).")
    two_theta_max: float = Field(105.0, description="Last 2θ (degrees).")
    two_theta_step: float = Field(0.01, gt=0, description="2θ step (degrees).")
    U: float = Field(0.02, description="Caglioti U (deg²): FWHM² = U tan²θ + V tanθ + W.")
    V: float = Field(-0.01, description="Caglioti V (deg²).")
    W: float = Field(0.01, description="Caglioti W (deg²).")
    eta: float = Field(0.5, ge=0, le=1, description="Pseudo-Voigt Lorentzian fraction.")
    window_fwhm: float = Field(20.0, gt=0, description="Peaks are evaluated within ± this many FWHM.")
    min_fwhm: float = Field(0.01, gt=0, description="Lower bound of the FWHM (degrees).")
    b_iso: float = Field(0.0, ge=0, description="Isotropic B (Å²) for sites without b_iso.")

    @classmethod
    def from_config(cls, cfg: dict | None) -> XrdSettings:
        """From a dict that may hold other keys (a store's attributes)."""
        cfg = dict(cfg or {})
        return cls(**{k: v for k, v in cfg.items() if k in cls.model_fields})

    @property
    def n_points(self) -> int:
        return int(round((self.two_theta_max - self.two_theta_min) / self.two_theta_step)) + 1

    @property
    def two_theta(self):
        import numpy as np

        return self.two_theta_min + self.two_theta_step * np.arange(self.n_points)

    def attrs(self) -> dict:
        a = self.model_dump()
        a["n_points"] = self.n_points
        a["scattering_factors"] = "pymatgen XRDCalculator (atomic_scattering_params.json), neutral atoms"
        return a


class SymopsSettings(Strict):
    """Symmetry operations read from the density (rhosym.symops; rule symops_shard): the scores the
    ``symops`` model and the classical finder read, the fractional grid ``periodic_cnn`` reads."""

    n: int = Field(24, ge=8, description="Grid points per axis of the conventional cell (24: every 1/2, 1/3, 1/4, "
                   "1/6 translation is a grid step).")
    lattice_symprec: float = Field(0.1, gt=0, description="Metric tolerance (Å) of the lattice's Bravais lattice "
                                   "and holohedry (spglib on a one-atom cell: no atoms involved).")
    symprec: float = Field(0.1, gt=0, description="Tolerance (Å) of the closure test on translations and of "
                           "spglib's naming of the found operations.")
    ladder: list[float] = Field(list(R.SYMOPS_LADDER), min_length=1, description="Acceptance thresholds on the "
                                "agreement (a correlation, 1 = present), tried in order by the classical finder.")
    trivial_floor: float | None = Field(None, ge=-1, le=1, description="Off by default (null). Pass over a rung "
                                        "whose group is the identity alone while a rung at or above this value "
                                        "names a non-trivial group: noise pulls every true operation below the "
                                        "first rung (docs/benchmarks/fair.md: 0.9 recovers the clean answer for 23 "
                                        "of 30 MP-20 densities at SNR 5, against 3, and costs 5 of 1,355 clean ones).")


class GraphSettings(Strict):
    """Crystal graphs for CGCNN and coGN (rhosym.graphs)."""

    kinds: list[Literal[tuple(R.GRAPH_KINDS)]] = Field(list(R.GRAPH_KINDS), description="Graph kinds built for "  # type: ignore[valid-type]
                                                       "every shard of every data set (besides those experiments read).")
    cutoff: float = Field(8.0, gt=0, description="Neighbour cutoff (Å).")
    cell: Literal["primitive", "input"] = Field("primitive", description="primitive: spglib standard primitive "
                                                "(idealized); input: the ingest cell.")
    symprec: float = Field(0.01, gt=0, description="spglib tolerance (Å) for the primitive cell and the asymmetric unit.")
    disorder: Literal["reject", "average"] = Field("reject", description="Partially occupied / mixed sites: reject, "
                                                   "or average node features by occupancy.")
    cgcnn_max_neighbors: int = Field(12, ge=1, description="CGCNN: nearest neighbours per atom.")
    gaussian_step: float = Field(0.2, gt=0, description="CGCNN Gaussian step and width (Å), stored as attributes.")
    cogn_max_neighbors: int = Field(24, ge=1, description="coGN: nearest neighbours per asymmetric-unit atom (plus ties).")
    cogn_tie_tolerance: float = Field(1e-3, ge=0, description="coGN: neighbours within this of the last kept one are kept (Å).")
    distance_bins: int = Field(32, ge=1, description="coGN distance bins (attribute).")


class AugmentSettings(Strict):
    """Training-time augmentations (seeded per structure and epoch; off at evaluation unless evaluate: asks)."""

    origin_shift: bool = Field(False, description="Density models: random periodic origin shift by whole voxels "
                               "(wrapped). Named per experiment (experiments[].augment: [shift]), not set here.")
    rotation: bool = Field(False, description="Density models: random rotation of the Cartesian points (a rotation "
                           "whose cell does not fit the frame is redrawn, else skipped). Named per experiment "
                           "(experiments[].augment: [rot]), not set here.")
    noise_snr: float = Field(0.0, ge=0, description="Density models: additive noise at a random SNR ≥ this "
                             "(0: off; rhosym.perturb.add_noise), on the sampled values.")
    blur: float = Field(0.0, ge=0, description="Density models: random Gaussian smoothing of the sampled values "
                        "up to this resolution (Å; 0: off), see rhosym.augment.")
    perturb_fraction: float = Field(0.5, ge=0, le=1, description="Fraction of training samples perturbed when "
                                    "noise_snr or blur is on.")
    xrd_zero_shift: float = Field(0.0, ge=0, description="XRD: random zero shift up to ± this (degrees).")
    xrd_width_scale: float = Field(0.0, ge=0, description="XRD: peak widths scaled by a random factor in 1 ± this.")
    xrd_background: float = Field(0.0, ge=0, description="XRD: random smooth background up to this fraction of the maximum.")
    xrd_noise: float = Field(0.0, ge=0, description="XRD: Gaussian noise of this standard deviation (maximum = 1).")
    lattice_noise: float = Field(0.0, ge=0, description="Lattice control: relative noise on the lattice parameters.")


#: train keys that are job resources: never in params, never in the resume fingerprint
RESOURCE_KEYS = ("threads", "mem_mb", "runtime", "gpus", "device", "num_workers", "cache_mb")
#: train keys that may change between a killed run and its resumption
RESUME_FREE_KEYS = RESOURCE_KEYS + ("epochs", "patience", "resume", "top_k")


class TrainSettings(Strict):
    """One trainer for every model (rhosym.train). Model protocols (rhosym.registry.MODELS[...].train) sit
    between these defaults and the keys you set; ``models.<model>`` overrides per model and
    ``models.<model>.classification|regression`` per task kind."""

    epochs: int = Field(100, ge=1, description="Most epochs.")
    patience: int = Field(10, ge=0, description="Early stop after this many epochs without a better validation "
                          "metric (0: never).")
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["plateau", "cosine", "none"] = Field("plateau", description="plateau: ReduceLROnPlateau on "
                                                            "the VALIDATION loss; cosine: over epochs.")
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(5, ge=0)
    batch_budget: int = Field(200_000, ge=1, description="Most points (density) or nodes (graphs) per batch; a "
                              "larger sample forms its own batch.")
    max_batch_size: int = Field(32, ge=1, description="Most samples per batch.")
    accumulate: int = Field(1, ge=1, description="Batches per optimizer step (gradient accumulation).")
    processes: int = Field(1, ge=1, description="Data-parallel ranks (DistributedDataParallel under torchrun; "
                           "rhosym.distributed): each optimizer step takes one batch per rank, so the effective "
                           "batch is this many batches. On CUDA one GPU per rank: the job asks for this many "
                           "GPUs when train.gpus > 0.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient-norm clipping (0: off).")
    label_smoothing: float = Field(0.0, ge=0, le=1)
    class_weights: bool = Field(False, description="Inverse-frequency class weights from the training split.")
    norm_max_structures: int = Field(500, ge=1, description="Training structures the density normalization uses.")
    amp: bool = Field(True, description="Mixed precision on CUDA (ignored on CPU).")
    amp_dtype: Literal["fp16", "bf16"] = "fp16"
    seeds: list[int] = Field([0], min_length=1, description="Training seeds: each experiment trains once per "
                             "seed on the same split; metrics are mean ± sd over seeds.")
    augment: AugmentSettings = Field(default_factory=AugmentSettings)
    cache_mb: int = Field(4000, ge=0, description="Resource: keep decoded training and validation inputs in "
                          "memory between epochs, up to this many MB (0: read the stores every epoch).")
    resume: bool = Field(True, description="Continue from last.pt when it exists (same settings, inputs, split).")
    top_k: int = Field(5, ge=1, description="Labels kept per test prediction.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Resource: auto, cpu or cuda.")
    num_workers: int = Field(0, ge=0, description="Resource: DataLoader worker processes.")
    threads: int = Field(2, ge=1, description="Resource: cores per training job.")
    mem_mb: int = Field(8000, ge=100, description="Resource: memory per training job (MB).")
    runtime: int = Field(240, ge=1, description="Resource: minutes per training job.")
    gpus: int = Field(1, ge=0, description="Resource: GPUs per training job (resource 'gpu'; 0 for CPU clusters).")
    models: dict[str, Any] = Field({}, description="Per-model overrides of any key above, plus 'model' (the "
                                   "architecture, rhosym.registry) and 'classification'/'regression' blocks.")

    @field_validator("models", mode="before")
    @classmethod
    def _models(cls, v):
        out = {}
        for name, block in (v or {}).items():
            if name not in R.MODELS:
                raise ValueError(f"unknown model {name!r}")
            out[name] = ModelTrain.model_validate(block or {})
            for layer in (out[name], out[name].classification, out[name].regression):
                if layer is not None and layer.model is not None:
                    R.MODELS[name].config.model_validate({**(out[name].model or {}), **layer.model})
        return out


_OVERRIDABLE = [k for k in TrainSettings.model_fields if k != "models"]
_TrainOverride = create_model(
    "TrainOverride", __base__=Strict,
    **{k: (TrainSettings.model_fields[k].annotation | None, None) for k in _OVERRIDABLE},
    model=(dict | None, None))


class ModelTrain(_TrainOverride):  # type: ignore[misc, valid-type]
    """``train.models.<model>``: any train key, the architecture (``model``), and per-task-kind blocks
    (``classification``, ``regression``: any train key and architecture keys of that kind)."""

    classification: _TrainOverride | None = None  # type: ignore[valid-type]
    regression: _TrainOverride | None = None  # type: ignore[valid-type]


#: the result-affecting train keys: what reaches a training job's params and its checkpoint
PARAM_KEYS = tuple(k for k in TrainSettings.model_fields if k not in RESOURCE_KEYS + ("resume", "top_k", "seeds",
                                                                                       "models"))
_TrainParamsBase = create_model(
    "_TrainParamsBase", __base__=Strict,
    **{k: (TrainSettings.model_fields[k].annotation, TrainSettings.model_fields[k]) for k in PARAM_KEYS},
    model=(dict, Field({}, description="The architecture (rhosym.registry.MODELS[...].config), resolved.")))


class TrainParams(_TrainParamsBase):  # type: ignore[misc, valid-type]
    """The result-affecting settings of one training job, resolved once (:func:`train_params`): the
    defaults above, the model's protocol, then your keys. What the trainer reads, the train rule's
    ``params`` (as a dict) and the checkpoint's ``train_config``."""

    with_lattice: bool = Field(False, description="A lattice-conditioned network (the experiment's lattice: true, "
                               "variant -lat): the head also reads the lattice features of the cell (rhosym.conditioning).")


def train_params(model: str, task: str, given: dict | None = None, validate_model: bool = True) -> TrainParams:
    """The one merge of training settings: defaults < the model's protocol (rhosym.registry) < ``given``
    (a partial dict of train keys and ``model``; resource keys are dropped, unknown keys are errors)."""
    out = TrainSettings().model_dump(include=set(PARAM_KEYS))
    if model in R.MODELS:
        out.update(R.MODELS[model].protocol(R.TASKS[task].kind))
    drop = RESOURCE_KEYS + ("resume", "top_k", "seeds", "models")
    out.update({k: v for k, v in (given or {}).items() if v is not None and k not in drop})
    arch = dict(out.get("model") or {})
    if model in R.MODELS and validate_model:
        arch = R.MODELS[model].config.model_validate(arch).model_dump()
    out["model"] = arch
    if out.get("with_lattice") and model in R.MODELS and model not in R.LATTICE_MODELS:
        raise ValueError(f"with_lattice does not apply to {model}: its input holds the cell already")
    return TrainParams.model_validate(out)


class EvaluateSettings(Strict):
    """Test-split metrics (rule metrics)."""

    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples of the test structures for the 95 % interval (0: none).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Interval coverage.")
    origin_shift: bool = Field(False, description="Apply a random origin shift to the test inputs (measures invariance).")
    rotation: bool = Field(False, description="Apply a random rotation to the test inputs (measures invariance).")


class FiguresSettings(Strict):
    """The paper's figures (results/figures/) and tables (results/tables/)."""

    f1: Literal["macro_f1", "weighted_f1"] = Field("macro_f1", description="F1 average overlaid on the fig3 bars.")
    features: Literal[1, 4] = Field(1, description="Density feature set shown in fig3/fig4 (tables show both).")
    points_sweep: list[int] = Field([1000, 2000, 5000, 10000, 20000], description="figS8_sweep: max_points at "
                                    "inference of one trained model (empty: no sweep).")
    points_sweep_models: list[DensityModelName] = Field(list(R.DENSITY_MODELS), description="Density models swept.")
    points_sweep_tasks: list[Literal[tuple(R.CLASS_TASKS) + ("symmetry",)]] = Field(  # type: ignore[valid-type]
        list(R.CLASS_TASKS) + ["symmetry"], description="Trained tasks swept.")


class RobustTrainAugment(Strict):
    """The perturbation augmentations of experiments with ``robust: true`` (see AugmentSettings)."""

    noise_snr: float = Field(3.0, ge=0, description="Density noise at a random SNR in [this, 10 × this].")
    blur: float = Field(1.5, ge=0, description="Density smoothing up to this resolution (Å).")
    perturb_fraction: float = Field(0.5, ge=0, le=1, description="Fraction of training samples perturbed.")
    xrd_zero_shift: float = Field(0.1, ge=0, description="XRD zero shift up to ± this (degrees).")
    xrd_width_scale: float = Field(0.5, ge=0, description="XRD peak widths × a random factor in 1 ± this.")
    xrd_noise: float = Field(0.02, ge=0, description="XRD Gaussian noise (maximum = 1).")
    lattice_noise: float = Field(0.02, ge=0, description="Relative noise on lattice parameters.")


class RobustnessSettings(Strict):
    """Robustness to experimental-like density (rule robustness, figure figRobust)."""

    train_augment: RobustTrainAugment = Field(default_factory=RobustTrainAugment)

    perturbations: list[str] = Field(["noise", "blur", "wedge", "thermal", "xrd_noise", "xrd_broaden", "xrd_shift",
                                      "lattice_noise"], description="Perturbations evaluated (rhosym.perturb).")
    levels: dict[str, list[float]] = Field({}, description="Strengths per perturbation (default: rhosym.perturb).")
    models: list[ModelName] = Field(["sparse_cnn", "pointnet", "xrd_fcn", "lattice"], description="Models evaluated.")
    tasks: list[TaskName] = Field(["crystal_system", "symmetry"], description="Trained tasks evaluated.")
    datasets: list[str] | None = Field(None, description="Data sets evaluated (default: every data set with "
                                       "a trained model of the list).")
    max_structures: int = Field(500, ge=1, description="Test structures per data set (seeded subset of the common "
                                "test set).")
    seeds: list[int] | None = Field(None, description="Training seeds evaluated (default: the first of each "
                                    "experiment's seeds).")
    lattice_conditioned: bool = Field(True, description="Also evaluate the networks given the cell's features "
                                      "(+lattice; the cell they read stays unperturbed).")


# ================================================================================================ config
class Config(Strict):
    """The whole configuration."""

    results: str = Field("results", description="Folder every output goes to.")
    shard_size: int = Field(1000, ge=1, description="Target input units per shard.")
    seed: int = Field(0, description="Global seed (synthetic structures, random sampling).")
    data_root: str = Field("../shared/data", description="Replaces '{data_root}' in data-set paths.")
    resources: str = Field("resources", description="Folder for what the workflow downloads or retrieves (MP "
                           "charge densities and metadata: resources/mp/<ds>/ when a data set names no path); "
                           "results/ holds only what the DAG computes.")
    standalone: bool = Field(False, description="A config file with standalone: true is not layered on config.yaml.")
    datasets: dict[str, DatasetSettings] = Field(description="Data sets by name ([A-Za-z0-9_]+).")
    labels: LabelsSettings = Field(default_factory=LabelsSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    experiments: list[ExperimentBlock] = Field([], description="What to train.")
    density: DensitySettings = Field(default_factory=DensitySettings)
    sample: SampleSettings = Field(default_factory=SampleSettings)
    xrd: XrdSettings = Field(default_factory=XrdSettings)
    graphs: GraphSettings = Field(default_factory=GraphSettings)
    symops: SymopsSettings = Field(default_factory=SymopsSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    figures: FiguresSettings = Field(default_factory=FiguresSettings)
    robustness: RobustnessSettings = Field(default_factory=RobustnessSettings)

    @field_validator("datasets")
    @classmethod
    def _names(cls, v):
        import re

        if not v:
            raise ValueError("at least one data set is needed")
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ValueError(f"data-set name {name!r} must match [A-Za-z0-9_]+")
        return v

    @model_validator(mode="after")
    def _references(self):
        names = list(self.datasets)
        augments = [("train.augment", self.train.augment)] + [
            (f"train.models.{m}.augment", blk.augment) for m, blk in self.train.models.items() if blk.augment]
        for where, aug in augments:
            for flag, name in (("origin_shift", "shift"), ("rotation", "rot")):
                if getattr(aug, flag, False):
                    raise ValueError(f"{where}.{flag}: name it on the experiment instead (experiments[].augment: "
                                     f"[{name}]), so that its variant, tables and figures say so")
        for i, block in enumerate(self.experiments):
            if True in block.lattice:
                bad = [m for m in block.models if m not in R.LATTICE_MODELS]
                if bad:
                    raise ValueError(f"experiments[{i}].lattice: true does not apply to {', '.join(bad)}, whose input "
                                     f"holds the cell already (lattice: true takes {', '.join(R.LATTICE_MODELS)})")
            for ds in (block.datasets or []) + block.transfer_to + ([block.pretrained] if block.pretrained else []):
                if ds not in self.datasets:
                    raise ValueError(f"experiments[{i}] names data set {ds!r}, which is not under datasets:"
                                     f"{_suggest(ds, names)}")
        for ds in self.robustness.datasets or []:
            if ds not in self.datasets:
                raise ValueError(f"robustness.datasets names {ds!r}, which is not under datasets:{_suggest(ds, names)}")
        root = self.data_root
        from rhosym.layout import MP_DOWNLOAD, MP_METADATA, path

        for name, d in self.datasets.items():
            if d.kind == "mp_chgcar" and d.path is None:
                d.path = path(self.resources, MP_DOWNLOAD, ds=name)
                d.metadata = d.metadata or path(self.resources, MP_METADATA, ds=name)
            if isinstance(d.path, str):
                d.path = d.path.replace("{data_root}", root)
            elif d.path is not None:
                d.path = [p.replace("{data_root}", root) for p in d.path]
            if d.metadata:
                d.metadata = d.metadata.replace("{data_root}", root)
        return self

    # ------------------------------------------------------------------------------------- per data set
    def split_for(self, ds: str, rule: str | None = None) -> dict:
        """Split settings of a data set (global, then its overrides), for ``rule`` (default: its own)."""
        out = self.split.model_dump()
        over = self.datasets[ds].split
        if over is not None:
            out.update({k: v for k, v in over.model_dump().items() if v is not None})
        if rule is not None:
            out["group_by"] = rule
        return out

    def primary_split(self, ds: str) -> str:
        return self.split_for(ds)["group_by"]

    # ------------------------------------------------------------------------------------- training
    def train_resolved(self, model: str, task: str) -> dict:
        """Every result-affecting train key for (model, task), as a dict: defaults < model protocol < your
        train keys < your train.models.<model> keys < its classification/regression block."""
        return self.train_params(model, task).model_dump()

    def train_params(self, model: str, task: str, robust: bool = False, augment_name: str = "",
                     lattice: bool = False) -> TrainParams:
        """The typed training settings of a job (:func:`train_params` of your keys); ``robust`` adds the
        robustness augmentations (robustness.train_augment), ``augment`` the experiment's geometric ones
        (registry.AUGMENTATIONS), ``lattice`` the lattice features of the cell (experiments[].lattice)."""
        kind = "regression" if R.TASKS[task].regression else "classification"
        t = self.train
        given = {k: getattr(t, k) for k in t.model_fields_set if k in PARAM_KEYS}
        augment = t.augment.model_dump()
        block = t.models.get(model)
        arch: dict = {}
        if block is not None:
            for layer in (block, getattr(block, kind)):
                if layer is None:
                    continue
                for k in layer.model_fields_set:
                    if k not in PARAM_KEYS:
                        continue
                    v = getattr(layer, k)
                    if k == "augment":
                        augment.update(v.model_dump(exclude_unset=True))
                    else:
                        given[k] = v
                arch.update(layer.model or {})
        if robust:
            augment.update(self.robustness.train_augment.model_dump())
        for flag in ("origin_shift", "rotation"):
            augment[flag] = flag in R.AUGMENTATIONS.get(augment_name, ())
        given.update(augment=augment, model=arch, with_lattice=bool(lattice))
        return train_params(model, task, given)

    def train_resource(self, model: str, key: str):
        """A job resource (threads, mem_mb, runtime, gpus, device, num_workers) of a model's jobs."""
        block = self.train.models.get(model)
        if block is not None and getattr(block, key) is not None:
            return getattr(block, key)
        return getattr(self.train, key)

    def seeds_of(self, block: ExperimentBlock) -> list[int]:
        return list(block.seeds if block.seeds is not None else self.train.seeds)


# ================================================================================================ parsing
def _suggest(key: str, valid) -> str:
    m = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.5)
    return f"; did you mean {m[0]!r}?" if m else f" (valid: {', '.join(sorted(map(str, valid)))})"


def _strict_classes(annotation) -> list[type]:
    """Strict settings classes inside an annotation (``X | None``, ``list[X]``, ``dict[str, X]``)."""
    out = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for a in typing.get_args(annotation):
        out += _strict_classes(a)
    return out


def _container(annotation) -> str:
    for a in [annotation, *typing.get_args(annotation)]:
        o = typing.get_origin(a)
        if o in (list, tuple):
            return "list"
        if o is dict:
            return "dict"
    return "value"


def unknown_keys(data, cls: type, where: str = "") -> list[str]:
    """Messages for every key of ``data`` (nested) that ``cls`` does not define, with the closest name."""
    msgs: list[str] = []
    if not isinstance(data, dict):
        return msgs
    fields = cls.model_fields
    at = f"in {where}" if where else "at the top level"
    for key, value in data.items():
        if key not in fields:
            msgs.append(f"unknown key {key!r} {at}{_suggest(key, fields)}")
            continue
        sub = f"{where}.{key}" if where else str(key)
        if cls is TrainSettings and key == "models":
            for m, block in (value or {}).items():
                if m not in R.MODELS:
                    msgs.append(f"unknown model {m!r} in {sub}{_suggest(m, R.STUDY_MODELS)}")
                    continue
                msgs += unknown_keys(block, ModelTrain, f"{sub}.{m}")
                for path, layer in ((f"{sub}.{m}", block), (f"{sub}.{m}.classification", (block or {}).get(
                        "classification")), (f"{sub}.{m}.regression", (block or {}).get("regression"))):
                    if isinstance(layer, dict) and isinstance(layer.get("model"), dict):
                        msgs += unknown_keys(layer["model"], R.MODELS[m].config, f"{path}.model")
            continue
        classes = _strict_classes(fields[key].annotation)
        if not classes:
            continue
        kind = _container(fields[key].annotation)
        if kind == "dict" and isinstance(value, dict):
            for k, v in value.items():
                msgs += unknown_keys(v, classes[0], f"{sub}.{k}")
        elif kind == "list" and isinstance(value, list):
            for i, v in enumerate(value):
                msgs += unknown_keys(v, classes[0], f"{sub}[{i}]")
        else:
            msgs += unknown_keys(value, classes[0], sub)
    return msgs


def _loc(loc) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).startswith(("function-", "literal[", "list[", "str", "int")) or p in ("dict[str,any]",):
            continue
        else:
            out += f".{p}" if out else str(p)
    return out or "config"


def parse_config(config: dict) -> Config:
    """A :class:`Config` from a merged config dict; :class:`ConfigError` lists every problem."""
    msgs = unknown_keys(config, Config)
    if not msgs:
        try:
            return Config.model_validate(config)
        except ValidationError as exc:
            for e in exc.errors():
                where = _loc(e["loc"])
                text = e["msg"].removeprefix("Value error, ")
                if e["type"] == "missing":
                    text = "required key missing"
                inp = e.get("input")
                shown = "" if e["type"] == "missing" or isinstance(inp, dict | list) else f" (got {inp!r})"
                msgs.append(f"{where}: {text}{shown}" if e["loc"] else f"{text}{shown}")
    raise ConfigError("\n".join(f"config: {m}" for m in msgs))


# ================================================================================================ loading
def load_yaml(path) -> dict:
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def merge(base: dict, over: dict) -> dict:
    """Snakemake's merge of config files: dicts merge recursively, other values (lists) are replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def layered(files, overrides: dict | None = None, base: str | None = "config.yaml") -> dict:
    """The config Snakemake builds from the Snakefile's ``configfile: config.yaml``, ``--configfile`` files
    and ``--config`` values, with rhosym's rule: when a file (or ``--config``) sets ``standalone: true``,
    config.yaml is left out."""
    over: dict = {}
    for f in files:
        over = merge(over, load_yaml(f))
    over = merge(over, overrides or {})
    if over.get("standalone") or base is None:
        return over
    return merge(load_yaml(base), over)


def apply_standalone(config: dict, overwrite_config: dict | None) -> None:
    """In the Snakefile: rebuild ``config`` in place without config.yaml when the overlay is standalone."""
    if overwrite_config and overwrite_config.get("standalone"):
        config.clear()
        config.update(merge({}, overwrite_config))


def json_schema(cls: type = Config) -> dict:
    """JSON schema (draft 2020-12) of a settings class, for workflow/schemas and docs/config.md."""
    schema = cls.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


SECTIONS = {
    "labels": LabelsSettings, "ingest": IngestSettings, "split": SplitSettings, "density": DensitySettings,
    "sample": SampleSettings, "xrd": XrdSettings, "graphs": GraphSettings, "symops": SymopsSettings,
    "train": TrainSettings,
    "evaluate": EvaluateSettings, "figures": FiguresSettings, "robustness": RobustnessSettings,
}


__all__ = ["ConfigError", "Config", "parse_config", "TrainParams", "train_params", "PARAM_KEYS", "unknown_keys", "layered", "apply_standalone", "merge",
           "json_schema", "SECTIONS", "RESOURCE_KEYS", "RESUME_FREE_KEYS", *[c.__name__ for c in SECTIONS.values()],
           "DatasetSettings", "ExperimentBlock", "ModelTrain", "AugmentSettings", "ColumnsSettings"]


def section(cls: type, cfg=None):
    """A settings object of ``cls`` from an instance, a (partial) dict or None (None values dropped, keys
    the class does not define are ignored: a store's attributes can be passed as they are)."""
    if isinstance(cfg, cls):
        return cfg
    if isinstance(cfg, BaseModel):
        cfg = cfg.model_dump()
    data = {k: v for k, v in dict(cfg or {}).items() if v is not None and k in cls.model_fields}
    return cls.model_validate(data)
