"""Units, shards, experiments and the split."""

import numpy as np
import pandas as pd
import pytest

from rhosym import shards
from rhosym.splits import assign_groups, class_distribution, make_split
from rhosym.workflow import Experiment, expand_experiments


def _cif_folder(path, n):
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (path / f"s{i:03d}.cif").write_text("data_x\n")
    return path


def _membership(ds, shard_size):
    return {name: [u.key for u in units] for name, units in shards.assign(ds, shard_size).items()}


def test_shards_of_a_cif_folder_are_hashed_and_sized(tmp_path):
    _cif_folder(tmp_path, 25)
    (tmp_path / "notes.txt").write_text("not a cif")
    sub = tmp_path / "more"
    sub.mkdir()
    (sub / "x.cif.gz").write_bytes(b"")
    cfg = {"kind": "cif_dir", "path": str(tmp_path)}
    units = shards.list_units(cfg)
    # keys are paths relative to the folder, refs the paths; notes.txt is not a unit
    assert [u.key for u in units] == ["more/x.cif.gz"] + [f"s{i:03d}.cif" for i in range(25)]
    assert all(u.ref == str(tmp_path / u.key) for u in units)
    # 26 units / 10 per shard -> 3 needed -> 4 shards (power of two); every unit in exactly the shard its hash says
    assert shards.n_shards(26, 10) == 4 and shards.n_shards(1, 10) == 1 and shards.n_shards(0, 10) == 1
    member = _membership(cfg, 10)
    assert list(member) == ["00000", "00001", "00002", "00003"] == shards.list_shards(cfg, 10)
    flat = [k for keys in member.values() for k in keys]
    assert sorted(flat) == sorted(u.key for u in units) and len(flat) == len(set(flat))
    for name, keys in member.items():
        assert keys == sorted(keys)
        assert all(shards.shard_index(k, 4) == int(name) for k in keys)
        assert [u.key for u in shards.shard_units(cfg, name, 10)] == keys
        assert [u.key for u in shards.shard_units(cfg, int(name), 10)] == keys
    assert shards.shard_units(cfg, "00007", 10) == []
    assert shards.shard_of("results/x/ingest/shard-00002.parquet") == "00002"
    with pytest.raises(ValueError):
        shards.shard_of("results/x/ingest/manifest.parquet")
    # a pinned shard count wins
    assert len(shards.assign({**cfg, "shards": 3}, 10)) == 3


def test_dict_and_settings_are_the_same_data_set(tmp_path):
    from rhosym.settings import DatasetSettings

    _cif_folder(tmp_path, 5)
    d = {"kind": "cif_dir", "path": str(tmp_path)}
    ds = DatasetSettings(**d)
    assert shards.as_dataset(ds) is ds and shards.as_dataset(d) == ds
    assert shards.list_units(d) == shards.list_units(ds)
    assert shards.assign(d, 2) == shards.assign(ds, 2)
    with pytest.raises(ValueError, match="do not apply"):  # a key of another kind
        shards.list_units({**d, "n": 3})


def test_adding_a_file_changes_exactly_one_shard(tmp_path):
    _cif_folder(tmp_path, 35)
    cfg = {"kind": "cif_dir", "path": str(tmp_path)}
    before = _membership(cfg, 10)
    assert len(before) == 4
    (tmp_path / "new_one.cif").write_text("data_y\n")
    after = _membership(cfg, 10)
    assert list(after) == list(before)  # 36 units: still 4 shards
    changed = [n for n in before if before[n] != after[n]]
    assert len(changed) == 1
    n = changed[0]
    assert set(after[n]) - set(before[n]) == {"new_one.cif"} and set(before[n]) <= set(after[n])
    assert int(n) == shards.shard_index("new_one.cif", 4)
    # when the data set doubles, the shard count doubles and each unit stays or moves to shard i + 4
    _cif_folder(tmp_path / "b", 40)
    grown = _membership(cfg, 10)
    assert len(grown) == 8
    for name, keys in before.items():
        i = int(name)
        for k in keys:
            assert k in grown[shards.shard_name(i)] or k in grown[shards.shard_name(i + 4)]


def test_shard_inputs_are_the_shard_files(tmp_path):
    _cif_folder(tmp_path, 30)
    cfg = {"kind": "cif_dir", "path": str(tmp_path)}
    for name, units in shards.assign(cfg, 10).items():
        files = shards.shard_inputs(cfg, name, 10)
        assert files == [str(tmp_path / u.key) for u in units]
        assert all(shards.shard_index(f.rsplit("/", 1)[1], 4) == int(name) for f in files)
    assert sorted(f for n in shards.list_shards(cfg, 10) for f in shards.shard_inputs(cfg, n, 10)) == \
        sorted(str(p) for p in tmp_path.glob("*.cif"))
    # mp_chgcar: the shard's CHGCAR/JSON files plus the metadata table
    mp = tmp_path / "mp"
    mp.mkdir()
    for n in ["mp-1_CHGCAR.gz", "mp-2.json.gz", "mp-3_CHGCAR"]:
        (mp / n).write_text("")
    meta = tmp_path / "meta.csv"
    meta.write_text("material_id\nmp-1\n")
    d = {"kind": "mp_chgcar", "path": str(mp), "metadata": str(meta)}
    assert shards.shard_inputs(d, 0, 10) == [str(mp / n) for n in ["mp-1_CHGCAR.gz", "mp-2.json.gz", "mp-3_CHGCAR"]] \
        + [str(meta)]
    assert shards.shard_inputs({"kind": "mp_chgcar", "path": str(mp)}, 0, 10)[-1] == str(mp / "mp-3_CHGCAR")
    assert shards.shard_inputs({"kind": "synthetic", "n": 30}, 1, 10) == []


def test_csv_inputs_and_unit_keys(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"material_id": ["m1", "m2", "m1", None], "cif": ["x"] * 4}).to_csv(a, index=False)
    pd.DataFrame({"mid": ["q1", "q2"], "cif": ["x"] * 2}).to_csv(b, index=False)
    d = {"kind": "cdvae_csv", "path": [str(a), str(b)], "columns": {"id": "material_id"}, "shards": 4}
    units = shards.list_units(d)
    # <file>:<id>; a repeated id keeps its rows apart; a row without id is keyed by its row number;
    # a file without the id column: every row by number
    assert [u.key for u in units] == ["a.csv:m1", "a.csv:m2", "a.csv:m1~1", "a.csv:#3", "b.csv:#0", "b.csv:#1"]
    assert [u.ref for u in units] == [(str(a), i) for i in range(4)] + [(str(b), i) for i in range(2)]
    # every shard of a CSV data set reads the CSV file(s)
    for name in shards.list_shards(d, 1):
        assert shards.shard_inputs(d, name, 1) == [str(a), str(b)]
    assert shards.shard_inputs({"kind": "cdvae_csv", "path": str(a)}, 0, 10) == [str(a)]


def test_subsample_is_stable(tmp_path):
    _cif_folder(tmp_path, 50)
    cfg = {"kind": "cif_dir", "path": str(tmp_path), "subsample": 12}
    first = [u.key for u in shards.list_units(cfg)]
    assert len(first) == 12 and first == sorted(first)
    assert [u.key for u in shards.list_units(cfg)] == first  # same on every call
    assert len(shards.list_units({**cfg, "subsample": 500})) == 50
    # a subset of the full listing, independent of the shard size, and nested in a larger subsample
    assert set(first) <= {u.key for u in shards.list_units({"kind": "cif_dir", "path": str(tmp_path)})}
    assert set(first) <= {u.key for u in shards.list_units({**cfg, "subsample": 20})}
    assert sum(len(v) for v in shards.assign(cfg, 5).values()) == 12
    # adding a file replaces at most one chosen unit
    (tmp_path / "zz_new.cif").write_text("data_z\n")
    again = {u.key for u in shards.list_units(cfg)}
    assert len(again) == 12 and len(again - set(first)) <= 1


def test_csv_rows_with_multiline_cif_strings_are_counted(tmp_path):
    p = tmp_path / "d.csv"
    df = pd.DataFrame({"material_id": [f"m{i}" for i in range(7)],
                       "cif": ["data_a\n_cell_length_a 3\nloop_\n x\n"] * 7})
    df.to_csv(p, index=False)
    units = shards.list_units({"kind": "cdvae_csv", "path": str(p)})
    assert [u.key for u in units] == [f"d.csv:m{i}" for i in range(7)]


def test_chgcar_files_are_recognised(tmp_path):
    from rhosym.io import mp_json as mp

    names = ["mp-1_CHGCAR.gz", "mp-2.CHGCAR", "CHGCAR.bz2", "metadata.csv", "mp-3.chgcar.xz", "mp-4.json.gz",
             "metadata.json", "summary.json.gz", "mp_metadata.json", "tasks.json", ".hidden.json"]
    for n in names:
        (tmp_path / n).write_text("")
    units = shards.list_units({"kind": "mp_chgcar", "path": str(tmp_path)})
    assert [u.key for u in units] == ["CHGCAR.bz2", "mp-1_CHGCAR.gz", "mp-2.CHGCAR", "mp-3.chgcar.xz", "mp-4.json.gz"]
    assert shards.is_chgcar("mp-1_CHGCAR.gz") and not shards.is_chgcar("mp-1_CHGCAR.json.gz")
    # the unit lister and ingest's reader (rhosym.io.mp_json) agree on what a charge-density JSON is
    for n in names + ["mp-5_CHGCAR.json.gz", "CHGCAR.json", "MP-6.JSON.GZ", "materials_1.json", "x.summary.json"]:
        assert shards.is_density_json(n) == mp.is_chgcar_json(n), n


def test_synthetic_units_and_missing_path():
    units = shards.list_units({"kind": "synthetic", "n": 2500})
    assert [u.key for u in units[:3]] == ["0", "1", "2"] and units[-1].ref == 2499 and len(units) == 2500
    member = shards.assign({"kind": "synthetic", "n": 2500}, 1000)
    assert list(member) == ["00000", "00001", "00002", "00003"]  # 3 needed -> 4
    assert sum(len(v) for v in member.values()) == 2500
    assert all(300 < len(v) < 1000 for v in member.values())
    with pytest.raises(FileNotFoundError):
        shards.list_units({"kind": "cif_dir", "path": "/nonexistent/folder"})


def _config(**over):
    from rhosym.settings import parse_config

    return parse_config({"datasets": {"a": {"kind": "synthetic", "n": 10}, "b": {"kind": "synthetic", "n": 10}},
                         **over})


def test_experiments_expand_and_map_inputs():
    from rhosym.settings import ConfigError

    cfg = _config(experiments=[
        {"datasets": ["a"], "models": ["sparse_cnn", "xrd_fcn", "cogn", "lattice"], "tasks": ["space_group"],
         "features": [1, 4], "sampling": ["grid", "random"]}])
    exps = expand_experiments(cfg)
    assert Experiment("a", "sparse_cnn", "space_group", "random", 4, 0, "formula", 0) in exps
    assert Experiment("a", "xrd_fcn", "space_group", "xrd", 1) in exps
    assert Experiment("a", "cogn", "space_group", "cogn", 1) in exps
    assert Experiment("a", "lattice", "space_group", "lattice", 1) in exps
    # density model: 2 features x 2 samplings; others collapse to one experiment each
    assert len(exps) == 4 + 1 + 1 + 1
    assert all(e.dataset == "a" and e.split == "formula" and e.seed == 0 for e in exps)
    assert exps[0].path.count("/") == 2
    # two seeds: every experiment twice
    two = expand_experiments(_config(experiments=[{"models": ["lattice"], "tasks": ["symmetry"], "seeds": [1, 2]}]))
    assert sorted((e.dataset, e.seed) for e in two) == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert two[0].answers == ("crystal_system", "extinction_group", "space_group")
    with pytest.raises(ConfigError, match="zz"):
        _config(experiments=[{"datasets": ["zz"], "models": ["cgcnn"], "tasks": ["space_group"]}])

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
    from rhosym.settings import parse_config
    from rhosym.workflow import dataset_shards

    cfg = parse_config({"shard_size": 10, "datasets": {"mp": {"kind": "mp_chgcar", "path": str(tmp_path / "nope")},
                                                       "c": {"kind": "cif_dir", "path": str(tmp_path / "nope")}}})
    with pytest.warns(UserWarning, match="download_mp_mp"):
        assert dataset_shards(cfg, "mp") == []
    with pytest.raises(FileNotFoundError):
        dataset_shards(cfg, "c")
