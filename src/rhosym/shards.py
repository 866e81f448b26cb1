"""Input units and shards, known at DAG-build time without parsing any structure.

An input unit is one CHGCAR file, one CIF file, one CSV row or one generated structure
(see ``docs/formats.md``). Listing units must stay cheap: it runs every time Snakemake
builds its DAG, also inside each cluster job.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

CHGCAR_SUFFIXES = ("", ".gz", ".bz2", ".xz")
CIF_SUFFIXES = (".cif", ".cif.gz", ".mmcif")
_SHARD_FMT = "{:05d}"


def shard_name(i: int) -> str:
    return _SHARD_FMT.format(i)


def _is_chgcar(name: str) -> bool:
    base = re.sub(r"\.(gz|bz2|xz)$", "", name)
    return "CHGCAR" in base.upper() or base.lower().endswith(".chgcar")


def _list_files(path: str, predicate) -> list[str]:
    out: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        out.extend(os.path.join(root, f) for f in files if predicate(f))
    return sorted(out)


def _csv_row_count(path: str, id_column: str) -> int:
    import pyarrow.csv as pacsv

    opts = pacsv.ConvertOptions(include_columns=[id_column])
    table = pacsv.read_csv(path, convert_options=opts,
                           parse_options=pacsv.ParseOptions(newlines_in_values=True))
    return table.num_rows


@lru_cache(maxsize=64)
def _units_cached(kind: str, path: str, n: int, id_column: str, mtime: float) -> tuple:
    if kind == "synthetic":
        return tuple(range(n))
    if kind == "cif_dir":
        return tuple(_list_files(path, lambda f: f.lower().endswith(CIF_SUFFIXES)))
    if kind == "mp_chgcar":
        return tuple(_list_files(path, _is_chgcar))
    if kind == "cdvae_csv":
        return tuple(range(_csv_row_count(path, id_column)))
    raise ValueError(f"unknown data-set kind {kind!r}")


def list_units(ds_cfg: dict) -> list:
    """Every input unit of a data set, in a deterministic order.

    Paths for file-based kinds; row or generator indices for ``cdvae_csv`` and ``synthetic``.
    """
    kind = ds_cfg["kind"]
    path = str(ds_cfg.get("path", ""))
    mtime = os.path.getmtime(path) if path and os.path.exists(path) else 0.0
    id_column = (ds_cfg.get("columns") or {}).get("id", "material_id")
    if kind != "synthetic" and not (path and os.path.exists(path)):
        raise FileNotFoundError(f"data set path {path!r} does not exist")
    return list(_units_cached(kind, path, int(ds_cfg.get("n", 0)), id_column, mtime))


def n_shards(n_units: int, shard_size: int) -> int:
    return max(1, -(-n_units // shard_size))


def list_shards(ds_cfg: dict, shard_size: int) -> list[str]:
    """Shard names (``00000`` ...) of a data set."""
    return [shard_name(i) for i in range(n_shards(len(list_units(ds_cfg)), shard_size))]


def shard_units(ds_cfg: dict, shard: str | int, shard_size: int) -> list:
    """The input units of one shard."""
    i = int(shard)
    return list_units(ds_cfg)[i * shard_size:(i + 1) * shard_size]


def shard_of(path: str | Path) -> str:
    """The shard name in a per-shard file name such as ``shard-00012.parquet``."""
    m = re.search(r"shard-(\d{5})", str(path))
    if not m:
        raise ValueError(f"no shard number in {path}")
    return m.group(1)
