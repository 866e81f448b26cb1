"""Ingest: per-shard rows, rejections with reasons, manifest, synthetic determinism, labels CLI."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym import ingest
from tests.fixtures.make_fixtures import EXPECTED_CIF, EXPECTED_CSV

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
LABELS = {"symprec": 0.1, "angle_tolerance": 5.0}


def _structure(js):
    from pymatgen.core import Structure

    return Structure.from_dict(json.loads(js))


@pytest.fixture(scope="module")
def cif_rows():
    return ingest.ingest_shard("cif_tiny", {"kind": "cif_dir", "path": str(FIX / "cif_tiny")}, 0, 100,
                               LABELS, None)


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


def test_csv_tiny():
    df = ingest.ingest_shard("csv_tiny", {"kind": "cdvae_csv", "path": str(FIX / "csv_tiny.csv")}, 0, 100,
                             LABELS, None)
    assert len(df) == 16 and (df["status"] == "ok").all()
    d = df.set_index("id")
    for uid, sg in EXPECTED_CSV.items():
        assert d.loc[uid, "space_group"] == sg, uid
    assert (df["formation_energy"] < 0).sum() >= 10 and d.loc["tiny-3", "band_gap"] == pytest.approx(4.5)
    assert d.loc["tiny-1", "n_sites"] == 8  # conventional, not the primitive P1 cell of the CSV
    assert d.loc["tiny-1", "source"].endswith("csv_tiny.csv#0")
    # shards of 5 rows give the same rows
    parts = [ingest.ingest_shard("csv_tiny", {"kind": "cdvae_csv", "path": str(FIX / "csv_tiny.csv")}, k, 5,
                                 LABELS, None) for k in range(4)]
    assert pd.concat(parts)["id"].tolist() == df["id"].tolist()


def test_synthetic_is_independent_of_shard_size():
    from rhosym.synthetic import synthetic_structure

    cfg = {"kind": "synthetic", "n": 6, "space_groups": "all", "max_atoms": 12}
    a = pd.concat([ingest.ingest_shard("syn", cfg, k, 4, LABELS, None, seed=3) for k in range(2)])
    b = ingest.ingest_shard("syn", cfg, 0, 8, LABELS, None, seed=3)
    assert a["id"].tolist() == b["id"].tolist() == [f"syn-{i}" for i in range(6)]
    assert a["structure"].tolist() == b["structure"].tolist()
    assert (b["status"] == "ok").sum() >= 5
    ok = b[b["status"] == "ok"]
    assert (ok["n_sites"] <= 12).all() and ok["symbol"].notna().all()
    other, _, _ = synthetic_structure(0, seed=4, max_atoms=12)
    assert json.dumps(other.as_dict()) != b["structure"].iloc[0]


def test_synthetic_impossible_group_is_a_rejected_row():
    cfg = {"kind": "synthetic", "n": 2, "space_groups": [230], "max_atoms": 8}
    df = ingest.ingest_shard("syn", cfg, 0, 10, LABELS, None)
    assert (df["status"] == "rejected").all()
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
    pd.DataFrame({"material_id": ["mp-1", "mp-3"], "band_gap": [5.2, 0.0],
                  "formation_energy_per_atom": [-2.2, 0.1]}).to_csv(tmp_path / "meta.csv", index=False)
    cfg = {"kind": "mp_chgcar", "path": str(d), "metadata": str(tmp_path / "meta.csv")}
    df = ingest.ingest_shard("mp", cfg, 0, 10, LABELS, None).set_index("id")
    assert df.loc["mp-1", "status"] == "ok" and df.loc["mp-1", "space_group"] == 221
    assert df.loc["mp-1", "band_gap"] == pytest.approx(5.2) and df.loc["mp-1", "formation_energy"] == -2.2
    assert np.isnan(df.loc["mp-2", "band_gap"])
    assert df.loc["mp-2", "n_sites"] == 1  # the CHGCAR's own cell, not a conventional one
    assert df.loc["mp-3", "status"] == "rejected" and "truncated" in df.loc["mp-3", "reason"]
    assert df.loc["mp-1", "chgcar_path"].endswith("mp-1_CHGCAR")


def test_limits_reject_with_reasons():
    cfg = {"kind": "cif_dir", "path": str(FIX / "cif_tiny")}
    df = ingest.ingest_shard("c", cfg, 0, 100, LABELS, {"max_sites": 10, "max_volume": 150.0}).set_index("id")
    assert df.loc["Al2O3_corundum_trigonal", "reason"].startswith("cell volume")
    assert df.loc["Al2O3_corundum_trigonal", "status"] == "rejected"
    assert df.loc["two_blocks:W_bcc", "status"] == "ok"


@pytest.mark.parametrize("name,want", [("mp-149_CHGCAR.gz", "mp-149"), ("mp-13.chgcar", "mp-13"),
                                       ("CHGCAR_mvc-7.bz2", "mvc-7"), ("Li_bcc_spin_CHGCAR.gz", "Li_bcc_spin")])
def test_chgcar_id(name, want):
    assert ingest.chgcar_id(name) == want
    assert ingest.chgcar_id("mp-5/CHGCAR") == "mp-5"


class _FakeChgcar:
    def __init__(self, mid):
        self.mid = mid

    def write_file(self, path):
        Path(path).write_text(f"fake {self.mid}\n")


class _FakeRester:
    def __init__(self):
        self.calls = []

    def get_charge_density_from_material_id(self, mid):
        self.calls.append(mid)
        if mid == "mp-404":
            return None
        if mid == "mp-500":
            raise RuntimeError("server says no")
        return _FakeChgcar(mid)


def test_download_mp_caches_and_logs_missing(tmp_path, caplog):
    import gzip

    cfg = {"kind": "mp_chgcar", "path": str(tmp_path / "mp"), "mp_ids": ["mp-1", "mp-404", "mp-2", "mp-500"]}
    fake = _FakeRester()
    with caplog.at_level("WARNING", logger="rhosym.ingest"):
        res = ingest.download_mp(cfg, client=fake)
    assert res["downloaded"] == ["mp-1", "mp-2"] and set(res["missing"]) == {"mp-404", "mp-500"}
    assert "mp-404 has no charge density" in caplog.text
    with gzip.open(tmp_path / "mp" / "mp-1_CHGCAR.gz", "rt") as fh:
        assert fh.read() == "fake mp-1\n"
    assert "mp-404\tno charge density" in (tmp_path / "mp" / "missing.txt").read_text()
    fake2 = _FakeRester()
    res2 = ingest.download_mp(cfg, client=fake2)
    assert res2["skipped"] == ["mp-1", "mp-2"] and fake2.calls == ["mp-404", "mp-500"]
    assert not list((tmp_path / "mp").glob("*.tmp-*"))


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
