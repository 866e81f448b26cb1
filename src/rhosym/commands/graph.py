"""``rhosym graph FILE --kind cgcnn|cogn``: the crystal graph of one structure (CIF or POSCAR)."""

from __future__ import annotations

HELP = "Build the CGCNN or coGN crystal graph of one structure file (.npz or .json)."


def add_arguments(parser) -> None:
    parser.add_argument("file", help="structure file pymatgen reads (CIF, POSCAR, ...)")
    parser.add_argument("--kind", choices=["cgcnn", "cogn"], default="cgcnn")
    parser.add_argument("--out", required=True, help="output: .npz (arrays) or .json")
    parser.add_argument("--disorder", choices=["reject", "average"], default="reject",
                        help="partially occupied / mixed sites: refuse, or occupancy-weighted features")
    parser.add_argument("--cell", choices=["primitive", "input"], default="primitive")
    parser.add_argument("--cutoff", type=float, default=8.0, help="neighbour cutoff (A)")


def run(args) -> int:
    import json

    import numpy as np
    from pymatgen.core import Structure

    from rhosym.graphs import DisorderError, build_graph, store_attrs
    from rhosym.logs import setup_logging

    log = setup_logging()
    cfg = {"disorder": args.disorder, "cell": args.cell, "cutoff": args.cutoff}
    structure = Structure.from_file(args.file)
    try:
        g = build_graph(structure, args.kind, cfg)
    except DisorderError as exc:
        log.error("%s: %s; use --disorder average", args.file, exc)
        return 1
    arrays = {k: v for k, v in g.items() if isinstance(v, np.ndarray)}
    if str(args.out).endswith(".json"):
        doc = {k: v.tolist() for k, v in arrays.items()}
        doc["attrs"] = store_attrs(args.kind, cfg)
        with open(args.out, "w") as fh:
            json.dump(doc, fh)
    else:
        np.savez_compressed(args.out, **arrays)
    log.info("%s: %s graph, %d nodes, %d edges (cell of %d sites) -> %s", args.file, args.kind,
             len(g["z"]), len(g["edge_dist"]), g["n_sites"], args.out)
    return 0
