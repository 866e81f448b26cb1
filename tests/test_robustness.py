"""Robustness evaluation: perturbed test inputs rebuilt exactly as the training inputs were; at strength
'none' every model answers as on its stored test inputs; the table and its intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym import robustness as RB

ROOT = Path(__file__).resolve().parents[1]
CIF = ROOT / "tests" / "fixtures" / "cif_tiny"
CSV = ROOT / "tests" / "fixtures" / "csv_tiny.csv"
DENSITY = {"spacing": 0.15}
SAMPLE = {"voxel": 0.5, "threshold": 0.01, "min_points": 300, "max_points": 1500}
LEVELS = {"noise": [float("inf"), 5.0], "blur": [0.0, 1.5], "wedge": [0.0, 30.0], "thermal": [0.0, 2.0],
          "xrd_noise": [0.0, 0.02], "xrd_broaden": [1.0, 2.0], "xrd_shift": [0.0, 0.1],
          "lattice_noise": [0.0, 0.05]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import torch

    from rhosym import train as T
    from rhosym.density import read_ingest, write_density_store
    from rhosym.ingest import ingest_shard
    from rhosym.sampling import write_sample_store
    from rhosym.shards import list_units
    from rhosym.xrd import run_xrd_shard

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("robust")
    frames, ingests = [], []
    for name, ds in (("cif", {"kind": "cif_dir", "path": str(CIF)}), ("csv", {"kind": "cdvae_csv", "path": str(CSV)})):
        p = root / name / "ingest.parquet"
        p.parent.mkdir(parents=True)
        frames.append(ingest_shard(name, ds, 0, list_units(ds), None, None, p))
        ingests.append(str(p))
        write_density_store(root / name / "d.zarr", read_ingest(p), DENSITY)
        write_sample_store(root / name / "d.zarr", root / name / "grid.zarr", "grid", SAMPLE, seed=0)
        run_xrd_shard(p, root / name / "xrd.zarr")
    man = pd.concat(frames, ignore_index=True)
    man = man[man["status"] == "ok"].drop(columns=["structure"])
    ids = man["id"].tolist()
    split = pd.DataFrame({"id": ids, "split": ["test" if i % 3 == 0 else "val" if i % 3 == 1 else "train"
                                              for i in range(len(ids))]})
    common = pd.DataFrame([{"split": "none", "task": t, "id": i} for t in ("crystal_system", "extinction_group",
                                                                             "space_group")
                           for i in split.loc[split["split"] == "test", "id"]])
    stores = {"grid": [str(root / n / "grid.zarr") for n in ("cif", "csv")],
              "xrd": [str(root / n / "xrd.zarr") for n in ("cif", "csv")], "lattice": ingests}
    prov = {"kind": "cif_dir", "cell": "conventional", "labels": {}, "ingest": {}}
    ckpt = {}
    for model, inp, arch in (("sparse_cnn", "grid", {"channels": [8, 8, 16, 16, 16], "head": [16]}),
                             ("xrd_fcn", "xrd", {"channels": [4] * 10 + [8] * 3}),
                             ("lattice", "lattice", {"hidden": [16]})):
        out = root / "models" / model
        T.train(T.TrainJob(model=model, task="symmetry", input=inp, stores=stores[inp], manifest=man, split=split,
                           out_dir=out, cfg={"epochs": 2, "model": arch}, device="cpu", split_rule="none",
                           provenance=prov))
        ckpt[model] = str(out / "checkpoint.pt")
    return {"man": man, "split": split, "common": common, "ingest": ingests, "stores": stores, "ckpt": ckpt}


@pytest.mark.parametrize("model,inp,perts", [
    ("sparse_cnn", "grid", ["noise", "blur", "wedge", "thermal"]),
    ("xrd_fcn", "xrd", ["thermal", "xrd_noise", "xrd_broaden", "xrd_shift"]),
    ("lattice", "lattice", ["lattice_noise"])])
def test_no_perturbation_reproduces_the_stored_test_inputs(setup, model, inp, perts):
    from rhosym.infer import predict_split

    df = RB.evaluate_perturbed(setup["ckpt"][model], setup["man"], setup["split"], setup["ingest"], setup["common"],
                               list(LEVELS), LEVELS, max_structures=100, device="cpu",
                               identity={"split": "none", "dataset": "t", "group": "g"})
    n_ids = setup["common"]["id"].nunique()
    assert set(df["perturbation"]) == set(perts)  # only what applies to the input kind
    assert len(df) == n_ids * 3 * sum(len(LEVELS[p]) for p in perts)
    ref = predict_split(setup["ckpt"][model], setup["stores"][inp], setup["man"], setup["split"], device="cpu")
    ref_ok = {(r.task, r.id): r.y_true == r.y_pred for r in ref.itertuples()}
    clean = df[df["order"] == 0]
    for r in clean.itertuples():
        assert r.correct == ref_ok[(r.task, r.id)], (r.perturbation, r.task, r.id)
    t = RB.robustness_table([df], bootstrap=50)
    assert set(t["n"]) == {n_ids} and t["top1"].between(0, 1).all()
    assert (t["top1_lo"] <= t["top1"] + 1e-9).all() and (t["top1"] <= t["top1_hi"] + 1e-9).all()
    s = RB.summary(t, {p: LEVELS[p][1] for p in perts})
    assert set(s["perturbation"]) == set(perts) and s["at_moderate"].notna().all()


def test_perturbed_inputs_differ_and_stay_valid(setup):
    """At a moderate strength the sampled values change, the points keep the frame, ∫ρ of the perturbed
    grid is kept by blur and wedge."""
    from rhosym.infer import load_checkpoint
    from rhosym.predict import resolve_settings

    _, meta = load_checkpoint(setup["ckpt"]["sparse_cnn"], "cpu")
    s = resolve_settings(meta)
    from rhosym.ingest import read_ingest

    row = read_ingest(setup["ingest"][0])[0]
    got = {(n, lv): smp for n, lv, smp in s.source_kind.perturbed(row, s, ["noise", "blur", "wedge"], LEVELS, 0)}
    clean = got[("noise", float("inf"))]
    for key in (("noise", 5.0), ("blur", 1.5), ("wedge", 30.0)):
        smp = got[key]
        assert smp["voxels"].min() >= 0 and (smp["voxels"] < smp["spatial_shape"]).all()
        if len(smp["features"]) == len(clean["features"]):
            assert not np.allclose(smp["features"], clean["features"]), key
