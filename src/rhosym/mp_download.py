"""The Materials Project download client: charge densities and their labels into a data set's folder
(reading them: :mod:`rhosym.io.mp_json`).

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

import gzip
import inspect
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from rhosym.io.compress import compression, decompressed_size, read_bytes
from rhosym.io.limits import LimitExceeded
from rhosym.io.mp_json import as_float, brief, read_metadata, scan_ids

log = logging.getLogger("rhosym.mp_download")


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
                           f"{brief(e)}") from None
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
    return {"gz": ".json.gz", "bz2": ".json.bz2", "xz": ".json.xz"}.get(compression(data[:6]), ".json")


def _checked(data: bytes, read) -> object:
    """``read(data)`` (a rhosym.io.compress reader) with a damaged payload as a transient error: a
    gzip/bz2/xz payload must decompress to its end (CRC checked). Over ``ingest.max_bytes``: not retried."""
    if not data:
        raise Transient("empty payload")
    try:
        return read(data)
    except LimitExceeded:
        raise
    except ValueError as e:
        raise Transient(f"truncated or corrupt download: {brief(e)}") from e


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
                        raise Transient(f"gave up after {attempt + 1} tries: {brief(exc)}") from exc
                    raise
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * random.uniform(1.0, 1.25)
                log.warning("%s: %s (%s); retry %d/%d in %.1f s", what, type(exc).__name__, brief(exc, 120),
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
                    tid = scan_ids(_checked(data, read_bytes)).get("task_id")
                else:
                    _checked(data, decompressed_size)
                return self._write(mid, tid, data, _suffix_for(data))
            return self._write(mid, tid, _encode(payload, tid, mid), ".json.gz")

        try:
            return self.call(once, mid)
        except Exception as exc:  # noqa: BLE001
            kind = classify_error(exc)
            reason = brief(exc)
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
                out[str(mid)] = {"band_gap": as_float(_get(d, "band_gap")),
                                 "formation_energy_per_atom": as_float(_get(d, "formation_energy_per_atom"))}
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
            log.warning("ignoring unreadable %s: %s", meta_path, brief(e))

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
        log.error("summary search failed, metadata written without labels: %s", brief(exc))
        result["metadata_error"] = brief(exc)
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
