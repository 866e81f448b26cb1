"""Generic zarr v3 helpers shared by every per-shard store (density, samples, XRD, graphs).

Conventions (``docs/formats.md``, "Per-shard stores of later stages"):

* a store is a zarr v3 **group** (a directory);
* it is written to ``<path>.tmp-<pid>`` and renamed to ``<path>`` only when complete, so a killed job
  never leaves a store that looks whole (an old ``<path>`` is replaced); the next write of ``<path>``
  removes the temporaries of processes that no longer run (:func:`remove_stale_temporaries`);
* a write that runs out of disk space (``ENOSPC``, or ``EDQUOT`` for a quota) removes its temporary and
  raises ``OSError`` with one line naming the path: ``no space left on device (disk full) while writing
  <path>`` (:func:`disk_full_error`), the original error chained;
* arrays are compressed with zstd through blosc (:func:`compressors`);
* the group attributes hold ``ids`` (ok ids in store order), ``rejected`` (``{id: reason}``),
  ``counts`` (``{"ok": n, "rejected": m}``) and stage-specific metadata.

Typical use::

    group, finalize = open_new_store("results/x/shard-00000.zarr")
    write_array(group, "patterns", data)
    group.attrs.update({"ids": ids, "rejected": rejected, "counts": counts})
    finalize()                       # rename .tmp-<pid> -> final path

or, for stores that fit in memory, ``write_store(path, {"xyz": xyz, ...}, attrs)``; read back with
``read_store(path)`` (all arrays as numpy + attrs) or ``open_store(path)`` (lazy zarr group).

Single files (Parquet tables, checkpoints) follow the same rules through :func:`atomic_file` (a context
manager yielding the temporary path) and :func:`write_bytes_atomic`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("rhosym.store")

ZSTD_LEVEL = 5


def compressors(level: int = ZSTD_LEVEL) -> list:
    """The project's compressor list: zstd through blosc with byte shuffle."""
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="zstd", clevel=level, shuffle="shuffle")]


def _tmp_path(path: Path, hidden: bool = False) -> Path:
    return path.with_name(f"{'.' if hidden else ''}{path.name}.tmp-{os.getpid()}")


# ------------------------------------------------------------------------------ stale temporaries
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove ``<path>.tmp-<pid>`` and ``.<path>.tmp-<pid>`` left by processes that no longer run
    (a killed job); returns what was removed.

    Temporaries of a live process (this one, or another writer on this machine) are left alone. The
    check is by pid on this machine: on a cluster, the leftover of a job killed on another node is
    removed unless a process with the same pid happens to run here (then it stays: wasted space, never
    a wrong output). Snakemake never runs two jobs for the same output at once.
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(r"^\.?" + re.escape(path.name) + r"\.tmp-(\d+)$")
    removed = []
    for entry in os.scandir(parent):
        m = pattern.match(entry.name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        p = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove the stale temporary %s: %s", p, exc)
            continue
        log.info("removed %s, left by a killed job (pid %s)", p, m.group(1))
        removed.append(p)
    return removed


# ------------------------------------------------------------------------------ disk full
DISK_FULL_ERRNOS = frozenset(e for e in (getattr(errno, "ENOSPC", None), getattr(errno, "EDQUOT", None)) if e)
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, the errors it was raised from, and the members of exception groups (concurrent writes)."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(getattr(e, "exceptions", None) or ())
        todo.extend((e.__cause__, e.__context__))


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk (or a quota) is full."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        if any(t in str(e).lower() for t in _DISK_FULL_TEXT):
            return True
    return False


def disk_full_error(path: str | Path, exc: BaseException) -> OSError:
    """The one-line error of a write of ``path`` that ran out of space (raise it ``from exc``)."""
    code = next((e.errno for e in _chain(exc) if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS),
                errno.ENOSPC)
    what = "disk quota exceeded" if code == getattr(errno, "EDQUOT", -1) else "no space left on device (disk full)"
    return OSError(code, f"{what} while writing {path}")


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError as exc:
        log.warning("could not remove the temporary %s: %s", p, exc)


@contextmanager
def atomic_file(path: str | Path, hidden: bool = False) -> Iterator[Path]:
    """``with atomic_file(path) as tmp: write(tmp)``: the file written to ``tmp`` (``<path>.tmp-<pid>``,
    ``.<name>.tmp-<pid>`` when ``hidden``) replaces ``path`` when the block succeeds; on an error the
    temporary is removed and ``path`` is untouched; a full disk raises :func:`disk_full_error`. Stale
    temporaries of killed processes are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_path(path, hidden)
    _remove(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, Exception) and disk_full(exc):
            raise disk_full_error(path, exc) from exc
        raise


def write_bytes_atomic(path: str | Path, data: bytes, hidden: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path, hidden) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def open_new_store(path: str | Path) -> tuple[Any, Callable[[], Path]]:
    """Create an empty zarr v3 group at ``<path>.tmp-<pid>``.

    Returns ``(group, finalize)``; ``finalize()`` renames the temporary directory to ``path`` (replacing
    an old store) and returns ``path``. If the caller never finalizes (an exception), call
    :func:`discard` or use :func:`new_store` (a context manager that cleans up on error).
    """
    import zarr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    except Exception as exc:
        _remove(tmp)
        if disk_full(exc):
            raise disk_full_error(path, exc) from exc
        raise

    def finalize() -> Path:
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.rename(tmp, path)
        log.info("wrote %s (%.1f MB)", path, store_bytes(path) / 1e6)
        return path

    return group, finalize


def discard(path: str | Path) -> None:
    """Remove the temporary directory of ``path`` left by this process, if any."""
    tmp = _tmp_path(Path(path))
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)


class new_store:  # noqa: N801 - used as a context manager
    """``with new_store(path) as group: ...``: finalized on success, temporary removed on error (a full
    disk is raised as :func:`disk_full_error`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self):
        self.group, self._finalize = open_new_store(self.path)
        return self.group

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._finalize()
            except Exception as err:
                discard(self.path)
                if disk_full(err):
                    raise disk_full_error(self.path, err) from err
                raise
            return False
        discard(self.path)
        if exc is not None and isinstance(exc, Exception) and disk_full(exc):
            raise disk_full_error(self.path, exc) from exc
        return False


def write_array(group, name: str, data: np.ndarray, chunks: tuple[int, ...] | None = None,
                attrs: dict | None = None):
    """Write ``data`` as a compressed array ``name`` of ``group``; returns the zarr array.

    ``chunks`` defaults to about 1 M elements per chunk along the first axis (whole rows).
    Empty arrays are stored with a chunk of 1 along each axis.
    """
    data = np.asarray(data)
    if chunks is None:
        chunks = default_chunks(data.shape, data.dtype.itemsize)
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                             compressors=compressors())
    if data.size:
        arr[...] = data
    if attrs:
        arr.attrs.update(jsonable(attrs))
    return arr


def default_chunks(shape: tuple[int, ...], itemsize: int = 4, target_bytes: int = 4 << 20) -> tuple[int, ...]:
    """Chunks of about ``target_bytes``: whole trailing axes, split along the first."""
    if not shape:
        return ()
    shape = tuple(max(1, int(s)) for s in shape)
    row = int(np.prod(shape[1:], dtype=np.int64)) * itemsize if len(shape) > 1 else itemsize
    first = max(1, min(shape[0], target_bytes // max(row, 1)))
    return (first,) + shape[1:]


def jsonable(obj):
    """Convert numpy scalars/arrays (nested in dicts, lists) to plain Python for zarr attributes."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_store(path: str | Path, arrays: dict[str, np.ndarray], attrs: dict) -> Path:
    """Write a whole store at once (atomically): ``arrays`` by name, group ``attrs``."""
    with new_store(path) as group:
        for name, data in arrays.items():
            write_array(group, name, data)
        group.attrs.update(jsonable(attrs))
    return Path(path)


def open_store(path: str | Path):
    """The zarr group of a finished store, read-only (lazy)."""
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no store at {path}")
    return zarr.open_group(str(path), mode="r", zarr_format=3)


def read_attrs(path: str | Path) -> dict:
    """The group attributes of a store as a plain dict."""
    return dict(open_store(path).attrs)


def read_store(path: str | Path, names: list[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """All (or the named) top-level arrays of a store as numpy arrays, and its attributes."""
    group = open_store(path)
    names = list(group.array_keys()) if names is None else names
    return {n: np.asarray(group[n][...]) for n in names}, dict(group.attrs)


def store_bytes(path: str | Path) -> int:
    """Bytes on disk of a store (all files under it)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def write_parquet(df, path: str | Path) -> None:
    """``df`` written to ``path`` atomically (a killed job leaves no ``path``), folders made."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        df.to_parquet(tmp, index=False)
