"""``rhosym convert-checkpoint OLD NEW``: rewrite a rhosym 0.1 (format 1) checkpoint in format 2.

A format-1 checkpoint is a full Python pickle: reading it UNPICKLES the file, which can run any code
the file holds. Convert only files you trust (that you trained yourself, or got from someone you
trust). The new file loads with ``torch.load(weights_only=True)`` (rhosym.checkpoint).
"""

from __future__ import annotations

HELP = ("Convert a rhosym 0.1 (format-1) checkpoint to format 2; this UNPICKLES OLD, so only for files "
        "you trust.")


def add_arguments(parser) -> None:
    parser.add_argument("old", metavar="OLD", help="format-1 checkpoint (a pickle: it is unpickled, trusted files "
                                                   "only)")
    parser.add_argument("new", metavar="NEW", help="format-2 checkpoint to write")


def run(args) -> int:
    from rhosym.checkpoint import CheckpointError, convert_v1
    from rhosym.commands._common import about, require_file
    from rhosym.logs import setup_logging

    log = setup_logging()
    require_file(args.old)
    with about(args.old):
        try:
            meta = convert_v1(args.old, args.new)
        except (CheckpointError, OSError):
            raise
        except Exception as exc:  # noqa: BLE001 - not a pickle, a pickle of something else: bad input
            raise CheckpointError(f"not a readable format-1 checkpoint ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:200]})") from exc
    log.info("%s -> %s: %s/%s on %s (format 2)", args.old, args.new, meta.model, meta.task, meta.input)
    return 0
