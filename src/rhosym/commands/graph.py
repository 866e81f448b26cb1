"""``rhosym graph FILE --kind cgcnn|cogn``: the crystal graph of one structure (CIF or POSCAR).

The structure passes ingest's checks first (rhosym.ingest.prepare on the input cell: minimum distance,
occupancy, volume and site limits, labels); the graph is then built on ``--cell`` (primitive or the
input cell). Bad input: one line on stderr, exit status 1 (rhosym.cli).
"""

from __future__ import annotations

HELP = "Build the CGCNN or coGN crystal graph of one structure file (.npz or .json)."


def add_arguments(parser) -> None:
    from rhosym.commands._common import add_check_options, add_settings_options
    from rhosym.registry import GRAPH_KINDS
    from rhosym.settings import GraphSettings

    parser.add_argument("file", help="structure file pymatgen reads (CIF, POSCAR, CHGCAR, ...)")
    parser.add_argument("--kind", choices=list(GRAPH_KINDS), default=GRAPH_KINDS[0])
    parser.add_argument("--out", required=True, help="output: .npz (arrays) or .json")
    add_settings_options(parser, GraphSettings, GRAPH_OPTIONS, "graph (rhosym.settings.GraphSettings)")
    add_check_options(parser)


GRAPH_OPTIONS = ("disorder", "cell", "cutoff")


def run(args) -> int:
    import json

    import numpy as np

    from rhosym.commands._common import InputError, about, ingest_settings, prepare_structure, read_structure
    from rhosym.graphs import DisorderError, build_graph, store_attrs
    from rhosym.logs import setup_logging

    log = setup_logging()
    cfg = {k: getattr(args, k) for k in GRAPH_OPTIONS}  # None: the setting's default (rhosym.graphs)
    ingest = ingest_settings(args)
    rec, source = read_structure(args.file, ingest)
    structure, _labels = prepare_structure(rec, source, "as_is", ingest)  # ingest's checks, input cell
    try:
        with about(source):
            g = build_graph(structure, args.kind, cfg)
    except DisorderError as exc:
        raise InputError(f"{exc}; use --disorder average", source) from exc
    arrays = {k: v for k, v in g.items() if isinstance(v, np.ndarray)}
    if str(args.out).endswith(".json"):
        doc = {k: v.tolist() for k, v in arrays.items()}
        doc["attrs"] = store_attrs(args.kind, cfg)
        with open(args.out, "w") as fh:
            json.dump(doc, fh)
    else:
        np.savez_compressed(args.out, **arrays)
    log.info("%s: %s graph, %d nodes, %d edges (cell of %d sites) -> %s", source, args.kind,
             len(g["z"]), len(g["edge_dist"]), g["n_sites"], args.out)
    return 0
