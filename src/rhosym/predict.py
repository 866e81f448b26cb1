"""Apply a trained checkpoint to new inputs: CIF (every data block), POSCAR, CHGCAR, MP charge-density
JSON, CDVAE-style CSV, or a measured density on a grid (CCP4/MRC map).

Preprocessing reproduces the checkpoint's training inputs from what the checkpoint records
(:mod:`rhosym.checkpoint`: ``provenance`` = the data set's kind, cell, label and ingest settings;
``input_store`` = the attributes of the training store):

* every structure goes through :func:`rhosym.ingest.prepare`, the code ingest runs: the same structure
  checks (minimum distance, occupancy, volume and site limits), labels, and the density cell of the
  training data set (``conventional``, ``conventional_refined``, ``niggli``, ``as_is``...). Each result says
  which ``cell`` was used and whether a symmetry finder was on the input path (``symmetry_finder``: a
  model trained on ``niggli`` or ``as_is`` cells needs none);
* **density models**: trained on structure-derived (all-electron) densities, the density is computed as
  the density stage did (dense grid at ``density.spacing``, or evaluated at the sampled positions for a
  ``source: direct`` store) and sampled with :func:`rhosym.sampling.sample_one` (method, voxel, frame,
  threshold, point counts, per-structure seed from the global seed and the id, ingest's id rules);
  trained on CHGCAR (valence) densities, only CHGCAR/JSON inputs are accepted. A **measured map**
  (``.ccp4``, ``.mrc``, ``.map``; rhosym.perturb.read_map) is sampled the same way from its grid and cell:
  no structure and no symmetry finder are involved;
* **XRD FCN**: :func:`rhosym.xrd.simulate` with the training store's XRD settings, cast to float16 as stored;
* **CGCNN / coGN**: :func:`rhosym.graphs.build_graph` with the training store's graph settings;
* **lattice control**: the lattice parameters of the density cell.

Each input gives one result dict: ``source``, ``id``, ``model``, ``task``, ``cell``, ``symmetry_finder``,
``answers`` (``{task: {prediction, symbol, top_k}}``: a joint network answers crystal system,
extinction group and space group; regression: ``{prediction, unit}``), the top-level ``prediction``,
``symbol`` and ``top_k`` of the finest answer, ``density_source`` (density models) and ``spglib``
(labels at symprec 0.1), or ``{"source", "error"}`` when the input could not be used.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rhosym.registry import TASKS

log = logging.getLogger("rhosym.predict")

UNITS = {n: t.unit for n, t in TASKS.items() if t.regression}
SPGLIB_SYMPREC = 0.1
SPGLIB_ANGLE_TOLERANCE = 5.0
MAP_SUFFIXES = (".ccp4", ".mrc", ".map", ".ccp4.gz", ".mrc.gz", ".map.gz")


class PredictRefused(ValueError):
    """The checkpoint cannot be applied as asked (a setting differs, or its inputs cannot be made)."""


# ------------------------------------------------------------------------------------------ settings

@dataclass
class Settings:
    """Preprocessing settings resolved from a checkpoint's ``meta``."""

    model: str
    task: str
    input_kind: str  # density | xrd | cgcnn | cogn | lattice
    features: int = 1
    method: str | None = None  # density: random | grid
    source: str = "dense"  # density: dense | direct
    density_kind: str = "structure"  # density: structure | chgcar (what the model was trained on)
    store_channels: int = 1
    density: object = None  # rhosym.settings.DensitySettings
    sample: object = None  # rhosym.settings.SampleSettings
    spatial_shape: list | None = None
    seed: int = 0
    cell: str = "conventional"
    labels: object = None  # rhosym.settings.LabelsSettings
    ingest: object = None  # rhosym.settings.IngestSettings
    xrd: object = None  # rhosym.settings.XrdSettings
    graphs: object = None  # rhosym.settings.GraphSettings
    missing: list[str] = field(default_factory=list)


def resolve_settings(meta: dict, method: str | None = None, voxel: float | None = None) -> Settings:
    """Preprocessing settings of a checkpoint; ``method``/``voxel``: what the user asked for (checked)."""
    from rhosym.sampling import frame_shape
    from rhosym.settings import (
        DensitySettings,
        GraphSettings,
        IngestSettings,
        LabelsSettings,
        SampleSettings,
        XrdSettings,
        section,
    )

    st = dict(meta.get("input_store") or {})
    prov = dict(meta.get("provenance") or {})
    kind = meta["input_kind"]
    s = Settings(model=meta["model"], task=meta["task"], input_kind=kind, features=int(meta.get("features", 1)))
    s.labels = section(LabelsSettings, prov.get("labels") or st.get("labels"))
    s.ingest = section(IngestSettings, prov.get("ingest"))
    s.cell = str(prov.get("cell") or st.get("cell") or "conventional")
    if not prov:
        s.missing.append("provenance (data-set cell, labels and ingest settings; assumed conventional, defaults)")
    dkind = prov.get("kind") or st.get("kind")
    if kind == "density":
        s.method = str(st.get("method") or meta.get("input") or "grid")
        s.source = str(st.get("source") or "dense")
        s.store_channels = len(st.get("channels") or (meta.get("norm") or {}).get("channels") or ["total"])
        s.density_kind = "chgcar" if dkind == "mp_chgcar" else "structure"
        s.density = section(DensitySettings, st.get("density"))
        s.sample = section(SampleSettings, {**(st.get("config") or {}),
                                            **{k: st[k] for k in ("threshold", "voxel", "frame") if k in st}})
        s.spatial_shape = list(st.get("spatial_shape") or frame_shape(s.sample))
        if list(frame_shape(s.sample)) != list(s.spatial_shape):
            raise PredictRefused(f"checkpoint's sample frame {s.sample.frame} A / voxel {s.sample.voxel} A does not "
                                 f"give its spatial_shape {s.spatial_shape}")
        s.seed = int(st.get("seed", 0))
        if method is not None and method != s.method:
            raise PredictRefused(f"--method {method} asked for, but the checkpoint was trained on {s.method} sampling")
        if voxel is not None and not np.isclose(float(voxel), float(s.sample.voxel)):
            raise PredictRefused(f"--voxel {voxel} asked for, but the checkpoint was trained with voxel "
                                 f"{s.sample.voxel} A")
        if s.features > s.store_channels:
            raise PredictRefused(f"checkpoint reads {s.features} density features but its training store has "
                                 f"{s.store_channels} channel(s)")
        return s
    if method is not None or voxel is not None:
        raise PredictRefused(f"--method/--voxel apply to density models only, not {s.model}")
    if kind == "xrd":
        s.xrd = XrdSettings.from_config(st)
    elif kind in ("cgcnn", "cogn"):
        cfg = {k: st[k] for k in ("cutoff", "cell", "symprec", "disorder") if st.get(k) is not None}
        if kind == "cgcnn":
            cfg.update({k2: st[k1] for k1, k2 in (("max_neighbors", "cgcnn_max_neighbors"),
                                                  ("gaussian_step", "gaussian_step")) if k1 in st})
        else:
            cfg.update({k2: st[k1] for k1, k2 in (("max_neighbors", "cogn_max_neighbors"),
                                                  ("tie_tolerance", "cogn_tie_tolerance"),
                                                  ("distance_bins", "distance_bins")) if k1 in st})
        s.graphs = section(GraphSettings, cfg)
    elif kind != "lattice":
        raise PredictRefused(f"unknown input kind {kind!r} in the checkpoint")
    return s


def warn_missing(s: Settings, logger: logging.Logger = log) -> None:
    if s.missing:
        logger.warning("the checkpoint does not record %s; using the config defaults", ", ".join(s.missing))


# ------------------------------------------------------------------------------------------ inputs

@dataclass
class Unit:
    """One structure (or one measured map) of an input file."""

    source: str  # path, with #block / #row where the file holds several
    uid: str  # the id ingest would give it (seeds the random sampling)
    file_kind: str  # cif | poscar | chgcar | csv | map
    path: str
    record: object  # rhosym.structures.StructureRecord (map: structure None, no error)


def is_map(path: str) -> bool:
    return str(path).lower().endswith(MAP_SUFFIXES)


def read_inputs(paths: Iterable[str | Path], id_column: str | None = None,
                cif_column: str | None = None) -> Iterator[Unit]:
    """Every structure of every input file, as :class:`Unit` (unreadable ones carry ``record.error``)."""
    from rhosym.ingest import chgcar_id, cif_stem
    from rhosym.shards import is_density_json
    from rhosym.structures import StructureRecord, read_any, sniff_kind

    cols = {k: v for k, v in (("id", id_column), ("cif", cif_column)) if v}
    for p in paths:
        p = str(p)
        if not os.path.exists(p):
            yield Unit(p, Path(p).name, "missing", p, StructureRecord(p, "", None, "no such file"))
            continue
        if os.path.isdir(p):
            yield Unit(p, Path(p).name, "missing", p, StructureRecord(p, "", None, "is a directory, not a file"))
            continue
        if is_map(p):
            yield Unit(p, re.sub(r"\.(ccp4|mrc|map)(\.gz)?$", "", Path(p).name, flags=re.I), "map", p,
                       StructureRecord(p, "", None, ""))
            continue
        if is_density_json(Path(p).name):
            from rhosym.ingest import read_json_structure

            rec, _ids = read_json_structure(p)
            yield Unit(p, chgcar_id(p), "chgcar", p, rec)
            continue
        kind = sniff_kind(p)
        for rec in read_any(p, csv_columns=cols):
            if kind == "csv":
                uid, src = str(rec.extra.get("id") or rec.source), rec.source
            elif kind == "cif":
                uid = f"{cif_stem(p)}:{rec.block}" if rec.block else cif_stem(p)
                src = f"{p}#{rec.block}" if rec.block else p
            elif kind == "chgcar":
                uid, src = chgcar_id(p), p
            else:
                uid, src = re.sub(r"\.(gz|bz2|xz)$", "", Path(p).name), p
            yield Unit(src, uid, kind, p, rec)


# ------------------------------------------------------------------------------------------ preprocessing

def prepared_structure(unit: Unit, s: Settings):
    """``(density-cell structure, cell name)`` of a unit through :func:`rhosym.ingest.prepare` (the
    checks and cell of the training data set; a CHGCAR keeps its own cell)."""
    from rhosym.ingest import prepare, structure_from_json

    cell = "as_is" if unit.file_kind == "chgcar" else s.cell
    dc, _lab = prepare(unit.record.structure, cell, s.labels, s.ingest,
                       (unit.record.extra or {}).get("declared_space_group"))
    return structure_from_json(json.dumps(dc.as_dict())), cell  # as a later stage reads it back


def preprocess(unit: Unit, s: Settings) -> tuple[dict, dict]:
    """``(sample, info)``: the per-sample dict in the store form (density features raw) and extra output keys.

    Raises ``ValueError`` with a one-line reason when the input cannot be used.
    """
    from rhosym.cells import USES_SYMMETRY

    if unit.file_kind == "map":
        return _preprocess_map(unit, s)
    if not unit.record.ok:
        raise ValueError(unit.record.error or "no structure")
    if s.input_kind == "density" and s.density_kind == "chgcar":
        return _preprocess_chgcar(unit, s)
    st, cell = prepared_structure(unit, s)
    info = {"cell": cell, "symmetry_finder": bool(USES_SYMMETRY.get(cell, True))}
    if s.input_kind == "density":
        sample, extra = density_sample(st, unit.uid, s)
        return sample, {**info, **extra}
    if s.input_kind == "lattice":
        lat = st.lattice
        return {"lattice": np.array([[lat.a, lat.b, lat.c, lat.alpha, lat.beta, lat.gamma]])}, info
    if s.input_kind == "xrd":
        from rhosym.xrd import simulate, to_float16

        pattern, _d, _f2 = simulate(st, s.xrd)
        p = np.asarray(to_float16(pattern), dtype=np.float32)
        return {"pattern": np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)}, info
    from rhosym.graphs import build_graph

    g = build_graph(st, s.input_kind, s.graphs)
    sample = {"atom_fea": np.asarray(g["atom_fea"], np.float32),
              "edge_index": np.asarray(g["edge_index"], np.int64).reshape(-1, 2),
              "edge_dist": np.asarray(g["edge_dist"], np.float32)}
    if s.input_kind == "cogn":
        sample["node_weight"] = np.asarray(g["node_weight"], np.float32)
        sample["edge_vec"] = np.asarray(g["edge_vec"], np.float32).reshape(-1, 3)
    return sample, {**info, "symmetry_finder": True}  # graphs use spglib's primitive cell / asymmetric unit


def density_sample(st, uid: str, s: Settings, rho: np.ndarray | None = None) -> tuple[dict, dict]:
    """Sample the density of a prepared structure (computed as the density stage did, or given)."""
    from rhosym.density import DirectModel, density_of_row
    from rhosym.sampling import sample_one

    if rho is None and s.source == "direct":
        d = s.density
        model = DirectModel.from_structure(st, b_iso=d.b_iso, blur=d.blur, cutoff=d.cutoff)
        xyz, feats, vox = sample_one(s.method, s.sample, uid, st.lattice.matrix, s.seed, model=model)
    else:
        if rho is None:
            rho, _attrs = density_of_row({"kind": "structure", "structure": json.dumps(st.as_dict())}, s.density)
        xyz, feats, vox = sample_one(s.method, s.sample, uid, st.lattice.matrix, s.seed, rho=rho)
    return _sample(xyz, feats, vox, s, uid), {"density_source": "structure", "n_points": int(len(xyz))}


def _sample(xyz, feats, vox, s: Settings, uid: str) -> dict:
    return {"xyz": xyz, "features": feats, "voxels": vox, "spatial_shape": np.asarray(s.spatial_shape, np.int64),
            "id": uid}


def _preprocess_chgcar(unit: Unit, s: Settings) -> tuple[dict, dict]:
    from rhosym.density import density_of_row
    from rhosym.ingest import check_cell, check_structure
    from rhosym.sampling import sample_one

    if unit.file_kind != "chgcar":
        raise ValueError(f"refused: the checkpoint was trained on CHGCAR (valence) densities with {s.features} "
                         f"feature(s); only CHGCAR or charge-density JSON inputs can be used, not a {unit.file_kind}")
    bad = check_structure(unit.record.structure, s.ingest) or check_cell(unit.record.structure, s.ingest)
    if bad:
        raise ValueError(bad)
    rho, attrs = density_of_row({"kind": "mp_chgcar", "chgcar_path": unit.path}, {**s.density.model_dump(),
                                                                                  "channels": s.store_channels})
    xyz, feats, vox = sample_one(s.method, s.sample, unit.uid, np.asarray(attrs["cell"]), s.seed, rho=rho)
    return _sample(xyz, feats, vox, s, unit.uid), {"cell": "as_is", "symmetry_finder": False,
                                                   "density_source": "chgcar", "n_points": int(len(xyz))}


def _preprocess_map(unit: Unit, s: Settings) -> tuple[dict, dict]:
    """A measured density on a grid (CCP4/MRC): sampled as the training inputs were, from its own cell."""
    from rhosym.perturb import read_map
    from rhosym.sampling import sample_one

    if s.input_kind != "density":
        raise ValueError(f"a density map can only be given to a density model, not {s.model}")
    if s.features != 1:
        raise ValueError(f"the checkpoint reads {s.features} density features; a map has one (total density)")
    rho, lattice = read_map(unit.path)
    if not np.isfinite(rho).all():
        raise ValueError("the map holds NaN/Inf values")
    channels = np.repeat(rho[None], s.store_channels, axis=0) if s.store_channels > 1 else rho[None]
    xyz, feats, vox = sample_one(s.method, s.sample, unit.uid, lattice, s.seed, rho=channels)
    return _sample(xyz, feats, vox, s, unit.uid), {"cell": "as_is (map)", "symmetry_finder": False,
                                                   "density_source": "map", "n_points": int(len(xyz))}


# ------------------------------------------------------------------------------------------ outputs

def label_symbol(task: str, label: str) -> str | None:
    """Hermann-Mauguin symbol of a space-group label, extinction symbol of an extinction-group label."""
    from rhosym.symmetry import extinction_symbol, sg_symbol

    try:
        n = int(label)
    except (TypeError, ValueError):
        return None
    if task == "space_group" and 1 <= n <= 230:
        return sg_symbol(n)
    if task == "extinction_group":
        from rhosym.symmetry import load_extinction_table

        t = load_extinction_table()
        row = t[t["extinction_group"] == n]
        return extinction_symbol(int(row["space_group"].iloc[0])) if len(row) else None
    return None


def spglib_labels(structure) -> dict:
    """``label_structure`` at symprec 0.1: space group, symbol, crystal system, extinction group."""
    from rhosym.structures import one_line
    from rhosym.symmetry import label_structure

    try:
        lab = label_structure(structure, symprec=SPGLIB_SYMPREC, angle_tolerance=SPGLIB_ANGLE_TOLERANCE)
    except ValueError as exc:
        return {"error": one_line(exc)}
    return {k: lab[k] for k in ("space_group", "symbol", "crystal_system", "extinction_group")}


def _answer(task: str, pred: dict) -> dict:
    if TASKS[task].regression:
        return {"prediction": float(pred["y_pred"]), "unit": UNITS.get(task, "")}
    out: dict = {"prediction": str(pred["y_pred"])}
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
    return out


def _result(unit: Unit, meta: dict, pred: dict, info: dict) -> dict:
    out: dict = {"source": unit.source, "id": unit.uid, "model": meta["model"], "task": meta["task"]}
    answers = {a: _answer(a, p) for a, p in pred.items()}
    out["answers"] = answers
    out.update(answers[list(answers)[-1]])
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
        except Exception as exc:  # noqa: BLE001 - every failure becomes that input's error line
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

    Raises :class:`PredictRefused` when the checkpoint cannot be applied as asked, and
    :class:`rhosym.checkpoint.CheckpointError` when the file is not a safe rhosym checkpoint.
    """
    from rhosym.infer import load_checkpoint

    model, meta = load_checkpoint(checkpoint, device)
    s = resolve_settings(meta, method=method, voxel=voxel)
    warn_missing(s)
    log.info("%s: %s/%s on %s input (%s, cell %s), %s", checkpoint, meta["model"], meta["task"], meta["input_kind"],
             meta.get("input"), s.cell, meta["device"])
    return model, meta, s


def predict_files(paths: Iterable[str | Path], checkpoint: str | Path, top_k: int = 3, device: str = "auto",
                  id_column: str | None = None, cif_column: str | None = None, method: str | None = None,
                  voxel: float | None = None, batch_size: int = 16) -> list[dict]:
    """Result dicts of every input of ``paths`` (see the module docstring), in input order."""
    model, meta, s = open_checkpoint(checkpoint, device, method, voxel)
    return list(predict_units(read_inputs(paths, id_column, cif_column), model, meta, s, top_k, batch_size))


def results_table(results: Iterable[dict]):
    """One row per input: answers, top-k and the spglib answer flattened into columns."""
    import pandas as pd

    rows = []
    for r in results:
        row = {k: v for k, v in r.items() if k not in ("top_k", "spglib", "answers")}
        for i, e in enumerate(r.get("top_k") or [], start=1):
            row[f"top{i}_label"] = e["label"]
            row[f"top{i}_probability"] = e["probability"]
            if "symbol" in e:
                row[f"top{i}_symbol"] = e["symbol"]
        answers = r.get("answers") or {}
        if len(answers) > 1:
            for task, a in answers.items():
                row[f"{task}_prediction"] = a["prediction"]
                if "symbol" in a:
                    row[f"{task}_symbol"] = a["symbol"]
                if a.get("top_k"):
                    row[f"{task}_probability"] = a["top_k"][0]["probability"]
        for k, v in (r.get("spglib") or {}).items():
            row[f"spglib_{k}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    first = [c for c in ("source", "id", "model", "task", "prediction", "symbol", "unit", "cell", "symmetry_finder",
                         "density_source", "error") if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


__all__ = ["PredictRefused", "Settings", "Unit", "resolve_settings", "read_inputs", "preprocess", "predict_units",
           "predict_files", "open_checkpoint", "results_table", "spglib_labels", "label_symbol", "warn_missing",
           "UNITS", "prepared_structure"]
