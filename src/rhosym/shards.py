"""Input units and shards, known at DAG-build time without parsing any structure.

An input unit is one CHGCAR or charge-density JSON file, one CIF file, one CSV row or one generated
structure (``docs/formats.md``). Each unit has a stable **key** (its path relative to the data-set
folder, ``<csv file name>:<id>`` for CSV rows, the index for synthetic structures) and goes to shard
``hash(key) mod n_shards``. The number of shards is ``datasets.<ds>.shards`` when set, else the power of
two at or above ``units / shard_size``; so adding inputs to a data set moves no unit between the
existing shards (the new units land in one shard each) until the data set doubles and the shard count
with it (then each unit stays or moves to exactly one new shard). Shards hold between about a half and
one ``shard_size`` of units.

Listing stays cheap (a directory walk, or one column of the CSV read with pyarrow) because it runs
every time Snakemake builds its DAG, also inside every cluster job; results are cached per process by
the inputs' modification times.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CHGCAR_SUFFIXES = ("", ".gz", ".bz2", ".xz")
CIF_SUFFIXES = (".cif", ".cif.gz", ".cif.bz2", ".cif.xz", ".mmcif", ".mcif")
_SHARD_FMT = "{:05d}"
# the rule of is_density_json, which rhosym.io.mp_json.is_chgcar_json (ingest's reader) uses too
_NOT_DENSITY_JSON = re.compile(
    r"(?i)^(?:(metadata|meta|summary|summaries|manifest|index|materials?|tasks|config|settings|schema|"
    r"missing|failed|downloads?)"
    r"|(metadata|summary|manifest|index|materials?)[._-].*|.*[._-](metadata|meta|summary|manifest|index))$")


@dataclass(frozen=True)
class Unit:
    """One input unit: ``key`` (stable id for hashing), ``ref`` (path, ``(csv path, row)`` or index)."""

    key: str
    ref: object


def shard_name(i: int) -> str:
    return _SHARD_FMT.format(int(i))


def shard_index(key: str, n: int, salt: str = "") -> int:
    """The shard of a unit key among ``n`` (stable across runs, machines and Python versions)."""
    h = hashlib.blake2b(f"{salt}{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") % int(n)


def n_shards(n_units: int, shard_size: int, pinned: int | None = None) -> int:
    """``pinned``, else the power of two at or above ``n_units / shard_size`` (at least 1)."""
    if pinned:
        return int(pinned)
    need = max(1, -(-int(n_units) // int(shard_size)))
    return 1 << max(0, math.ceil(math.log2(need)))


def as_dataset(ds):
    """A ``rhosym.settings.DatasetSettings`` from itself or a plain data-set dict (validated as in a config;
    ``{data_root}`` is not replaced)."""
    from rhosym.settings import DatasetSettings

    if isinstance(ds, DatasetSettings):
        return ds
    return DatasetSettings.model_validate(dict(ds))


# ------------------------------------------------------------------------------------------- file names
def is_chgcar(name: str) -> bool:
    """A VASP CHGCAR by file name (``CHGCAR``, ``mp-149_CHGCAR.gz``, ``x.chgcar.bz2``)."""
    base = re.sub(r"\.(gz|bz2|xz)$", "", name)
    return ("CHGCAR" in base.upper() and not base.lower().endswith(".json")) or base.lower().endswith(".chgcar")


def is_density_json(name: str) -> bool:
    """A charge-density JSON as the Materials Project serves it (``mp-149.json.gz``), not a metadata table."""
    name = os.path.basename(str(name))
    base = re.sub(r"(?i)\.(gz|bz2|xz)$", "", name)
    if not base.lower().endswith(".json") or name.startswith("."):
        return False
    stem = base[:-5]
    return bool(stem) and not _NOT_DENSITY_JSON.match(stem)


def is_cif(name: str) -> bool:
    return name.lower().endswith(CIF_SUFFIXES)


def _walk(path: str, predicate) -> tuple[str, ...]:
    out: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        out.extend(os.path.join(root, f) for f in files if predicate(f))
    return tuple(sorted(out))


def _mtime(path: str) -> float:
    """Newest modification time of a folder tree's directories (a new or removed file changes it)."""
    if not os.path.isdir(path):
        return os.path.getmtime(path)
    return max(os.path.getmtime(r) for r, _d, _f in os.walk(path))


# ------------------------------------------------------------------------------------------- listers
def _require(paths: list[str]) -> None:
    for p in paths:
        if not p or not os.path.exists(p):
            raise FileNotFoundError(f"data set path {p!r} does not exist")


@lru_cache(maxsize=64)
def _file_units(root: str, mtime: float, which: str) -> tuple[Unit, ...]:
    pred = {"cif": is_cif, "chgcar": lambda f: is_chgcar(f) or is_density_json(f)}[which]
    return tuple(Unit(os.path.relpath(p, root), p) for p in _walk(root, pred))


def list_cif_units(ds) -> list[Unit]:
    ds = as_dataset(ds)
    paths = ds.paths
    _require(paths)
    return [u for p in paths for u in _file_units(p, _mtime(p), "cif")]


def list_chgcar_units(ds) -> list[Unit]:
    ds = as_dataset(ds)
    paths = ds.paths
    _require(paths)
    return [u for p in paths for u in _file_units(p, _mtime(p), "chgcar")]


@lru_cache(maxsize=64)
def _csv_ids(path: str, mtime: float, id_column: str) -> tuple:
    import pyarrow.csv as pacsv

    opts = pacsv.ConvertOptions(include_columns=[id_column], column_types={id_column: "string"})
    try:
        table = pacsv.read_csv(path, convert_options=opts,
                               parse_options=pacsv.ParseOptions(newlines_in_values=True))
        return tuple(str(v) if v is not None else "" for v in table.column(0).to_pylist())
    except KeyError:
        return ()
    except Exception as exc:  # noqa: BLE001 - an id column that pyarrow cannot read
        if id_column not in str(exc):
            raise
        return ()


@lru_cache(maxsize=64)
def _csv_rows(path: str, mtime: float) -> int:
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    return table.num_rows


def list_csv_units(ds) -> list[Unit]:
    """One unit per row of every CSV (key ``<file name>:<id>``; rows without an id: ``<file>:#<row>``)."""
    ds = as_dataset(ds)
    paths = ds.paths
    _require(paths)
    id_col = ds.columns.id if ds.columns is not None else "material_id"
    out: list[Unit] = []
    for p in paths:
        mt = os.path.getmtime(p)
        ids = _csv_ids(p, mt, id_col)
        n = len(ids) if ids else _csv_rows(p, mt)
        name = os.path.basename(p)
        seen: dict[str, int] = {}
        for row in range(n):
            rid = ids[row] if ids and ids[row] else f"#{row}"
            k = seen[rid] = seen.get(rid, -1) + 1  # a repeated id keeps its rows apart (ingest marks it)
            key = f"{name}:{rid}" + (f"~{k}" if k else "")
            out.append(Unit(key, (p, row)))
    return out


def list_synthetic_units(ds) -> list[Unit]:
    ds = as_dataset(ds)
    return [Unit(str(i), i) for i in range(int(ds.n or 0))]


def list_units(ds) -> list[Unit]:
    """Every input unit of a data set (a ``rhosym.settings.DatasetSettings`` or its dict), after ``subsample``."""
    ds = as_dataset(ds)
    from rhosym.registry import DATASET_KINDS

    mod, fn = DATASET_KINDS[ds.kind].lister.split(":")
    units = getattr(importlib.import_module(mod), fn)(ds)
    if ds.subsample and len(units) > ds.subsample:
        keep = sorted(units, key=lambda u: hashlib.blake2b(f"subsample:{u.key}".encode(), digest_size=8).digest())
        chosen = {u.key for u in keep[: int(ds.subsample)]}
        units = [u for u in units if u.key in chosen]
    return units


def assign(ds, shard_size: int) -> dict[str, list[Unit]]:
    """``{shard name: units}`` (every shard present, possibly empty; units in key order)."""
    ds = as_dataset(ds)
    units = list_units(ds)
    n = n_shards(len(units), shard_size, ds.shards)
    out: dict[str, list[Unit]] = {shard_name(i): [] for i in range(n)}
    for u in sorted(units, key=lambda u: u.key):
        out[shard_name(shard_index(u.key, n))].append(u)
    return out


def list_shards(ds, shard_size: int) -> list[str]:
    return list(assign(ds, shard_size))


def shard_units(ds, shard: str | int, shard_size: int) -> list[Unit]:
    return assign(ds, shard_size).get(shard_name(int(shard)), [])


def shard_inputs(ds, shard: str | int, shard_size: int) -> list[str]:
    """The raw files one ingest shard reads: its own files (file kinds), the CSV(s), or none."""
    ds = as_dataset(ds)
    from rhosym.registry import DATASET_KINDS

    if ds.kind == "synthetic":
        return []
    if DATASET_KINDS[ds.kind].files:
        files = [str(u.ref) for u in shard_units(ds, shard, shard_size)]
    else:
        files = list(ds.paths)
    if ds.kind == "mp_chgcar" and ds.metadata:
        files.append(ds.metadata)
    return files


def shard_of(path: str | Path) -> str:
    """The shard name in a per-shard file name such as ``shard-00012.parquet``."""
    m = re.search(r"shard-(\d{5})", str(path))
    if not m:
        raise ValueError(f"no shard number in {path}")
    return m.group(1)
