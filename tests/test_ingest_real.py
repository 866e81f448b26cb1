"""Ingest of real data subsets (skipped when ../shared/data is absent)."""

from pathlib import Path

import pytest

from rhosym import ingest, shards

LABELS = {"symprec": 0.1, "angle_tolerance": 5.0}


def _first_units(ds: dict, start: int, stop: int):
    """Units ``start:stop`` in listing order (sorted file names; CSV row order), as one shard."""
    return shards.list_units(ds)[start:stop]


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found in ../shared/data")
    return path


@pytest.mark.slow
def test_obelix_subset(shared_data):
    import pandas as pd

    d = _need(shared_data / "cif" / "obelix" / "randomized_cifs")
    ds = {"kind": "cif_dir", "path": str(d)}
    df = ingest.ingest_shard("obelix", ds, 0, _first_units(ds, 0, 40), LABELS, None)
    assert len(df) == 40 and df["unit"].is_unique
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 36 and ok["partial_occupancy"].sum() >= 20
    assert (df.loc[df["status"] != "ok", "reason"].str.len() > 0).all()
    # spglib on the (perturbed) structures mostly finds the space group the data set lists
    ref = pd.read_csv(d.parent / "all.csv")
    m = ok.merge(ref[["ID", "Space group #"]].astype({"ID": str}), left_on="id", right_on="ID")
    assert len(m) >= 30
    assert (m["space_group"] == m["Space group #"]).mean() > 0.6
    # the CIFs declare a space group; where spglib is labelled at 0.1 both mostly agree
    assert ok["declared_space_group"].notna().mean() > 0.9
    report = ingest.ingest_report(df).set_index("reason")
    assert report.loc["declares a space group", "count"] == ok["declared_space_group"].notna().sum()
    assert report.loc["declared space group equals spglib's", "count"] + \
        report.loc["declared space group differs from spglib's", "count"] <= len(ok)


@pytest.mark.slow
def test_mp20_subset_matches_csv_space_groups(shared_data):
    import pandas as pd

    path = _need(shared_data / "mp20_public" / "mp20_public.csv")
    ds = {"kind": "cdvae_csv", "path": str(path)}
    units = _first_units(ds, 60, 120)
    assert [u.ref[1] for u in units] == list(range(60, 120))
    df = ingest.ingest_shard("mp20", ds, 1, units, LABELS, None)
    assert len(df) == 60 and (df["status"] == "ok").sum() >= 58
    ref = pd.read_csv(path, usecols=["material_id", "spacegroup.number", "band_gap"]).iloc[60:120]
    m = df.merge(ref, left_on="id", right_on="material_id")
    assert len(m) == 60
    assert (m["space_group"] == m["spacegroup.number"]).mean() >= 0.95
    assert (m["band_gap_x"] - m["band_gap_y"]).abs().max() < 1e-9
    # the CSV's spacegroup.number column is the declared space group
    assert (m["declared_space_group"] == m["spacegroup.number"]).all()
    assert (m["unit"] == "mp20_public.csv:" + m["material_id"]).all()
