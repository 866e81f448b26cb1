"""Ingest: one shard of input units -> manifest rows plus the structure each density will use.

See ``docs/formats.md`` ("Units, shards and the manifest"). Every unit gives at least one row; a
structure that cannot be used is a ``rejected`` row with a one-line ``reason``. Rejections:
unparsable input, zero or negative occupancy, atoms closer than ``ingest.min_distance`` (split
positions whose occupancies add up to at most 1 are allowed), a density cell over
``ingest.max_volume`` Å³ or ``ingest.max_sites`` sites, a CHGCAR whose data does not match its header,
no symmetry found, a synthetic space group pyxtal cannot fill.
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

from rhosym.structures import (
    StructureRecord,
    min_distance_violation,
    one_line,
    read_chgcar_structure,
    read_cif,
    read_csv_row,
)

log = logging.getLogger("rhosym.ingest")

MANIFEST_COLUMNS = [
    "id", "source", "block", "kind", "formula", "n_sites", "volume", "a", "b", "c", "alpha", "beta", "gamma",
    "space_group", "symbol", "crystal_system", "extinction_group", "partial_occupancy", "band_gap",
    "formation_energy", "shard", "status", "reason",
]
INGEST_DEFAULTS = {"min_distance": 0.5, "max_volume": 5000.0, "max_sites": 500, "occupancy_tolerance": 1.05}
LABEL_DEFAULTS = {"symprec": 0.1, "angle_tolerance": 5.0}
_DTYPES = {
    "id": "string", "source": "string", "block": "string", "kind": "string", "formula": "string",
    "n_sites": "Int64", "volume": "float64", "a": "float64", "b": "float64", "c": "float64",
    "alpha": "float64", "beta": "float64", "gamma": "float64", "space_group": "Int64", "symbol": "string",
    "crystal_system": "string", "extinction_group": "Int64", "partial_occupancy": "boolean",
    "band_gap": "float64", "formation_energy": "float64", "shard": "string", "status": "string",
    "reason": "string",
}


# ------------------------------------------------------------------------------------------ helpers

def cif_stem(path: str | Path) -> str:
    name = os.path.basename(str(path))
    return re.sub(r"\.(cif|mmcif|mcif)(\.(gz|bz2|xz))?$", "", name, flags=re.IGNORECASE)


def chgcar_id(path: str | Path) -> str:
    """Material id of a CHGCAR file: ``mp-149`` from ``mp-149_CHGCAR.gz``, ``mp-149.chgcar``,
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


def read_metadata(path: str | Path | None) -> pd.DataFrame:
    """mp_chgcar metadata (CSV or JSON) indexed by ``material_id`` with ``band_gap, formation_energy``."""
    if not path:
        return pd.DataFrame(columns=["band_gap", "formation_energy"]).rename_axis("material_id")
    p = str(path)
    if p.endswith((".json", ".json.gz")):
        df = pd.read_json(p)
    else:
        df = pd.read_csv(p)
    if "formation_energy" not in df.columns and "formation_energy_per_atom" in df.columns:
        df = df.rename(columns={"formation_energy_per_atom": "formation_energy"})
    for c in ("band_gap", "formation_energy"):
        if c not in df.columns:
            df[c] = np.nan
    df["material_id"] = df["material_id"].astype(str)
    return df.drop_duplicates("material_id").set_index("material_id")[["band_gap", "formation_energy"]]


def density_cell(structure, cell: str, symprec: float = 0.1, angle_tolerance: float = 5.0):
    """The cell a density uses: ``conventional`` (standard), ``primitive`` (standard) or ``as_is``.

    Occupancies and site properties (``b_iso``) are kept.
    """
    if cell == "as_is":
        return structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
    if cell == "conventional":
        return sga.get_conventional_standard_structure(keep_site_properties=True)
    if cell == "primitive":
        return sga.get_primitive_standard_structure(keep_site_properties=True)
    raise ValueError(f"unknown cell {cell!r}")


def _empty_row(uid: str, source: str, block: str, kind: str, shard: str) -> dict:
    row = {c: None for c in MANIFEST_COLUMNS}
    row.update(id=uid, source=source, block=block, kind=kind, shard=shard, status="rejected", reason="",
               band_gap=np.nan, formation_energy=np.nan)
    return row


def process_record(rec: StructureRecord, uid: str, kind: str, shard: str, cell: str,
                   labels_cfg: dict, ingest_cfg: dict, band_gap=np.nan, formation_energy=np.nan) -> dict:
    """One manifest row (plus ``structure`` JSON) from a read structure: checks, labels, density cell."""
    from rhosym.symmetry import label_structure

    row = _empty_row(uid, rec.source, rec.block, kind, shard)
    row["band_gap"] = float(band_gap) if band_gap is not None else np.nan
    row["formation_energy"] = float(formation_energy) if formation_energy is not None else np.nan
    row["structure"] = None
    if not rec.ok:
        row["reason"] = one_line(rec.error or "no structure")
        return row
    s = rec.structure
    row["partial_occupancy"] = not s.is_ordered
    bad = min_distance_violation(s, float(ingest_cfg["min_distance"]))
    if bad:
        row["reason"] = bad
        return row
    symprec, angle_tol = float(labels_cfg["symprec"]), float(labels_cfg["angle_tolerance"])
    try:
        lab = label_structure(s, symprec=symprec, angle_tolerance=angle_tol)
    except ValueError as exc:  # anything else (a missing table...) is not the structure's fault: raise
        row["reason"] = one_line(f"no symmetry found: {exc}")
        return row
    row.update(space_group=int(lab["space_group"]), symbol=str(lab["symbol"]),
               crystal_system=str(lab["crystal_system"]), extinction_group=int(lab["extinction_group"]))
    try:
        dc = density_cell(s, cell, symprec, angle_tol)
    except Exception as exc:  # noqa: BLE001
        row["reason"] = one_line(f"no {cell} cell: {type(exc).__name__}: {exc}")
        return row
    lat = dc.lattice
    row.update(formula=dc.composition.formula, n_sites=len(dc), volume=float(lat.volume),
               a=lat.a, b=lat.b, c=lat.c, alpha=lat.alpha, beta=lat.beta, gamma=lat.gamma)
    if lat.volume > float(ingest_cfg["max_volume"]):
        row["reason"] = f"cell volume {lat.volume:.0f} A^3 over max_volume {ingest_cfg['max_volume']}"
        return row
    if len(dc) > int(ingest_cfg["max_sites"]):
        row["reason"] = f"{len(dc)} sites over max_sites {ingest_cfg['max_sites']}"
        return row
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

def _units_of(ds_cfg: dict, shard: str | int, shard_size: int) -> list:
    from rhosym.shards import shard_units

    return shard_units(ds_cfg, shard, shard_size)


def ingest_shard(ds_name: str, ds_cfg: dict, shard: str | int, shard_size: int, labels_cfg: dict | None,
                 ingest_cfg: dict | None, out_path: str | Path | None = None, seed: int = 0) -> pd.DataFrame:
    """Ingest one shard of a data set; write ``out_path`` (Parquet) when given and return the rows.

    Columns: the manifest columns, ``structure`` (pymatgen JSON of the density cell, null when
    rejected) and, for ``mp_chgcar``, ``chgcar_path``. ``seed`` is the global seed (synthetic kind).
    """
    from rhosym.logs import progress
    from rhosym.shards import shard_name

    labels_cfg = {**LABEL_DEFAULTS, **(labels_cfg or {})}
    ingest_cfg = {**INGEST_DEFAULTS, **(ingest_cfg or {})}
    kind = ds_cfg["kind"]
    shard = shard_name(int(shard))
    cell = ds_cfg.get("cell") or ("as_is" if kind == "mp_chgcar" else "conventional")
    occ_tol = float(ingest_cfg["occupancy_tolerance"])
    units = _units_of(ds_cfg, shard, shard_size)
    t0 = time.time()
    rows: list[dict] = []
    common = dict(kind=kind, shard=shard, cell=cell, labels_cfg=labels_cfg, ingest_cfg=ingest_cfg)

    if kind == "cif_dir":
        for path in progress(units, desc=f"ingest {ds_name} {shard}"):
            stem = cif_stem(path)
            for rec in read_cif(path, occ_tol):
                uid = f"{stem}:{rec.block}" if rec.block else stem
                rows.append(process_record(rec, uid, **common))
    elif kind == "mp_chgcar":
        meta = read_metadata(ds_cfg.get("metadata"))
        for path in progress(units, desc=f"ingest {ds_name} {shard}"):
            mid = chgcar_id(path)
            rec = read_chgcar_structure(path, check_data=True)
            bg = meta["band_gap"].get(mid, np.nan) if len(meta) else np.nan
            fe = meta["formation_energy"].get(mid, np.nan) if len(meta) else np.nan
            row = process_record(rec, mid, band_gap=bg, formation_energy=fe, **common)
            row["chgcar_path"] = str(path)
            rows.append(row)
    elif kind == "cdvae_csv":
        # the whole table: CIF strings span lines, so rows cannot be skipped by line number
        table = pd.read_csv(ds_cfg["path"]).iloc[list(units)] if units else pd.DataFrame()
        cols = ds_cfg.get("columns") or {}
        for k, (_, r) in progress(list(zip(units, table.iterrows())), desc=f"ingest {ds_name} {shard}"):
            rec = read_csv_row(r, cols, str(ds_cfg["path"]), int(k), occ_tol)
            rows.append(process_record(rec, rec.extra["id"], band_gap=rec.extra["band_gap"],
                                       formation_energy=rec.extra["formation_energy"], **common))
    elif kind == "synthetic":
        from rhosym.synthetic import synthetic_structure

        n_other = 0
        for i in progress(units, desc=f"ingest {ds_name} {shard}"):
            s, reason, info = synthetic_structure(
                int(i), seed=int(seed), space_groups=ds_cfg.get("space_groups", "all"),
                max_atoms=int(ds_cfg.get("max_atoms", 24)), elements=ds_cfg.get("elements"),
                symprec=float(labels_cfg["symprec"]))
            rec = StructureRecord(f"synthetic:{int(i)}", "", s, reason, info)
            rows.append(process_record(rec, f"syn-{int(i)}", **common))
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


def write_parquet(df: pd.DataFrame, out_path: str | Path) -> None:
    """Write atomically (temporary file then rename)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out)


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
    """``status, reason, count``: one row for ok, one per reason class of the rejected rows."""
    rows = [{"status": "ok", "reason": "", "count": int((df["status"] == "ok").sum())}]
    for reason, n in _reason_classes(df.loc[df["status"] != "ok", "reason"]).most_common():
        rows.append({"status": "rejected", "reason": reason, "count": int(n)})
    return pd.DataFrame(rows, columns=["status", "reason", "count"])


def ingest_dataset(config: dict, ds_name: str, out_dir: str | Path | None = None) -> pd.DataFrame:
    """Every shard of one data set, one after another (outside Snakemake); returns the manifest."""
    from rhosym.shards import list_shards

    ds_cfg = config["datasets"][ds_name]
    shard_size = int(config.get("shard_size", 1000))
    out_dir = Path(out_dir or Path(config.get("results", "results")) / ds_name)
    paths = []
    for shard in list_shards(ds_cfg, shard_size):
        p = out_dir / "ingest" / f"shard-{shard}.parquet"
        ingest_shard(ds_name, ds_cfg, shard, shard_size, config.get("labels"), config.get("ingest"), p,
                     seed=int(config.get("seed", 0)))
        paths.append(p)
    return build_manifest(paths, out_dir / "manifest.parquet", out_dir / "ingest_report.csv")


# -------------------------------------------------------------------------------------- download_mp

def _mp_rester(api_key: str | None = None):
    try:
        from mp_api.client import MPRester
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError("download_mp needs the mp-api client: pip install 'rhosym[mp]'") from exc
    key = api_key or os.environ.get("MP_API_KEY")
    if not key:
        raise RuntimeError("download_mp needs a Materials Project API key in the environment variable MP_API_KEY")
    return MPRester(api_key=key)


def download_mp(ds_cfg: dict, client=None, metadata: bool = True) -> dict:
    """Fetch the CHGCARs of ``ds_cfg['mp_ids']`` into ``ds_cfg['path']`` as ``<id>_CHGCAR.gz``.

    Cached: a file already there is skipped. A material with no charge density is logged and listed
    in ``<path>/missing.txt``. With ``metadata`` and a ``metadata:`` path, writes band gaps and
    formation energies (``material_id, band_gap, formation_energy_per_atom``) for ids not yet in it.
    ``client`` is an ``MPRester``-like object (tests pass a fake); default: a real one from
    ``MP_API_KEY``. Returns ``{"downloaded": [...], "skipped": [...], "missing": {id: reason}}``.
    """
    import gzip as _gzip
    import shutil

    from rhosym.logs import progress

    out_dir = Path(ds_cfg["path"])
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [str(i) for i in ds_cfg.get("mp_ids") or []]
    if not ids:
        raise ValueError("download_mp: the data set lists no mp_ids")
    result: dict = {"downloaded": [], "skipped": [], "missing": {}}
    todo = []
    for mid in ids:
        if (out_dir / f"{mid}_CHGCAR.gz").exists():
            result["skipped"].append(mid)
        else:
            todo.append(mid)
    log.info("download_mp: %d ids, %d already there, %d to fetch", len(ids), len(result["skipped"]), len(todo))
    if todo and client is None:
        client = _mp_rester()
    for mid in progress(todo, desc="download_mp"):
        try:
            chg = client.get_charge_density_from_material_id(mid)
        except Exception as exc:  # noqa: BLE001 - network / API errors are per material
            result["missing"][mid] = one_line(f"{type(exc).__name__}: {exc}")
            log.warning("download_mp: %s: %s", mid, result["missing"][mid])
            continue
        if chg is None:
            result["missing"][mid] = "no charge density"
            log.warning("download_mp: %s has no charge density", mid)
            continue
        target = out_dir / f"{mid}_CHGCAR.gz"
        tmp_plain = out_dir / f".{mid}_CHGCAR.tmp-{os.getpid()}"
        tmp_gz = out_dir / f".{mid}_CHGCAR.gz.tmp-{os.getpid()}"
        chg.write_file(str(tmp_plain))
        with open(tmp_plain, "rb") as src, _gzip.open(tmp_gz, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst)
        tmp_plain.unlink()
        os.replace(tmp_gz, target)
        result["downloaded"].append(mid)
    if result["missing"]:
        with open(out_dir / "missing.txt", "w") as fh:
            for mid, why in sorted(result["missing"].items()):
                fh.write(f"{mid}\t{why}\n")
    log.info("download_mp: downloaded %d, skipped %d, missing %d", len(result["downloaded"]),
             len(result["skipped"]), len(result["missing"]))
    if metadata and ds_cfg.get("metadata"):
        _download_mp_metadata(ds_cfg["metadata"], ids, client)
    return result


def _download_mp_metadata(path: str, ids: list[str], client=None) -> None:
    """Append ``material_id, band_gap, formation_energy_per_atom`` rows for ids not in ``path`` yet."""
    p = Path(path)
    have = pd.read_csv(p) if p.exists() else pd.DataFrame(columns=["material_id", "band_gap",
                                                                   "formation_energy_per_atom"])
    want = [i for i in ids if i not in set(have["material_id"].astype(str))]
    if not want:
        return
    client = client or _mp_rester()
    docs = client.materials.summary.search(material_ids=want,
                                           fields=["material_id", "band_gap", "formation_energy_per_atom"])
    rows = [{"material_id": str(d.material_id), "band_gap": d.band_gap,
             "formation_energy_per_atom": d.formation_energy_per_atom} for d in docs]
    df = pd.concat([have, pd.DataFrame(rows)], ignore_index=True)
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p, index=False)
    log.info("download_mp: metadata for %d more materials in %s", len(rows), p)
