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
  (``.ccp4``, ``.mrc``, ``.map``; rhosym.io.ccp4.read_map) is sampled the same way from its grid and cell:
  no structure and no symmetry finder are involved;
* **XRD FCN**: :func:`rhosym.xrd.simulate` with the training store's XRD settings, cast to float16 as stored;
* **CGCNN / coGN**: :func:`rhosym.graphs.build_graph` with the training store's graph settings;
* **lattice control**: the lattice parameters of the density cell.
* **lattice-conditioned networks** (``+lattice``, rhosym.conditioning): also the lattice features of the
  input's own cell after the same preparation (the training data set's cell), or of a CHGCAR's or a map's
  cell, standardized with the checkpoint's training statistics.

Each input gives one result dict: ``source``, ``id``, ``model``, ``task``, ``cell``, ``symmetry_finder``,
``answers`` (``{task: {prediction, symbol, top_k}}``: a joint network answers crystal system,
extinction group and space group; regression: ``{prediction, unit}``), the top-level ``prediction``,
``symbol`` and ``top_k`` of the finest answer, ``density_source`` (density models; a map adds
``map_space_group``, its header's space group, reported and not applied) and ``spglib`` (labels at
symprec 0.1), or ``{"source", "error"}`` when the input could not be used.
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
    """Preprocessing settings resolved from a checkpoint's ``meta`` (the input kind fills its part)."""

    model: str
    task: str
    source_kind: object = None  # rhosym.inputs.InputKind
    input: str = ""
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
    symops: object = None  # rhosym.settings.SymopsSettings
    lattice: bool = False  # a lattice-conditioned network: samples carry their cell (rhosym.conditioning.CELL)
    missing: list[str] = field(default_factory=list)


def resolve_settings(meta: dict, method: str | None = None, voxel: float | None = None) -> Settings:
    """Preprocessing settings of a checkpoint; ``method``/``voxel``: what the user asked for (checked)."""
    from rhosym import inputs
    from rhosym.settings import IngestSettings, LabelsSettings, section

    st = dict(meta.get("input_store") or {})
    prov = dict(meta.get("provenance") or {})
    try:
        source = inputs.of_checkpoint(meta)
    except ValueError as exc:
        raise PredictRefused(f"{exc} (in the checkpoint)") from None
    s = Settings(model=meta["model"], task=meta["task"], source_kind=source, input=str(meta.get("input") or ""),
                 features=int(meta.get("features", 1)))
    s.labels = section(LabelsSettings, prov.get("labels") or st.get("labels"))
    s.ingest = section(IngestSettings, prov.get("ingest"))
    s.cell = str(prov.get("cell") or st.get("cell") or "conventional")
    if not prov:
        s.missing.append("provenance (data-set cell, labels and ingest settings; assumed conventional, defaults)")
    s.density_kind = "chgcar" if (prov.get("kind") or st.get("kind")) == "mp_chgcar" else "structure"
    s.store_channels = len(st.get("channels") or (meta.get("norm") or {}).get("channels") or ["total"])
    s.lattice = bool(meta.get("lattice"))
    try:
        source.configure(s, st, method, voxel)
    except ValueError as exc:
        raise PredictRefused(str(exc)) from None
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
    record: object  # rhosym.io.structures.StructureRecord (map: structure None, no error)


def is_map(path: str) -> bool:
    return str(path).lower().endswith(MAP_SUFFIXES)


def read_inputs(paths: Iterable[str | Path], id_column: str | None = None,
                cif_column: str | None = None) -> Iterator[Unit]:
    """Every structure of every input file, as :class:`Unit` (unreadable ones carry ``record.error``)."""
    from rhosym.ingest import chgcar_id, cif_stem
    from rhosym.io.structures import StructureRecord, read_any, sniff_kind
    from rhosym.shards import is_density_json

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
    """``(sample, info)``: the per-sample dict in the store form (density values raw) and extra output keys.

    Raises ``ValueError`` with a one-line reason when the input cannot be used. A lattice-conditioned
    checkpoint's samples also carry their cell's six parameters (``cell_params``, rhosym.conditioning).
    """
    from rhosym.cells import USES_SYMMETRY

    if unit.file_kind == "map":
        return _preprocess_map(unit, s)
    if not unit.record.ok:
        raise ValueError(unit.record.error or "no structure")
    if s.density_kind == "chgcar" and s.density is not None:
        return _preprocess_chgcar(unit, s)
    st, cell = prepared_structure(unit, s)
    sample, extra = s.source_kind.from_structure(st, unit.uid, s)
    info = {"cell": cell, "symmetry_finder": bool(USES_SYMMETRY.get(cell, True)), **extra}
    return _with_cell(sample, st.lattice.matrix, s), info


def _with_cell(sample: dict, lattice, s: Settings) -> dict:
    """``sample`` with the six parameters of its cell (rows of ``lattice``, Å) for a lattice-conditioned network."""
    if not s.lattice:
        return sample
    from rhosym.conditioning import CELL, params_of_lattice

    return {**sample, CELL: params_of_lattice(lattice)}


def _preprocess_chgcar(unit: Unit, s: Settings) -> tuple[dict, dict]:
    from rhosym.density import density_of_row
    from rhosym.ingest import check_cell, check_structure

    if unit.file_kind != "chgcar":
        raise ValueError(f"refused: the checkpoint was trained on CHGCAR (valence) densities with {s.features} "
                         f"feature(s); only CHGCAR or charge-density JSON inputs can be used, not a {unit.file_kind}")
    bad = check_structure(unit.record.structure, s.ingest) or check_cell(unit.record.structure, s.ingest)
    if bad:
        raise ValueError(bad)
    rho, attrs = density_of_row({"kind": "mp_chgcar", "chgcar_path": unit.path}, {**s.density.model_dump(),
                                                                                  "channels": s.store_channels})
    sample, extra = s.source_kind.from_density(rho, np.asarray(attrs["cell"]), unit.uid, s)
    info = {"cell": "as_is", "symmetry_finder": False, "density_source": "chgcar", **extra}
    return _with_cell(sample, attrs["cell"], s), info


def _preprocess_map(unit: Unit, s: Settings) -> tuple[dict, dict]:
    """A measured density on a grid (CCP4/MRC): sampled as the training inputs were, from its own cell."""
    from rhosym.io.ccp4 import read_map

    if s.features != 1:
        raise ValueError(f"the checkpoint reads {s.features} density features; a map has one (total density)")
    m = read_map(unit.path)  # a P1 grid over its cell; the header's space group is reported
    rho, lattice = m.rho, m.lattice
    if not np.isfinite(rho).all():
        raise ValueError("the map holds NaN/Inf values")
    sample, extra = s.source_kind.from_density(rho, lattice, unit.uid, s)
    info = {"cell": "as_is (map)", "symmetry_finder": False, "density_source": "map",
            "map_space_group": m.space_group, **extra}
    return _with_cell(sample, lattice, s), info


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
    from rhosym.io.structures import one_line
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
    from rhosym.io.structures import one_line

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
    log.info("%s: %s/%s on %s input (%s, cell %s), %s", checkpoint, meta["model"], meta["task"],
             s.source_kind.name, meta.get("input"), s.cell, meta["device"])
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
