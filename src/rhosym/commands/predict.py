"""``rhosym predict INPUT... --model CHECKPOINT``: apply a trained checkpoint to new structures.

Prints one JSON object per structure (one line each), or writes a CSV table with ``--out``. Every
structure goes through ingest's checks (rhosym.ingest.prepare) with the checkpoint's ingest settings, or
those given with ``--min-distance``, ``--max-volume``, ``--max-sites`` (and the input limits
``--max-input-sites``, ``--max-bytes``, ``--max-grid-points``); a bad input is its own
``{"source", "error"}`` line and the others go on. Exit status: 0 when at least one structure was
predicted (or there was none), 1 when every structure failed, 2 when the checkpoint cannot be used
(missing, unreadable, unsafe: one line ``rhosym predict: CHECKPOINT: reason`` on stderr) or cannot be
applied as asked (a setting differs from the checkpoint's: ``... CHECKPOINT: refused: ...``).
"""

from __future__ import annotations

HELP = "Predict symmetry / properties of structures (CIF, POSCAR, CHGCAR, CDVAE CSV) with a trained checkpoint."


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="CIF (every data block), POSCAR, CHGCAR (plain/.gz/.bz2/.xz) or CDVAE-style CSV")
    parser.add_argument("--model", required=True, metavar="CHECKPOINT",
                        help="checkpoint.pt of a trained model, or 'classical': the classical finder of "
                             "symmetry operations in the density (no training, no checkpoint)")
    parser.add_argument("--top-k", type=int, default=3, help="classification: labels reported (default 3)")
    parser.add_argument("--out", metavar="FILE.csv", help="write a CSV table (one row per structure) instead "
                        "of printing JSON lines")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--id-column", help="CSV: id column (default material_id)")
    parser.add_argument("--cif-column", help="CSV: CIF column (default cif)")
    parser.add_argument("--method", choices=["random", "grid"],
                        help="density models: sampling method expected (refused if the checkpoint's differs)")
    parser.add_argument("--voxel", type=float,
                        help="density models: voxel (A) expected (refused if the checkpoint's differs)")
    parser.add_argument("--batch-size", type=int, default=16, help="structures per forward pass")
    from rhosym.commands._common import add_check_options

    add_check_options(parser, occupancy=False, defaults="the checkpoint's")


def run(args) -> int:
    import json
    import os
    import sys
    from pathlib import Path

    from rhosym.checkpoint import CheckpointError
    from rhosym.commands._common import InputError, check_overrides, ingest_settings
    from rhosym.io.limits import use_limits
    from rhosym.logs import setup_logging
    from rhosym.predict import PredictRefused, open_checkpoint, predict_units, read_inputs, results_table

    log = setup_logging()
    try:
        model, meta, settings = open_checkpoint(args.model, args.device, args.method, args.voxel)
    except PredictRefused as exc:
        raise InputError(f"refused: {exc}", args.model, status=2) from exc
    except CheckpointError as exc:
        msg = str(exc)
        for prefix in (f"{args.model}: ", f"{Path(args.model)}: "):  # the line names the file once
            msg = msg[len(prefix):] if msg.startswith(prefix) else msg
        raise InputError(msg, args.model, status=2) from exc
    except Exception as exc:  # noqa: BLE001 - no CUDA, an unknown model, a state dict that does not fit
        raise InputError(f"cannot use the checkpoint: {type(exc).__name__}: {exc}", args.model, status=2) from exc
    if check_overrides(args):
        settings.ingest = ingest_settings(args, settings.ingest)
        log.info("structure checks: %s", settings.ingest.model_dump())
    units = read_inputs(args.inputs, args.id_column, args.cif_column)
    n_ok = n_err = 0
    rows = []
    with use_limits(settings.ingest):  # the input limits (rhosym.io.limits) reach every reader below
        for r in predict_units(units, model, meta, settings, args.top_k, args.batch_size):
            if "error" in r:
                n_err += 1
            else:
                n_ok += 1
            if args.out:
                rows.append(r)
            else:
                sys.stdout.write(json.dumps(r) + "\n")
                sys.stdout.flush()
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        results_table(rows).to_csv(tmp, index=False)
        os.replace(tmp, out)
        log.info("wrote %s", out)
    log.info("%d structures predicted, %d failed", n_ok, n_err)
    return 1 if n_err and not n_ok else 0
