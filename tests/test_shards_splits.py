"""Units, shards, experiments and the split."""

import numpy as np
import pandas as pd
import pytest

from rhosym import shards
from rhosym.splits import assign_groups, class_distribution, make_split
from rhosym.workflow import Experiment, expand_experiments


def test_shards_of_a_cif_folder_are_sorted_and_sized(tmp_path):
    for i in range(25):
        (tmp_path / f"s{i:03d}.cif").write_text("data_x\n")
    (tmp_path / "notes.txt").write_text("not a cif")
    cfg = {"kind": "cif_dir", "path": str(tmp_path)}
    units = shards.list_units(cfg)
    assert len(units) == 25 and units == sorted(units)
    assert shards.list_shards(cfg, 10) == ["00000", "00001", "00002"]
    assert len(shards.shard_units(cfg, "00002", 10)) == 5
    assert shards.shard_of("results/x/ingest/shard-00002.parquet") == "00002"


def test_csv_rows_with_multiline_cif_strings_are_counted(tmp_path):
    p = tmp_path / "d.csv"
    df = pd.DataFrame({"material_id": [f"m{i}" for i in range(7)],
                       "cif": ["data_a\n_cell_length_a 3\nloop_\n x\n"] * 7})
    df.to_csv(p, index=False)
    assert len(shards.list_units({"kind": "cdvae_csv", "path": str(p)})) == 7


def test_chgcar_files_are_recognised(tmp_path):
    for n in ["mp-1_CHGCAR.gz", "mp-2.CHGCAR", "CHGCAR.bz2", "metadata.csv", "mp-3.chgcar.xz"]:
        (tmp_path / n).write_text("")
    units = shards.list_units({"kind": "mp_chgcar", "path": str(tmp_path)})
    assert [u.split("/")[-1] for u in units] == ["CHGCAR.bz2", "mp-1_CHGCAR.gz", "mp-2.CHGCAR", "mp-3.chgcar.xz"]


def test_synthetic_units_and_missing_path():
    assert len(shards.list_units({"kind": "synthetic", "n": 2500})) == 2500
    assert shards.list_shards({"kind": "synthetic", "n": 2500}, 1000) == ["00000", "00001", "00002"]
    with pytest.raises(FileNotFoundError):
        shards.list_units({"kind": "cif_dir", "path": "/nonexistent/folder"})


def test_experiments_expand_and_map_inputs():
    cfg = {"datasets": {"a": {}, "b": {}}, "experiments": [
        {"datasets": ["a"], "models": ["sparse_cnn", "xrd_fcn", "cogn"], "tasks": ["space_group"],
         "features": [1, 4], "sampling": ["grid", "random"]}]}
    exps = expand_experiments(cfg)
    assert Experiment("a", "sparse_cnn", "space_group", "random", 4) in exps
    assert Experiment("a", "xrd_fcn", "space_group", "xrd", 1) in exps
    assert Experiment("a", "cogn", "space_group", "graph", 1) in exps
    # density model: 2 features x 2 samplings; others collapse to one experiment each
    assert len(exps) == 4 + 1 + 1
    assert exps[0].path.count("/") == 2
    with pytest.raises(ValueError):
        expand_experiments({"datasets": {"a": {}}, "experiments": [{"datasets": ["zz"], "models": ["cgcnn"],
                                                                      "tasks": ["space_group"]}]})


def _manifest(n=400, n_formulas=60, seed=0):
    rng = np.random.default_rng(seed)
    formulas = [f"Na{k + 1}Cl{k + 1}" if k % 2 else f"Li{k + 1}O" for k in rng.integers(0, n_formulas, n)]
    return pd.DataFrame({
        "id": [f"x{i}" for i in range(n)],
        "formula": formulas,
        "status": ["ok"] * (n - 5) + ["rejected"] * 5,
        "crystal_system": rng.choice(["cubic", "triclinic", "hexagonal"], n),
        "space_group": rng.integers(1, 231, n),
        "extinction_group": rng.integers(1, 102, n),
    })


def test_split_fractions_seed_and_no_group_leak():
    m = _manifest()
    s1 = make_split(m, (0.8, 0.1, 0.1), seed=3, group_by="formula")
    s2 = make_split(m, (0.8, 0.1, 0.1), seed=3, group_by="formula")
    pd.testing.assert_frame_equal(s1, s2)
    assert len(s1) == 395  # rejected rows are not split
    frac = s1["split"].value_counts(normalize=True)
    assert abs(frac["train"] - 0.8) < 0.06 and abs(frac["test"] - 0.1) < 0.05
    # every reduced formula in exactly one split (Na2Cl2 and NaCl are the same group)
    assert (s1.groupby("group")["split"].nunique() == 1).all()
    s3 = make_split(m, (0.8, 0.1, 0.1), seed=4, group_by="formula")
    assert not s1["split"].equals(s3["split"])


def test_split_none_is_close_to_fractions():
    m = _manifest(1000)
    s = make_split(m, (0.8, 0.1, 0.1), seed=1, group_by="none")
    counts = s["split"].value_counts()
    # 995 ok rows: each split within one structure of its target
    for name, frac in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(counts[name] - frac * 995) <= 1


def test_split_by_structure_groups_equivalent_structures():
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl_big = nacl.copy()
    nacl_big.make_supercell([2, 1, 1])
    nacl_strained = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.70), ["Na", "Cl"],
                                              [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.4), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    structures = {"a": nacl, "b": nacl_big, "c": nacl_strained, "d": cscl}
    m = pd.DataFrame({"id": list("abcd"), "formula": ["NaCl", "Na8Cl8", "NaCl", "NaCl"], "status": ["ok"] * 4})
    s = make_split(m, seed=0, group_by="structure", structures=structures).set_index("id")
    assert s.loc["a", "group"] == s.loc["b", "group"] == s.loc["c", "group"]
    assert s.loc["d", "group"] != s.loc["a", "group"]


def test_assign_groups_keeps_groups_whole():
    groups = pd.Series(["g1"] * 50 + ["g2"] * 30 + [f"s{i}" for i in range(20)])
    split = assign_groups(groups, (0.5, 0.25, 0.25), seed=0)
    assert split[:50].nunique() == 1 and split[50:80].nunique() == 1


def test_class_distribution_counts():
    m = _manifest(100)
    s = make_split(m, seed=0, group_by="none")
    d = class_distribution(m, s)
    cs = d[d["label"] == "crystal_system"]
    assert cs["count"].sum() == len(s)
    assert set(cs["split"]) <= {"train", "val", "test"}


def test_missing_chgcar_folder_has_no_shards_until_downloaded(tmp_path):
    from rhosym.workflow import dataset_shards

    cfg = {"shard_size": 10, "datasets": {"mp": {"kind": "mp_chgcar", "path": str(tmp_path / "nope")},
                                          "c": {"kind": "cif_dir", "path": str(tmp_path / "nope")}}}
    with pytest.warns(UserWarning, match="download_mp_mp"):
        assert dataset_shards(cfg, "mp") == []
    with pytest.raises(FileNotFoundError):
        dataset_shards(cfg, "c")
