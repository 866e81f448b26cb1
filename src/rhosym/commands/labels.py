"""``rhosym labels FILE...``: symmetry labels of every structure in CIF, POSCAR, CHGCAR and CSV files.

One JSON line per structure on stdout; a file or structure that cannot be read or labelled gives its own
``{"source", "error"}`` line and the others go on. The input limits (rhosym.io.limits: ``--max-input-sites``,
``--max-bytes``, ``--max-grid-points``, the ingest defaults) are checked before a file is parsed. Exit status 0 when at least one structure was
labelled (or there was none), 1 when every input failed.
"""

from __future__ import annotations

HELP = "Print symmetry labels (JSON lines) for every structure in CIF/POSCAR/CHGCAR/CSV files."


def add_arguments(parser) -> None:
    from rhosym.settings import IngestSettings, LabelsSettings

    symprec = LabelsSettings.model_fields["symprec"].default
    angle = LabelsSettings.model_fields["angle_tolerance"].default
    occ = IngestSettings.model_fields["occupancy_tolerance"].default
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="CIF (every data block), POSCAR, CHGCAR (header only) or CDVAE CSV (every row)")
    parser.add_argument("--symprec", type=float, default=symprec,
                        help=f"spglib distance tolerance (Å, default {symprec})")
    parser.add_argument("--angle-tolerance", type=float, default=angle,
                        help=f"spglib angle tolerance (degrees, default {angle})")
    parser.add_argument("--occupancy-tolerance", type=float, default=occ,
                        help=f"largest total site occupancy accepted in CIFs (default {occ})")
    from rhosym.commands._common import add_limit_options

    add_limit_options(parser)


def label_lines(files, symprec: float = 0.1, angle_tolerance: float = 5.0, occupancy_tolerance: float = 1.05,
                limits=None):
    """One dict per structure: ``source`` plus the labels, or ``source`` and ``error``; files are read within
    ``limits`` (rhosym.io.limits; default: those in force)."""
    import os

    from rhosym.io.limits import limits_of
    from rhosym.io.structures import one_line, read_any
    from rhosym.symmetry import label_structure

    limits = limits_of(limits)

    for f in files:
        if not os.path.exists(f):
            yield {"source": str(f), "error": "no such file"}
            continue
        if os.path.isdir(f):
            yield {"source": str(f), "error": "is a directory, not a file"}
            continue
        try:
            records = list(read_any(f, occupancy_tolerance=occupancy_tolerance, limits=limits))
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the command
            yield {"source": str(f), "error": one_line(f"{type(exc).__name__}: {exc}")}
            continue
        for rec in records:
            source = f"{rec.source}#{rec.block}" if rec.block else rec.source
            out = {"source": source}
            if "id" in rec.extra:
                out["id"] = rec.extra["id"]
            if not rec.ok:
                out["error"] = one_line(rec.error)
                yield out
                continue
            try:
                lab = label_structure(rec.structure, symprec=symprec, angle_tolerance=angle_tolerance)
            except ValueError as exc:
                out["error"] = one_line(f"no symmetry found: {exc}")
                yield out
                continue
            out.update(formula=rec.structure.composition.reduced_formula, **lab)
            yield out


def run(args) -> int:
    import json
    import sys

    from rhosym.commands._common import LIMIT_KEYS
    from rhosym.io.limits import limits_of

    limits = limits_of({k: getattr(args, k, None) for k in LIMIT_KEYS})
    n_ok = n_err = 0
    for line in label_lines(args.files, args.symprec, args.angle_tolerance, args.occupancy_tolerance, limits):
        if "error" in line:
            n_err += 1
        else:
            n_ok += 1
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    return 1 if n_err and not n_ok else 0
