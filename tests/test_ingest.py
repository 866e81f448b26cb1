"""Ingest: per-shard rows, rejections with reasons, manifest, synthetic determinism, labels CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym import ingest, shards
from tests.fixtures.make_fixtures import EXPECTED_CIF, EXPECTED_CSV

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
LABELS = {"symprec": 0.1, "angle_tolerance": 5.0}


def _ingest(name, ds, shard=0, shard_size=100, labels=LABELS, ingest_cfg=None, seed=0, out_path=None):
    """One ingest shard as the Snakemake rule runs it: the shard's units from rhosym.shards."""
    units = shards.shard_units(ds, shard, shard_size)
    return ingest.ingest_shard(name, ds, shard, units, labels, ingest_cfg, out_path, seed=seed)


def _structure(js):
    from pymatgen.core import Structure

    return Structure.from_dict(json.loads(js))


@pytest.fixture(scope="module")
def cif_rows():
    return _ingest("cif_tiny", {"kind": "cif_dir", "path": str(FIX / "cif_tiny")})


def test_cif_tiny_labels_and_rejections(cif_rows):
    df = cif_rows
    assert list(df.columns[: len(ingest.MANIFEST_COLUMNS)]) == ingest.MANIFEST_COLUMNS
    assert set(df["id"]) == set(EXPECTED_CIF)
    for uid, want in EXPECTED_CIF.items():
        row = df[df["id"] == uid].iloc[0]
        if isinstance(want, int):
            assert row["status"] == "ok", (uid, row["reason"])
            assert row["space_group"] == want, uid
            assert row["reason"] == ""
        else:
            assert row["status"] == "rejected" and row["reason"].startswith(want), (uid, row["reason"])
            assert pd.isna(row["structure"]) and "\n" not in row["reason"]
    two = df[df["id"] == "two_blocks:W_bcc"].iloc[0]
    assert two["block"] == "W_bcc" and two["source"].endswith("two_blocks.cif")
    assert df.set_index("id").loc["CuSO_triclinic", "crystal_system"] == "triclinic"
    assert df.set_index("id").loc["LiOH_monoclinic", "crystal_system"] == "monoclinic"
    assert bool(df.set_index("id").loc["LiFeNiO_mixed", "partial_occupancy"])
    assert not bool(df.set_index("id").loc["NaCl_cubic", "partial_occupancy"])
    # new columns: the unit (file key), spglib's and the declared labels, the tolerance, the cell
    d = df.set_index("id")
    assert d.loc["two_blocks:W_bcc", "unit"] == d.loc["two_blocks:Si_diamond", "unit"] == "two_blocks.cif"
    assert d.loc["bad_unparsable", "unit"] == "bad_unparsable.cif" and (df["shard"] == "00000").all()
    ok = df[df["status"] == "ok"]
    assert (ok["spglib_space_group"] == ok["space_group"]).all() and (ok["label_source"] == "spglib").all()
    assert (ok["label_symprec"] == 0.1).all() and (ok["cell"] == "conventional").all()
    # every CIF of cif_tiny declares its space group (number or H-M symbol), and spglib agrees
    assert (ok["declared_space_group"] == ok["space_group"]).all()
    assert d.loc["Cu_symbol_only", "declared_space_group"] == 225  # from the H-M symbol alone
    assert pd.isna(d.loc["bad_unparsable", "declared_space_group"]) and pd.isna(d.loc["bad_unparsable", "cell"])
    assert df["task_id"].isna().all()


def test_cif_density_cell_is_conventional_and_keeps_b_iso(cif_rows):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    df = cif_rows.set_index("id")
    s = _structure(df.loc["MgO_bfactors", "structure"])
    assert len(s) == 8 and df.loc["MgO_bfactors", "n_sites"] == 8
    assert sorted(set(np.round(s.site_properties["b_iso"], 3))) == [0.31, 0.42]
    # an electron count check: conventional rock salt MgO holds 4 x (12 + 8) electrons
    assert sum(site.specie.Z for site in s) == 80
    nacl = _structure(df.loc["NaCl_cubic", "structure"])
    ref = SpacegroupAnalyzer(nacl).get_conventional_standard_structure()
    assert nacl.lattice.abc == pytest.approx(ref.lattice.abc) and df.loc["NaCl_cubic", "a"] == pytest.approx(5.64)
    mixed = _structure(df.loc["LiFeNiO_mixed", "structure"])
    assert not mixed.is_ordered and mixed.composition["Li"] == pytest.approx(0.5)


def test_build_manifest_and_report(cif_rows, tmp_path):
    part = tmp_path / "ingest" / "shard-00000.parquet"
    ingest.write_parquet(cif_rows, part)
    dup = cif_rows[cif_rows["id"] == "NaCl_cubic"].assign(shard="00001")
    ingest.write_parquet(dup, tmp_path / "ingest" / "shard-00001.parquet")
    man = ingest.build_manifest([part, tmp_path / "ingest" / "shard-00001.parquet"], tmp_path / "manifest.parquet",
                                tmp_path / "ingest_report.csv")
    back = pd.read_parquet(tmp_path / "manifest.parquet")
    assert list(back.columns) == ingest.MANIFEST_COLUMNS and len(back) == len(cif_rows) + 1
    assert (back["reason"] == "duplicate id").sum() == 1 and len(man) == len(back)
    rep = pd.read_csv(tmp_path / "ingest_report.csv").fillna("")
    assert rep.loc[rep["status"] == "ok", "count"].item() == 12
    assert rep.loc[rep["status"] == "rejected", "count"].sum() == 4
    assert "zero or negative occupancy" in set(rep["reason"])
    labels = dict(zip(rep.loc[rep["status"] == "labels", "reason"], rep.loc[rep["status"] == "labels", "count"]))
    assert labels == {"declares a space group": 12, "declared space group equals spglib's": 12,
                      "declared space group differs from spglib's": 0, "labelled at symprec 0.1": 12,
                      "label from spglib": 12}


def test_csv_tiny():
    ds = {"kind": "cdvae_csv", "path": str(FIX / "csv_tiny.csv")}
    df = _ingest("csv_tiny", ds)
    assert len(df) == 16 and (df["status"] == "ok").all()
    d = df.set_index("id")
    for uid, sg in EXPECTED_CSV.items():
        assert d.loc[uid, "space_group"] == sg, uid
    assert (df["formation_energy"] < 0).sum() >= 10 and d.loc["tiny-3", "band_gap"] == pytest.approx(4.5)
    assert d.loc["tiny-1", "n_sites"] == 8  # conventional, not the primitive P1 cell of the CSV
    assert d.loc["tiny-1", "source"].endswith("csv_tiny.csv#0")
    assert d.loc["tiny-1", "unit"] == "csv_tiny.csv:tiny-1"
    # the CIF strings are written in P1: that is what they declare (no space-group column in this CSV)
    assert (df["declared_space_group"] == 1).all()
    # shards of 5 rows (16 units -> 4 shards) give the same rows, each in the shard its unit hashes to
    parts = [_ingest("csv_tiny", ds, k, 5) for k in range(4)]
    assert sum(len(p) for p in parts) == 16 and all(len(p) for p in parts)
    both = pd.concat(parts).set_index("id").loc[df["id"]]
    assert both["structure"].tolist() == df["structure"].tolist()
    assert both["space_group"].tolist() == df["space_group"].tolist()
    for k, p in enumerate(parts):
        assert (p["shard"] == shards.shard_name(k)).all()
        assert all(shards.shard_index(u, 4) == k for u in p["unit"])


def test_csv_declared_space_group_column(tmp_path):
    src = pd.read_csv(FIX / "csv_tiny.csv").iloc[:3]
    src["spacegroup.number"] = [225, 221, 225]  # tiny-2 (KCl, Fm-3m) mislabelled on purpose
    path = tmp_path / "d.csv"
    src.to_csv(path, index=False)
    df = _ingest("d", {"kind": "cdvae_csv", "path": str(path)}).set_index("id")
    assert df["declared_space_group"].tolist() == [225, 221, 225]
    assert df["spglib_space_group"].tolist() == [225, 225, 225] == df["space_group"].tolist()
    rep = ingest.ingest_report(df.reset_index())
    assert rep.set_index("reason").loc["declared space group differs from spglib's", "count"] == 1
    dec = _ingest("d", {"kind": "cdvae_csv", "path": str(path)}, labels={**LABELS, "source": "declared"})
    dec = dec.set_index("id")
    assert dec.loc["tiny-2", "space_group"] == 221 and dec.loc["tiny-2", "label_source"] == "declared"
    assert dec.loc["tiny-2", "spglib_space_group"] == 225 and dec.loc["tiny-2", "symbol"] == "Pm-3m"


def _write_cifs(folder):
    """NaCl declaring Fm-3m (with its operations), NaCl written in P1 (declares P1) and the same P1
    text without any space-group item (declares nothing; read as P1)."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    folder.mkdir(parents=True, exist_ok=True)
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    (folder / "nacl_fm3m.cif").write_text((FIX / "cif_tiny" / "NaCl_cubic.cif").read_text())
    p1 = str(CifWriter(nacl))
    assert "_symmetry_Int_Tables_number   1" in p1 or "_symmetry_Int_Tables_number 1" in p1
    (folder / "nacl_p1.cif").write_text(p1)
    lines = [x for x in p1.splitlines() if not x.startswith(("_symmetry_space_group_name", "_symmetry_Int_Tables"))]
    (folder / "nacl_nodecl.cif").write_text("\n".join(lines) + "\n")


def test_declared_space_group_is_read_and_reported(tmp_path):
    _write_cifs(tmp_path / "cifs")
    cfg = {"results": str(tmp_path / "res"), "datasets": {"c": {"kind": "cif_dir", "path": str(tmp_path / "cifs")}}}
    man = ingest.ingest_dataset(cfg, "c").set_index("id")
    assert (man["status"] == "ok").all() and (man["spglib_space_group"] == 225).all()
    assert man.loc["nacl_fm3m", "declared_space_group"] == 225 and man.loc["nacl_p1", "declared_space_group"] == 1
    assert pd.isna(man.loc["nacl_nodecl", "declared_space_group"])
    assert (man["space_group"] == 225).all() and (man["label_source"] == "spglib").all()
    rep = pd.read_csv(tmp_path / "res" / "c" / "ingest_report.csv")
    lab = rep[rep["status"] == "labels"].set_index("reason")["count"].to_dict()
    assert lab == {"declares a space group": 2, "declared space group equals spglib's": 1,
                   "declared space group differs from spglib's": 1, "labelled at symprec 0.1": 3,
                   "label from spglib": 3}
    # labels.source: declared takes the declared group where there is one (spglib's stays in the manifest)
    cfg["labels"] = {"source": "declared"}
    man = ingest.ingest_dataset(cfg, "c", tmp_path / "dec").set_index("id")
    p1 = man.loc["nacl_p1"]
    assert (p1["space_group"], p1["symbol"], p1["crystal_system"], p1["label_source"]) == (1, "P1", "triclinic",
                                                                                          "declared")
    assert p1["spglib_space_group"] == 225 and p1["extinction_group"] == 1
    assert man.loc["nacl_nodecl", "label_source"] == "spglib" and man.loc["nacl_nodecl", "space_group"] == 225
    assert man.loc["nacl_fm3m", "label_source"] == "declared" and man.loc["nacl_fm3m", "space_group"] == 225
    rep = pd.read_csv(tmp_path / "dec" / "ingest_report.csv")
    lab = rep[rep["status"] == "labels"].set_index("reason")["count"].to_dict()
    assert lab["label from declared"] == 2 and lab["label from spglib"] == 1


def _close_pair(d=0.05):
    """Cl atoms 0.05 Å apart: spglib finds nothing at symprec 0.1 or 0.05, P4mm (99) at 0.01."""
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(4.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5 + d / 4, 0.5, 0.5]])


def test_prepare_checks_labels_and_cell():
    from pymatgen.core import Lattice, Structure

    from rhosym.settings import IngestSettings, LabelsSettings

    loose = {"min_distance": 0.01}
    # the ladder (labels.ladder: 0.05, 0.01, ...) labels what symprec 0.1 cannot, and records the tolerance
    cell, lab = ingest.prepare(_close_pair(), "conventional", LabelsSettings(), loose)
    assert (lab["space_group"], lab["spglib_space_group"], lab["label_symprec"]) == (99, 99, 0.01)
    assert lab["label_source"] == "spglib" and lab["cell"] == "conventional" and lab["declared_space_group"] is None
    assert len(cell) == 3
    with pytest.raises(ingest.StructureRejected, match="no symmetry found"):
        ingest.prepare(_close_pair(), "conventional", {"ladder": []}, loose)
    # spglib finds nothing at all, but a declared group is label enough with source: declared
    with pytest.raises(ingest.StructureRejected, match="no symmetry found"):
        ingest.prepare(_close_pair(), "as_is", {"ladder": []}, loose, declared=123)
    cell, lab = ingest.prepare(_close_pair(), "as_is", {"ladder": [], "source": "declared"}, loose, declared=123)
    assert (lab["space_group"], lab["symbol"], lab["label_source"]) == (123, "P4/mmm", "declared")
    assert lab["spglib_space_group"] is None and np.isnan(lab["label_symprec"])
    # the structure checks come first: the default min_distance rejects the pair
    with pytest.raises(ingest.StructureRejected, match="atoms closer than 0.5 A"):
        ingest.prepare(_close_pair(), "conventional", LabelsSettings(), IngestSettings())
    assert ingest.check_structure(_close_pair(), IngestSettings()).startswith("atoms closer than")
    assert ingest.check_structure(_close_pair(), loose) == ""
    assert ingest.check_structure(Structure(Lattice.cubic(3), [], []), {}) == "no atoms"
    # the cell checks look at the density cell: primitive NaCl (2 sites) becomes 8 sites conventional
    prim = Structure(Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert len(ingest.prepare(prim, "as_is", {}, {"max_sites": 4})[0]) == 2
    with pytest.raises(ingest.StructureRejected, match="8 sites over max_sites 4"):
        ingest.prepare(prim, "conventional", {}, {"max_sites": 4})
    with pytest.raises(ingest.StructureRejected, match="cell volume 179 A\\^3 over max_volume 100"):
        ingest.prepare(prim, "conventional", {}, {"max_volume": 100})
    assert ingest.check_cell(prim, {"max_volume": 100}) == ""


def test_ladder_in_the_manifest_and_report(tmp_path):
    folder = tmp_path / "cifs"
    _write_cifs(folder)
    _close_pair().to(filename=str(folder / "close.cif"))
    cfg = {"results": str(tmp_path / "res"), "ingest": {"min_distance": 0.01},
           "datasets": {"c": {"kind": "cif_dir", "path": str(folder)}}}
    man = ingest.ingest_dataset(cfg, "c").set_index("id")
    assert man.loc["close", "status"] == "ok" and man.loc["close", "label_symprec"] == 0.01
    assert man.loc["close", "space_group"] == 99 and man.loc["nacl_p1", "label_symprec"] == 0.1
    rep = pd.read_csv(tmp_path / "res" / "c" / "ingest_report.csv")
    lab = rep[rep["status"] == "labels"].set_index("reason")["count"].to_dict()
    assert lab["labelled at symprec 0.1"] == 3 and lab["labelled at symprec 0.01"] == 1
    cfg["labels"] = {"ladder": []}
    man = ingest.ingest_dataset(cfg, "c", tmp_path / "noladder").set_index("id")
    assert man.loc["close", "status"] == "rejected" and man.loc["close", "reason"].startswith("no symmetry found")


def test_synthetic_is_independent_of_shard_size():
    from rhosym.synthetic import synthetic_structure

    cfg = {"kind": "synthetic", "n": 6, "space_groups": "all", "max_atoms": 12}
    a = pd.concat([_ingest("syn", cfg, k, 4, seed=3) for k in range(2)]).set_index("id")
    b = _ingest("syn", cfg, 0, 8, seed=3)
    assert sorted(a.index) == b["id"].tolist() == sorted(f"syn-{i}" for i in range(6))
    assert a.loc[b["id"], "structure"].tolist() == b["structure"].tolist()
    assert (b["status"] == "ok").sum() >= 5
    ok = b[b["status"] == "ok"]
    assert (ok["n_sites"] <= 12).all() and ok["symbol"].notna().all()
    other, _, _ = synthetic_structure(0, seed=4, max_atoms=12)
    assert json.dumps(other.as_dict()) != b["structure"].iloc[0]


def test_synthetic_impossible_group_is_a_rejected_row():
    cfg = {"kind": "synthetic", "n": 2, "space_groups": [230], "max_atoms": 8}
    df = _ingest("syn", cfg, 0, 10)
    assert len(df) == 2 and (df["status"] == "rejected").all()
    assert df["reason"].str.contains("no composition of at most 8 atoms fits space group 230").all()


def _write_chgcar(path, species, coords, lattice, grid=(4, 4, 4)):
    from pymatgen.core import Structure
    from pymatgen.io.vasp import Chgcar, Poscar

    s = Structure(lattice, species, coords)
    Chgcar(Poscar(s), {"total": np.full(grid, float(s.volume))}).write_file(str(path))


def test_mp_chgcar_kind(tmp_path):
    from pymatgen.core import Lattice

    d = tmp_path / "chg"
    d.mkdir()
    _write_chgcar(d / "mp-1_CHGCAR", ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], Lattice.cubic(4.12))
    _write_chgcar(d / "mp-2_CHGCAR", ["Cu"], [[0, 0, 0]], Lattice.cubic(3.61))
    raw = (d / "mp-2_CHGCAR").read_bytes()
    (d / "mp-3_CHGCAR").write_bytes(raw[: len(raw) // 2])
    # a file named by its task id: labels join on the material id the metadata gives it
    _write_chgcar(d / "mp-1004_CHGCAR", ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]],
                  Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]))
    pd.DataFrame({"material_id": ["mp-1", "mp-3", "mp-4"], "task_id": ["mp-1001", "mp-1003", "mp-1004"],
                  "band_gap": [5.2, 0.0, 5.0], "formation_energy_per_atom": [-2.2, 0.1, -2.1]}).to_csv(
        tmp_path / "meta.csv", index=False)
    cfg = {"kind": "mp_chgcar", "path": str(d), "metadata": str(tmp_path / "meta.csv")}
    assert shards.shard_inputs(cfg, 0, 10)[-1] == str(tmp_path / "meta.csv")
    df = _ingest("mp", cfg, 0, 10).set_index("id")
    assert sorted(df.index) == ["mp-1", "mp-2", "mp-3", "mp-4"]
    assert df.loc["mp-1", "status"] == "ok" and df.loc["mp-1", "space_group"] == 221
    assert df.loc["mp-1", "band_gap"] == pytest.approx(5.2) and df.loc["mp-1", "formation_energy"] == -2.2
    assert df.loc["mp-1", "task_id"] == "mp-1001" and pd.isna(df.loc["mp-2", "task_id"])
    assert np.isnan(df.loc["mp-2", "band_gap"])
    assert df.loc["mp-2", "n_sites"] == 1  # the CHGCAR's own cell, not a conventional one
    assert (df.loc[df["status"] == "ok", "cell"] == "as_is").all()
    assert df.loc["mp-3", "status"] == "rejected" and "truncated" in df.loc["mp-3", "reason"]
    assert df.loc["mp-1", "chgcar_path"].endswith("mp-1_CHGCAR") and df.loc["mp-1", "unit"] == "mp-1_CHGCAR"
    m4 = df.loc["mp-4"]
    assert (m4["status"], m4["task_id"], m4["unit"], m4["space_group"], m4["n_sites"]) == \
        ("ok", "mp-1004", "mp-1004_CHGCAR", 225, 2)
    assert m4["band_gap"] == pytest.approx(5.0)


def test_limits_reject_with_reasons():
    cfg = {"kind": "cif_dir", "path": str(FIX / "cif_tiny")}
    df = _ingest("c", cfg, ingest_cfg={"max_sites": 10, "max_volume": 150.0}).set_index("id")
    assert df.loc["Al2O3_corundum_trigonal", "reason"].startswith("cell volume")
    assert df.loc["Al2O3_corundum_trigonal", "status"] == "rejected"
    assert df.loc["LiOH_monoclinic", "reason"] == "cell volume 228 A^3 over max_volume 150.0"
    assert df.loc["two_blocks:W_bcc", "status"] == "ok"
    sites = _ingest("c", cfg, ingest_cfg={"max_sites": 10}).set_index("id")
    assert sites.loc["LiOH_monoclinic", "reason"] == "12 sites over max_sites 10"
    assert sites.loc["Al2O3_corundum_trigonal", "reason"] == "30 sites over max_sites 10"
    assert (sites["status"] == "ok").sum() == 12 - 2


def test_units_as_pairs_and_out_path(tmp_path):
    """The Snakemake rule passes the units as [key, ref] pairs (rhosym.workflow.ingest_units)."""
    ds = {"kind": "cdvae_csv", "path": str(FIX / "csv_tiny.csv")}
    units = shards.shard_units(ds, 0, 100)[:3]
    pairs = [[u.key, list(u.ref)] for u in units]
    out = tmp_path / "ingest" / "shard-00000.parquet"
    df = ingest.ingest_shard("csv_tiny", ds, "00000", pairs, LABELS, None, out)
    assert df["unit"].tolist() == [u.key for u in units] and (df["status"] == "ok").all()
    back = pd.read_parquet(out)
    assert back["id"].tolist() == df["id"].tolist() and not list(out.parent.glob("*.tmp-*"))
    rows = ingest.read_ingest(out)
    assert [r["id"] for r in rows] == df["id"].tolist()
    assert ingest.structure_from_json(rows[0]["structure"]).composition.reduced_formula in ("NaCl", "CsCl", "SrTiO3")


@pytest.mark.parametrize("name,want", [("mp-149_CHGCAR.gz", "mp-149"), ("mp-13.chgcar", "mp-13"),
                                       ("CHGCAR_mvc-7.bz2", "mvc-7"), ("Li_bcc_spin_CHGCAR.gz", "Li_bcc_spin")])
def test_chgcar_id(name, want):
    assert ingest.chgcar_id(name) == want
    assert ingest.chgcar_id("mp-5/CHGCAR") == "mp-5"


def test_labels_cli(capsys):
    from rhosym.cli import main

    files = [FIX / "cif_tiny" / "two_blocks.cif", FIX / "cif_tiny" / "bad_unparsable.cif", FIX / "csv_tiny.csv"]
    assert main(["labels", *map(str, files), "--symprec", "0.01"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 + 1 + 16
    assert lines[0]["source"].endswith("two_blocks.cif#Si_diamond") and lines[0]["space_group"] == 227
    assert lines[0]["crystal_system"] == "cubic" and lines[0]["extinction_group"] >= 1
    assert lines[1]["symbol"] == "Im-3m"
    assert set(lines[2]) == {"source", "error"} and lines[2]["error"].startswith("unparsable CIF")
    assert lines[3]["source"].endswith("csv_tiny.csv#0") and lines[3]["id"] == "tiny-1"


@pytest.mark.slow
def test_fixtures_regenerate_identically(tmp_path):
    from tests.fixtures.make_fixtures import make_cif_fixtures, make_csv_fixture

    for p in make_cif_fixtures(tmp_path / "cif"):
        assert p.read_text() == (FIX / "cif_tiny" / p.name).read_text(), p.name
    assert make_csv_fixture(tmp_path / "t.csv").read_text() == (FIX / "csv_tiny.csv").read_text()


def test_labels_cli_poscar_and_ingest_command(tmp_path, capsys):
    import yaml
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.vasp import Poscar

    from rhosym.cli import main

    s = Structure(Lattice.tetragonal(4.59, 2.96), ["Ti", "Ti", "O", "O", "O", "O"],
                  [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]])
    Poscar(s).write_file(tmp_path / "POSCAR")
    assert main(["labels", str(tmp_path / "POSCAR")]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["space_group"] == 136 and line["crystal_system"] == "tetragonal"

    cfg = {"results": str(tmp_path / "res"), "shard_size": 10,
           "datasets": {"csv_tiny": {"kind": "cdvae_csv", "path": str(FIX / "csv_tiny.csv")}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["ingest", str(tmp_path / "c.yaml"), "csv_tiny"]) == 0
    out = tmp_path / "res" / "csv_tiny"
    assert sorted(p.name for p in (out / "ingest").iterdir()) == ["shard-00000.parquet", "shard-00001.parquet"]
    assert len(pd.read_parquet(out / "manifest.parquet")) == 16 and (out / "ingest_report.csv").exists()
