"""Materials Project charge densities: read them as MP serves them, name them, label them (the download
client is :mod:`rhosym.mp_download`).

**Format.** MP serves a charge density as JSON (``.json.gz``): a monty-serialized pymatgen ``Chgcar``
(``Chgcar.as_dict()``: ``{"@class": "Chgcar", "poscar": {"structure": {...}}, "data": {"total": ...,
"diff": ...}, "data_aug": ...}``), either bare or inside a task document's ``data`` field next to its
``task_id`` (what the open-data bucket ``s3://materialsproject-parsed/chgcars/<task_id>.json.gz`` holds and
what mp-api decodes). Grids are nested lists or monty numpy dicts (``{"@module": "numpy", "@class":
"array", "dtype": ..., "data": [...]}``). pymatgen indexes ``data["total"]`` as ``[ix, iy, iz]`` along a, b,
c and stores ρ·V (``diff``: (ρ↑−ρ↓)·V), exactly the CHGCAR blocks, so :func:`read_chgcar_json` returns the
same :class:`~rhosym.io.chgcar.ChgcarData` as :func:`rhosym.io.chgcar.read_chgcar` on the CHGCAR text. A
non-collinear file (``diff_x``, ``diff_y``, ``diff_z``) gives ``diff_x`` as ``mag``, like the second block
read_chgcar takes.

**Ids.** Charge densities are keyed by calculation (task) id, band gap and formation energy by material id;
labels and targets join on the material id (:func:`resolve_material_id`).

**Limits** (:mod:`rhosym.io.limits`; ``limits``, default: those in force): the file is decompressed through
:mod:`rhosym.io.compress` (refused past ``ingest.max_bytes``), then the structure's sites are checked
against ``ingest.max_input_sites`` and the grid's shape against ``ingest.max_grid_points`` before the
grids become arrays.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from pathlib import Path

import numpy as np

from rhosym.io.chgcar import ChgcarData
from rhosym.io.compress import open_binary, read_bytes
from rhosym.io.limits import check, limits_of
from rhosym.shards import is_density_json

try:  # orjson is ~5x faster than json on MP's 100 MB documents
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is in the venv
    _orjson = None

_COMPRESSED = re.compile(r"(?i)\.(gz|bz2|xz)$")
_CHGCAR_TOKEN = re.compile(r"(?i)(\.chgcar$|chgcar)")
_ID_KEYS = re.compile(rb'"(task_id|material_id)"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+|null)')


# ------------------------------------------------------------------------------------------ file names
def _strip_suffixes(name: str) -> str:
    base = _COMPRESSED.sub("", name)
    return re.sub(r"(?i)\.json$", "", base)


def is_chgcar_json(name: str) -> bool:
    """A charge-density JSON by file name: ``mp-149.json.gz``, ``mp-1234567_chgcar.json.gz``,
    ``task-xxxx.json`` (``.json`` plain or ``.gz``/``.bz2``/``.xz``), not ``metadata.json``,
    ``summary.json.gz``, ``manifest.json``, ``materials_*.json``, ``*_metadata.json`` or a hidden file
    (the unit lister's rule, :func:`rhosym.shards.is_density_json`)."""
    return is_density_json(name)


def file_id(path: str | Path) -> str:
    """The id in a charge-density file name: ``mp-149`` from ``mp-149.json.gz``, ``mp-149_CHGCAR.json.gz``,
    ``mp-149.chgcar.json.gz`` or ``CHGCAR_mp-149.json``; otherwise the name without suffixes (and without a
    ``chgcar`` token), or the folder's name for a bare ``CHGCAR.json``."""
    p = Path(path)
    stem = _strip_suffixes(p.name)
    stem = _CHGCAR_TOKEN.sub("", stem).strip("._- ")
    if stem:
        return stem
    return p.parent.name


# ------------------------------------------------------------------------------------------ reading
def _read(path: str | Path, limits=None) -> bytes:
    """The decompressed bytes of a file (refused past ``max_bytes``; an empty file is an error)."""
    buf = read_bytes(path, limits_of(limits).max_bytes, text=True)
    if not buf:
        raise ValueError("empty file")
    return buf


def brief(exc: BaseException | str, limit: int = 200) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    s = " ".join(str(exc).split())
    return (s[:limit] + "...") if len(s) > limit else (s or type(exc).__name__)


def _loads(buf: bytes):
    if not buf.strip():
        raise ValueError("empty file")
    if _orjson is not None:
        try:
            return _orjson.loads(buf)
        except _orjson.JSONDecodeError:
            pass  # maybe NaN/Infinity literals, which orjson refuses: the json module says
    try:
        return json.loads(buf)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON: {brief(e)}") from e


def _find_chgcar(doc) -> dict:
    """The Chgcar dict inside a parsed document (bare, a one-element list, or a task doc's ``data``)."""
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if not isinstance(doc, dict):
        raise ValueError(f"JSON is not a charge density (top level is a {type(doc).__name__})")
    for cand in (doc, doc.get("data"), doc.get("chgcar")):
        if isinstance(cand, dict) and isinstance(cand.get("data"), dict) and (
                "structure" in cand or "poscar" in cand):
            return cand
    inner = doc.get("data") if isinstance(doc.get("data"), dict) else None
    has_struct = any(isinstance(d, dict) and ("structure" in d or "poscar" in d) for d in (doc, inner))
    if not has_struct:
        raise ValueError("JSON is not a charge density (no structure / poscar)")
    raise ValueError("JSON is not a charge density (no data.total)")


def _unwrap(obj):
    """A monty numpy dict's ``data`` (lists elsewhere are returned as they are)."""
    if isinstance(obj, dict) and obj.get("@module") == "numpy" and "data" in obj:
        return obj["data"]
    return obj


def _structure_arrays(chg: dict) -> tuple[np.ndarray, list[str], np.ndarray]:
    s = chg.get("structure")
    if s is None and isinstance(chg.get("poscar"), dict):
        s = chg["poscar"].get("structure")
    if not isinstance(s, dict):
        raise ValueError("JSON is not a charge density (no structure / poscar)")
    try:
        lat = s["lattice"]
        lat = _unwrap(lat["matrix"]) if isinstance(lat, dict) and "matrix" in lat else _unwrap(lat)
        lattice = np.asarray(lat, dtype=np.float64)
        if lattice.shape != (3, 3):
            raise ValueError(f"lattice matrix has shape {lattice.shape}")
        sites = s["sites"]
        species = []
        for site in sites:
            sp = site["species"]
            best = max(sp, key=lambda e: float(e.get("occu", 1.0)))
            species.append(str(best.get("element") or site.get("label")))
        if sites and all("abc" in site for site in sites):
            frac = np.asarray([_unwrap(site["abc"]) for site in sites], dtype=np.float64)
        elif sites:
            xyz = np.asarray([_unwrap(site["xyz"]) for site in sites], dtype=np.float64)
            frac = np.linalg.solve(lattice.T, xyz.T).T
        else:
            frac = np.zeros((0, 3))
    except (KeyError, TypeError, IndexError, ValueError) as e:
        raise ValueError(f"bad structure in charge-density JSON: {brief(e)}") from e
    if not sites:
        raise ValueError("bad structure in charge-density JSON: no sites")
    if frac.shape != (len(species), 3):
        raise ValueError(f"bad structure in charge-density JSON: coordinates of shape {frac.shape}")
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise ValueError("bad structure in charge-density JSON: NaN/Inf in lattice or coordinates")
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise ValueError("bad structure in charge-density JSON: degenerate lattice")
    return lattice, species, frac


def _shape(obj) -> tuple[int, ...]:
    """The shape a grid declares (a numpy dict's ``shape``, else the nested lists' lengths), unconverted."""
    if isinstance(obj, dict):
        if obj.get("shape") is not None:
            return tuple(int(x) for x in obj["shape"])
        obj = obj.get("data")
    shape = []
    while isinstance(obj, list) and len(shape) < 3:
        shape.append(len(obj))
        obj = obj[0] if obj else None
    return tuple(shape)


def _check_grid(obj, what: str, limits) -> None:
    """Refuse a grid whose declared shape has more than ``max_grid_points`` points, before converting it."""
    try:
        shape = _shape(obj)
    except (TypeError, ValueError):
        return  # _grid says what is wrong
    if len(shape) == 3:
        n = shape[0] * shape[1] * shape[2]
        check(n, "max_grid_points", limits, f"{what} grid {shape[0]}x{shape[1]}x{shape[2]} of {n} points")


def _grid(obj, what: str) -> np.ndarray:
    shape = None
    if isinstance(obj, dict):
        if obj.get("@module") == "numpy" or "data" in obj:
            dtype = str(obj.get("dtype", "float64"))
            if "complex" in dtype:
                raise ValueError(f"{what} is a complex grid ({dtype})")
            shape = obj.get("shape")
            obj = obj.get("data")
        else:
            raise ValueError(f"{what} is not an array (a dict with keys {sorted(obj)[:5]})")
    if obj is None:
        raise ValueError(f"{what} is null")
    try:
        arr = np.asarray(obj, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: grid shape inconsistent ({brief(e, 120)})") from e
    if shape is not None:
        try:
            arr = arr.reshape(tuple(int(x) for x in shape))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what}: grid shape inconsistent ({brief(e, 120)})") from e
    if arr.ndim != 3 or min(arr.shape) <= 0:
        raise ValueError(f"{what}: grid shape inconsistent (shape {arr.shape}, want (nx, ny, nz))")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{what} holds {int(bad.sum())} NaN/Inf values")
    return arr


_IDS_CACHE: dict[str, tuple[int, int, dict]] = {}
_IDS_LOCK = threading.Lock()


def _stat_key(path: str | Path) -> tuple[str, int, int]:
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _remember_ids(path, ids: dict) -> None:
    try:
        key, size, mtime = _stat_key(path)
    except OSError:
        return
    with _IDS_LOCK:
        if len(_IDS_CACHE) > 512:
            _IDS_CACHE.clear()
        _IDS_CACHE[key] = (size, mtime, dict(ids))


def _doc_ids(doc) -> dict:
    out = {"task_id": None, "material_id": None}
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if isinstance(doc, dict):
        for k in out:
            v = doc.get(k)
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                out[k] = str(v)
    return out


def read_chgcar_json(path: str | Path, limits=None) -> ChgcarData:
    """An MP charge-density JSON (``.json``, ``.json.gz``, ``.json.bz2``, ``.json.xz``) as ``ChgcarData``.

    Parses the JSON (orjson when installed), takes the lattice matrix, species and fractional coordinates
    from the structure dict and the ``total`` (and ``diff``) grids with ``np.asarray``; no pymatgen object
    is built. Broken input raises ``ValueError`` with a one-line reason. The document's top-level
    ``task_id``/``material_id`` are remembered, so a following :func:`chgcar_json_ids` on the same,
    unchanged file costs nothing. Over a limit (``limits``): :class:`~rhosym.io.limits.LimitExceeded`.
    """
    limits = limits_of(limits)
    doc = _loads(_read(path, limits))
    chg = _find_chgcar(doc)
    data = chg["data"]
    if "total" not in data:
        raise ValueError("JSON is not a charge density (no data.total)")
    lattice, species, frac = _structure_arrays(chg)
    check(len(species), "max_input_sites", limits, f"{len(species)} sites in the charge density's structure")
    _check_grid(data["total"], "data.total", limits)
    total = _grid(data["total"], "data.total")
    mag = None
    key = "diff" if "diff" in data else ("diff_x" if "diff_x" in data else None)
    if key is not None and data[key] is not None:
        _check_grid(data[key], f"data.{key}", limits)
        mag = _grid(data[key], f"data.{key}")
        if mag.shape != total.shape:
            raise ValueError(f"grid shape inconsistent: data.{key} {mag.shape} vs data.total {total.shape}")
    _remember_ids(path, _doc_ids(doc))
    return ChgcarData(lattice, species, frac, tuple(int(x) for x in total.shape), total, mag)


def scan_ids(buf: bytes) -> dict:
    """Top-level ``task_id``/``material_id`` of a JSON text without parsing it: each regex hit's nesting
    depth is counted from the brackets before it (``bytes.count``, C speed; brackets inside strings would
    fool it, which MP's short strings never hold)."""
    out: dict = {"task_id": None, "material_id": None}
    for m in _ID_KEYS.finditer(buf):
        key = m.group(1).decode()
        if out[key] is not None:
            continue
        p = m.start()
        depth = (buf.count(b"{", 0, p) + buf.count(b"[", 0, p)
                 - buf.count(b"}", 0, p) - buf.count(b"]", 0, p))
        if depth == 1 or (depth == 2 and buf.lstrip()[:1] == b"["):
            val = m.group(2)
            if val != b"null":
                out[key] = json.loads(val) if val.startswith(b'"') else val.decode()
                out[key] = str(out[key])
        if all(v is not None for v in out.values()):
            break
    return out


def chgcar_json_ids(path: str | Path, limits=None) -> dict:
    """``{"task_id": ..., "material_id": ...}`` from the document's top level (``None`` where it says
    nothing: a bare Chgcar has neither).

    Cost: free right after :func:`read_chgcar_json` of the same unchanged file (remembered); otherwise the
    file is decompressed (~0.2 s for an 18 MB .json.gz) and scanned with a regex, without parsing the arrays.
    Raises ``ValueError`` for an empty or corrupt compressed file.
    """
    try:
        key, size, mtime = _stat_key(path)
    except OSError:
        key = None
    if key is not None:
        with _IDS_LOCK:
            hit = _IDS_CACHE.get(key)
        if hit is not None and hit[:2] == (size, mtime):
            return dict(hit[2])
    ids = scan_ids(_read(path, limits))
    _remember_ids(path, ids)
    return ids


# ------------------------------------------------------------------------------------------ metadata
def _split_ids(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, float) and math.isnan(v):
        return []
    if isinstance(v, (list, tuple, set, np.ndarray)):
        return [str(x).strip() for x in v if x is not None and str(x).strip()]
    s = str(v).strip()
    if not s or s.lower() in ("nan", "none", "null"):
        return []
    if s.startswith("["):
        try:
            return _split_ids(json.loads(s.replace("'", '"')))
        except ValueError:
            s = s.strip("[]")
    return [t.strip(" '\"") for t in re.split(r"[,;\s]+", s) if t.strip(" '\"")]


_META_COLUMNS = {"material_id", "task_id", "task_ids", "band_gap", "formation_energy_per_atom",
                 "formation_energy"}


def _records_from_json(obj) -> list[dict]:
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if isinstance(obj, list):
        return [r for r in obj if isinstance(r, dict)]
    if isinstance(obj, dict):
        if obj and not (set(obj) & _META_COLUMNS) and all(isinstance(v, dict) for v in obj.values()):
            return [{"material_id": k, **v} for k, v in obj.items()]  # {material_id: {...}}
        import pandas as pd

        return pd.DataFrame(obj).to_dict("records")  # pandas column dict {"material_id": [...], ...}
    raise ValueError(f"metadata JSON holds a {type(obj).__name__}, not a table")


def read_metadata(path: str | Path, limits=None):
    """Labels of MP materials from a CSV or JSON table (``.gz`` etc. too), indexed by ``material_id``.

    Input columns: ``material_id`` (required) and optionally ``task_id`` (one per row; several rows per
    material are merged) or ``task_ids`` (a list, or a string ``"mp-1,mp-2"``), ``band_gap``,
    ``formation_energy_per_atom`` (or ``formation_energy``). JSON: a list of records, ``{"data": [...]}``
    (an API answer), ``{material_id: {...}}`` or a pandas column dict.

    Returns a frame with columns ``band_gap``, ``formation_energy`` (float, NaN where absent), ``task_id``
    (the first task id, or None) and ``task_ids`` (tuple of all); ``frame.attrs["task_map"]`` maps every
    task id to its material id (what :func:`resolve_material_id` uses). Read within ``limits``
    (``max_bytes``).
    """
    import pandas as pd

    path = Path(path)
    name = _COMPRESSED.sub("", path.name).lower()
    limits = limits_of(limits)
    try:
        if name.endswith(".json") or name.endswith(".jsonl"):
            buf = _read(path, limits)
            if name.endswith(".jsonl"):
                recs = [json.loads(line) for line in buf.splitlines() if line.strip()]
            else:
                recs = _records_from_json(_loads(buf))
            df = pd.DataFrame.from_records(recs)
        else:
            with open_binary(path, limits.max_bytes) as fh:
                df = pd.read_csv(fh, dtype={"material_id": str, "task_id": str})
    except FileNotFoundError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise ValueError(f"{path}: unreadable metadata table: {brief(e)}") from e
    if "material_id" not in df.columns:
        raise ValueError(f"{path}: metadata has no material_id column (columns: {', '.join(map(str, df.columns))})")
    fe_col = next((c for c in ("formation_energy_per_atom", "formation_energy") if c in df.columns), None)
    rows: dict[str, dict] = {}
    order: list[str] = []
    for rec in df.to_dict("records"):
        mid = rec.get("material_id")
        if mid is None or (isinstance(mid, float) and math.isnan(mid)) or not str(mid).strip():
            continue
        mid = str(mid).strip()
        r = rows.get(mid)
        if r is None:
            r = rows[mid] = {"band_gap": np.nan, "formation_energy": np.nan, "task_ids": []}
            order.append(mid)
        for col, dst in (("band_gap", "band_gap"), (fe_col, "formation_energy")):
            if col is not None and math.isnan(r[dst]):
                r[dst] = as_float(rec.get(col))
        for col in ("task_id", "task_ids"):
            for t in _split_ids(rec.get(col)):
                if t not in r["task_ids"]:
                    r["task_ids"].append(t)
    out = pd.DataFrame(
        {"band_gap": [rows[m]["band_gap"] for m in order],
         "formation_energy": [rows[m]["formation_energy"] for m in order],
         "task_id": [rows[m]["task_ids"][0] if rows[m]["task_ids"] else None for m in order],
         "task_ids": [tuple(rows[m]["task_ids"]) for m in order]},
        index=pd.Index(order, name="material_id"))
    out["band_gap"] = out["band_gap"].astype(np.float64)
    out["formation_energy"] = out["formation_energy"].astype(np.float64)
    out.attrs["task_map"] = {t: m for m in order for t in rows[m]["task_ids"]}
    return out


def as_float(v) -> float:
    """A finite float, else NaN."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return np.nan
    return f if math.isfinite(f) else np.nan


def _task_map(meta) -> dict:
    if meta is None:
        return {}
    if isinstance(meta, dict):
        return meta
    tm = getattr(meta, "attrs", {}).get("task_map")
    if tm is not None:
        return tm
    tm = {}
    cols = [c for c in ("task_id", "task_ids") if c in getattr(meta, "columns", ())]
    for c in cols:
        for mid, v in meta[c].items():
            for t in _split_ids(v):
                tm.setdefault(t, str(mid))
    try:
        meta.attrs["task_map"] = tm
    except AttributeError:
        pass
    return tm


def resolve_material_id(file_id: str, metadata_or_map=None, doc_ids: dict | None = None) -> tuple[str, str | None]:
    """``(material_id, task_id)`` of a charge-density file, so that labels join on the material id.

    ``metadata_or_map``: the frame of :func:`read_metadata`, a ``{task_id: material_id}`` dict, or None.
    ``doc_ids``: the document's own ids (:func:`chgcar_json_ids`). Rules, first that applies:

    1. the document names its material (``material_id``): that, with its ``task_id``;
    2. the file name or the document's ``task_id`` is a task id the metadata maps: its material;
    3. the file name is a material id of the metadata: kept (task id: the document's, else the metadata's);
    4. otherwise the file id is taken as the material id (task id: the document's, if any).
    """
    fid = str(file_id).strip()
    doc_ids = doc_ids or {}
    doc_tid = doc_ids.get("task_id") or None
    doc_mid = doc_ids.get("material_id") or None
    tmap = _task_map(metadata_or_map)
    if doc_mid:
        tid = doc_tid or (fid if tmap.get(fid) == doc_mid else None)
        return str(doc_mid), (str(tid) if tid else None)
    for cand in (fid, doc_tid):
        if cand and cand in tmap:
            return str(tmap[cand]), str(cand)
    index = None if metadata_or_map is None or isinstance(metadata_or_map, dict) else metadata_or_map.index
    if index is not None and fid in index:
        tid = doc_tid
        if tid is None and "task_id" in metadata_or_map.columns:
            v = metadata_or_map.at[fid, "task_id"]
            tid = v if isinstance(v, str) and v else None
        return fid, tid
    return fid, doc_tid
