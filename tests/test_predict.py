"""``rhosym predict``: tiny checkpoints trained (1 epoch) on stores built from the committed fixtures by the
package's own stage functions; predictions on a CIF, a CHGCAR and the CDVAE CSV; exact reproduction of the
training inputs; error lines, the CSV table and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from rhosym import cli, inputs
from rhosym import predict as P

pytest.importorskip("rhosym.models")

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
CIF = FIX / "cif_tiny"
CHGCAR = FIX / "mp_tiny" / "mp-90001_CHGCAR.gz"
CSV = FIX / "csv_tiny.csv"
TINY = {
    "sparse_cnn": {"channels": [8, 8, 16, 16, 16], "head": [16]},
    "pointnet": {"channels": [8, 16, 32], "groups": 4, "head": [16]},
    "xrd_fcn": {"channels": [4] * 10 + [8] * 3},
    "cgcnn": {"atom_fea_len": 8, "h_fea_len": 16, "n_conv": 1},
    "lattice": {"hidden": [16]},
}
DENSITY = {"spacing": 0.15}  # the demo's settings (the defaults are the paper's 0.06 A, 0.25 A voxels)
SAMPLE = {"voxel": 0.5, "threshold": 0.01, "min_points": 500, "max_points": 2000}
PROV = {"kind": "cif_dir", "cell": "conventional", "labels": {}, "ingest": {}}


def _split(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "split": ["val" if i % 4 == 0 else "train" for i in range(len(ids))]})


def _train(model, task, input_name, features, stores, manifest, split, out, provenance=PROV):
    from rhosym import train as T

    cfg = {"epochs": 1, "batch_budget": 100_000, "max_batch_size": 8, "model": TINY[model]}
    T.train(T.TrainJob(model=model, task=task, input=input_name, stores=stores, manifest=manifest, split=split,
                       out_dir=out, features=features, cfg=cfg, dataset="t", device="cpu", provenance=provenance))
    return str(out / "checkpoint.pt")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Ingest cif_tiny + csv_tiny (structure-derived) and mp_tiny (CHGCAR); density (dense), grid samples,
    XRD and CGCNN stores; one-epoch sparse_cnn, xrd_fcn, cgcnn, lattice (niggli cells), a joint pointnet
    and a 4-feature CHGCAR pointnet."""
    import torch

    from rhosym.density import read_ingest, write_density_store
    from rhosym.graphs import run_graphs_shard
    from rhosym.ingest import ingest_shard
    from rhosym.sampling import write_sample_store
    from rhosym.shards import list_units
    from rhosym.xrd import run_xrd_shard

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("predict")
    sets = {"cif": {"kind": "cif_dir", "path": str(CIF)}, "csv": {"kind": "cdvae_csv", "path": str(CSV)},
            "mp": {"kind": "mp_chgcar", "path": str(FIX / "mp_tiny"), "metadata": str(FIX / "mp_tiny" / "metadata.csv")},
            "nig": {"kind": "cif_dir", "path": str(CIF), "cell": "niggli"}}
    ingest, frames = {}, {}
    for name, ds in sets.items():
        p = root / name / "ingest.parquet"
        p.parent.mkdir(parents=True)
        frames[name] = ingest_shard(name, ds, 0, list_units(ds), None, None, p)
        ingest[name] = p
    st = {"density": [], "samples": [], "xrd": [], "cgcnn": []}
    for name in ("cif", "csv"):
        d = root / name / "density.zarr"
        write_density_store(d, read_ingest(ingest[name]), DENSITY)
        write_sample_store(d, root / name / "grid.zarr", "grid", SAMPLE, seed=0)
        run_xrd_shard(ingest[name], root / name / "xrd.zarr")
        run_graphs_shard(ingest[name], root / name / "cgcnn.zarr", "cgcnn")
        st["samples"].append(str(root / name / "grid.zarr"))
        st["xrd"].append(str(root / name / "xrd.zarr"))
        st["cgcnn"].append(str(root / name / "cgcnn.zarr"))
    write_density_store(root / "mp" / "density.zarr", read_ingest(ingest["mp"]), DENSITY)
    write_sample_store(root / "mp" / "density.zarr", root / "mp" / "grid.zarr", "grid", SAMPLE, seed=0)

    man = pd.concat([frames["cif"], frames["csv"]], ignore_index=True)
    man = man[man["status"] == "ok"].drop(columns=["structure"])
    split = _split(man["id"].tolist())
    man_mp = frames["mp"][frames["mp"]["status"] == "ok"].drop(columns=["structure", "chgcar_path"])
    man_nig = frames["nig"][frames["nig"]["status"] == "ok"].drop(columns=["structure"])
    models = root / "models"
    return {
        "root": root, "stores": st, "frames": frames,
        "sparse_cnn": _train("sparse_cnn", "crystal_system", "grid", 1, st["samples"], man, split,
                             models / "sparse_cnn"),
        "pointnet_joint": _train("pointnet", "symmetry", "grid", 1, st["samples"], man, split, models / "pn_joint"),
        "xrd_fcn": _train("xrd_fcn", "space_group", "xrd", 1, st["xrd"], man, split, models / "xrd_fcn"),
        "cgcnn": _train("cgcnn", "formation_energy", "cgcnn", 1, st["cgcnn"], man, split, models / "cgcnn"),
        "lattice_niggli": _train("lattice", "crystal_system", "lattice", 1, [str(ingest["nig"])], man_nig,
                                 _split(man_nig["id"].tolist()), models / "lattice",
                                 {**PROV, "cell": "niggli"}),
        "pointnet_f4": _train("pointnet", "band_gap", "grid", 4, [str(root / "mp" / "grid.zarr")], man_mp,
                              _split(man_mp["id"].tolist()), models / "pointnet_f4",
                              {**PROV, "kind": "mp_chgcar", "cell": "as_is"}),
    }


def _run(capsys, *argv, err: list | None = None) -> tuple[int, list[dict]]:
    rc = cli.main(["predict", *map(str, argv), "--device", "cpu"])
    cap = capsys.readouterr()
    if err is not None:
        err.append(cap.err)
    return rc, [json.loads(line) for line in cap.out.splitlines() if line.strip()]


def _check_spglib(rec: dict, structure) -> None:
    from rhosym.symmetry import label_structure

    lab = label_structure(structure, symprec=0.1, angle_tolerance=5.0)
    assert rec["spglib"] == {k: lab[k] for k in ("space_group", "symbol", "crystal_system", "extinction_group")}


def _check_topk(rec: dict, k: int, labels) -> None:
    probs = [e["probability"] for e in rec["top_k"]]
    assert len(probs) == k
    assert probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1 + 1e-9
    assert rec["prediction"] == rec["top_k"][0]["label"]
    assert all(e["label"] in labels for e in rec["top_k"])


def test_density_model_on_cif_chgcar_and_errors(ckpts, capsys):
    from pymatgen.core import Structure

    from rhosym.symmetry import CRYSTAL_SYSTEMS

    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", CIF / "two_blocks.cif", CIF / "bad_unparsable.cif", CHGCAR,
                    "--model", ckpts["sparse_cnn"], "--top-k", 3)
    assert rc == 0
    by_src = {r["source"]: r for r in recs}
    assert len(recs) == 5  # NaCl, two blocks, the unparsable file, the CHGCAR
    nacl = by_src[str(CIF / "NaCl_cubic.cif")]
    assert {"source", "id", "model", "task", "prediction", "top_k", "spglib", "density_source", "cell",
            "symmetry_finder", "answers"} <= set(nacl)
    assert nacl["model"] == "sparse_cnn" and nacl["task"] == "crystal_system" and nacl["id"] == "NaCl_cubic"
    assert nacl["density_source"] == "structure" and nacl["cell"] == "conventional" and nacl["symmetry_finder"]
    assert list(nacl["answers"]) == ["crystal_system"]
    _check_topk(nacl, 3, CRYSTAL_SYSTEMS)
    _check_spglib(nacl, Structure.from_file(CIF / "NaCl_cubic.cif"))
    assert nacl["spglib"]["space_group"] == 225
    assert str(CIF / "two_blocks.cif") + "#Si_diamond" in by_src
    bad = by_src[str(CIF / "bad_unparsable.cif")]
    assert set(bad) == {"source", "error"} and "unparsable CIF" in bad["error"] and "\n" not in bad["error"]
    chg = by_src[str(CHGCAR)]
    assert chg["density_source"] == "structure" and chg["id"] == "mp-90001" and chg["cell"] == "as_is"
    from rhosym.io.chgcar import read_chgcar_structure

    _check_spglib(chg, read_chgcar_structure(CHGCAR).structure)


def test_density_inputs_reproduce_the_training_store(ckpts):
    """Every structure of the cif/csv sample stores is re-made bit for bit from its source file."""
    from rhosym.infer import load_checkpoint

    _, meta = load_checkpoint(ckpts["sparse_cnn"], "cpu")
    s = P.resolve_settings(meta)
    assert (s.method, s.density_kind, s.source, s.store_channels) == ("grid", "structure", "dense", 1)
    assert s.missing == [] and s.cell == "conventional" and s.density.spacing == 0.15
    units = {u.uid: u for u in P.read_inputs(sorted(CIF.glob("*.cif")) + [CSV])}
    n = 0
    for path in ckpts["stores"]["samples"]:
        g = zarr.open_group(path, mode="r")
        for r, sid in enumerate(g.attrs["ids"]):
            ref = inputs.kind("density").read(g, r, inputs.base.ReadOptions())
            got, info = P.preprocess(units[sid], s)
            assert info["density_source"] == "structure"
            for k in ("xyz", "features", "voxels", "spatial_shape"):
                np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{sid} {k}")
            n += 1
    assert n >= 12


def test_xrd_model_on_csv_and_reproduction(ckpts, capsys):
    rc, recs = _run(capsys, CSV, "--model", ckpts["xrd_fcn"], "--top-k", 5)
    assert rc == 0
    table = pd.read_csv(CSV)
    assert [r["source"] for r in recs] == [f"{CSV}#{i}" for i in range(len(table))]
    ok = [r for r in recs if "error" not in r]
    assert ok and all(r["task"] == "space_group" for r in ok)
    for r in ok:
        _check_topk(r, 5, [str(i) for i in range(1, 231)])
        assert isinstance(r["symbol"], str) and "density_source" not in r
        assert r["id"] in set(table["material_id"].astype(str))
    from rhosym.io.structures import read_csv_row

    row = int(ok[0]["source"].rsplit("#", 1)[1])
    _check_spglib(ok[0], read_csv_row(table.iloc[row]).structure)
    from rhosym.infer import load_checkpoint

    _, meta = load_checkpoint(ckpts["xrd_fcn"], "cpu")
    s = P.resolve_settings(meta)
    assert s.missing == []
    units = {u.uid: u for u in P.read_inputs([CSV])}
    g = zarr.open_group(ckpts["stores"]["xrd"][1], mode="r")
    for r, sid in enumerate(g.attrs["ids"][:3]):
        got, _ = P.preprocess(units[sid], s)
        np.testing.assert_array_equal(got["pattern"], inputs.kind("xrd").read(g, r, inputs.base.ReadOptions())["pattern"])


def test_cgcnn_regression_csv_table(ckpts, capsys, tmp_path):
    out = tmp_path / "pred.csv"
    rc, recs = _run(capsys, CSV, CIF / "bad_unparsable.cif", CIF / "NaCl_cubic.cif", "--model", ckpts["cgcnn"],
                    "--out", out)
    assert rc == 0 and recs == []  # the table instead of JSON lines
    df = pd.read_csv(out)
    n_csv = len(pd.read_csv(CSV))
    assert len(df) == n_csv + 2
    assert {"source", "id", "model", "task", "prediction", "unit", "error", "spglib_space_group",
            "spglib_crystal_system"} <= set(df.columns)
    ok = df[df["error"].isna()]
    assert len(ok) == n_csv + 1
    assert (ok["unit"] == "eV/atom").all() and np.isfinite(ok["prediction"].astype(float)).all()
    assert df.loc[df["source"] == str(CIF / "bad_unparsable.cif"), "error"].str.contains("unparsable").all()
    nacl = df[df["source"] == str(CIF / "NaCl_cubic.cif")].iloc[0]
    assert nacl["spglib_space_group"] == 225 and nacl["spglib_symbol"] == "Fm-3m"
    from rhosym.infer import load_checkpoint

    _, meta = load_checkpoint(ckpts["cgcnn"], "cpu")
    s = P.resolve_settings(meta)
    units = {u.uid: u for u in P.read_inputs(sorted(CIF.glob("*.cif")))}
    g = zarr.open_group(ckpts["stores"]["cgcnn"][0], mode="r")
    for r, sid in enumerate(g.attrs["ids"][:4]):
        got, _ = P.preprocess(units[sid], s)
        ref = inputs.kind("cgcnn").read(g, r, inputs.base.ReadOptions())
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{sid} {k}")


def test_chgcar_checkpoint_refuses_cif_and_reproduces_chgcar(ckpts, capsys):
    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", CHGCAR, "--model", ckpts["pointnet_f4"])
    assert rc == 0
    cif, chg = recs
    assert set(cif) == {"source", "error"} and "refused" in cif["error"] and "CHGCAR" in cif["error"]
    assert chg["density_source"] == "chgcar" and chg["unit"] == "eV" and np.isfinite(chg["prediction"])
    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", "--model", ckpts["pointnet_f4"])
    assert rc == 1 and "refused" in recs[0]["error"]
    from rhosym.infer import load_checkpoint

    _, meta = load_checkpoint(ckpts["pointnet_f4"], "cpu")
    s = P.resolve_settings(meta)
    assert (s.density_kind, s.store_channels, s.features) == ("chgcar", 4, 4)
    assert chg["cell"] == "as_is" and chg["symmetry_finder"] is False
    units = {u.uid: u for u in P.read_inputs(sorted((FIX / "mp_tiny").glob("*CHGCAR*"))[:3])}
    g = zarr.open_group(str(ckpts["root"] / "mp" / "grid.zarr"), mode="r")
    n = 0
    for r, sid in enumerate(g.attrs["ids"]):
        if sid in units:
            got, _ = P.preprocess(units[sid], s)
            ref = inputs.kind("density").read(g, r, inputs.base.ReadOptions())
            assert got["features"].shape[1] == 4
            for k in ("xyz", "features", "voxels", "spatial_shape"):
                np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{sid} {k}")
            n += 1
    assert n == 3


def test_refuses_mismatched_user_settings(ckpts, capsys):
    err = []
    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", "--model", ckpts["sparse_cnn"], "--method", "random", err=err)
    assert rc == 2 and recs == []
    assert "refused: --method random asked for, but the checkpoint was trained on grid sampling" in err[0]
    rc, _ = _run(capsys, CIF / "NaCl_cubic.cif", "--model", ckpts["sparse_cnn"], "--voxel", 0.25)
    assert rc == 2
    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", "--model", ckpts["sparse_cnn"], "--method", "grid",
                    "--voxel", 0.5)
    assert rc == 0 and len(recs) == 1 and "prediction" in recs[0]
    rc, _ = _run(capsys, CIF / "NaCl_cubic.cif", "--model", ckpts["xrd_fcn"], "--voxel", 0.5)
    assert rc == 2


def test_settings_fall_back_with_a_warning(caplog):
    meta = {"model": "sparse_cnn", "task": "crystal_system", "input_kind": "density", "input": "random",
            "features": 1, "input_store": {"method": "random", "voxel": 0.25, "spatial_shape": [256] * 3}}
    s = P.resolve_settings(meta)
    assert s.sample.voxel == 0.25 and s.sample.frame == 64.0 and s.density.spacing == 0.06
    assert any("provenance" in m for m in s.missing) and s.cell == "conventional"
    with caplog.at_level("WARNING", logger="rhosym.predict"):
        P.warn_missing(s)
    assert "provenance" in caplog.text
    with pytest.raises(P.PredictRefused):
        P.resolve_settings(meta, method="grid")
    assert P.label_symbol("space_group", "225") == "Fm-3m"
    assert P.label_symbol("crystal_system", "cubic") is None


def test_joint_network_gives_three_consistent_answers(ckpts, capsys):
    from rhosym.loaders import label_values
    from rhosym.symmetry import crystal_system

    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", CIF / "TiO2_rutile_tetragonal.cif", "--model",
                    ckpts["pointnet_joint"], "--top-k", 3)
    assert rc == 0 and len(recs) == 2
    for r in recs:
        a = r["answers"]
        assert list(a) == ["crystal_system", "extinction_group", "space_group"]
        assert r["prediction"] == a["space_group"]["prediction"] and "symbol" in a["space_group"]
        for t in a:
            _check_topk(a[t], 3, label_values(t))
        # the coarse answers are sums over space groups, so each is at least as probable as its best group
        sg_top = a["space_group"]["top_k"][0]
        assert a["crystal_system"]["top_k"][0]["probability"] >= sg_top["probability"] - 1e-9
        if a["crystal_system"]["prediction"] == crystal_system(int(sg_top["label"])):
            assert a["extinction_group"]["top_k"][0]["probability"] >= sg_top["probability"] - 1e-9


def test_lattice_model_on_niggli_cells_needs_no_symmetry_finder(ckpts, capsys, tmp_path):
    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", CIF / "bad_overlap.cif", "--model", ckpts["lattice_niggli"])
    assert rc == 0
    ok, bad = recs
    assert ok["cell"] == "niggli" and ok["symmetry_finder"] is False
    assert "density_source" not in ok
    # the same structure checks as ingest
    assert set(bad) == {"source", "error"} and "atoms closer than" in bad["error"]


def test_measured_map_input(ckpts, capsys, tmp_path):
    """A density on a grid (CCP4 map, as electron tomography gives) goes to a density model directly."""
    import gemmi
    from pymatgen.core import Structure

    from rhosym.density import dense_density

    s = Structure.from_file(CIF / "NaCl_cubic.cif")
    rho, _ = dense_density(s, spacing=0.15)
    m = gemmi.Ccp4Map()
    m.grid = gemmi.FloatGrid(np.ascontiguousarray(rho, dtype=np.float32), gemmi.UnitCell(*s.lattice.abc,
                                                                                          *s.lattice.angles),
                             gemmi.SpaceGroup("P1"))
    m.update_ccp4_header()
    path = tmp_path / "nacl.ccp4"
    m.write_ccp4_map(str(path))
    rc, recs = _run(capsys, path, "--model", ckpts["sparse_cnn"])
    assert rc == 0 and recs[0]["density_source"] == "map" and recs[0]["symmetry_finder"] is False
    from rhosym.registry import CRYSTAL_SYSTEMS

    assert recs[0]["n_points"] > 100 and recs[0]["prediction"] in CRYSTAL_SYSTEMS
    rc, recs = _run(capsys, path, "--model", ckpts["xrd_fcn"])
    assert rc == 1 and "density model" in recs[0]["error"]


def test_unsafe_checkpoint_is_refused(ckpts, capsys, tmp_path):
    import torch

    raw = torch.load(ckpts["cgcnn"], weights_only=True)
    evil = tmp_path / "evil.pt"
    torch.save({**raw, "hook": print}, evil)
    err = []
    rc, recs = _run(capsys, CIF / "NaCl_cubic.cif", "--model", evil, err=err)
    assert rc != 0 and recs == []
    assert "refused" in err[0] and "Traceback" not in err[0] and len(err[0].strip().splitlines()) == 1


@pytest.mark.parametrize("method,direct", [("random", False), ("grid", True)])
def test_random_and_direct_sampling_reproduce_the_store(ckpts, tmp_path, method, direct):
    """Random sampling (per-structure seeds from the global seed and the id) and the direct density path."""
    from rhosym.sampling import write_sample_store

    src = ckpts["root"] / "cif" / ("ingest.parquet" if direct else "density.zarr")
    out = tmp_path / f"{method}.zarr"
    write_sample_store(src, out, method, {**SAMPLE, "min_points": 200, "max_points": 500}, seed=7, direct=direct,
                       density=DENSITY)
    meta = {"model": "pointnet", "task": "crystal_system", "input_kind": "density", "input": method,
            "features": 1, "input_store": inputs.kind("density").store_meta(str(out)), "provenance": PROV}
    s = P.resolve_settings(meta)
    assert (s.seed, s.source, s.sample.max_points) == (7, "direct" if direct else "dense", 500)
    units = {u.uid: u for u in P.read_inputs(sorted(CIF.glob("*.cif")))}
    g = zarr.open_group(str(out), mode="r")
    ids = g.attrs["ids"]
    assert len(ids) >= 8
    for r, sid in enumerate(ids[:5]):
        got, _ = P.preprocess(units[sid], s)
        ref = inputs.kind("density").read(g, r, inputs.base.ReadOptions())
        for k in ("xyz", "features", "voxels"):
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{sid} {k}")
