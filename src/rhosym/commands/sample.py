"""``rhosym sample STORE.zarr --method random|grid --out OUT.zarr``: down-sample a dense store."""

from __future__ import annotations

HELP = "Down-sample a dense density store to points and sparse voxels (random or voxel-grid)."


def add_arguments(parser) -> None:
    parser.add_argument("store", help="dense density store (rhosym density / the density rule)")
    parser.add_argument("--method", choices=["random", "grid"], default="grid")
    parser.add_argument("--out", required=True, help="output sample store (.zarr)")
    parser.add_argument("--threshold", type=float, help="keep points with total density above (e/A^3)")
    parser.add_argument("--voxel", type=float, help="voxel size in A")
    parser.add_argument("--frame", type=float, help="virtual frame edge in A")
    parser.add_argument("--points-per-A3", type=float, dest="points_per_A3")
    parser.add_argument("--min-points", type=int)
    parser.add_argument("--max-points", type=int)
    parser.add_argument("--seed", type=int, default=0, help="global seed (per-structure seeds derive from it)")


def run(args) -> int:
    from rhosym.logs import setup_logging
    from rhosym.sampling import write_sample_store

    setup_logging()
    cfg = {k: getattr(args, k) for k in ("threshold", "voxel", "frame", "points_per_A3", "min_points",
                                          "max_points")}
    counts = write_sample_store(args.store, args.out, args.method, cfg, seed=args.seed)
    return 0 if counts["ok"] else 1
