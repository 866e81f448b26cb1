"""``rhosym density INPUT --out STORE.zarr``: the dense density store of one structure or charge density.

A structure file (CIF, POSCAR, ...; the first structure when it holds several) goes through ingest's
path (rhosym.ingest.prepare: the structure checks, labels and the density cell, ``--cell``, default
conventional) and gets the all-electron IT92 density of that cell; a CHGCAR (any name
rhosym.shards.is_chgcar knows, plain or compressed) or an MP charge-density JSON (``mp-149.json.gz``)
keeps its own cell and grid (``--cell as_is``) after the same checks. Bad input: one line on stderr,
exit status 1 (rhosym.cli); nothing is left at ``--out``.
"""

from __future__ import annotations

HELP = "Dense electron density (e/A^3) of one CIF (all-electron, IT92), CHGCAR or MP charge-density JSON."


def add_arguments(parser) -> None:
    from rhosym.commands._common import add_check_options, cell_choices
    from rhosym.settings import DensitySettings

    d = DensitySettings.model_fields
    parser.add_argument("input", help="a CIF (or any structure file pymatgen reads), a CHGCAR (.gz/.bz2/.xz) "
                                      "or an MP charge-density JSON (.json, .json.gz)")
    parser.add_argument("--out", required=True, help="output store (a .zarr directory)")
    parser.add_argument("--cell", choices=cell_choices(),
                        help="density cell of a structure (default conventional, as ingest); a CHGCAR or JSON "
                             "keeps its own cell and grid (as_is)")
    parser.add_argument("--spacing", type=float,
                        help=f"grid spacing in A for structures (default {d['spacing'].default})")
    parser.add_argument("--channels", type=int, choices=[1, 4], default=d["channels"].default,
                        help="CHGCAR/JSON: 1 = total, 4 = total, magnetization, up, down "
                             f"(default {d['channels'].default})")
    parser.add_argument("--b-iso", type=float,
                        help=f"isotropic B (A^2) for sites without b_iso (default {d['b_iso'].default})")
    parser.add_argument("--id", help="structure id (default: the file name)")
    add_check_options(parser)


def run(args) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from rhosym.commands._common import (
        InputError,
        about,
        ingest_settings,
        is_charge_density,
        prepare_structure,
        read_structure,
        remove_output,
    )
    from rhosym.density import grid_shape, read_charge_density, write_density_store
    from rhosym.io.limits import use_limits
    from rhosym.logs import setup_logging
    from rhosym.settings import DensitySettings, section
    from rhosym.store import read_attrs

    log = setup_logging()
    path = Path(args.input)
    sid = args.id or path.name
    cfg = section(DensitySettings, {"channels": args.channels, "spacing": args.spacing, "b_iso": args.b_iso})
    ingest = ingest_settings(args)
    rec, source = read_structure(path, ingest)
    if is_charge_density(path):
        if args.cell not in (None, "as_is"):
            raise InputError(f"a charge density keeps its own cell and grid: --cell must be as_is, not {args.cell}",
                             source)
        prepare_structure(rec, source, "as_is", ingest)
        with about(source):  # the grids themselves (limits, NaN/Inf, truncation), before anything is written
            data = read_charge_density(path, ingest, cfg.max_voxels)
        del data
        row = {"id": sid, "kind": "mp_chgcar", "chgcar_path": str(path)}
    else:
        cell = args.cell or "conventional"
        dc, _labels = prepare_structure(rec, source, cell, ingest)
        shape = grid_shape(dc.lattice.abc, cfg.spacing)
        nvox = int(np.prod(shape))
        if nvox > cfg.max_voxels:
            raise InputError(f"{cell} cell on a {cfg.spacing} A grid {shape} has {nvox} voxels > max_voxels "
                             f"{cfg.max_voxels}", source)
        row = {"id": sid, "kind": "file", "structure": json.dumps(dc.as_dict())}  # as ingest stores it
    with use_limits(ingest):  # the store's reader of a CHGCAR/JSON
        counts = write_density_store(args.out, [row], cfg)
    if counts["ok"] == 0:
        reason = read_attrs(args.out)["rejected"].get(sid) or "rejected"
        remove_output(args.out)
        raise InputError(reason, source)
    log.info("%s -> %s", sid, args.out)
    return 0
