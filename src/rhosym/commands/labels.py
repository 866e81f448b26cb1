"""``rhosym labels FILE...``: symmetry labels of every structure in CIF, POSCAR, CHGCAR and CSV files."""

from __future__ import annotations

HELP = "Print symmetry labels (JSON lines) for every structure in CIF/POSCAR/CHGCAR/CSV files."


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="CIF (every data block), POSCAR, CHGCAR (header only) or CDVAE CSV (every row)")
    parser.add_argument("--symprec", type=float, default=0.1, help="spglib distance tolerance (Å, default 0.1)")
    parser.add_argument("--angle-tolerance", type=float, default=5.0,
                        help="spglib angle tolerance (degrees, default 5)")
    parser.add_argument("--occupancy-tolerance", type=float, default=1.05,
                        help="largest total site occupancy accepted in CIFs (default 1.05)")


def label_lines(files, symprec: float = 0.1, angle_tolerance: float = 5.0, occupancy_tolerance: float = 1.05):
    """One dict per structure: ``source`` plus the labels, or ``source`` and ``error``."""
    from rhosym.structures import one_line, read_any
    from rhosym.symmetry import label_structure

    for f in files:
        try:
            records = list(read_any(f, occupancy_tolerance=occupancy_tolerance))
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

    n_err = 0
    for line in label_lines(args.files, args.symprec, args.angle_tolerance, args.occupancy_tolerance):
        n_err += "error" in line
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
    return 0
