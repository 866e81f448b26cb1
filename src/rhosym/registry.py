"""The registry: every model, task, input, data-set kind and figure of rhosym, declared once.

The ``.smk`` files import this module when Snakemake builds its DAG, so it stays light: the standard
library and pydantic only (no numpy, pandas or torch). Everything that lists models, tasks, inputs,
data-set kinds or figures derives from it: wildcard constraints, the experiment expansion, the input
functions of the rules, the figure rules (generated in a loop), the figure dispatch, the model
builder, the loaders, the plotting order and the typed settings (``rhosym.settings``).

Adding a model is one :class:`ModelSpec` in :data:`MODELS` (with its architecture settings class) plus
its module ``rhosym.models.<name>`` defining ``build(n_out, regression, in_features, cfg)``; a data-set
kind is one :class:`DatasetKindSpec` plus its unit lister and reader; a figure is one :class:`FigureSpec`
plus its function in :mod:`rhosym.figures`. See README ("Extending rhosym").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base of every settings block: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# ================================================================================================ labels
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")


@dataclass(frozen=True)
class TaskSpec:
    """A learning task. ``kind``: classification, regression, or joint (one network, several answers)."""

    name: str
    kind: str
    display: str
    n_classes: int = 0  # classification: size of the FULL label set (fixed across data sets)
    column: str = ""  # manifest column holding the label or target
    unit: str = ""  # regression
    answers: tuple[str, ...] = ()  # joint: the tasks it answers

    @property
    def regression(self) -> bool:
        return self.kind == "regression"

    @property
    def n_out(self) -> int:
        if self.kind == "regression":
            return 1
        if self.kind == "joint":
            return TASKS[self.answers[-1]].n_classes
        return self.n_classes


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("crystal_system", "classification", "Crystal system", 7, "crystal_system"),
    TaskSpec("extinction_group", "classification", "Extinction group", 101, "extinction_group"),
    TaskSpec("space_group", "classification", "Space group", 230, "space_group"),
    TaskSpec("band_gap", "regression", "Band gap", column="band_gap", unit="eV"),
    TaskSpec("formation_energy", "regression", "Formation energy", column="formation_energy", unit="eV/atom"),
    # One network with a 230-way space-group head whose probabilities are summed into extinction groups
    # and crystal systems (rhosym.hierarchy): the three answers are always consistent.
    TaskSpec("symmetry", "joint", "Symmetry (one network)",
             answers=("crystal_system", "extinction_group", "space_group")),
)}
CLASS_TASKS = tuple(n for n, t in TASKS.items() if t.kind == "classification")
REGRESSION_TASKS = tuple(n for n, t in TASKS.items() if t.kind == "regression")
#: tasks a prediction file can report (a joint task reports its answers)
ANSWER_TASKS = CLASS_TASKS + REGRESSION_TASKS


def answers_of(task: str) -> tuple[str, ...]:
    """The tasks a trained task answers: itself, or a joint task's answers."""
    t = TASKS[task]
    return t.answers if t.kind == "joint" else (t.name,)


# ================================================================================================ inputs
@dataclass(frozen=True)
class InputSpec:
    """What a model reads. ``store``: per-shard path under ``results/{ds}/`` (``{shard}``); ``rule``:
    the rule that writes it; ``kind``: its input kind (:data:`INPUT_KINDS`)."""

    name: str
    kind: str
    store: str
    rule: str
    display: str


@dataclass(frozen=True)
class InputKindSpec:
    """A kind of model input. ``impl``: ``module:attribute`` of its :class:`rhosym.inputs.InputKind`
    (reading a row, normalization, augmentation, collate, size, building a sample for ``predict``)."""

    name: str
    impl: str
    description: str
    sampled: bool = False  # a sampled density: the experiments' ``features``, ``points`` and ``sampling`` apply


INPUT_KINDS: dict[str, InputKindSpec] = {k.name: k for k in (
    InputKindSpec("density", "rhosym.inputs.density:DENSITY", "points with density values and voxel indices",
                  sampled=True),
    InputKindSpec("xrd", "rhosym.inputs.xrd:XRD", "a powder XRD pattern"),
    InputKindSpec("cgcnn", "rhosym.inputs.graphs:CGCNN", "a crystal graph of every atom of the cell"),
    InputKindSpec("cogn", "rhosym.inputs.graphs:COGN", "an asymmetric-unit graph with multiplicities"),
    InputKindSpec("lattice", "rhosym.inputs.lattice:LATTICE", "the six lattice parameters"),
    InputKindSpec("symops", "rhosym.inputs.symops:SYMOPS",
                  "the agreement of the density with every operation of the lattice's holohedry"),
    InputKindSpec("fracgrid", "rhosym.inputs.symops:FRACGRID",
                  "the density on the N³ fractional grid of the lattice's conventional cell"),
    InputKindSpec("lattice_sym", "rhosym.inputs.lattice_sym:LATTICE_SYM",
                  "the six lattice parameters and the Bravais lattice their metric admits"),
)}

INPUTS: dict[str, InputSpec] = {i.name: i for i in (
    InputSpec("grid", "density", "samples/grid/shard-{shard}.zarr", "sample_shard", "voxel-grid sampled density"),
    InputSpec("random", "density", "samples/random/shard-{shard}.zarr", "sample_shard", "randomly sampled density"),
    InputSpec("xrd", "xrd", "xrd/shard-{shard}.zarr", "xrd_shard", "simulated powder XRD"),
    InputSpec("cgcnn", "cgcnn", "graphs/cgcnn/shard-{shard}.zarr", "graphs_shard", "CGCNN crystal graph"),
    InputSpec("cogn", "cogn", "graphs/cogn/shard-{shard}.zarr", "graphs_shard", "coGN asymmetric-unit graph"),
    InputSpec("lattice", "lattice", "ingest/shard-{shard}.parquet", "ingest_shard", "six lattice parameters"),
    InputSpec("lattice_sym", "lattice_sym", "ingest/shard-{shard}.parquet", "ingest_shard",
              "lattice parameters and metric symmetry"),
    InputSpec("symops", "symops", "symops/shard-{shard}.zarr", "symops_shard", "symmetry-operation scores"),
    InputSpec("fracgrid", "fracgrid", "symops/shard-{shard}.zarr", "symops_shard", "fractional-grid density"),
)}
SAMPLINGS = tuple(n for n, i in INPUTS.items() if INPUT_KINDS[i.kind].sampled)

#: geometric augmentations of density inputs, named per experiment (``experiments[].augment``; variant tag
#: ``-a<name>`` when trained with them, ``-t<name>`` for test predictions made with them): name → the
#: AugmentSettings flags it turns on. None is on unless an experiment names it (the paper uses none).
AUGMENTATIONS: dict[str, tuple[str, ...]] = {
    "shift": ("origin_shift",),
    "rot": ("rotation",),
    "shiftrot": ("origin_shift", "rotation"),
}
#: acceptance thresholds of the classical finder (rhosym.symops), tried in order on the agreement of each
#: operation with the density (a correlation: 1 = present)
SYMOPS_LADDER = (0.999, 0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
AUGMENTATION_DISPLAY = {"shift": "origin shift", "rot": "rotation", "shiftrot": "origin shift + rotation"}
GRAPH_KINDS = tuple(n for n, i in INPUTS.items() if i.rule == "graphs_shard")


# ================================================================================================ models
class SparseCNNConfig(Strict):
    """Sparse 3D CNN (spconv): ResNet-style encoder, published widths by default."""

    channels: list[int] = Field([128, 128, 256, 512, 1024], description="Channels per stage.")
    blocks: list[int] | None = Field(None, description="Residual blocks per stage; null: published "
                                     "[0, 1, 2, 2, 3] (classification) or [0, 2, 3, 4, 3] (regression).")
    strides: list[int] = Field([1, 2, 2, 2, 2], description="Stride of each stage's first convolution.")
    kernel: int = Field(3, ge=1, description="Convolution kernel size.")
    head: list[int] | None = Field(None, description="Hidden widths of the MLP head; null: published "
                                   "[512, 256] (classification) or [512, 256, 128] (regression).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in the head.")

    BLOCKS: ClassVar[tuple] = ((0, 1, 2, 2, 3), (0, 2, 3, 4, 3))  # (classification, regression), published
    HEAD: ClassVar[tuple] = ((512, 256), (512, 256, 128))

    def resolved(self, regression: bool):
        """A copy with ``blocks`` and ``head`` filled in for the task kind (the published values)."""
        out = self.model_copy(update={
            "blocks": list(self.blocks if self.blocks is not None else self.BLOCKS[int(regression)]),
            "head": list(self.head if self.head is not None else self.HEAD[int(regression)])})
        if not len(out.channels) == len(out.blocks) == len(out.strides):
            raise ValueError(f"channels, blocks and strides must have the same length: {out.model_dump()}")
        return out


class DenseCNNConfig(SparseCNNConfig):
    """Dense 3D CNN of the sparse-vs-dense benchmark (same layout as the sparse one)."""


class PointNetConfig(Strict):
    channels: list[int] = Field([64, 128, 1024], description="Shared per-point MLP widths.")
    groups: int = Field(16, ge=1, description="GroupNorm groups.")
    head: list[int] = Field([512, 256], description="Hidden widths of the head (LayerNorm).")
    dropout: float = Field(0.3, ge=0, lt=1)
    center: bool = Field(True, description="Centre xyz per sample.")


class XrdFCNConfig(Strict):
    channels: list[int] = Field([16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512, 64],
                                description="13 Conv1D layers, each followed by max-pool(2).")
    kernel: int = Field(5, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    n_points: int = Field(8192, ge=1, description="Pattern points read (of the 10,001 stored).")


class CGCNNConfig(Strict):
    atom_fea_len: int = Field(64, ge=1)
    h_fea_len: int = Field(128, ge=1)
    n_conv: int = Field(3, ge=1)
    n_h: int = Field(1, ge=1)
    dmax: float = Field(8.0, gt=0, description="Gaussian expansion upper bound (Å).")
    step: float = Field(0.2, gt=0, description="Gaussian expansion step and width (Å).")
    dropout: float = Field(0.0, ge=0, lt=1)


class CoGNConfig(Strict):
    units: int = Field(128, ge=1)
    depth: int = Field(5, ge=1)
    bins: int = Field(32, ge=1, description="Distance bins (Gaussians on [0, cutoff]).")
    cutoff: float = Field(8.0, gt=0)
    edge_layers: int = Field(5, ge=1)
    node_layers: int = Field(1, ge=1)
    head: list[int] = Field([], description="Hidden layers after pooling (published: none).")
    dropout: float = Field(0.0, ge=0, lt=1)


class LatticeMLPConfig(Strict):
    """The lattice-only control: an MLP on the lattice parameters of the density cell."""

    hidden: list[int] = Field([128, 128, 64], description="Hidden widths.")
    dropout: float = Field(0.1, ge=0, lt=1)


class LatticeGBMConfig(Strict):
    """The gradient-boosted lattice control (LightGBM on the lattice and metric-symmetry features; early
    stopping on the validation split)."""

    n_estimators: int = Field(400, ge=1, description="Most boosting rounds.")
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(5, ge=1, description="Fewest training structures in a leaf.")
    feature_fraction: float = Field(0.9, gt=0, le=1, description="Features drawn per tree (seeded).")
    lambda_l2: float = Field(1.0, ge=0)
    max_bin: int = Field(255, ge=2)
    early_stopping: int = Field(30, ge=1, description="Rounds without a better validation loss before stopping.")


class ClassicalConfig(Strict):
    """The classical finder (no training): the space group found from the operation scores at the
    symops stage (rhosym.symops.find_space_group; its thresholds are ``symops.ladder``)."""


class SymopsMLPConfig(Strict):
    """An MLP on the operation scores (79 slots, filled with 0 where untested), their mask and the lattice
    features of the conventional cell of the lattice."""

    hidden: list[int] = Field([256, 128], description="Hidden widths.")
    dropout: float = Field(0.1, ge=0, lt=1)


class PeriodicCNNConfig(Strict):
    """A dense 3D CNN over the density on the N³ fractional grid of the lattice's conventional cell, with
    circular padding (a whole-grid-step origin shift is a permutation of voxels) and global pooling."""

    channels: list[int] = Field([16, 16, 32, 32, 64, 64, 128, 128], description="Channels per convolution.")
    strides: list[int] = Field([1, 2, 1, 2, 1, 2, 1, 1], description="Stride of each convolution.")
    head: list[int] = Field([128], description="Hidden widths of the head (LayerNorm).")
    lattice: bool = Field(True, description="Give the head the lattice features of the conventional cell.")
    dropout: float = Field(0.1, ge=0, lt=1)


@dataclass(frozen=True)
class ModelSpec:
    """A network. ``inputs``: the inputs it can read (the first is its default; density models read the
    experiment's sampling). ``train``: its own training protocol (defaults below the user's keys), per
    task kind ('classification' covers joint tasks). ``order``: plotting order (paper order)."""

    name: str
    display: str
    inputs: tuple[str, ...]
    config: type
    order: int
    train: dict = field(default_factory=dict)
    control: bool = False  # a control row in tables (the lattice-only model)
    fit_free: bool = False  # a fixed rule (no weights): `rhosym predict --model <name>` needs no checkpoint
    boosted: bool = False  # fitted by its own library (a tree ensemble), not by gradient descent
    study: bool = True  # False: built by build_model for benchmarks only, not an experiment model
    reads_lattice: bool = False  # its input already holds the cell: refuses the +lattice option

    @property
    def input_kind(self) -> str:
        return INPUTS[self.inputs[0]].kind

    @property
    def sampled(self) -> bool:
        """Reads a sampled density (the experiments' features, points and sampling apply)."""
        return INPUT_KINDS[self.input_kind].sampled

    def input_for(self, sampling: str) -> str:
        return sampling if self.sampled else self.inputs[0]

    def protocol(self, task_kind: str) -> dict:
        """Training defaults of this model for a task kind (regression / classification / joint)."""
        base = dict(self.train.get("all", {}))
        base.update(self.train.get("regression" if task_kind == "regression" else "classification", {}))
        return base


_PLATEAU = {"scheduler": "plateau", "plateau_factor": 0.5, "plateau_patience": 5}
MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("lattice", "Lattice only (control)", ("lattice",), LatticeMLPConfig, 0,
              {"all": {"optimizer": "adamw", "lr": 1e-3, "max_batch_size": 64, **_PLATEAU}}, control=True,
              reads_lattice=True),
    # the same MLP given the Bravais lattice the metric admits (at two tolerances): the strengthened control
    ModelSpec("lattice_sym", "Lattice + metric symmetry (control)", ("lattice_sym",), LatticeMLPConfig, 0,
              {"all": {"optimizer": "adamw", "lr": 1e-3, "max_batch_size": 64, **_PLATEAU}}, control=True,
              reads_lattice=True),
    # gradient-boosted trees on the same features (LightGBM; its text model in the checkpoint, no pickle)
    ModelSpec("lattice_gbm", "Lattice + metric symmetry (boosted control)", ("lattice_sym",), LatticeGBMConfig,
              0, control=True, reads_lattice=True, boosted=True),
    ModelSpec("cogn", "coGN", ("cogn",), CoGNConfig, 1,
              {"all": {"optimizer": "adamw", "lr": 5e-4, "max_batch_size": 64, **_PLATEAU}}),
    ModelSpec("cgcnn", "CGCNN", ("cgcnn",), CGCNNConfig, 2,
              {"all": {"optimizer": "adamw", "lr": 1e-3, "max_batch_size": 64, **_PLATEAU}}),
    ModelSpec("xrd_fcn", "FCN (XRD)", ("xrd",), XrdFCNConfig, 3,
              {"all": {"optimizer": "adam", "lr": 1e-3, "max_batch_size": 64, **_PLATEAU}}),
    # paper: PointNet lr 1e-4, batch 1 with gradient accumulation to 32 (here: batches of up to 32
    # point clouds, which is the same sum for a network without batch statistics)
    ModelSpec("pointnet", "PointNet", SAMPLINGS, PointNetConfig, 4,
              {"all": {"optimizer": "adam", "lr": 1e-4, "max_batch_size": 32, **_PLATEAU}}),
    # paper: Adam, plateau (0.5, 5), classification batch 64; regression lr 5e-5, batch 32, L1 loss
    ModelSpec("sparse_cnn", "Sparse 3D CNN", SAMPLINGS, SparseCNNConfig, 5,
              {"all": {"optimizer": "adam", **_PLATEAU},
               "classification": {"lr": 1e-3, "max_batch_size": 64},
               "regression": {"lr": 5e-5, "max_batch_size": 32}}),
    ModelSpec("dense_cnn", "Dense 3D CNN", SAMPLINGS, DenseCNNConfig, 6, study=False),
    # symmetry from the density itself (rhosym.symops): the classical finder (no training), a learned
    # model on the operation scores, and a periodic CNN on the fractional grid
    ModelSpec("classical", "Classical finder (no training)", ("symops",), ClassicalConfig, 7, fit_free=True,
              reads_lattice=True),
    ModelSpec("symops", "Operation scores (MLP)", ("symops",), SymopsMLPConfig, 8,
              {"all": {"optimizer": "adamw", "lr": 1e-3, "max_batch_size": 64, **_PLATEAU}}, reads_lattice=True),
    ModelSpec("periodic_cnn", "Periodic fractional-grid CNN", ("fracgrid",), PeriodicCNNConfig, 9,
              {"all": {"optimizer": "adamw", "lr": 1e-3, "max_batch_size": 16, **_PLATEAU}}, reads_lattice=True),
)}
STUDY_MODELS = tuple(n for n, m in MODELS.items() if m.study)
DENSITY_MODELS = tuple(n for n in STUDY_MODELS if MODELS[n].sampled)
CONTROL_MODELS = tuple(n for n in STUDY_MODELS if MODELS[n].control)
#: lattice-conditioned networks (``experiments[].lattice: [true]``, rhosym.conditioning): the suffix of the
#: model's display name, and the models that can take the option (those whose input does not hold the cell)
LATTICE_SUFFIX = "+lattice"
LATTICE_MODELS = tuple(n for n in STUDY_MODELS if not MODELS[n].reads_lattice)


def model_order(models) -> list[str]:
    """Models in plotting order (control first, then the paper's order), unknown names last."""
    models = list(dict.fromkeys(models))
    return sorted(models, key=lambda m: (MODELS[m].order if m in MODELS else 99, m))


def model_display(model: str, lattice: bool = False) -> str:
    """The display name of a model; ``lattice``: a lattice-conditioned variant (``+lattice``)."""
    return (MODELS[model].display if model in MODELS else model) + (LATTICE_SUFFIX if lattice else "")


# ========================================================================================= data-set kinds
@dataclass(frozen=True)
class DatasetKindSpec:
    """A kind of input data. ``lister``: ``module:function(ds_settings) -> list[Unit]`` (cheap, runs at
    DAG-build time); ``files``: units are files the ingest rule declares as inputs; ``keys``: the
    data-set keys this kind reads (others are errors); ``default_cell``: the density cell."""

    name: str
    lister: str
    default_cell: str
    files: bool
    keys: tuple[str, ...]
    description: str


_COMMON_KEYS = ("kind", "cell", "shards", "subsample", "split")
DATASET_KINDS: dict[str, DatasetKindSpec] = {k.name: k for k in (
    DatasetKindSpec("mp_chgcar", "rhosym.shards:list_chgcar_units", "as_is", True,
                    _COMMON_KEYS + ("path", "metadata", "mp_ids", "download_workers"),
                    "a folder of CHGCAR files (plain/.gz/.bz2/.xz) and MP charge-density JSON (.json/.json.gz)"),
    DatasetKindSpec("cif_dir", "rhosym.shards:list_cif_units", "conventional", True,
                    _COMMON_KEYS + ("path",), "a folder of CIF files (every data block)"),
    DatasetKindSpec("cdvae_csv", "rhosym.shards:list_csv_units", "conventional", False,
                    _COMMON_KEYS + ("path", "columns"), "CSV file(s) with one CIF string per row (CDVAE)"),
    DatasetKindSpec("synthetic", "rhosym.shards:list_synthetic_units", "conventional", False,
                    _COMMON_KEYS + ("n", "space_groups", "max_atoms", "elements"),
                    "random crystals over the space groups (pyxtal)"),
)}
#: density cells (rhosym.cells); 'primitive' is the spglib standard primitive (idealized)
CELLS = ("conventional", "conventional_refined", "niggli", "lattice_frame", "as_is", "primitive")
#: cells whose construction calls a symmetry finder (and so may depend on the label's tolerance)
CELLS_USING_SYMMETRY = ("conventional", "conventional_refined", "primitive")
SPLIT_RULES = ("none", "formula", "structure")


# ================================================================================================ figures
@dataclass(frozen=True)
class FigureSpec:
    """A figure or table target. ``inputs``: name → (per-data-set path under ``results/{ds}/``, which data
    sets: 'all', 'classification', 'evaluated', 'sweep', 'trained_sizes', 'robust') or
    (path, 'experiments') for one file per experiment; ``function``: in rhosym.figures, called as
    ``function(inputs, outputs, params)``; ``outputs``: 'figure' (png + pdf) or 'tables'."""

    name: str
    function: str
    inputs: dict
    caption: str
    outputs: str = "figure"
    mem_mb: int = 2000


FIGURES: dict[str, FigureSpec] = {f.name: f for f in (
    FigureSpec("fig3", "make_fig3", {"classification": ("metrics/classification.csv", "classification")},
               "fig3.rst"),
    FigureSpec("fig4", "make_fig4", {"confusion": ("metrics/confusion", "classification")}, "fig4.rst"),
    FigureSpec("fig4_supp", "make_fig4_supp", {"confusion": ("metrics/confusion", "classification")},
               "fig4_supp.rst", mem_mb=4000),
    FigureSpec("figS7", "make_figS7", {"distribution": ("splits/{split}_distribution.csv", "all")}, "figS7.rst"),
    FigureSpec("figS8", "make_figS8", {"classification": ("metrics/classification.csv", "trained_sizes")},
               "figS8.rst"),
    FigureSpec("figS8_sweep", "make_figS8_sweep", {"sweep": ("metrics/points_sweep.csv", "sweep")},
               "figS8_sweep.rst"),
    FigureSpec("figS11", "make_figS11", {"history": ("history.csv", "experiments")}, "figS11.rst"),
    FigureSpec("figRobust", "make_figRobust", {"robust": ("metrics/robustness.csv", "robust")},
               "figRobust.rst"),
    FigureSpec("figLearning", "make_figLearning",
               {"classification": ("metrics/classification.csv", "classification")}, "figLearning.rst"),
    FigureSpec("figCalibration", "make_figCalibration",
               {"calibration": ("metrics/calibration.csv", "classification")}, "figCalibration.rst"),
    FigureSpec("tables", "make_tables", {"classification": ("metrics/classification.csv", "evaluated"),
                                         "regression": ("metrics/regression.csv", "evaluated")},
               "tables.rst", outputs="tables"),
)}
#: the files of the 'tables' target (key → file name under results/tables/)
TABLE_FILES = {
    "s1_csv": "table_s1_classification.csv", "s1_md": "table_s1_classification.md",
    "s2_csv": "table_s2_regression.csv", "s2_md": "table_s2_regression.md",
    "s3_csv": "table_s3_features.csv", "s3_md": "table_s3_features.md",
    "results_csv": "results.csv", "results_md": "results.md",
    "learning_csv": "table_learning_curves.csv", "learning_md": "table_learning_curves.md",
}


__all__ = [
    "Strict", "CRYSTAL_SYSTEMS", "TaskSpec", "TASKS", "CLASS_TASKS", "REGRESSION_TASKS", "ANSWER_TASKS",
    "answers_of", "SYMOPS_LADDER", "AUGMENTATIONS", "AUGMENTATION_DISPLAY", "InputKindSpec", "INPUT_KINDS", "InputSpec", "INPUTS", "SAMPLINGS", "GRAPH_KINDS", "ModelSpec", "MODELS", "STUDY_MODELS",
    "DENSITY_MODELS", "CONTROL_MODELS", "LATTICE_SUFFIX", "LATTICE_MODELS", "model_order", "model_display", "DatasetKindSpec", "DATASET_KINDS",
    "CELLS", "CELLS_USING_SYMMETRY", "SPLIT_RULES", "FigureSpec", "FIGURES", "TABLE_FILES",
]
