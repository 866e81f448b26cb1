"""The MP-20 subset of the GPU check (tests/gpu/check.py ``mp20_train``), made HERE (it needs pymatgen
and zarr, which the GPU machine lacks) and carried as one .npz in ``.gpu/``.

    .venv/bin/python tests/gpu/prepare.py [--rows 600] [--out .gpu/mp20-grid.npz]

The first ``--rows`` rows of ``../shared/data/mp20_public/mp20_public.csv`` go through the package stages
as config.mp20.yaml runs them: ingest (conventional cell) → manifest → split (70/15/15 grouped by
formula, seed 42) → grid samples of the direct density (voxel 0.8 Å, threshold 0.05, 4 points/Å³, 500
to 2,000 points). The sample store's arrays (``offsets``, ``xyz``, ``features``, ``voxels`` as uint8),
``cells``, ``spatial_shape``, ``voxel``, ``frame`` and, per stored row, ``ids``, ``crystal_system`` and
``split`` are written compressed (about 6 KB per structure).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MP20 = ROOT.parent / "shared" / "data" / "mp20_public" / "mp20_public.csv"
SAMPLE = {"voxel": 0.8, "threshold": 0.05, "points_per_A3": 4.0, "min_points": 500, "max_points": 2000}


def prepare(rows: int, out: Path, csv: Path = MP20) -> dict:
    from rhosym import ingest, sampling, splits
    from rhosym.shards import list_units
    from rhosym.store import read_store

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="rhosym-gpu-prepare-") as tmp:
        work = Path(tmp)
        ds = {"kind": "cdvae_csv", "path": str(csv)}
        shard = work / "ingest.parquet"
        ingest.ingest_shard("mp20", ds, 0, list_units(ds)[:rows], None, None, shard)
        man = ingest.build_manifest([shard], work / "manifest.parquet")
        split = splits.make_split(man, (0.7, 0.15, 0.15), seed=42, group_by="formula")
        store = work / "grid.zarr"
        counts = sampling.write_sample_store(shard, store, "grid", SAMPLE, seed=0, direct=True, density={})
        arrays, attrs = read_store(store)
    ids = [str(i) for i in attrs["ids"]]
    cs = man.set_index("id")["crystal_system"].astype(str)
    sp = split.set_index("id")["split"].astype(str)
    vox = arrays["voxels"]
    if vox.size and vox.max() > 255:
        raise ValueError(f"voxel indices up to {vox.max()} do not fit uint8")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, offsets=arrays["offsets"].astype(np.int64), xyz=arrays["xyz"].astype(np.float32),
                        features=arrays["features"].astype(np.float32), voxels=vox.astype(np.uint8),
                        ids=np.array(ids), crystal_system=np.array([cs.get(i, "") for i in ids]),
                        split=np.array([sp.get(i, "") for i in ids]),
                        cells=np.asarray(attrs["cells"], dtype=np.float64).reshape(-1, 3, 3),
                        spatial_shape=np.asarray(attrs["spatial_shape"], dtype=np.int64),
                        voxel=np.array(float(attrs["voxel"])), frame=np.array(float(attrs["frame"])),
                        source=np.array(f"{csv.name}: first {rows} rows, grid samples {SAMPLE}"))
    return {"rows": rows, "stored": len(ids), "counts": counts, "points": int(arrays["offsets"][-1]),
            "bytes": out.stat().st_size, "seconds": round(time.time() - t0, 1),
            "splits": sp.reindex(ids).value_counts().to_dict()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=600)
    p.add_argument("--out", default=str(ROOT / ".gpu" / "mp20-grid.npz"))
    p.add_argument("--csv", default=str(MP20))
    args = p.parse_args(argv)
    if not Path(args.csv).is_file():
        print(f"prepare: {args.csv} not found (../shared/data is needed to make the MP-20 subset)", file=sys.stderr)
        return 1
    info = prepare(args.rows, Path(args.out), Path(args.csv))
    print(f"prepare: wrote {args.out}: {info['stored']} structures, {info['points']} points, "
          f"{info['bytes'] / 2**20:.2f} MiB, splits {info['splits']}, in {info['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
