"""Materials Project charge densities: read them as MP serves them, name them, label them, download them.

**Format.** MP serves a charge density as JSON (``.json.gz``): a monty-serialized pymatgen ``Chgcar``
(``Chgcar.as_dict()``: ``{"@class": "Chgcar", "poscar": {"structure": {...}}, "data": {"total": ...,
"diff": ...}, "data_aug": ...}``), either bare or inside a task document's ``data`` field next to its
``task_id`` (what the open-data bucket ``s3://materialsproject-parsed/chgcars/<task_id>.json.gz`` holds and
what mp-api decodes). Grids are nested lists or monty numpy dicts (``{"@module": "numpy", "@class":
"array", "dtype": ..., "data": [...]}``). pymatgen indexes ``data["total"]`` as ``[ix, iy, iz]`` along a, b,
c and stores ρ·V (``diff``: (ρ↑−ρ↓)·V), exactly the CHGCAR blocks, so :func:`read_chgcar_json` returns the
same :class:`~rhosym.chgcar.ChgcarData` as :func:`rhosym.chgcar.read_chgcar` on the CHGCAR text. A
non-collinear file (``diff_x``, ``diff_y``, ``diff_z``) gives ``diff_x`` as ``mag``, like the second block
read_chgcar takes.

**Ids.** Charge densities are keyed by calculation (task) id, band gap and formation energy by material id;
labels and targets join on the material id (:func:`resolve_material_id`).

**Download client protocol** (what :func:`download_mp` calls; ``mp_api.client.MPRester`` 0.47 satisfies it,
so does a test fake)::

    client.get_charge_density_from_material_id(material_id: str, inc_task_doc: bool = False)
        -> None                                     # no charge density for this material
         | payload | (payload, task_doc)             # task_doc: dict or object with ``task_id``
        payload: bytes (a .json.gz / .json file as stored, written unchanged)
               | pymatgen Chgcar (or any MSONable / dict: written with monty's JSON encoder, gzip)
        raises: not-found errors (message with "not found", "No object found", "404", ...; KeyError /
                LookupError)  -> recorded in missing.txt, not retried
                transient errors (ConnectionError, TimeoutError, requests/botocore/urllib3 connection and
                timeout errors, HTTP 408/425/429/5xx, "Too Many Requests", "timed out", ...)
                              -> retried with exponential back-off
                anything else -> recorded as failed, not retried
    client.summary.search(material_ids: list[str], fields: list[str]) -> list[doc]   # optional
        doc: dict or object with material_id, band_gap, formation_energy_per_atom

``inc_task_doc=True`` (passed when the method accepts it) costs mp-api one more request per material (the
task document, fetched with all its fields) but tells the task id the file is named by.
"""

from __future__ import annotations

import bz2
import gzip
import inspect
import io
import json
import logging
import lzma
import math
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from rhosym.chgcar import ChgcarData

log = logging.getLogger("rhosym.mp")

try:  # orjson is ~5x faster than json on MP's 100 MB documents
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is in the venv
    _orjson = None

_COMPRESSED = re.compile(r"(?i)\.(gz|bz2|xz)$")
_CHGCAR_TOKEN = re.compile(r"(?i)(\.chgcar$|chgcar)")
_MP_ID = re.compile(r"((?:mp|mvc|agm)-[0-9A-Za-z]+)")
# Obvious metadata tables, never charge densities (a superset of rhosym.shards' exclusions).
_NOT_DENSITY = re.compile(
    r"(?i)^(?:(metadata|meta|summary|summaries|manifest|index|materials?|tasks|config|settings|schema|"
    r"missing|failed|downloads?)"
    r"|(metadata|summary|manifest|index|materials?)[._-].*|.*[._-](metadata|meta|summary|manifest|index))$")
_ID_KEYS = re.compile(rb'"(task_id|material_id)"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+|null)')


# ------------------------------------------------------------------------------------------ file names
def _strip_suffixes(name: str) -> str:
    base = _COMPRESSED.sub("", name)
    return re.sub(r"(?i)\.json$", "", base)


def is_chgcar_json(name: str) -> bool:
    """A charge-density JSON by file name: ``mp-149.json.gz``, ``mp-1234567_chgcar.json.gz``,
    ``task-xxxx.json`` (``.json`` plain or ``.gz``/``.bz2``/``.xz``), not ``metadata.json``,
    ``summary.json.gz``, ``manifest.json``, ``materials_*.json``, ``*_metadata.json`` or a hidden file."""
    name = os.path.basename(str(name))
    base = _COMPRESSED.sub("", name)
    if not base.lower().endswith(".json") or name.startswith("."):
        return False
    stem = base[:-5]
    return bool(stem) and not _NOT_DENSITY.match(stem)


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
def _decompress(path: str | Path) -> bytes:
    path = Path(path)
    raw = path.read_bytes()
    if not raw:
        raise ValueError("empty file")
    try:
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        if raw[:3] == b"BZh":
            return bz2.decompress(raw)
        if raw[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(raw)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as e:
        raise ValueError(f"corrupt or truncated compressed file: {_one_line(e)}") from e
    return raw


def _one_line(exc: BaseException | str, limit: int = 200) -> str:
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
        raise ValueError(f"not JSON: {_one_line(e)}") from e


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
        raise ValueError(f"bad structure in charge-density JSON: {_one_line(e)}") from e
    if not sites:
        raise ValueError("bad structure in charge-density JSON: no sites")
    if frac.shape != (len(species), 3):
        raise ValueError(f"bad structure in charge-density JSON: coordinates of shape {frac.shape}")
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise ValueError("bad structure in charge-density JSON: NaN/Inf in lattice or coordinates")
    if abs(np.linalg.det(lattice)) < 1e-6:
        raise ValueError("bad structure in charge-density JSON: degenerate lattice")
    return lattice, species, frac


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
        raise ValueError(f"{what}: grid shape inconsistent ({_one_line(e, 120)})") from e
    if shape is not None:
        try:
            arr = arr.reshape(tuple(int(x) for x in shape))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what}: grid shape inconsistent ({_one_line(e, 120)})") from e
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


def read_chgcar_json(path: str | Path) -> ChgcarData:
    """An MP charge-density JSON (``.json``, ``.json.gz``, ``.json.bz2``, ``.json.xz``) as ``ChgcarData``.

    Parses the JSON (orjson when installed), takes the lattice matrix, species and fractional coordinates
    from the structure dict and the ``total`` (and ``diff``) grids with ``np.asarray``; no pymatgen object
    is built. Broken input raises ``ValueError`` with a one-line reason. The document's top-level
    ``task_id``/``material_id`` are remembered, so a following :func:`chgcar_json_ids` on the same,
    unchanged file costs nothing.
    """
    doc = _loads(_decompress(path))
    chg = _find_chgcar(doc)
    data = chg["data"]
    if "total" not in data:
        raise ValueError("JSON is not a charge density (no data.total)")
    lattice, species, frac = _structure_arrays(chg)
    total = _grid(data["total"], "data.total")
    mag = None
    key = "diff" if "diff" in data else ("diff_x" if "diff_x" in data else None)
    if key is not None and data[key] is not None:
        mag = _grid(data[key], f"data.{key}")
        if mag.shape != total.shape:
            raise ValueError(f"grid shape inconsistent: data.{key} {mag.shape} vs data.total {total.shape}")
    _remember_ids(path, _doc_ids(doc))
    return ChgcarData(lattice, species, frac, tuple(int(x) for x in total.shape), total, mag)


def _scan_ids(buf: bytes) -> dict:
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


def chgcar_json_ids(path: str | Path) -> dict:
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
    ids = _scan_ids(_decompress(path))
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


def read_metadata(path: str | Path):
    """Labels of MP materials from a CSV or JSON table (``.gz`` etc. too), indexed by ``material_id``.

    Input columns: ``material_id`` (required) and optionally ``task_id`` (one per row; several rows per
    material are merged) or ``task_ids`` (a list, or a string ``"mp-1,mp-2"``), ``band_gap``,
    ``formation_energy_per_atom`` (or ``formation_energy``). JSON: a list of records, ``{"data": [...]}``
    (an API answer), ``{material_id: {...}}`` or a pandas column dict.

    Returns a frame with columns ``band_gap``, ``formation_energy`` (float, NaN where absent), ``task_id``
    (the first task id, or None) and ``task_ids`` (tuple of all); ``frame.attrs["task_map"]`` maps every
    task id to its material id (what :func:`resolve_material_id` uses).
    """
    import pandas as pd

    path = Path(path)
    name = _COMPRESSED.sub("", path.name).lower()
    try:
        if name.endswith(".json") or name.endswith(".jsonl"):
            buf = _decompress(path)
            if name.endswith(".jsonl"):
                recs = [json.loads(line) for line in buf.splitlines() if line.strip()]
            else:
                recs = _records_from_json(_loads(buf))
            df = pd.DataFrame.from_records(recs)
        else:
            df = pd.read_csv(path, dtype={"material_id": str, "task_id": str})
    except FileNotFoundError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise ValueError(f"{path}: unreadable metadata table: {_one_line(e)}") from e
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
                r[dst] = _float(rec.get(col))
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


def _float(v) -> float:
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


# ------------------------------------------------------------------------------------------ download
class NotFound(Exception):
    """The server has no charge density for this material (not retried; goes to missing.txt)."""


class Transient(Exception):
    """A retryable failure (e.g. a truncated transfer)."""


_TRANSIENT_TEXT = re.compile(
    r"(?i)(status code (408|425|429|5\d\d)\b|\b(408|425|429|500|502|503|504)\b|too many requests|rate.?limit|"
    r"throttl|timed? ?out|timeout|temporar|unavailable|bad gateway|connection (reset|refused|aborted|error)|"
    r"reset by peer|remote end closed|broken pipe|max retries exceeded|try again|slow ?down|"
    r"internal server error|incomplete ?read|truncated)")
_NOTFOUND_TEXT = re.compile(
    r"(?i)(no object found|not found|\b404\b|nosuchkey|no such key|does not exist|no charge density|"
    r"no tasks? found|no data|no document)")
_TRANSIENT_NAMES = {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "ReadTimeoutError",
                    "ConnectTimeoutError", "EndpointConnectionError", "ConnectionClosedError",
                    "ProtocolError", "ChunkedEncodingError", "IncompleteRead", "RemoteDisconnected",
                    "NewConnectionError", "MaxRetryError", "ResponseStreamingError", "SSLError",
                    "ThrottlingException", "SlowDown"}


def _status(exc: BaseException) -> int | None:
    for obj in (exc, getattr(exc, "response", None)):
        code = getattr(obj, "status_code", None) or getattr(obj, "status", None)
        if isinstance(code, int):
            return code
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):  # botocore ClientError
        code = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(code, int):
            return code
        err = str(resp.get("Error", {}).get("Code", ""))
        if err.isdigit():
            return int(err)
        if err in ("NoSuchKey", "NotFound"):
            return 404
        if err in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"):
            return 429
    return None


def classify_error(exc: BaseException) -> str:
    """``"transient"`` (retry), ``"missing"`` (no such charge density) or ``"failed"`` (give up)."""
    if isinstance(exc, Transient):
        return "transient"
    if isinstance(exc, NotFound):
        return "missing"
    code = _status(exc)
    if code is not None:
        if code in (408, 425, 429) or 500 <= code < 600:
            return "transient"
        if code in (404, 410):
            return "missing"
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, (ConnectionError, TimeoutError)) or names & _TRANSIENT_NAMES:
        return "transient"
    text = str(exc)
    if _TRANSIENT_TEXT.search(text):
        return "transient"
    if isinstance(exc, LookupError) or _NOTFOUND_TEXT.search(text):
        return "missing"
    return "failed"


def make_client():
    """``mp_api.client.MPRester(api_key=os.environ["MP_API_KEY"])``, or a one-line RuntimeError."""
    try:
        from mp_api.client import MPRester
    except ImportError as e:
        raise RuntimeError(f"mp-api is not installed (pip install 'rhosym[mp]', i.e. mp-api==0.47.0): "
                           f"{_one_line(e)}") from None
    key = os.environ.get("MP_API_KEY", "").strip()
    if not key:
        raise RuntimeError("MP_API_KEY is not set: get a key at https://next-gen.materialsproject.org/api "
                           "and export MP_API_KEY=...")
    return MPRester(api_key=key)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).strip("._") or "unnamed"


def _get(doc, key):
    if doc is None:
        return None
    if isinstance(doc, dict):
        v = doc.get(key)
    else:
        v = getattr(doc, key, None)
        if v is None:
            try:
                v = doc[key]
            except (KeyError, TypeError, IndexError, AttributeError):
                v = None
    return v


def _suffix_for(data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        return ".json.gz"
    if data[:3] == b"BZh":
        return ".json.bz2"
    if data[:6] == b"\xfd7zXZ\x00":
        return ".json.xz"
    return ".json"


def _check_bytes(data: bytes) -> None:
    """A gzip/bz2/xz payload must decompress to its end (CRC checked); a truncated one is transient."""
    if not data:
        raise Transient("empty payload")
    try:
        if data[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                while fh.read(1 << 24):
                    pass
        elif data[:3] == b"BZh":
            d = bz2.BZ2Decompressor()
            d.decompress(data)
            if not d.eof:
                raise EOFError("bz2 stream ended early")
        elif data[:6] == b"\xfd7zXZ\x00":
            d = lzma.LZMADecompressor()
            d.decompress(data)
            if not d.eof:
                raise EOFError("xz stream ended early")
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as e:
        raise Transient(f"truncated or corrupt download: {_one_line(e)}") from e


def _accepts(fn, kw: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return kw in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class _Downloader:
    def __init__(self, client, out: Path, retries: int, backoff: float, max_backoff: float,
                 sleep: Callable[[float], None]):
        self.client = client
        self.out = out
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.lock = threading.Lock()
        self.manifest = out / "downloads.tsv"
        fn = client.get_charge_density_from_material_id
        self.inc_task_doc = _accepts(fn, "inc_task_doc")

    def call(self, fn, what: str):
        """``fn()`` with up to ``retries`` retries on transient errors, delays backoff·2^k (·[1, 1.25))."""
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified below
                kind = classify_error(exc)
                if kind != "transient" or attempt >= self.retries:
                    if kind == "transient":
                        raise Transient(f"gave up after {attempt + 1} tries: {_one_line(exc)}") from exc
                    raise
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(1.0, 1.25)
                log.warning("%s: %s (%s); retry %d/%d in %.1f s", what, type(exc).__name__, _one_line(exc, 120),
                            attempt + 1, self.retries, delay)
                self.sleep(delay)
                attempt += 1

    def fetch(self, mid: str) -> tuple[str, str | None, str]:
        """Download one material: returns (status, task_id, file name or reason)."""

        def once():
            fn = self.client.get_charge_density_from_material_id
            res = fn(mid, inc_task_doc=True) if self.inc_task_doc else fn(mid)
            if res is None:
                raise NotFound("no charge density")
            payload, doc = res if isinstance(res, tuple) and len(res) == 2 else (res, None)
            if payload is None:
                raise NotFound("no charge density")
            tid = _get(doc, "task_id")
            tid = str(tid) if tid not in (None, "") else None
            if isinstance(payload, (bytes, bytearray, memoryview)):
                data = bytes(payload)
                if tid is None:  # the document inside says (decompressing also checks it is whole)
                    tid = _scan_ids(_checked_decompress(data)).get("task_id")
                else:
                    _check_bytes(data)
                return self._write(mid, tid, data, _suffix_for(data))
            return self._write(mid, tid, _encode(payload, tid, mid), ".json.gz")

        try:
            return self.call(once, mid)
        except Exception as exc:  # noqa: BLE001
            kind = classify_error(exc)
            reason = _one_line(exc)
            return ("missing" if kind == "missing" else "failed"), None, reason

    def _write(self, mid: str, tid: str | None, data: bytes, suffix: str) -> tuple[str, str | None, str]:
        final = self.out / f"{_safe(tid or mid)}{suffix}"
        tmp = final.with_name(f"{final.name}.part-{os.getpid()}-{threading.get_ident()}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        with self.lock, open(self.manifest, "a") as fh:
            fh.write(f"{mid}\t{tid or ''}\t{final.name}\n")
        return "downloaded", tid, final.name


def _checked_decompress(data: bytes) -> bytes:
    if not data:
        raise Transient("empty payload")
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:3] == b"BZh":
            return bz2.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as e:
        raise Transient(f"truncated or corrupt download: {_one_line(e)}") from e
    return data


def _encode(payload, tid: str | None, mid: str) -> bytes:
    """A Chgcar (or MSONable / dict / JSON text) as MP's document: monty JSON, gzip, ``task_id`` beside it."""
    if isinstance(payload, str):
        text = payload.encode()
    else:
        from monty.json import MontyEncoder

        doc = {"task_id": tid, "material_id": mid, "data": payload}
        text = json.dumps(doc, cls=MontyEncoder).encode()
    return gzip.compress(text, compresslevel=6, mtime=0)


def _read_manifest(path: Path) -> dict[str, tuple[str | None, str]]:
    out: dict[str, tuple[str | None, str]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0]:
                out[parts[0]] = (parts[1] or None, parts[2])
    return out


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.part-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _summary(client, dl: _Downloader, ids: list[str], chunk: int = 500) -> dict[str, dict]:
    rester = getattr(client, "summary", None)
    if rester is None or not hasattr(rester, "search"):
        log.warning("client has no summary.search: band gap and formation energy left empty")
        return {}
    out: dict[str, dict] = {}
    fields = ["material_id", "band_gap", "formation_energy_per_atom"]
    for i in range(0, len(ids), chunk):
        part = ids[i:i + chunk]
        docs = dl.call(lambda part=part: rester.search(material_ids=part, fields=fields), "summary.search")
        for d in docs or []:
            mid = _get(d, "material_id")
            if mid is not None:
                out[str(mid)] = {"band_gap": _float(_get(d, "band_gap")),
                                 "formation_energy_per_atom": _float(_get(d, "formation_energy_per_atom"))}
    return out


def download_mp(ds_cfg: dict, client=None, workers: int | None = None, retries: int | None = None,
                backoff: float | None = None, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Fetch the charge densities of ``ds_cfg["mp_ids"]`` into ``ds_cfg["path"]`` and their band gap and
    formation energy into ``ds_cfg["metadata"]`` (CSV: material_id, task_id, band_gap,
    formation_energy_per_atom; ``<path>/metadata.csv`` when unset).

    * ``workers`` parallel downloads (default ``ds_cfg["download_workers"]`` or 4);
    * transient errors retried ``retries`` times (5) after ``backoff``·2^k s (2 s, capped at 120 s, ×[1,
      1.25) jitter; ``sleep`` is injectable); a not-found answer goes to ``<path>/missing.txt``
      (``id<TAB>reason``) untried again until the next call, other errors to ``<path>/failed.txt``;
    * resumable: every file is written to ``<name>.part-*`` then renamed, ``<path>/downloads.tsv`` records
      ``material_id, task_id, file`` of each complete one; a material whose file is complete is skipped
      (also one with ``<material_id>.json.gz``, or ``<task_id>.json.gz`` per the metadata CSV); stale
      ``*.part-*`` files are removed first;
    * written as received: raw bytes unchanged as ``<task_id or material_id>.json.gz`` (``.json`` etc. by
      magic bytes); a Chgcar object with monty's JSON encoder, gzip, as ``{"task_id", "material_id",
      "data": chgcar}`` (MP's own layout), never converted to CHGCAR text.

    Returns ``{"downloaded": [...], "skipped": [...], "missing": {id: reason}, "failed": {id: reason},
    "metadata": path}`` (material ids, in input order).
    """
    from rhosym.logs import progress

    if hasattr(ds_cfg, "model_dump"):
        ds_cfg = ds_cfg.model_dump()
    ids = list(dict.fromkeys(str(x).strip() for x in (ds_cfg.get("mp_ids") or []) if str(x).strip()))
    if not ids:
        raise ValueError("download_mp: no mp_ids in the data-set config")
    if not ds_cfg.get("path"):
        raise ValueError("download_mp: no path in the data-set config")
    out = Path(ds_cfg["path"])
    out.mkdir(parents=True, exist_ok=True)
    meta_path = Path(ds_cfg.get("metadata") or out / "metadata.csv")
    workers = int(workers or ds_cfg.get("download_workers") or 4)
    retries = int(ds_cfg.get("download_retries", 5) if retries is None else retries)
    backoff = float(ds_cfg.get("download_backoff", 2.0) if backoff is None else backoff)
    if workers < 1:
        raise ValueError(f"download_mp: workers must be >= 1, not {workers}")

    stale_files = list(out.glob("*.part-*")) + list(meta_path.parent.glob(f"{meta_path.name}.part-*"))
    for stale in dict.fromkeys(stale_files):
        log.info("removing stale temporary %s", stale.name)
        stale.unlink(missing_ok=True)

    done = _read_manifest(out / "downloads.tsv")
    meta_tids: dict[str, str] = {}
    if meta_path.exists():
        try:
            old = read_metadata(meta_path)
            meta_tids = {m: t for m, t in old["task_id"].items() if isinstance(t, str) and t}
        except (ValueError, OSError) as e:
            log.warning("ignoring unreadable %s: %s", meta_path, _one_line(e))

    def complete(mid: str) -> tuple[str | None, str] | None:
        if mid in done and (out / done[mid][1]).is_file():
            return done[mid]
        for tid in (None, meta_tids.get(mid)):
            for suf in (".json.gz", ".json", ".json.bz2", ".json.xz"):
                name = f"{_safe(tid or mid)}{suf}"
                if (out / name).is_file() and (out / name).stat().st_size > 0:
                    return (tid, name)
        return None

    result: dict = {"downloaded": [], "skipped": [], "missing": {}, "failed": {}, "metadata": str(meta_path)}
    task_of: dict[str, str | None] = {}
    todo = []
    for mid in ids:
        c = complete(mid)
        if c is None:
            todo.append(mid)
        else:
            result["skipped"].append(mid)
            task_of[mid] = c[0]
    log.info("download_mp: %d materials, %d already complete, %d to fetch into %s (%d workers)",
             len(ids), len(result["skipped"]), len(todo), out, workers)

    if client is None:
        client = make_client()
    dl = _Downloader(client, out, retries, backoff, 120.0, sleep)
    status: dict[str, tuple[str, str | None, str]] = {}
    if todo:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mp-download") as pool:
            futures = {pool.submit(dl.fetch, mid): mid for mid in todo}
            for fut in progress(as_completed(futures), desc="download_mp", total=len(futures), logger=log):
                mid = futures[fut]
                status[mid] = fut.result()
    for mid in todo:
        st, tid, info = status[mid]
        if st == "downloaded":
            result["downloaded"].append(mid)
            task_of[mid] = tid
        elif st == "missing":
            result["missing"][mid] = info
            log.warning("%s has no charge density: %s", mid, info)
        else:
            result["failed"][mid] = info
            log.error("%s failed: %s", mid, info)

    for name, table in (("missing.txt", result["missing"]), ("failed.txt", result["failed"])):
        p = out / name
        if table:
            _atomic_text(p, "".join(f"{k}\t{v}\n" for k, v in table.items()))
        elif p.exists():
            p.unlink()

    try:
        labels = _summary(client, dl, ids)
    except Exception as exc:  # noqa: BLE001 - downloads are kept; the labels can be fetched again
        log.error("summary search failed, metadata written without labels: %s", _one_line(exc))
        result["metadata_error"] = _one_line(exc)
        labels = {}
    _write_metadata(meta_path, ids, task_of, labels, meta_path if meta_path.exists() else None)
    log.info("download_mp: %d downloaded, %d skipped, %d missing, %d failed; metadata %s",
             len(result["downloaded"]), len(result["skipped"]), len(result["missing"]),
             len(result["failed"]), meta_path)
    return result


def _write_metadata(path: Path, ids: Iterable[str], task_of: dict, labels: dict, old_path: Path | None) -> None:
    import pandas as pd

    old = {}
    if old_path is not None:
        try:
            o = read_metadata(old_path)
            old = {m: {"task_id": o.at[m, "task_id"], "band_gap": o.at[m, "band_gap"],
                       "formation_energy_per_atom": o.at[m, "formation_energy"]} for m in o.index}
        except (ValueError, OSError):
            old = {}
    rows = []
    for mid in ids:
        prev = old.get(mid, {})
        lab = labels.get(mid, {})
        tid = task_of.get(mid) or prev.get("task_id")
        rows.append({"material_id": mid, "task_id": tid if isinstance(tid, str) and tid else None,
                     "band_gap": lab.get("band_gap", prev.get("band_gap", np.nan)),
                     "formation_energy_per_atom": lab.get("formation_energy_per_atom",
                                                          prev.get("formation_energy_per_atom", np.nan))})
    df = pd.DataFrame(rows, columns=["material_id", "task_id", "band_gap", "formation_energy_per_atom"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.part-{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
