"""Ingest of real data subsets (skipped when ../shared/data is absent)."""

from pathlib import Path

import pytest

from rhosym import ingest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELS = {"symprec": 0.1, "angle_tolerance": 5.0}


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"../shared/data is absent: {path} not found")
    return path


@pytest.mark.slow
def test_obelix_subset():
    import pandas as pd

    d = _need(SHARED / "cif" / "obelix" / "randomized_cifs")
    df = ingest.ingest_shard("obelix", {"kind": "cif_dir", "path": str(d)}, 0, 40, LABELS, None)
    assert len(df) == 40
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 36 and ok["partial_occupancy"].sum() >= 20
    assert (df.loc[df["status"] != "ok", "reason"].str.len() > 0).all()
    # spglib on the (perturbed) structures mostly finds the space group the data set lists
    ref = pd.read_csv(d.parent / "all.csv")
    m = ok.merge(ref[["ID", "Space group #"]].astype({"ID": str}), left_on="id", right_on="ID")
    assert len(m) >= 30
    assert (m["space_group"] == m["Space group #"]).mean() > 0.6


@pytest.mark.slow
def test_mp20_subset_matches_csv_space_groups():
    import pandas as pd

    path = _need(SHARED / "mp20_public" / "mp20_public.csv")
    df = ingest.ingest_shard("mp20", {"kind": "cdvae_csv", "path": str(path)}, 1, 60, LABELS, None)
    assert len(df) == 60 and (df["status"] == "ok").sum() >= 58
    ref = pd.read_csv(path, usecols=["material_id", "spacegroup.number", "band_gap"]).iloc[60:120]
    m = df.merge(ref, left_on="id", right_on="material_id")
    assert len(m) == 60
    assert (m["space_group"] == m["spacegroup.number"]).mean() >= 0.95
    assert (m["band_gap_x"] - m["band_gap_y"]).abs().max() < 1e-9
