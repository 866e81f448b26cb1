"""rhosym.perturb: measured-looking perturbations of densities, patterns and cells; rhosym.io.ccp4.read_map."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

from rhosym import perturb as P
from rhosym.io.ccp4 import read_map


@pytest.fixture(scope="module")
def nacl():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _smooth_random(shape, lattice, seed=0, res=1.0):
    rng = np.random.default_rng(seed)
    return P.blur(rng.random(shape), lattice, res) + 0.1


def _monoclinic():
    from pymatgen.core import Lattice

    return np.asarray(Lattice.monoclinic(5.0, 6.0, 7.0, 105.0).matrix)


def _cell_params(lat):
    a, b, c = lat
    ang = lambda u, v: math.degrees(math.acos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))  # noqa: E731
    return [*np.linalg.norm(lat, axis=1), ang(b, c), ang(a, c), ang(a, b)]


# ----------------------------------------------------------------------------------- blur

def test_blur_b_definition():
    assert P.blur_b(1.0) == pytest.approx(math.pi**2 / math.log(2))
    assert P.blur_b(2.0) == pytest.approx(8 * math.pi**2 * (2.0 / (2 * math.sqrt(2 * math.log(2)))) ** 2)
    assert P.resolution_of_b(P.blur_b(1.7)) == pytest.approx(1.7)
    assert P.blur_b(0) == 0


def test_blur_psf_has_the_asked_fwhm():
    lat = np.diag([10.0, 10.0, 10.0])
    delta = np.zeros((64, 64, 64))
    delta[0, 0, 0] = 1.0
    res = 1.5
    out = P.blur(delta, lat, res)
    assert out.sum() == pytest.approx(1.0, rel=1e-12)
    prof = out.sum(axis=(1, 2))
    x = np.fft.fftfreq(64, 1 / 64) * (10.0 / 64)  # signed distance from the origin, Å
    sigma = math.sqrt((prof * x**2).sum() / prof.sum())
    assert 2 * math.sqrt(2 * math.log(2)) * sigma == pytest.approx(res, rel=1e-3)
    assert out.min() > -1e-12 and np.argmax(out) == 0


@pytest.mark.parametrize("primitive", [False, True])
def test_blur_equals_extra_b(nacl, primitive):
    """Blurring a Gaussian-model density = adding blur_b to every atom (non-orthogonal primitive cell too)."""
    from rhosym.density import dense_density

    s = nacl.get_primitive_structure() if primitive else nacl
    if primitive:
        assert abs(s.lattice.alpha - 90) > 10
    b, res = 0.5, 1.0
    r0, _ = dense_density(s, spacing=0.1, b_iso=b)
    r1, _ = dense_density(s, spacing=0.1, b_iso=b + P.blur_b(res))
    rb = P.blur(r0, s.lattice.matrix, res)
    assert rb.dtype == np.float32 and rb.shape == r0.shape
    assert np.abs(rb - r1).max() < 5e-5 * r1.max()
    assert np.abs(rb - r1).mean() < 3e-5  # e/Å³: of the order of gemmi's truncation cutoff (1e-5)
    assert rb.astype(np.float64).sum() == pytest.approx(r0.astype(np.float64).sum(), rel=1e-6)
    assert np.array_equal(P.blur(r0, s.lattice.matrix, 0.0), r0)


def test_thermal_copy_and_equals_blur(nacl):
    from rhosym.density import DirectModel, dense_density

    s = nacl.copy()
    s.add_site_property("b_iso", [1.0] + [None] * (len(s) - 1))
    t = P.thermal(s, 2.0, default_b=0.5)
    assert t.site_properties["b_iso"] == [3.0] + [2.5] * (len(s) - 1)
    assert s.site_properties["b_iso"][1] is None  # input untouched
    assert np.allclose(t.frac_coords, s.frac_coords)
    assert P.thermal(nacl, 0.0).site_properties["b_iso"] == [0.5] * len(nacl)
    with pytest.raises(ValueError):
        P.thermal(nacl, -1.0)

    res = 0.8
    prim = nacl.get_primitive_structure()
    r0, _ = dense_density(prim, spacing=0.1, b_iso=0.5)
    rt, _ = dense_density(P.thermal(prim, P.blur_b(res)), spacing=0.1)
    rb = P.blur(r0, prim.lattice.matrix, res)
    assert np.abs(rt - rb).max() < 5e-5 * rt.max()
    # the points path: DirectModel of the thermal structure at grid points = the blurred grid there
    rng = np.random.default_rng(3)
    idx = rng.integers(0, r0.shape, size=(500, 3))
    pts = (idx / np.array(r0.shape)) @ prim.lattice.matrix
    vals = DirectModel.from_structure(P.thermal(prim, P.blur_b(res)))(pts)
    assert np.abs(vals - rb[tuple(idx.T)]).max() < 5e-5 * rt.max()


# ----------------------------------------------------------------------------------- noise

def test_noise_snr_on_grid():
    lat = np.diag([8.0, 8.0, 8.0])
    rho = _smooth_random((64, 64, 64), lat)
    rho = (rho - rho.min()).astype(np.float32)  # >= 0, like a density
    rms = float(np.sqrt(np.mean((rho.astype(np.float64) - rho.mean()) ** 2)))
    for snr in (10.0, 2.0, 0.5):
        out = P.add_noise(rho, snr, 7)
        assert out.dtype == np.float32 and out.shape == rho.shape
        noise = out.astype(np.float64) - rho
        assert rms / noise.std() == pytest.approx(snr, rel=0.03)
        assert abs(noise.mean()) < 5 * noise.std() / math.sqrt(noise.size)  # mean kept in expectation
    assert np.array_equal(P.add_noise(rho, 5.0, 11), P.add_noise(rho, 5.0, np.random.default_rng(11)))
    assert not np.array_equal(P.add_noise(rho, 5.0, 11), P.add_noise(rho, 5.0, 12))
    assert np.array_equal(P.add_noise(rho, math.inf, 1), rho)
    low = P.add_noise(rho, 0.5, 1)
    assert low.min() < 0  # not clipped by default
    assert P.add_noise(rho, 0.5, 1, clip_negative=True).min() == 0
    with pytest.raises(ValueError):
        P.add_noise(rho, 0.0, 1)


def test_noise_on_points_same_definition():
    vals = np.random.default_rng(0).gamma(2.0, size=50_000)
    out = P.add_noise(vals, 4.0, 0)
    assert out.shape == vals.shape and out.dtype == np.float64
    assert vals.std() / (out - vals).std() == pytest.approx(4.0, rel=0.03)


# ----------------------------------------------------------------------------------- wedge

def _expected_removed(shape, lattice, half, tilt, beam):
    """Independent geometry: explicit g vectors, angles by arccos; also the distance to the boundary."""
    rec = np.linalg.inv(lattice).T
    h, k, l = np.meshgrid(*[np.fft.fftfreq(n, 1 / n) for n in shape], indexing="ij")  # noqa: E741
    g = np.stack([h, k, l], -1) @ rec
    t = np.asarray(tilt, float) / np.linalg.norm(tilt)
    b = np.asarray(beam, float)
    b = b - (b @ t) * t
    b /= np.linalg.norm(b)
    p = g - (g @ t)[..., None] * t
    pn = np.linalg.norm(p, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ang = np.degrees(np.arccos(np.clip(np.abs(p @ b) / pn, 0, 1)))
    on_axis = pn <= 1e-9 * np.linalg.norm(g, axis=-1)
    removed = (~on_axis) & (ang < half)
    margin = np.where(on_axis, np.inf, np.abs(ang - half))
    return removed, margin


@pytest.mark.parametrize("tilt,beam", [((0, 1, 0), (0, 0, 1)), ((1, 1, 0), (0, 0, 1)), ((0, 0, 1), (1, 0, 1))])
def test_wedge_removes_exactly_the_wedge(tilt, beam):
    lat = _monoclinic()
    shape = (31, 33, 35)  # odd: no Nyquist ambiguity
    rho = _smooth_random(shape, lat, res=0.5)
    half = 30.0
    out = P.missing_wedge(rho, lat, half, tilt_axis=tilt, beam_axis=beam)
    assert out.dtype == np.float64 and out.shape == shape
    f_in, f_out = np.fft.fftn(rho), np.fft.fftn(out)
    removed, margin = _expected_removed(shape, lat, half, tilt, beam)
    sure = margin > 1e-6
    scale = np.abs(f_in).max()
    assert removed.sum() > 1000
    assert np.abs(f_out[removed & sure]).max() < 1e-9 * scale
    assert np.allclose(f_out[~removed & sure], f_in[~removed & sure], rtol=1e-9, atol=1e-9 * scale)
    assert np.array_equal(P.wedge_mask(shape, lat, half, tilt, beam)[sure], removed[sure])
    assert out.sum() == pytest.approx(rho.sum(), rel=1e-12)
    # within a sphere of |g| the removed fraction of directions is half/90
    g2 = P.g_squared(shape, lat)
    ball = (g2 > 0) & (g2 < (0.95 * min(shape) / 2 / np.linalg.norm(lat, axis=1).max()) ** 2)
    assert removed[ball].mean() == pytest.approx(half / 90.0, abs=0.02)


def test_wedge_limits_and_integral():
    lat = np.diag([6.0, 7.0, 8.0])
    rho = _smooth_random((32, 36, 40), lat).astype(np.float32)
    assert np.array_equal(P.missing_wedge(rho, lat, 0.0), rho)
    out = P.missing_wedge(rho, lat, 90.0)  # tilt y, beam z: only g ∥ y survives
    want = rho.astype(np.float64).mean(axis=(0, 2), keepdims=True)
    assert np.abs(out - want).max() < 1e-5 * rho.max()
    for half in (20.0, 45.0):
        o = P.missing_wedge(rho, lat, half)
        assert o.dtype == np.float32
        assert o.astype(np.float64).sum() == pytest.approx(rho.astype(np.float64).sum(), rel=1e-6)
        assert np.abs(o - rho).max() > 1e-3 * rho.max()
    # even grid, non-orthogonal cell: the mask is Hermitian-closed, so the output is exactly real
    mono = _monoclinic()
    rho2 = _smooth_random((24, 26, 28), mono, res=0.5)
    mask = P.wedge_mask(rho2.shape, mono, 35.0)
    assert np.array_equal(mask, P._partner(mask))
    f = np.fft.fftn(rho2) * ~mask
    assert np.abs(np.fft.ifftn(f).imag).max() < 1e-12 * np.abs(rho2).max()
    assert P.missing_wedge(rho2, mono, 35.0).sum() == pytest.approx(rho2.sum(), rel=1e-12)
    with pytest.raises(ValueError):
        P.missing_wedge(rho, lat, 30.0, tilt_axis=(0, 0, 1), beam_axis=(0, 0, 2))
    with pytest.raises(ValueError):
        P.missing_wedge(rho, lat, 95.0)


def test_blur_integral_non_orthogonal_even_grid():
    lat = _monoclinic()
    rho = _smooth_random((24, 26, 28), lat, res=0.3).astype(np.float32)
    for res in (0.5, 1.5, 3.0):
        out = P.blur(rho, lat, res)
        assert out.astype(np.float64).sum() == pytest.approx(rho.astype(np.float64).sum(), rel=1e-6)
        assert out.std() < rho.std()


# ----------------------------------------------------------------------------------- XRD

@pytest.fixture(scope="module")
def sticks(nacl):
    from rhosym.xrd import XRDSettings, simulate

    settings = XRDSettings()
    _pattern, d, f2 = simulate(nacl, settings)
    return d, f2, settings


def _fwhm(p, step):
    i = int(np.argmax(p))
    half = p[i] / 2
    lo = i
    while p[lo] > half:
        lo -= 1
    hi = i
    while p[hi] > half:
        hi += 1
    return (hi - lo) * step


def test_xrd_broaden(sticks):
    from rhosym.xrd import XRDSettings, render

    d, f2, settings = sticks
    base = P.xrd_broaden(d, f2, settings, 1.0)
    assert base.dtype == np.float32 and base.shape == (settings.n_points,)
    assert np.array_equal(base, render(d, f2, settings).astype(np.float32))
    wide = P.xrd_broaden(d, f2, settings, 3.0)
    assert wide.max() == pytest.approx(1.0)
    one = (np.array([2.5]), np.array([1.0]))  # a single stick at one wavelength: its FWHM scales by the factor
    s1 = XRDSettings(wavelengths=[1.54056], wavelength_ratios=[1.0])
    w1 = _fwhm(P.xrd_broaden(*one, s1, 1.0), s1.two_theta_step)
    w3 = _fwhm(P.xrd_broaden(*one, s1, 3.0), s1.two_theta_step)
    assert w3 / w1 == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError):
        P.xrd_broaden(d, f2, settings, 0.5)


def test_xrd_zero_shift_moves_peak():
    from rhosym.xrd import XRDSettings, render

    settings = XRDSettings(wavelengths=[1.54056], wavelength_ratios=[1.0])
    d = np.array([2.0])
    p = render(d, np.array([1.0]), settings)

    def centre(q):
        i = int(np.argmax(q))
        y0, y1, y2 = q[i - 1:i + 2].astype(np.float64)
        return settings.two_theta[i] + settings.two_theta_step * 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)

    for shift in (0.37, -0.123, 0.05):
        q = P.xrd_zero_shift(p, shift, settings.two_theta_step)
        assert q.shape == p.shape and q.max() == pytest.approx(1.0)
        assert centre(q) - centre(p) == pytest.approx(shift, abs=2e-3)
        assert np.abs(q - render(d, np.array([1.0]), settings, zero_shift=shift)).max() < 0.02
    batch = np.stack([p, p])
    out = P.xrd_zero_shift(batch, np.array([0.0, 0.2]))
    assert out.shape == batch.shape
    assert np.allclose(out[0], p, atol=1e-7)


def test_xrd_noise(sticks):
    d, f2, settings = sticks
    p = P.xrd_broaden(d, f2, settings, 1.0)
    batch = np.stack([p] * 4)
    out = P.xrd_noise(batch, 0.02, 5)
    assert out.shape == batch.shape and out.dtype == np.float32
    assert np.allclose(out.max(axis=1), 1.0)
    for row in out:  # out = (p + n) / max(p + n): fit the scale back, the residual is the noise
        c = float(row @ p / (p @ p))
        assert c == pytest.approx(1.0, abs=0.1)
        assert (row - c * p).std() == pytest.approx(0.02 * c, rel=0.05)
    assert not np.array_equal(out[0], out[1])
    assert np.array_equal(P.xrd_noise(p, 0.02, 5), P.xrd_noise(p, 0.02, 5))
    assert P.xrd_noise(p, 0.02, 5).shape == p.shape
    assert np.array_equal(P.xrd_noise(p, 0.0, 5), p)


# ----------------------------------------------------------------------------------- lattice

def test_lattice_noise():
    rng = np.random.default_rng(0)
    params = np.column_stack([rng.uniform(3, 10, (20_000, 3)), rng.uniform(60, 120, (20_000, 3))])
    assert np.array_equal(P.lattice_noise(params, 0.0, 1), params)
    a = P.lattice_noise(params, 0.02, 42)
    assert np.array_equal(a, P.lattice_noise(params, 0.02, np.random.default_rng(42)))
    assert not np.array_equal(a, P.lattice_noise(params, 0.02, 43))
    assert (a[:, :3] / params[:, :3] - 1).std() == pytest.approx(0.02, rel=0.03)
    assert (a[:, 3:] - params[:, 3:]).std() == pytest.approx(0.02 * 90, rel=0.03)
    assert P.lattice_noise(params[0], 0.05, 1).shape == (6,)
    before = params.copy()
    P.lattice_noise(params, 0.1, 0)
    assert np.array_equal(params, before)


# ----------------------------------------------------------------------------------- registry

def test_registry():
    from rhosym.settings import RobustnessSettings

    assert set(P.PERTURBATIONS) == set(RobustnessSettings().perturbations)
    kinds = {"grid", "points", "xrd", "lattice"}
    for name, p in P.PERTURBATIONS.items():
        assert p.name == name and p.moderate in p.levels and set(p.applies_to) <= kinds
        lv = np.array(p.levels, dtype=float)
        steps = np.diff(lv)
        assert (steps < 0).all() if name == "noise" else (steps > 0).all()
        assert callable(p.fn)
    assert P.PERTURBATIONS["noise"].none == math.inf
    lat = _monoclinic()
    rho = _smooth_random((20, 22, 24), lat).astype(np.float32)
    for name in P.GRID_PERTURBATIONS:
        p = P.PERTURBATIONS[name]
        assert "grid" in p.applies_to
        assert np.array_equal(P.apply_grid(name, rho, lat, p.none, 0), rho)
        out = P.apply_grid(name, rho, lat, p.moderate, 0)
        assert out.shape == rho.shape and not np.array_equal(out, rho)
    assert np.array_equal(P.apply_grid("noise", rho, lat, 5.0, 3), P.add_noise(rho, 5.0, 3))
    assert np.array_equal(P.apply_grid("blur", rho, lat, 1.0), P.blur(rho, lat, 1.0))
    assert np.array_equal(P.apply_grid("wedge", rho, lat, 30.0), P.missing_wedge(rho, lat, 30.0))
    with pytest.raises(ValueError):
        P.apply_grid("thermal", rho, lat, 1.0)


# ----------------------------------------------------------------------------------- read_map

def _write_ccp4(path, rho, cell, order=(1, 2, 3)):
    """Write ``rho`` (indexed x, y, z) as a P1 CCP4 map whose columns/rows/sections are axes ``order``."""
    import gemmi

    perm = [o - 1 for o in order]  # file axis -> cell axis
    data = np.ascontiguousarray(np.transpose(rho, perm))  # data[c, r, s]
    m = gemmi.Ccp4Map()
    m.grid = gemmi.FloatGrid(data.astype(np.float32), cell, gemmi.SpaceGroup("P 1"))
    m.update_ccp4_header(2)
    for word, v in zip((17, 18, 19), order):
        m.set_header_i32(word, v)
    for word, n in zip((8, 9, 10), rho.shape):
        m.set_header_i32(word, n)
    m.write_ccp4_map(str(path))


@pytest.mark.parametrize("params,order", [((4.0, 4.0, 6.5, 90, 90, 120), (1, 2, 3)),
                                          ((5.0, 6.0, 7.0, 90, 105, 90), (3, 1, 2)),
                                          ((5.0, 6.0, 7.0, 90, 105, 90), (2, 3, 1))])
def test_read_map_ccp4_round_trip(tmp_path, params, order):
    import gemmi

    rho = np.random.default_rng(1).random((10, 12, 14)).astype(np.float32)
    path = tmp_path / "m.ccp4"
    _write_ccp4(path, rho, gemmi.UnitCell(*params), order)
    m = read_map(path)
    got, lat = m.rho, m.lattice
    assert got.dtype == np.float32 and got.shape == rho.shape
    assert np.array_equal(got, rho)
    assert np.allclose(_cell_params(lat), params, atol=1e-4)
    assert abs(np.linalg.det(lat)) == pytest.approx(gemmi.UnitCell(*params).volume, rel=1e-6)
    gz = tmp_path / "m.map"  # gzip content without a .gz name
    gz.write_bytes(gzip.compress(path.read_bytes()))
    m2 = read_map(gz)
    got2, lat2 = m2.rho, m2.lattice
    assert np.array_equal(got2, rho) and np.allclose(lat2, lat)


def test_read_map_chgcar_and_errors(tmp_path, nacl):
    from rhosym.io.chgcar import write_chgcar

    prim = nacl.get_primitive_structure()
    rho = np.random.default_rng(2).random((8, 9, 10)) + 0.5
    path = write_chgcar(tmp_path / "CHGCAR", prim, rho)
    m = read_map(path)
    got, lat = m.rho, m.lattice
    assert got.shape == rho.shape and got.dtype == np.float32
    assert np.allclose(got, rho, rtol=1e-6)
    assert np.allclose(lat, prim.lattice.matrix, atol=1e-6)
    bad = tmp_path / "junk.map"
    bad.write_text("not a map\n")
    with pytest.raises(ValueError) as e:
        read_map(bad)
    assert "\n" not in str(e.value)
    trunc = tmp_path / "trunc.ccp4"
    import gemmi

    _write_ccp4(trunc, rho.astype(np.float32), gemmi.UnitCell(4, 5, 6, 90, 90, 90))
    trunc.write_bytes(trunc.read_bytes()[:1500])
    with pytest.raises(ValueError) as e:
        read_map(trunc)
    assert "\n" not in str(e.value)


def test_read_map_partial_cell_rejected(tmp_path):
    import gemmi

    rho = np.random.default_rng(4).random((5, 12, 14)).astype(np.float32)
    m = gemmi.Ccp4Map()
    m.grid = gemmi.FloatGrid(rho, gemmi.UnitCell(5, 6, 7, 90, 90, 90), gemmi.SpaceGroup("P 1"))
    m.update_ccp4_header(2)
    m.set_header_i32(8, 10)  # the cell is sampled by 10 along x, the map holds 5
    m.write_ccp4_map(str(tmp_path / "half.ccp4"))
    with pytest.raises(ValueError, match="does not cover the unit cell"):
        read_map(tmp_path / "half.ccp4")
