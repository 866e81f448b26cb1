"""Apply a trained checkpoint to new structures: CIF (every data block), POSCAR, CHGCAR, CDVAE-style CSV.

Preprocessing reproduces the checkpoint's training inputs with the settings stored in the checkpoint
only (``meta["input_store"]``: the attributes of the training store; see ``docs/formats.md``):

* **density models** (``sparse_cnn``, ``pointnet``): trained on structure-derived (all-electron) densities,
  any input with atoms is accepted; the structure is put in the cell ingest uses (conventional standard
  cell, spglib at symprec 0.1) and its density computed as the density stage did (dense grid at
  ``density.spacing`` or, for a ``source: direct`` store, evaluated at the sampled positions), then
  sampled with :func:`rhosym.sampling.sample_one` (method, voxel, frame, threshold, point counts and the
  per-structure seed from the global seed and the structure id, the id being derived as ingest does:
  CIF file stem[:block], CHGCAR material id, CSV id column). A CHGCAR given to such a model contributes
  its structure (``density_source: "structure"``). Trained on CHGCAR (valence) densities, only CHGCAR
  inputs are accepted (``density_source: "chgcar"``); others are refused with a reason.
* **XRD FCN**: :func:`rhosym.xrd.simulate` with the training store's XRD settings, cast to float16 as
  stored.
* **CGCNN / coGN**: :func:`rhosym.graphs.build_graph` with the training store's graph settings.

A setting the checkpoint lacks falls back to the config default (the section schema's default, which
the stage modules' ``DEFAULTS`` mirror) and is named in one warning (:attr:`Settings.missing`).
A user setting (``method``, ``voxel``) that differs from the checkpoint's, or a checkpoint whose inputs
cannot be made at all, raises :class:`PredictRefused`.

Each structure gives one result dict: ``source`` (path, ``#block`` / ``#row`` where a file holds several),
``id``, ``model``, ``task``, then ``prediction`` (label string, or value with ``unit`` for regression),
``symbol`` (space and extinction groups), ``top_k`` (``[{label, probability}]``, best first),
``density_source`` (density models) and ``spglib`` (``label_structure`` at symprec 0.1), or
``{"source", "error"}`` when the structure could not be processed.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger("rhosym.predict")

UNITS = {"band_gap": "eV", "formation_energy": "eV/atom"}
SPGLIB_SYMPREC = 0.1
SPGLIB_ANGLE_TOLERANCE = 5.0
# keys rhosym.train should store in the checkpoint (or the sample store should carry) so that nothing
# falls back to a default; named in the warning
DENSITY_VALUE_KEYS = ("spacing", "b_iso", "blur", "cutoff")


class PredictRefused(ValueError):
    """The checkpoint cannot be applied as asked (a setting differs, or its inputs cannot be made)."""


# ------------------------------------------------------------------------------------------ settings

@dataclass
class Settings:
    """Preprocessing settings resolved from a checkpoint's ``meta``."""

    model: str
    task: str
    input_kind: str  # density | xrd | cgcnn | cogn
    features: int = 1
    method: str | None = None  # density: random | grid
    source: str = "dense"  # density: dense | direct
    density_kind: str = "structure"  # density: structure | chgcar (what the model was trained on)
    store_channels: int = 1  # density channels of the training store (features select the first ones)
    density: dict = field(default_factory=dict)
    sample: dict = field(default_factory=dict)
    spatial_shape: list | None = None
    seed: int = 0
    cell: str = "conventional"  # ingest's density cell for structure-derived kinds
    symprec: float = 0.1  # ingest's labels.symprec / angle_tolerance for that cell
    angle_tolerance: float = 5.0
    xrd: object = None  # rhosym.xrd.XRDSettings
    graphs: dict = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def _first(d: dict, *keys):
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def _density_settings(meta: dict, st: dict, s: Settings) -> None:
    from rhosym.density import density_cfg
    from rhosym.sampling import frame_shape, sample_cfg

    s.method = str(_first(st, "method") or meta.get("input") or "grid")
    s.source = str(st.get("source") or "dense")
    channels = st.get("channels") or (meta.get("norm") or {}).get("channels") or ["total"]
    s.store_channels = len(channels)
    # what the model was trained on: an explicit kind when the checkpoint has one, else inferred
    kind = _first(meta, "dataset_kind", "kind") or _first(st, "dataset_kind", "kind")
    if kind is not None:
        s.density_kind = "chgcar" if kind == "mp_chgcar" else "structure"
    elif s.source == "direct":
        s.density_kind = "structure"
    elif s.store_channels == 4 or int(meta.get("features", 1)) == 4:
        s.density_kind = "chgcar"
    else:
        s.density_kind = "structure"
        s.missing.append("input_store.kind (data-set kind; assumed structure-derived, not mp_chgcar)")
    dens = _first(meta, "density") or _first(st, "density", "density_config") or {}
    s.density = density_cfg(dens)
    if s.density_kind == "structure":
        need = DENSITY_VALUE_KEYS if s.source == "dense" else DENSITY_VALUE_KEYS[1:]
        s.missing += [f"density.{k}" for k in need if k not in dens]
    s.density["channels"] = s.store_channels
    cfg = dict(st.get("config") or {})
    for k in ("threshold", "voxel", "frame"):
        if st.get(k) is not None:
            cfg[k] = st[k]
    shape = st.get("spatial_shape")
    if "frame" not in cfg and shape is not None and cfg.get("voxel"):
        cfg["frame"] = float(shape[0]) * float(cfg["voxel"])
    needed = ["threshold", "voxel", "frame"] + (["points_per_A3", "min_points", "max_points"]
                                               if s.method == "random" else [])
    s.missing += [f"sample.{k}" for k in needed if k not in cfg]
    s.sample = sample_cfg(cfg)
    s.spatial_shape = list(shape) if shape is not None else frame_shape(s.sample)
    if list(frame_shape(s.sample)) != list(s.spatial_shape):
        raise PredictRefused(f"checkpoint's sample frame {s.sample['frame']} A / voxel {s.sample['voxel']} A "
                             f"does not give its spatial_shape {s.spatial_shape}")
    if st.get("seed") is not None:
        s.seed = int(st["seed"])
    elif s.method == "random":
        s.missing.append("input_store.seed (global seed of the random sampling)")
    cell = _first(st, "cell", "ingest_cell") or _first(meta, "ingest_cell")
    if isinstance(cell, str):
        s.cell = cell
    elif s.density_kind == "structure":
        s.missing.append("ingest cell (datasets.<ds>.cell; assumed conventional)")
    lab = _first(meta, "labels") or _first(st, "labels") or {}
    s.symprec = float(lab.get("symprec", s.symprec))
    s.angle_tolerance = float(lab.get("angle_tolerance", s.angle_tolerance))


def _graph_settings(st: dict, kind: str, s: Settings) -> None:
    from rhosym.graphs import settings as graph_settings

    cfg = {k: st[k] for k in ("cutoff", "cell", "symprec", "disorder") if st.get(k) is not None}
    if kind == "cgcnn":
        pairs = {"max_neighbors": "cgcnn_max_neighbors", "gaussian_step": "gaussian_step"}
    else:
        pairs = {"max_neighbors": "cogn_max_neighbors", "tie_tolerance": "cogn_tie_tolerance",
                 "distance_bins": "distance_bins"}
    for src, dst in pairs.items():
        if st.get(src) is not None:
            cfg[dst] = st[src]
    need = ["cutoff", "cell", "symprec", "disorder"] + list(pairs.values())
    s.missing += [f"graphs.{k}" for k in need if k not in cfg]
    s.graphs = graph_settings(cfg)


def resolve_settings(meta: dict, method: str | None = None, voxel: float | None = None) -> Settings:
    """Preprocessing settings of a checkpoint; ``method``/``voxel``: what the user asked for (checked)."""
    from rhosym.xrd import XRDSettings

    st = dict(meta.get("input_store") or {})
    kind = meta["input_kind"]
    s = Settings(model=meta["model"], task=meta["task"], input_kind=kind, features=int(meta.get("features", 1)))
    if kind == "density":
        _density_settings(meta, st, s)
        if method is not None and method != s.method:
            raise PredictRefused(f"--method {method} asked for, but the checkpoint was trained on {s.method} "
                                 "sampling")
        if voxel is not None and not np.isclose(float(voxel), float(s.sample["voxel"])):
            raise PredictRefused(f"--voxel {voxel} asked for, but the checkpoint was trained with voxel "
                                 f"{s.sample['voxel']} A")
        if s.features > s.store_channels:
            raise PredictRefused(f"checkpoint reads {s.features} density features but its training store has "
                                 f"{s.store_channels} channel(s)")
    else:
        if method is not None or voxel is not None:
            raise PredictRefused(f"--method/--voxel apply to density models only, not {s.model}")
        if kind == "xrd":
            names = set(XRDSettings.__dataclass_fields__)
            have = {k: v for k, v in st.items() if k in names}
            s.missing += [f"xrd.{k}" for k in sorted(names - set(have))]
            s.xrd = XRDSettings.from_config(have)
        elif kind in ("cgcnn", "cogn"):
            _graph_settings(st, kind, s)
        else:
            raise PredictRefused(f"unknown input kind {kind!r} in the checkpoint")
    return s


def warn_missing(s: Settings, logger: logging.Logger = log) -> None:
    if s.missing:
        logger.warning("the checkpoint does not record %s; using the config defaults (rhosym.train should store "
                       "them with the checkpoint)", ", ".join(s.missing))


# ------------------------------------------------------------------------------------------ inputs

@dataclass
class Unit:
    """One structure of an input file."""

    source: str  # path, with #block / #row where the file holds several
    uid: str  # the id ingest would give it (seeds the random sampling)
    file_kind: str  # cif | poscar | chgcar | csv
    path: str
    record: object  # rhosym.structures.StructureRecord


def read_inputs(paths: Iterable[str | Path], id_column: str | None = None,
                cif_column: str | None = None) -> Iterator[Unit]:
    """Every structure of every input file, as :class:`Unit` (unreadable ones carry ``record.error``)."""
    from rhosym.ingest import chgcar_id, cif_stem
    from rhosym.structures import StructureRecord, read_any, sniff_kind

    cols = {k: v for k, v in (("id", id_column), ("cif", cif_column)) if v}
    for p in paths:
        p = str(p)
        kind = sniff_kind(p)
        if not os.path.exists(p):
            yield Unit(p, Path(p).name, kind, p, StructureRecord(p, "", None, "no such file"))
            continue
        for rec in read_any(p, csv_columns=cols):
            if kind == "csv":
                uid = str(rec.extra.get("id") or rec.source)
                src = rec.source
            elif kind == "cif":
                uid = f"{cif_stem(p)}:{rec.block}" if rec.block else cif_stem(p)
                src = f"{p}#{rec.block}" if rec.block else p
            elif kind == "chgcar":
                uid, src = chgcar_id(p), p
            else:
                uid, src = re.sub(r"\.(gz|bz2|xz)$", "", Path(p).name), p
            yield Unit(src, uid, kind, p, rec)


# ------------------------------------------------------------------------------------------ preprocessing

def stage_json(structure, cell: str, s: Settings) -> str:
    """The ``structure`` column ingest would write: pymatgen JSON of the cell the stages use."""
    from rhosym.ingest import density_cell

    return json.dumps(density_cell(structure, cell, s.symprec, s.angle_tolerance).as_dict())


def stage_structure(structure, cell: str, s: Settings):
    """The structure as a later stage reads it back from the ingest shard."""
    from rhosym.ingest import structure_from_json

    return structure_from_json(stage_json(structure, cell, s))


def preprocess(unit: Unit, s: Settings) -> tuple[dict, dict]:
    """``(sample, info)``: the per-sample dict in the store form (density features raw) and extra output keys.

    Raises ``ValueError`` with a one-line reason when the structure cannot be used.
    """
    if not unit.record.ok:
        raise ValueError(unit.record.error or "no structure")
    if s.input_kind == "density":
        return _preprocess_density(unit, s)
    # xrd and graphs read ingest's structure: a CHGCAR's own cell, the conventional cell otherwise
    cell = "as_is" if unit.file_kind == "chgcar" else s.cell
    st = stage_structure(unit.record.structure, cell, s)
    if s.input_kind == "xrd":
        from rhosym.loaders import XRD_POINTS
        from rhosym.xrd import simulate, to_float16

        pattern, _d, _f2 = simulate(st, s.xrd)
        p = np.asarray(to_float16(pattern)[:XRD_POINTS], dtype=np.float32)
        return {"pattern": np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)}, {}
    from rhosym.graphs import build_graph

    g = build_graph(st, s.input_kind, s.graphs)
    sample = {"atom_fea": np.asarray(g["atom_fea"], np.float32),
              "edge_index": np.asarray(g["edge_index"], np.int64).reshape(-1, 2),
              "edge_dist": np.asarray(g["edge_dist"], np.float32)}
    if s.input_kind == "cogn":
        sample["node_weight"] = np.asarray(g["node_weight"], np.float32)
        sample["edge_vec"] = np.asarray(g["edge_vec"], np.float32).reshape(-1, 3)
    return sample, {}


def _preprocess_density(unit: Unit, s: Settings) -> tuple[dict, dict]:
    from rhosym.density import DirectModel, density_of_row
    from rhosym.sampling import sample_one

    if s.density_kind == "chgcar":
        if unit.file_kind != "chgcar":
            raise ValueError(f"refused: the checkpoint was trained on CHGCAR (valence) densities with "
                             f"{s.features} feature(s); only CHGCAR inputs can be used, not a {unit.file_kind}")
        rho, attrs = density_of_row({"kind": "mp_chgcar", "chgcar_path": unit.path}, s.density)
        lattice = np.asarray(attrs["cell"])
        xyz, feats, vox = sample_one(s.method, s.sample, unit.uid, lattice, s.seed, rho=rho)
        source = "chgcar"
    else:
        sjson = stage_json(unit.record.structure, s.cell, s)
        if s.source == "direct":
            from rhosym.ingest import structure_from_json

            st, d = structure_from_json(sjson), s.density
            model = DirectModel.from_structure(st, b_iso=d["b_iso"], blur=d["blur"], cutoff=d["cutoff"])
            xyz, feats, vox = sample_one(s.method, s.sample, unit.uid, st.lattice.matrix, s.seed, model=model)
        else:
            rho, attrs = density_of_row({"kind": "structure", "structure": sjson}, s.density)
            xyz, feats, vox = sample_one(s.method, s.sample, unit.uid, np.asarray(attrs["cell"]), s.seed, rho=rho)
        source = "structure"
    sample = {"xyz": xyz, "features": feats, "voxels": vox,
              "spatial_shape": np.asarray(s.spatial_shape, dtype=np.int64)}
    return sample, {"density_source": source, "n_points": int(len(xyz))}


# ------------------------------------------------------------------------------------------ outputs

@lru_cache(maxsize=1)
def _sg_symbols() -> dict[int, str]:
    import spglib

    out: dict[int, str] = {}
    for hall in range(1, 531):
        t = spglib.get_spacegroup_type(hall)
        out.setdefault(int(t.number), str(t.international_short))
    return out


def label_symbol(task: str, label: str) -> str | None:
    """Hermann-Mauguin symbol of a space-group label, extinction symbol of an extinction-group label."""
    try:
        n = int(label)
    except (TypeError, ValueError):
        return None
    if task == "space_group":
        return _sg_symbols().get(n)
    if task == "extinction_group":
        return _eg_symbols().get(n)
    return None


@lru_cache(maxsize=1)
def _eg_symbols() -> dict[int, str]:
    from rhosym.symmetry import load_extinction_table

    df = load_extinction_table()
    return {int(r.extinction_group): str(r.extinction_symbol) for r in df.itertuples()}


def spglib_labels(structure) -> dict:
    """``label_structure`` at symprec 0.1: space group, symbol, crystal system, extinction group."""
    from rhosym.structures import one_line
    from rhosym.symmetry import label_structure

    try:
        lab = label_structure(structure, symprec=SPGLIB_SYMPREC, angle_tolerance=SPGLIB_ANGLE_TOLERANCE)
    except ValueError as exc:
        return {"error": one_line(exc)}
    return {k: lab[k] for k in ("space_group", "symbol", "crystal_system", "extinction_group")}


def _result(unit: Unit, meta: dict, pred: dict, info: dict) -> dict:
    task = meta["task"]
    out: dict = {"source": unit.source, "id": unit.uid, "model": meta["model"], "task": task}
    if meta["regression"]:
        out["prediction"] = float(pred["y_pred"])
        out["unit"] = UNITS.get(task, "")
    else:
        out["prediction"] = str(pred["y_pred"])
        sym = label_symbol(task, out["prediction"])
        if sym is not None:
            out["symbol"] = sym
        out["top_k"] = []
        for lab, p in zip(pred["topk"], pred["topk_prob"]):
            entry = {"label": str(lab), "probability": float(p)}
            sym = label_symbol(task, str(lab))
            if sym is not None:
                entry["symbol"] = sym
            out["top_k"].append(entry)
    out.update(info)
    if unit.record.structure is not None:
        out["spglib"] = spglib_labels(unit.record.structure)
    return out


def _error(unit: Unit, exc) -> dict:
    from rhosym.structures import one_line

    return {"source": unit.source, "error": one_line(exc) or type(exc).__name__}


def predict_units(units: Iterable[Unit], model, meta: dict, s: Settings, top_k: int = 3,
                  batch_size: int = 16) -> Iterator[dict]:
    """Result dicts in input order; preprocessed samples are predicted in batches of ``batch_size``."""
    from rhosym.infer import predict_samples
    from rhosym.logs import progress

    pending: list[tuple[Unit, dict | None, dict | Exception]] = []

    def flush():
        ok = [(u, smp, info) for u, smp, info in pending if smp is not None]
        preds = predict_samples(model, meta, [smp for _, smp, _ in ok], top_k) if ok else []
        it = iter(preds)
        for u, smp, info in pending:
            yield _error(u, info) if smp is None else _result(u, meta, next(it), info)
        pending.clear()

    units = list(units)
    for u in progress(units, desc=f"predict {meta['model']}/{meta['task']}"):
        try:
            smp, info = preprocess(u, s)
        except Exception as exc:  # noqa: BLE001 - every failure becomes that structure's error line
            log.debug("%s failed", u.source, exc_info=True)
            pending.append((u, None, exc))
        else:
            pending.append((u, smp, info))
        if sum(1 for p in pending if p[1] is not None) >= batch_size:
            yield from flush()
    yield from flush()


def open_checkpoint(checkpoint: str | Path, device: str = "auto", method: str | None = None,
                    voxel: float | None = None) -> tuple[object, dict, Settings]:
    """``(model, meta, settings)``; warns once about settings that fall back to defaults.

    Raises :class:`PredictRefused` when the checkpoint cannot be applied as asked.
    """
    from rhosym.infer import load_checkpoint

    model, meta = load_checkpoint(checkpoint, device)
    s = resolve_settings(meta, method=method, voxel=voxel)
    warn_missing(s)
    log.info("%s: %s/%s on %s input (%s), %s", checkpoint, meta["model"], meta["task"], meta["input_kind"],
             meta.get("input"), meta["device"])
    return model, meta, s


def predict_files(paths: Iterable[str | Path], checkpoint: str | Path, top_k: int = 3, device: str = "auto",
                  id_column: str | None = None, cif_column: str | None = None, method: str | None = None,
                  voxel: float | None = None, batch_size: int = 16) -> list[dict]:
    """Result dicts of every structure of ``paths`` (see the module docstring), in input order."""
    model, meta, s = open_checkpoint(checkpoint, device, method, voxel)
    return list(predict_units(read_inputs(paths, id_column, cif_column), model, meta, s, top_k, batch_size))


def results_table(results: Iterable[dict]):
    """One row per structure: top-k and the spglib answer flattened into columns."""
    import pandas as pd

    rows = []
    for r in results:
        row = {k: v for k, v in r.items() if k not in ("top_k", "spglib")}
        for i, e in enumerate(r.get("top_k") or [], start=1):
            row[f"top{i}_label"] = e["label"]
            row[f"top{i}_probability"] = e["probability"]
            if "symbol" in e:
                row[f"top{i}_symbol"] = e["symbol"]
        for k, v in (r.get("spglib") or {}).items():
            row[f"spglib_{k}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    first = [c for c in ("source", "id", "model", "task", "prediction", "symbol", "unit", "density_source",
                         "error") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


__all__ = ["PredictRefused", "Settings", "Unit", "resolve_settings", "read_inputs", "preprocess", "predict_units",
           "predict_files", "open_checkpoint", "results_table", "spglib_labels", "label_symbol", "warn_missing", "UNITS"]
