"""Ingest: one shard of input units -> manifest rows plus the structure each density will use.

See ``docs/formats.md`` ("Units, shards and the manifest"). Every unit gives at least one row; a
structure that cannot be used is a ``rejected`` row with a one-line ``reason``. Rejections:
unparsable input, an input over a limit of rhosym.io.limits (checked before the file is parsed:
``ingest.max_bytes`` decompressed, ``ingest.max_grid_points`` in a CHGCAR's or JSON's grid,
``ingest.max_input_sites`` in the cell as the file gives it), zero or negative occupancy, atoms closer
than ``ingest.min_distance`` (split positions whose occupancies add up to at most 1 are allowed), a
density cell over ``ingest.max_volume`` Å³ or ``ingest.max_sites`` sites, a CHGCAR whose data does not
match its header, no symmetry found at ``labels.symprec`` nor at any tolerance of ``labels.ladder``, a
synthetic space group pyxtal cannot fill.

Labels come from spglib on the structure as read (``spglib_space_group``, with the tolerance used in
``label_symprec``) or, with ``labels.source: declared``, from the space group the CIF or CSV declares
(``declared_space_group``, kept in any case); ``ingest_report.csv`` counts their agreement. The density
cell (``cell``; rhosym.cells) is built after labelling and its lattice parameters are the manifest's
``a, b, c, alpha, beta, gamma``. :func:`prepare` is the one path from a read structure to a density
cell, shared with the ``rhosym`` commands.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from rhosym.io.chgcar import read_chgcar_structure
from rhosym.io.limits import LimitExceeded, exceeded, limits_of
from rhosym.io.structures import StructureRecord, one_line, read_cif, read_csv_row, read_csv_table

log = logging.getLogger("rhosym.ingest")

MANIFEST_COLUMNS = [
    "id", "source", "block", "kind", "formula", "n_sites", "volume", "a", "b", "c", "alpha", "beta", "gamma",
    "space_group", "symbol", "crystal_system", "extinction_group", "spglib_space_group", "declared_space_group",
    "label_source", "label_symprec", "cell", "partial_occupancy", "band_gap", "formation_energy", "task_id",
    "unit", "shard", "status", "reason",
]
_DTYPES = {
    "id": "string", "source": "string", "block": "string", "kind": "string", "formula": "string",
    "n_sites": "Int64", "volume": "float64", "a": "float64", "b": "float64", "c": "float64",
    "alpha": "float64", "beta": "float64", "gamma": "float64", "space_group": "Int64", "symbol": "string",
    "crystal_system": "string", "extinction_group": "Int64", "spglib_space_group": "Int64",
    "declared_space_group": "Int64", "label_source": "string", "label_symprec": "float64", "cell": "string",
    "partial_occupancy": "boolean", "band_gap": "float64", "formation_energy": "float64", "task_id": "string",
    "unit": "string", "shard": "string", "status": "string", "reason": "string",
}
LATTICE_COLUMNS = ("a", "b", "c", "alpha", "beta", "gamma")


class StructureRejected(ValueError):
    """A structure the pipeline does not use; the message is the one-line reason."""


# ------------------------------------------------------------------------------------------ helpers

def cif_stem(path: str | Path) -> str:
    name = os.path.basename(str(path))
    return re.sub(r"\.(cif|mmcif|mcif)(\.(gz|bz2|xz))?$", "", name, flags=re.IGNORECASE)


def chgcar_id(path: str | Path) -> str:
    """Material (or task) id of a CHGCAR file: ``mp-149`` from ``mp-149_CHGCAR.gz``, ``mp-149.chgcar``,
    ``CHGCAR_mp-149`` or ``mp-149/CHGCAR``; otherwise the file name without ``CHGCAR`` and suffixes."""
    p = Path(path)
    name = re.sub(r"\.(gz|bz2|xz)$", "", p.name)
    m = re.search(r"((?:mp|mvc|agm)-\d+)", name)
    if m:
        return m.group(1)
    stem = re.sub(r"(?i)(\.chgcar$|chgcar)", "", name).strip("._- ")
    if not stem:
        m = re.search(r"((?:mp|mvc|agm)-\d+)", p.parent.name)
        return m.group(1) if m else p.parent.name
    return stem


def _settings(obj, cls):
    return obj if isinstance(obj, cls) else cls.model_validate(dict(obj or {}))


def min_distance_violation(structure, min_distance: float) -> str:
    """A one-line reason when two atoms are closer than ``min_distance`` Å, else ``""``.

    Two partially occupied sites whose occupancies add up to at most 1 may be close: that is a
    split (disordered) position, not a clash, and is accepted.
    """
    if min_distance <= 0 or len(structure) == 0:
        return ""
    centers, points, _images, dists = structure.get_neighbor_list(min_distance)
    if len(centers) == 0:
        return ""
    occ = np.array([sum(site.species.values()) for site in structure])
    for i, j, d in zip(centers, points, dists):
        if i == j and d < 1e-8:
            continue
        if i != j and occ[i] + occ[j] <= 1.0 + 1e-3:
            continue
        a, b = structure[int(i)], structure[int(j)]
        return one_line(f"atoms closer than {min_distance} A: {a.species_string} and {b.species_string} "
                        f"at {d:.3f} A")
    return ""


def check_structure(structure, ingest) -> str:
    """The one-line reason ingest would reject a read structure for, before labelling (``""``: fine)."""
    from rhosym.settings import IngestSettings

    ingest = _settings(ingest, IngestSettings)
    if len(structure) == 0:
        return "no atoms"
    if len(structure) > ingest.max_input_sites:  # the readers refuse most before parsing (rhosym.io.limits)
        return str(exceeded(f"{len(structure)} sites in the cell as read", "max_input_sites", ingest.max_input_sites))
    occ = [sum(site.species.values()) for site in structure]
    if min(occ) <= 0:
        return "zero or negative occupancy"
    if max(occ) > ingest.occupancy_tolerance + 1e-9:
        return f"site occupancy {max(occ):.3g} above occupancy_tolerance {ingest.occupancy_tolerance}"
    return min_distance_violation(structure, float(ingest.min_distance))


def check_cell(cell_structure, ingest) -> str:
    """The reason ingest would reject a density cell for (volume and site limits), else ``""``."""
    from rhosym.settings import IngestSettings

    ingest = _settings(ingest, IngestSettings)
    lat = cell_structure.lattice
    if not (lat.volume > 0 and math.isfinite(lat.volume)):
        return f"degenerate cell (volume {lat.volume})"
    if lat.volume > ingest.max_volume:
        return f"cell volume {lat.volume:.0f} A^3 over max_volume {ingest.max_volume}"
    if len(cell_structure) > ingest.max_sites:
        return f"{len(cell_structure)} sites over max_sites {ingest.max_sites}"
    return ""


def prepare(structure, cell: str, labels, ingest, declared: int | None = None) -> tuple[object, dict]:
    """``(density-cell structure, labels)`` of a read structure, exactly as ingest makes them: the
    structure checks, the labels (spglib with the tolerance ladder, or the declared space group), the
    density cell (rhosym.cells) and its volume and site limits. Raises :class:`StructureRejected`.
    The ``rhosym density|sample|xrd|graph|predict`` commands call this too."""
    from rhosym.cells import density_cell
    from rhosym.settings import IngestSettings, LabelsSettings
    from rhosym.symmetry import (
        crystal_system,
        extinction_group,
        extinction_symbol,
        label_structure,
        sg_symbol,
    )

    labels = _settings(labels, LabelsSettings)
    ingest = _settings(ingest, IngestSettings)
    bad = check_structure(structure, ingest)
    if bad:
        raise StructureRejected(bad)
    lab: dict = {"declared_space_group": declared}
    try:
        sp = label_structure(structure, labels.symprec, labels.angle_tolerance, labels.ladder)
        lab.update(sp, spglib_space_group=sp["space_group"], label_symprec=sp["symprec"], label_source="spglib")
    except ValueError as exc:
        if labels.source != "declared" or declared is None:
            raise StructureRejected(one_line(f"no symmetry found: {exc}")) from exc
        lab.update(spglib_space_group=None, label_symprec=float("nan"))
    if labels.source == "declared" and declared is not None:
        sg = int(declared)
        lab.update(space_group=sg, symbol=sg_symbol(sg), crystal_system=crystal_system(sg),
                   extinction_group=extinction_group(sg), extinction_symbol=extinction_symbol(sg),
                   label_source="declared")
    tol = lab["label_symprec"] if math.isfinite(lab.get("label_symprec") or float("nan")) else labels.symprec
    try:
        dc = density_cell(structure, cell, tol, labels.angle_tolerance)
    except Exception as exc:  # noqa: BLE001 - a cell that cannot be built is a reason
        raise StructureRejected(one_line(f"no {cell} cell: {type(exc).__name__}: {exc}")) from exc
    bad = check_cell(dc, ingest)
    if bad:
        raise StructureRejected(bad)
    lab["cell"] = cell
    return dc, lab


def _empty_row(uid: str, source: str, block: str, kind: str, shard: str, unit: str = "") -> dict:
    row = {c: None for c in MANIFEST_COLUMNS}
    row.update(id=uid, source=source, block=block, kind=kind, shard=shard, unit=unit, status="rejected",
               reason="", band_gap=np.nan, formation_energy=np.nan)
    return row


def process_record(rec: StructureRecord, uid: str, kind: str, shard: str, cell: str, labels, ingest,
                   band_gap=np.nan, formation_energy=np.nan, unit: str = "") -> dict:
    """One manifest row (plus ``structure`` JSON) from a read structure: checks, labels, density cell."""
    row = _empty_row(uid, rec.source, rec.block, kind, shard, unit)
    row["band_gap"] = float(band_gap) if band_gap is not None else np.nan
    row["formation_energy"] = float(formation_energy) if formation_energy is not None else np.nan
    row["declared_space_group"] = rec.extra.get("declared_space_group")
    row["structure"] = None
    if not rec.ok:
        row["reason"] = one_line(rec.error or "no structure")
        return row
    s = rec.structure
    row["partial_occupancy"] = not s.is_ordered
    try:
        dc, lab = prepare(s, cell, labels, ingest, rec.extra.get("declared_space_group"))
    except StructureRejected as exc:
        row["reason"] = str(exc)
        return row
    row.update({k: lab.get(k) for k in ("space_group", "symbol", "crystal_system", "extinction_group",
                                         "spglib_space_group", "label_source", "label_symprec", "cell")})
    lat = dc.lattice
    row.update(formula=dc.composition.formula, n_sites=len(dc), volume=float(lat.volume),
               a=lat.a, b=lat.b, c=lat.c, alpha=lat.alpha, beta=lat.beta, gamma=lat.gamma)
    row["status"] = "ok"
    row["structure"] = json.dumps(dc.as_dict())
    return row


def to_frame(rows: list[dict], extra_columns=("structure",)) -> pd.DataFrame:
    """Rows as a DataFrame with the manifest columns (fixed dtypes) then ``extra_columns``."""
    cols = MANIFEST_COLUMNS + [c for c in extra_columns if c not in MANIFEST_COLUMNS]
    df = pd.DataFrame(rows, columns=cols)
    for c, t in _DTYPES.items():
        if t == "boolean":
            df[c] = df[c].astype("boolean")
        elif t == "Int64":
            df[c] = pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                              for v in df[c]], dtype="Int64")
        else:
            df[c] = df[c].astype(t)
    for c in extra_columns:
        df[c] = df[c].astype("string")
    return df


def log_counts(df: pd.DataFrame, what: str, logger: logging.Logger = log) -> None:
    counts = df["status"].value_counts()
    logger.info("%s: %d rows: %s", what, len(df), ", ".join(f"{k}={v}" for k, v in counts.items()))
    rej = df.loc[df["status"] != "ok", "reason"]
    for reason, n in _reason_classes(rej).most_common():
        logger.info("  rejected %d x %s", n, reason)


def reason_class(reason: str) -> str:
    """A reason without its numbers and names, for counting (``atoms closer than 0.5 A``)."""
    r = str(reason)
    r = re.split(r":", r, maxsplit=1)[0] if ":" in r else r
    r = re.sub(r"\d+(\.\d+)?", "#", r)
    return r.strip()


def _reason_classes(reasons) -> Counter:
    return Counter(reason_class(r) for r in reasons)


# ------------------------------------------------------------------------------------------- shards

def _units(units) -> list:
    from rhosym.shards import Unit

    out = []
    for u in units:
        if isinstance(u, Unit):
            out.append(u)
        else:
            key, ref = u
            out.append(Unit(str(key), tuple(ref) if isinstance(ref, list) else ref))
    return out


def ingest_shard(ds_name: str, ds, shard: str | int, units, labels=None, ingest=None,
                 out_path: str | Path | None = None, seed: int = 0) -> pd.DataFrame:
    """Ingest one shard of a data set; write ``out_path`` (Parquet) when given and return the rows.

    ``ds``: the data set's settings (``rhosym.settings.DatasetSettings`` or its dict); ``units``: the
    shard's units (``rhosym.shards.shard_units``, or ``[key, ref]`` pairs). Columns: the manifest columns,
    ``structure`` (pymatgen JSON of the density cell, null when rejected) and, for ``mp_chgcar``,
    ``chgcar_path``. ``seed`` is the global seed (synthetic kind).
    """
    from rhosym.logs import progress
    from rhosym.settings import DatasetSettings, IngestSettings, LabelsSettings
    from rhosym.shards import shard_name

    ds = _settings(ds, DatasetSettings)
    labels = _settings(labels, LabelsSettings)
    ingest = _settings(ingest, IngestSettings)
    kind = ds.kind
    shard = shard_name(int(shard))
    cell = ds.resolved_cell
    occ_tol = float(ingest.occupancy_tolerance)
    limits = limits_of(ingest)  # rhosym.io.limits: checked by the readers before each file is parsed
    units = _units(units)
    t0 = time.time()
    rows: list[dict] = []
    common = dict(kind=kind, shard=shard, cell=cell, labels=labels, ingest=ingest)
    desc = f"ingest {ds_name} {shard}"

    if kind == "cif_dir":
        for u in progress(units, desc=desc):
            stem = cif_stem(u.ref)
            for rec in read_cif(u.ref, occ_tol, limits):
                uid = f"{stem}:{rec.block}" if rec.block else stem
                rows.append(process_record(rec, uid, unit=u.key, **common))
    elif kind == "mp_chgcar":
        from rhosym.io import mp_json as mp

        meta = mp.read_metadata(ds.metadata, limits) if ds.metadata else None
        for u in progress(units, desc=desc):
            path = str(u.ref)
            if mp.is_chgcar_json(os.path.basename(path)):
                rec, doc_ids = read_json_structure(path, limits)
                fid = mp.file_id(path)
            else:
                rec, doc_ids, fid = read_chgcar_structure(path, True, limits), {}, chgcar_id(path)
            mid, tid = mp.resolve_material_id(fid, meta, doc_ids)
            bg = fe = np.nan
            if meta is not None and mid in meta.index:
                bg, fe = meta.at[mid, "band_gap"], meta.at[mid, "formation_energy"]
            row = process_record(rec, mid, band_gap=bg, formation_energy=fe, unit=u.key, **common)
            row["task_id"] = tid
            row["chgcar_path"] = path
            rows.append(row)
    elif kind == "cdvae_csv":
        cols = ds.columns.model_dump() if ds.columns is not None else {}
        by_file: dict[str, list] = {}
        for u in units:
            by_file.setdefault(u.ref[0], []).append(u)
        for csv_path, us in by_file.items():
            # the whole table: CIF strings span lines, so rows cannot be skipped by line number
            try:
                table = read_csv_table(csv_path, limits)
            except LimitExceeded as exc:  # every row of the table is refused with the reason
                for u in us:
                    rec = StructureRecord(f"{csv_path}#{u.ref[1]}", "", None, one_line(exc))
                    rows.append(process_record(rec, u.key, unit=u.key, **common))
                continue
            for u in progress(us, desc=f"{desc} {os.path.basename(csv_path)}"):
                k = int(u.ref[1])
                rec = read_csv_row(table.iloc[k], cols, str(csv_path), k, occ_tol, limits)
                rows.append(process_record(rec, rec.extra["id"], band_gap=rec.extra["band_gap"],
                                           formation_energy=rec.extra["formation_energy"], unit=u.key, **common))
    elif kind == "synthetic":
        from rhosym.synthetic import synthetic_structure

        n_other = 0
        for u in progress(units, desc=desc):
            i = int(u.ref)
            s, reason, info = synthetic_structure(
                i, seed=int(seed), space_groups=ds.space_groups or "all", max_atoms=int(ds.max_atoms or 24),
                elements=ds.elements, symprec=float(labels.symprec))
            rec = StructureRecord(f"synthetic:{i}", "", s, reason, info)
            rows.append(process_record(rec, f"syn-{i}", unit=u.key, **common))
            n_other += "note" in info
        log.info("%s shard %s: %d generated structures kept with a space group other than the drawn one "
                 "(pyxtal made them more symmetric in every try)", ds_name, shard, n_other)
    else:
        raise ValueError(f"unknown data-set kind {kind!r}")

    extra = ("structure", "chgcar_path") if kind == "mp_chgcar" else ("structure",)
    df = to_frame(rows, extra)
    dt = time.time() - t0
    log_counts(df, f"{ds_name} shard {shard}")
    log.info("%s shard %s: %d units, %d rows in %.1f s (%.3f s per row)", ds_name, shard, len(units),
             len(df), dt, dt / max(1, len(df)))
    if out_path is not None:
        write_parquet(df, out_path)
    return df


def read_json_structure(path: str, limits=None) -> tuple[StructureRecord, dict]:
    """The structure of an MP charge-density JSON (its grid is read again by the density stage), within
    ``limits`` (rhosym.io.limits; default: those in force)."""
    from pymatgen.core import Lattice, Structure

    from rhosym.io import mp_json as mp

    try:
        data = mp.read_chgcar_json(path, limits)
        ids = mp.chgcar_json_ids(path, limits)
    except (ValueError, OSError, EOFError) as exc:
        return StructureRecord(str(path), "", None, one_line(exc)), {}
    s = Structure(Lattice(data.lattice), data.species, data.frac_coords)
    return StructureRecord(str(path), "", s, "", {"grid": list(data.shape)}), ids


def write_parquet(df: pd.DataFrame, out_path: str | Path) -> None:
    """Write atomically (``<out>.tmp-<pid>`` then rename; ``rhosym.store.atomic_file``): a killed job
    leaves no ``out``, a full disk raises a one-line ``OSError`` naming ``out`` and leaves nothing."""
    from rhosym.store import atomic_file

    with atomic_file(out_path) as tmp:
        df.to_parquet(tmp, index=False)


def read_ingest(path: str | Path, columns: list[str] | None = None) -> list[dict]:
    """The ``ok`` rows of an ingest shard (``results/{ds}/ingest/shard-*.parquet``) as a list of dicts."""
    df = pd.read_parquet(path)
    if "status" in df.columns:
        df = df[df["status"] == "ok"]
    cols = [c for c in (columns or ["id", "kind", "structure", "chgcar_path"]) if c in df.columns]
    return df[cols].to_dict("records")


def structure_from_json(text):
    """The pymatgen ``Structure`` of an ingest row's ``structure`` column (JSON text or a dict)."""
    from pymatgen.core import Structure

    if text is None:
        raise ValueError("no structure")
    return Structure.from_dict(json.loads(text) if isinstance(text, str) else text)


def build_manifest(shard_paths, out_path: str | Path, report_path: str | Path | None = None) -> pd.DataFrame:
    """Concatenate per-shard ingest files into the manifest (without ``structure``/``chgcar_path``).

    A repeated ``id`` keeps its first row; later ones become ``rejected`` with reason ``duplicate id``.
    ``report_path`` gets a CSV of ``status, reason, count`` (reasons grouped by :func:`reason_class`).
    """
    parts = [pd.read_parquet(p, columns=MANIFEST_COLUMNS) for p in shard_paths]
    df = pd.concat(parts, ignore_index=True) if parts else to_frame([], ())
    dup = df["id"].duplicated(keep="first") & (df["status"] == "ok")
    if dup.any():
        log.warning("%d duplicate ids marked rejected: %s", int(dup.sum()), ", ".join(df.loc[dup, "id"][:5]))
        df.loc[dup, "status"] = "rejected"
        df.loc[dup, "reason"] = "duplicate id"
    write_parquet(df, out_path)
    report = ingest_report(df)
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        report.to_csv(report_path, index=False)
    log_counts(df, f"manifest {out_path}")
    return df


def ingest_report(df: pd.DataFrame) -> pd.DataFrame:
    """``status, reason, count``: one row for ok, one per reason class of the rejected rows, and
    ``labels`` rows: how many ok rows declare a space group, how many of those agree with spglib, and how
    many were labelled with a tolerance of the ladder (``labels.ladder``)."""
    rows = [{"status": "ok", "reason": "", "count": int((df["status"] == "ok").sum())}]
    for reason, n in _reason_classes(df.loc[df["status"] != "ok", "reason"]).most_common():
        rows.append({"status": "rejected", "reason": reason, "count": int(n)})
    ok = df[df["status"] == "ok"]
    if len(ok) and "declared_space_group" in ok.columns:
        dec = ok["declared_space_group"].notna()
        both = dec & ok["spglib_space_group"].notna()
        agree = both & (ok["declared_space_group"] == ok["spglib_space_group"])
        rows.append({"status": "labels", "reason": "declares a space group", "count": int(dec.sum())})
        rows.append({"status": "labels", "reason": "declared space group equals spglib's", "count": int(agree.sum())})
        rows.append({"status": "labels", "reason": "declared space group differs from spglib's",
                     "count": int((both & ~agree).sum())})
        for tol, n in ok["label_symprec"].dropna().value_counts().sort_index(ascending=False).items():
            rows.append({"status": "labels", "reason": f"labelled at symprec {tol:g}", "count": int(n)})
        if "label_source" in ok.columns:
            for src, n in ok["label_source"].value_counts().items():
                rows.append({"status": "labels", "reason": f"label from {src}", "count": int(n)})
    return pd.DataFrame(rows, columns=["status", "reason", "count"])


def ingest_dataset(config, ds_name: str, out_dir: str | Path | None = None) -> pd.DataFrame:
    """Every shard of one data set, one after another (outside Snakemake); returns the manifest.
    ``config``: a ``rhosym.settings.Config`` or a config dict (layered on nothing)."""
    from rhosym.settings import Config, parse_config
    from rhosym.shards import assign

    cfg = config if isinstance(config, Config) else parse_config(config)
    ds = cfg.datasets[ds_name]
    out_dir = Path(out_dir or Path(cfg.results) / ds_name)
    paths = []
    for shard, units in assign(ds, cfg.shard_size).items():
        p = out_dir / "ingest" / f"shard-{shard}.parquet"
        ingest_shard(ds_name, ds, shard, units, cfg.labels, cfg.ingest, p, seed=cfg.seed)
        paths.append(p)
    return build_manifest(paths, out_dir / "manifest.parquet", out_dir / "ingest_report.csv")
