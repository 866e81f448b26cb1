"""``rhosym symmetry-table``: the 230 space groups with crystal system and extinction group, as CSV."""

from __future__ import annotations

HELP = "print the space group -> crystal system / extinction group table (CSV on stdout)"


def add_arguments(parser) -> None:
    parser.add_argument("--recompute", action="store_true",
                        help="recompute the table from spglib's space-group operations instead of reading "
                             "the shipped table (src/rhosym/data/extinction_groups.csv)")
    parser.add_argument("--write", action="store_true",
                        help="with --recompute: also rewrite the shipped table")


def run(args) -> int:
    import logging
    import sys

    from rhosym import symmetry
    from rhosym.logs import setup_logging

    setup_logging(level=logging.WARNING)
    if args.write and not args.recompute:
        print("--write needs --recompute", file=sys.stderr)
        return 2
    df = symmetry.compute_extinction_table() if args.recompute else symmetry.load_extinction_table()
    if args.write:
        print(f"wrote {symmetry.write_extinction_table(df)}", file=sys.stderr)
    try:
        df.to_csv(sys.stdout, index=False, columns=list(symmetry.TABLE_COLUMNS), lineterminator="\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `rhosym symmetry-table | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
