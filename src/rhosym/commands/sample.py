"""``rhosym sample STORE.zarr --method random|grid --out OUT.zarr``: down-sample a dense store.

The input must be a dense density store (``rhosym density`` or the density rule); its structures were
checked when it was made (a dense store holds grids, not atoms). Anything else, or a store of which no
structure could be sampled, is one line on stderr and exit status 1 (rhosym.cli); nothing is left at
``--out`` then.
"""

from __future__ import annotations

HELP = "Down-sample a dense density store to points and sparse voxels (random or voxel-grid)."


def add_arguments(parser) -> None:
    from rhosym.commands._common import add_settings_options
    from rhosym.registry import SAMPLINGS
    from rhosym.settings import SampleSettings

    parser.add_argument("store", help="dense density store (rhosym density / the density rule)")
    parser.add_argument("--method", choices=list(SAMPLINGS), default="grid")
    parser.add_argument("--out", required=True, help="output sample store (.zarr)")
    add_settings_options(parser, SampleSettings, SAMPLE_OPTIONS, "sampling (rhosym.settings.SampleSettings)")
    parser.add_argument("--seed", type=int, default=0, help="global seed (per-structure seeds derive from it)")


SAMPLE_OPTIONS = ("threshold", "voxel", "frame", "points_per_A3", "min_points", "max_points")


def check_density_store(path) -> dict:
    """The group attributes of a dense density store; :class:`InputError` naming ``path`` otherwise."""
    from pathlib import Path

    from rhosym.commands._common import InputError

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "no such store", str(p))
    if not p.is_dir():
        raise InputError("not a density store (a file, not a .zarr folder made by rhosym density)", str(p))
    from rhosym.store import open_store

    try:
        group = open_store(p)
        attrs = dict(group.attrs)
        names = set(group.array_keys())
    except Exception as exc:  # noqa: BLE001 - whatever zarr says, it is not a store
        raise InputError(f"not a density store (not a zarr store: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]})", str(p)) from exc
    if "offsets" in names and "method" in attrs:
        raise InputError("a sample store (rhosym sample), not a density store", str(p))
    arrays = attrs.get("arrays")
    if not isinstance(arrays, list) or not isinstance(attrs.get("ids"), list) or "config" not in attrs:
        raise InputError("not a density store (no ids/arrays attributes; made by rhosym density or the "
                         "density rule?)", str(p))
    missing = [a for a in arrays if a not in names]
    if missing:
        raise InputError(f"density store incomplete: arrays {', '.join(missing[:3])} missing", str(p))
    if not arrays:
        rej = attrs.get("rejected") or {}
        why = f" (rejected: {'; '.join(f'{k}: {v}' for k, v in list(rej.items())[:3])})" if rej else ""
        raise InputError(f"the density store holds no structure{why}", str(p))
    return attrs


def run(args) -> int:
    from rhosym.commands._common import InputError, remove_output
    from rhosym.logs import setup_logging
    from rhosym.sampling import write_sample_store
    from rhosym.store import read_attrs

    setup_logging()
    check_density_store(args.store)
    cfg = {k: getattr(args, k) for k in SAMPLE_OPTIONS}
    counts = write_sample_store(args.store, args.out, args.method, cfg, seed=args.seed)
    if not counts["ok"]:
        rej = read_attrs(args.out).get("rejected") or {}
        remove_output(args.out)
        why = "; ".join(f"{k}: {v}" for k, v in list(rej.items())[:3]) or "no structure sampled"
        raise InputError(f"nothing sampled ({why})", args.store)
    return 0
