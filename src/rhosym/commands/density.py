"""``rhosym density INPUT --out STORE.zarr``: the dense density store of one CIF or CHGCAR."""

from __future__ import annotations

HELP = "Dense electron density (e/A^3) of one CIF (all-electron, IT92) or CHGCAR into a zarr store."


def add_arguments(parser) -> None:
    parser.add_argument("input", help="a CIF (or any structure file pymatgen reads) or a CHGCAR (.gz/.bz2/.xz)")
    parser.add_argument("--out", required=True, help="output store (a .zarr directory)")
    parser.add_argument("--spacing", type=float, help="grid spacing in A for structures (default 0.15)")
    parser.add_argument("--channels", type=int, choices=[1, 4], default=4,
                        help="CHGCAR: 1 = total, 4 = total, magnetization, up, down (default 4)")
    parser.add_argument("--b-iso", type=float, help="isotropic B (A^2) for sites without b_iso (default 0.5)")
    parser.add_argument("--id", help="structure id (default: the file name)")


def _is_chgcar(name: str) -> bool:
    import re

    base = re.sub(r"\.(gz|bz2|xz)$", "", name)
    return "CHGCAR" in base.upper() or base.lower().endswith(".chgcar")


def run(args) -> int:
    import json
    from pathlib import Path

    from rhosym.density import write_density_store
    from rhosym.logs import setup_logging
    from rhosym.store import read_attrs

    log = setup_logging()
    path = Path(args.input)
    sid = args.id or path.name
    cfg = {"channels": args.channels, "spacing": args.spacing, "b_iso": args.b_iso}
    if _is_chgcar(path.name):
        row = {"id": sid, "kind": "mp_chgcar", "chgcar_path": str(path)}
    else:
        from pymatgen.core import Structure
        from pymatgen.io.cif import CifParser

        if path.suffix.lower() == ".cif":
            s = CifParser(str(path)).parse_structures(primitive=False)[0]
        else:
            s = Structure.from_file(str(path))
        row = {"id": sid, "kind": "file", "structure": json.dumps(s.as_dict())}
    counts = write_density_store(args.out, [row], cfg)
    attrs = read_attrs(args.out)
    if counts["ok"] == 0:
        log.error("%s rejected: %s", sid, attrs["rejected"].get(sid))
        return 1
    log.info("%s -> %s", sid, args.out)
    return 0
