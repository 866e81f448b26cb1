"""The one decompression helper: plain, gzip, bzip2 and xz files (recognised by their magic bytes, whatever
their name), streamed, and refused once the decompressed bytes pass a cap (``ingest.max_bytes``,
:mod:`rhosym.io.limits`).

* :func:`open_binary` — a binary stream (``read``, ``readline``, iteration, ``tell``); a plain file is
  the file itself, refused up front when its size is over the cap; a compressed one counts the bytes it
  gives and raises :class:`~rhosym.io.limits.LimitExceeded` past the cap;
* :func:`open_text` — the same as a text stream, for line-wise readers;
* :func:`read_bytes` / :func:`read_text` — the whole content (memory: at most the cap); as text, a file is
  refused at its first NUL byte (a file of zeros stops in the first MiB), and a compressed one is
  streamed through once, counting, before it is kept (a refusal costs no memory);
* :func:`decompressed_size` — stream to the end, discarding, and count (checks a compressed file whole,
  CRC included, in bounded memory).

A source is a path or the bytes of a file (a downloaded payload). A damaged compressed stream raises
``ValueError("corrupt or truncated compressed file: ...")``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import zlib

from rhosym.io.limits import LimitExceeded, current, exceeded

GZIP, BZIP2, XZ = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"
CHUNK = 1 << 20
_DAMAGED = (OSError, EOFError, lzma.LZMAError, zlib.error)


def compression(head: bytes) -> str:
    """``"gz"``, ``"bz2"``, ``"xz"`` or ``""`` (plain) from the first bytes of a file."""
    if head[:2] == GZIP:
        return "gz"
    if head[:3] == BZIP2:
        return "bz2"
    if head[:6] == XZ:
        return "xz"
    return ""


def sniff(source) -> str:
    """:func:`compression` of a path or of bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return compression(bytes(source[:6]))
    with open(source, "rb") as fh:
        return compression(fh.read(6))


def _cap(max_bytes: int | None) -> int:
    return int(current().max_bytes if max_bytes is None else max_bytes)


def damaged(exc: BaseException) -> ValueError:
    """The one-line error of a damaged compressed stream."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return ValueError(f"corrupt or truncated compressed file: {msg[:200]}")


class _Capped(io.RawIOBase):
    """A decompressing stream that counts what it gives and refuses past ``cap`` bytes."""

    def __init__(self, raw, cap: int):
        super().__init__()
        self._raw = raw
        self._cap = cap
        self._count = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._count

    def readinto(self, b) -> int:
        try:
            n = self._raw.readinto(b)
        except LimitExceeded:
            raise
        except _DAMAGED as exc:
            raise damaged(exc) from exc
        self._count += n
        if self._count > self._cap:
            raise exceeded(f"decompresses to more than {self._cap} bytes", "max_bytes", self._cap)
        return n

    def readall(self) -> bytes:
        chunks = []
        while True:
            chunk = self.read(CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def open_binary(source, max_bytes: int | None = None):
    """A binary stream of the decompressed content of ``source`` (a path or bytes), capped at
    ``max_bytes`` (default: the limit in force, ``ingest.max_bytes``)."""
    cap = _cap(max_bytes)
    if isinstance(source, (bytes, bytearray, memoryview)):
        kind = compression(bytes(source[:6]))
        fh = io.BytesIO(source)
        if not kind:
            if len(source) > cap:
                raise exceeded(f"{len(source)} bytes", "max_bytes", cap)
            return fh
    else:
        fh = open(source, "rb")
        kind = compression(fh.read(6))
        fh.seek(0)
        if not kind:
            size = os.fstat(fh.fileno()).st_size
            if size > cap:
                fh.close()
                raise exceeded(f"{size} bytes", "max_bytes", cap)
            return fh
    opener = {"gz": gzip.GzipFile, "bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[kind]
    try:
        raw = opener(fileobj=fh) if kind == "gz" else opener(fh)
    except _DAMAGED as exc:
        fh.close()
        raise damaged(exc) from exc
    return io.BufferedReader(_Capped(_Owning(raw, fh), cap), buffer_size=CHUNK)


class _Owning:
    """A decompressor that closes the file under it too."""

    def __init__(self, raw, fh):
        self._raw, self._fh = raw, fh

    def readinto(self, b) -> int:
        return self._raw.readinto(b)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            self._fh.close()


def open_text(source, max_bytes: int | None = None, encoding: str = "utf-8", errors: str = "strict"):
    """:func:`open_binary` as text (universal newlines), for line-wise readers."""
    return io.TextIOWrapper(open_binary(source, max_bytes), encoding=encoding, errors=errors)


def _chunks(fh, text: bool):
    """The chunks of a stream; with ``text``, a NUL byte ends it with ``ValueError("not a text file ...")``."""
    n = 0
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            return
        nul = chunk.find(b"\0") if text else -1
        if nul >= 0:
            raise ValueError(f"not a text file (a NUL byte at byte {n + nul})")
        n += len(chunk)
        yield chunk


def read_bytes(source, max_bytes: int | None = None, text: bool = False) -> bytes:
    """The whole decompressed content of ``source`` (refused past ``max_bytes``). With ``text``, a NUL byte
    (never in a text format) ends the reading at once (``ValueError("not a text file ...")``), and a
    compressed file is streamed through once before it is read, so that one refused costs no memory."""
    if text and sniff(source):
        with open_binary(source, max_bytes) as fh:
            for _ in _chunks(fh, text):
                pass
    with open_binary(source, max_bytes) as fh:
        return fh.read() if not text else b"".join(_chunks(fh, text))


def read_text(source, max_bytes: int | None = None, encoding: str = "utf-8") -> str:
    """The whole decompressed content of ``source`` as text (UTF-8; a decode error or a NUL byte raises)."""
    return read_bytes(source, max_bytes, text=True).decode(encoding)


def decompressed_size(source, max_bytes: int | None = None) -> int:
    """The decompressed size of ``source``, streamed to the end (bounded memory; a damaged stream raises,
    one past ``max_bytes`` is refused)."""
    with open_binary(source, max_bytes) as fh:
        if not isinstance(getattr(fh, "raw", None), _Capped):  # plain: its size, already checked
            return len(fh.getbuffer()) if isinstance(fh, io.BytesIO) else os.fstat(fh.fileno()).st_size
        n = 0
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return n
            n += len(chunk)
