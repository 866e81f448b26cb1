"""Logging shared by every stage: to stderr and, in a Snakemake job, to the rule's log file."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

FMT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, when given, to ``log_file`` (appending). Returns the ``rhosym`` logger."""
    root = logging.getLogger("rhosym")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    for h in handlers:
        h.setFormatter(logging.Formatter(FMT))
        root.addHandler(h)
    root.propagate = False
    return root


class _TqdmToLogger:
    """A file-like object tqdm writes to, so progress lines land in the rule's log."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        self._buf = ""

    def write(self, s: str) -> None:
        s = s.strip("\r\n ")
        if s:
            self.logger.info(s)

    def flush(self) -> None:
        pass


def progress(iterable: Iterable, desc: str, total: int | None = None, logger: logging.Logger | None = None):
    """tqdm progress over ``iterable`` that also writes to the rhosym log (about 20 updates in all)."""
    logger = logger or logging.getLogger("rhosym")
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    miniters = max(1, (total or 20) // 20)
    return tqdm(iterable, desc=desc, total=total, file=_TqdmToLogger(logger), miniters=miniters,
                mininterval=5.0, ascii=True)


@contextmanager
def job_logging(log_file: str | None):
    """Context manager for ``workflow/scripts``: log to the job's log file (``snakemake.log[0]``)."""
    logger = setup_logging(log_file)
    try:
        yield logger
    except Exception as exc:
        line = disk_full_message(exc)
        if line:
            # a full disk is not a bug: one line that says so and names the path, no traceback
            logger.error("stage failed: %s", line)
        else:
            logger.exception("stage failed")
        raise


def disk_full_message(exc: BaseException) -> str | None:
    """One line for an error that says the disk (or a quota) is full, else None. Errors raised by
    ``rhosym.store`` (stores, Parquet, checkpoints) already name the path being written."""
    from rhosym.store import disk_full

    if not disk_full(exc):
        return None
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if "while writing" not in text and isinstance(exc, OSError) and exc.filename:
        text = f"{text} while writing {exc.filename}"
    if "no space" not in text.lower() and "quota" not in text.lower():
        text = f"no space left on device (disk full): {text}"
    return " ".join(text.split())
