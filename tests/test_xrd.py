"""Simulated powder XRD (rhosym.xrd) against pymatgen's XRDCalculator, and the shard store / CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from rhosym import xrd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _structures() -> dict[str, Structure]:
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rutile = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                       [[0, 0, 0], [0.305, 0.305, 0]])
    zno = Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.207), ["Zn", "O"],
                                    [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]])
    # orthorhombic Pnma (a GdFeO3-like perovskite) and monoclinic P2_1/c with general positions
    ortho = Structure.from_spacegroup("Pnma", Lattice.orthorhombic(5.57, 7.67, 5.39), ["Ca", "Ti", "O", "O"],
                                      [[0.036, 0.25, 0.991], [0, 0, 0.5], [0.484, 0.25, 0.071],
                                       [0.289, 0.038, 0.711]])
    mono = Structure.from_spacegroup("P2_1/c", Lattice.monoclinic(5.15, 5.21, 5.31, 99.2), ["Zr", "O", "O"],
                                     [[0.276, 0.040, 0.209], [0.070, 0.332, 0.345], [0.450, 0.757, 0.479]])
    disordered = nacl.copy()
    disordered.replace_species({"Na": {"Na": 0.6, "K": 0.3}})
    return {"cubic": nacl, "tetragonal": rutile, "hexagonal": zno, "orthorhombic": ortho,
            "monoclinic": mono, "partial_occupancy": disordered}


def _top10_errors(structure, debye_waller=None, b_iso=0.0):
    """Worst |Δ2θ| and relative intensity error over pymatgen's 10 strongest Kα1 peaks."""
    ref = XRDCalculator("CuKa1", debye_waller_factors=debye_waller).get_pattern(structure, two_theta_range=(5, 105))
    d, f2 = xrd.reflections(structure, xrd.CU_KA1 / (2 * math.sin(math.radians(53))), b_iso=b_iso)
    tt, inten = xrd.stick_pattern(d, f2, xrd.CU_KA1)
    inside = (tt >= 5) & (tt <= 105)
    tt, inten = tt[inside], inten[inside] / inten[inside].max() * 100
    top = np.argsort(-np.asarray(ref.y))[:10]
    dpos, dint = [], []
    for k in top:
        j = int(np.argmin(np.abs(tt - ref.x[k])))
        dpos.append(abs(tt[j] - ref.x[k]))
        dint.append(abs(inten[j] - ref.y[k]) / ref.y[k])
    return max(dpos), max(dint)


@pytest.mark.parametrize("name", list(_structures()))
def test_sticks_match_pymatgen(name):
    dpos, dint = _top10_errors(_structures()[name])
    assert dpos < 0.01
    assert dint < 0.03


def test_b_iso_matches_pymatgen_debye_waller():
    s = _structures()["tetragonal"].copy()
    s.add_site_property("b_iso", [0.8] * len(s))
    dpos, dint = _top10_errors(s, debye_waller={"Ti": 0.8, "O": 0.8})
    assert dpos < 0.01 and dint < 0.03
    # the default b_iso applies to sites without the property
    dpos, dint = _top10_errors(_structures()["tetragonal"], debye_waller={"Ti": 1.5, "O": 1.5}, b_iso=1.5)
    assert dint < 0.03


def test_pattern_grid_and_normalization():
    settings = xrd.XRDSettings()
    pattern, d, f2 = xrd.simulate(_structures()["cubic"], settings)
    assert pattern.shape == (10001,) and settings.n_points == 10001
    assert settings.two_theta[0] == 5.0 and abs(settings.two_theta[-1] - 105.0) < 1e-9
    assert pattern.max() == pytest.approx(1.0) and pattern.min() >= 0
    assert f2.max() == pytest.approx(1.0)
    # the strongest NaCl line is (200) at 2θ ≈ 31.7°
    assert abs(settings.two_theta[np.argmax(pattern)] - 31.70) < 0.05


def test_kalpha2_ratio_single_stick():
    """One stick: the Kα2 peak has 0.5 × LP(θ2)/LP(θ1) of the Kα1 area, at the Kα2 Bragg angle."""
    s = xrd.XRDSettings(U=0.0, V=0.0, W=0.0004, eta=0.0)  # narrow Gaussians, well separated at high angle
    d = np.array([1.0])
    f2 = np.array([1.0])
    pattern = xrd.render(d, f2, s, normalize=False)
    t1 = math.degrees(2 * math.asin(xrd.CU_KA1 / 2))
    t2 = math.degrees(2 * math.asin(xrd.CU_KA2 / 2))
    x = s.two_theta
    mid = (t1 + t2) / 2
    a1 = pattern[x < mid].sum() * s.two_theta_step
    a2 = pattern[x >= mid].sum() * s.two_theta_step
    lp = xrd.lorentz_polarization(np.radians(np.array([t1, t2]) / 2))
    assert a2 / a1 == pytest.approx(0.5 * lp[1] / lp[0], rel=1e-3)
    assert abs(x[x >= mid][np.argmax(pattern[x >= mid])] - t2) < 0.011
    assert abs(x[np.argmax(pattern)] - t1) < 0.011
    # unit-area profiles: the Kα1 area is the LP-weighted intensity
    assert a1 == pytest.approx(lp[0], rel=1e-3)


def test_float16_safety():
    assert xrd.to_float16(np.array([0.0, 0.5, 1.0])).dtype == np.float16
    with pytest.raises(ValueError):
        xrd.to_float16(np.array([0.0, np.nan]))
    with pytest.raises(ValueError):
        xrd.to_float16(np.array([0.0, 1e6]))


def test_augmentations_off_by_default_and_on():
    rng = np.random.default_rng(0)
    s = xrd.XRDSettings()
    pattern, d, f2 = xrd.simulate(_structures()["cubic"], s)
    batch = pattern[None, :].astype(np.float32)
    assert np.array_equal(xrd.augment_patterns(batch, rng), batch)
    shifted = xrd.shift_patterns(batch, np.array([0.2]))
    assert abs(np.argmax(shifted[0]) - np.argmax(batch[0]) - 20) <= 1
    aug = xrd.augment_patterns(batch, rng, zero_shift=0.1, background=0.1, noise=0.01)
    assert aug.shape == batch.shape and np.isfinite(aug).all() and np.abs(aug).max() == pytest.approx(1.0)
    wide = xrd.augment_render([(d, f2)], s, rng, zero_shift=0.0, width_scale=0.5)
    assert wide.shape == (1, 10001) and wide.max() == pytest.approx(1.0)


def _ingest_frame(structures: dict[str, Structure | None]) -> pd.DataFrame:
    rows = []
    for sid, s in structures.items():
        rows.append({"id": sid, "kind": "synthetic", "status": "ok" if s is not None else "rejected",
                     "structure": json.dumps(s.as_dict()) if s is not None else None})
    return pd.DataFrame(rows)


def test_xrd_shard_store(tmp_path):
    st = _structures()
    bad = Structure(Lattice.cubic(4.0), ["Es"], [[0, 0, 0]])  # no scattering factors: rejected with a reason
    ingest = tmp_path / "shard-00000.parquet"
    _ingest_frame({"a": st["cubic"], "b": st["partial_occupancy"], "c": None, "d": bad}).to_parquet(ingest)
    out = tmp_path / "xrd" / "shard-00000.zarr"
    counts = xrd.run_xrd_shard(ingest, out, {})
    assert counts == {"ok": 2, "rejected": 1}
    store = xrd.XRDStore(out)
    assert store.ids == ["a", "b"] and "d" in store.attrs["rejected"]
    assert "scattering" in store.attrs["rejected"]["d"]
    assert store.group["patterns"].dtype == np.float16 and store.group["patterns"].shape == (2, 10001)
    assert store.attrs["two_theta_step"] == 0.01 and store.attrs["wavelengths"] == [1.54056, 1.54439]
    p = store.pattern(0)
    assert p.max() == pytest.approx(1.0, abs=1e-3)
    d, f2 = store.sticks(0)
    again = xrd.render(d, f2, store.settings)
    assert np.abs(again - p).max() < 2e-3  # re-rendered from sticks = stored pattern (float16 rounding)


def test_cli_xrd(tmp_path):
    from rhosym.cli import main

    cif = tmp_path / "nacl.cif"
    _structures()["cubic"].to(filename=str(cif))
    out, png = tmp_path / "p.csv", tmp_path / "p.png"
    assert main(["xrd", str(cif), "--out", str(out), "--plot", str(png)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["two_theta", "intensity"] and len(df) == 10001
    assert df["intensity"].max() == pytest.approx(1.0) and png.stat().st_size > 1000


@pytest.mark.shared
def test_real_cifs_partial_occupancy():
    path = SHARED / "cif" / "dans_diffraction" / "Na0.8CoO2_P63mmc.cif"
    if not path.is_file():
        pytest.skip(f"../shared/data is absent: {path}")
    s = Structure.from_file(path)
    assert not s.is_ordered
    dpos, dint = _top10_errors(s)
    assert dpos < 0.01 and dint < 0.03
    pattern, _, _ = xrd.simulate(s)
    assert np.isfinite(xrd.to_float16(pattern)).all()
