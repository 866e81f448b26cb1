"""Perturbations that make a computed density (or pattern, or cell) look measured: the robustness evaluation.

Every function is pure (inputs are never modified) and takes its strength as one number; the random ones take
``rng``: a ``numpy.random.Generator`` (used as is), an int seed, or None (fresh entropy, not reproducible).
Strength 'none' (the first of the default levels) returns an unchanged copy. Definitions:

* :func:`add_noise` — ``snr``: SNR = RMS(ρ − mean ρ) / σ_noise, with mean and RMS over all values given
  (grid points or sampled points); i.i.d. Gaussian noise N(0, σ_noise²) is added; ``inf`` = none.
* :func:`blur` — ``resolution`` (Å): the FWHM of the isotropic real-space Gaussian point-spread function;
  σ = FWHM / (2√(2 ln 2)); applied in Fourier space on the periodic grid: F(g) · exp(−2π²σ²|g|²) (g in Å⁻¹,
  no 2π); F(000) is kept, so ∫ρ is preserved. Equivalent extra isotropic B: :func:`blur_b`,
  B = 8π²σ² = π²·FWHM²/ln 2 (≈ 14.24 Å² per Å²).
* :func:`missing_wedge` — ``half_angle_deg``: half-angle of the missing wedge (degrees, 0...90) of
  single-axis tomography; a tilt range of ±θ leaves a missing wedge of half-angle 90° − θ.
* :func:`thermal` — ``extra_b`` (Å²) added to every site's isotropic B (site property ``b_iso``).
* :func:`xrd_noise` — ``sigma``: standard deviation of Gaussian noise relative to the pattern maximum 1.
* :func:`xrd_broaden` — ``factor`` (≥ 1): every Caglioti FWHM multiplied by it (re-rendered from sticks).
* :func:`xrd_zero_shift` — ``shift_deg`` (degrees 2θ): every peak moved by it (positive: to higher 2θ).
* :func:`lattice_noise` — ``rel_sigma``: lengths × (1 + rel_sigma·N(0,1)), angles + rel_sigma·90°·N(0,1).

:data:`PERTURBATIONS` lists them (name, strength name and unit, default levels from none to strong, the
moderate level, the input kinds they apply to, the function); :func:`apply_grid` dispatches the dense-grid
ones. Measured densities (CCP4/MRC maps) are read by :func:`rhosym.io.ccp4.read_map`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: default site B (Å²) of :func:`thermal` when a site has none: that of rhosym.density (XRD uses 0)
DEFAULT_B = 0.5


def seeded(seed: int, sid: str, name: str, level: float) -> np.random.Generator:
    """The generator of one perturbed input: fixed by (seed, structure id, perturbation, strength)."""
    import hashlib

    h = hashlib.blake2b(f"{seed}:{sid}:{name}:{level}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(h, "little"))


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _float(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.result_type(a.dtype, np.float32), copy=True)


# ----------------------------------------------------------------------------------- noise

def add_noise(rho, snr: float, rng=None, clip_negative: bool = False) -> np.ndarray:
    """``rho`` plus i.i.d. Gaussian noise at signal-to-noise ratio ``snr``.

    SNR = RMS(ρ − mean ρ) / σ_noise, mean and RMS over every value of ``rho`` (a dense grid of any shape, or a
    1-D array of values at points: same definition), so σ_noise = RMS(ρ − mean ρ) / snr. ``snr = inf`` (or a
    constant ``rho``) returns an unchanged copy; ``snr`` must be > 0. The noise has zero mean, so the mean
    (∫ρ) is kept only in expectation. Values are not clipped (noisy densities go negative, as measured
    maps do) unless ``clip_negative=True`` (then ``max(ρ, 0)``, which biases the mean up). Same dtype as the
    input (float32 stays float32; integers become float).
    """
    snr = float(snr)
    if not snr > 0:
        raise ValueError(f"snr must be > 0 (inf: no noise), got {snr}")
    out = _float(rho)
    if math.isfinite(snr):
        x = out.astype(np.float64)
        rms = float(np.sqrt(np.mean((x - x.mean()) ** 2))) if x.size else 0.0
        if rms > 0:
            out = (x + _rng(rng).normal(0.0, rms / snr, size=x.shape)).astype(out.dtype)
    if clip_negative:
        np.maximum(out, 0, out=out)
    return out


# ----------------------------------------------------------------------------------- Fourier helpers

def _fft_indices(shape) -> list[np.ndarray]:
    """Integer Miller indices h, k, l of the FFT coefficients along each axis (numpy order), broadcastable."""
    out = []
    for ax, n in enumerate(shape):
        h = np.fft.fftfreq(n, 1.0 / n).round()
        out.append(h.reshape([-1 if i == ax else 1 for i in range(3)]))
    return out


def _recip(lattice) -> np.ndarray:
    lat = np.asarray(lattice, dtype=np.float64)
    if lat.shape != (3, 3) or abs(np.linalg.det(lat)) < 1e-12:
        raise ValueError(f"lattice must be a non-degenerate (3, 3) array of rows a, b, c, got {lat.shape}")
    return np.linalg.inv(lat).T  # rows a*, b*, c* (Å⁻¹, no 2π)


def _dot_g(shape, lattice, v) -> np.ndarray:
    """g·v for every FFT coefficient, g = h a* + k b* + l c* (Cartesian, Å⁻¹); v a Cartesian vector."""
    c = _recip(lattice) @ np.asarray(v, dtype=np.float64)
    h, k, l = _fft_indices(shape)  # noqa: E741
    return h * c[0] + k * c[1] + l * c[2]


def g_squared(shape, lattice) -> np.ndarray:
    """|g|² (Å⁻², no 2π) of every coefficient of ``numpy.fft.fftn`` of a grid of ``shape`` (nx, ny, nz) in
    the cell ``lattice`` (rows a, b, c, Å), from the reciprocal metric (non-orthogonal cells included)."""
    rec = _recip(lattice)
    gm = rec @ rec.T
    h, k, l = _fft_indices(shape)  # noqa: E741
    return (gm[0, 0] * h * h + gm[1, 1] * k * k + gm[2, 2] * l * l
            + 2 * (gm[0, 1] * h * k + gm[0, 2] * h * l + gm[1, 2] * k * l))


def reciprocal_vectors(shape, lattice) -> np.ndarray:
    """Cartesian g (Å⁻¹, no 2π) of every FFT coefficient, shape (nx, ny, nz, 3)."""
    rec = _recip(lattice)
    h, k, l = _fft_indices(shape)  # noqa: E741
    return (h[..., None] * rec[0] + k[..., None] * rec[1] + l[..., None] * rec[2])


def _partner(mask: np.ndarray) -> np.ndarray:
    """``mask`` at the Hermitian partner index (−i mod n on every axis) of each coefficient."""
    out = mask
    for ax in range(3):
        out = np.roll(np.flip(out, axis=ax), 1, axis=ax)
    return out


def _apply_filter(rho, filt: np.ndarray) -> np.ndarray:
    """Multiply the 3-D FFT over the last three axes of ``rho`` by ``filt`` (nx, ny, nz); real output."""
    x = np.asarray(rho)
    dtype = np.result_type(x.dtype, np.float32)
    f = np.fft.fftn(x.astype(np.float64), axes=(-3, -2, -1))
    return np.fft.ifftn(f * filt, axes=(-3, -2, -1)).real.astype(dtype)


def _check_grid(rho) -> tuple[int, int, int]:
    shape = np.shape(rho)
    if len(shape) < 3:
        raise ValueError(f"expected a grid (..., nx, ny, nz), got shape {shape}")
    return tuple(int(n) for n in shape[-3:])


# ----------------------------------------------------------------------------------- blur

def blur_sigma(resolution: float) -> float:
    """σ (Å) of the real-space Gaussian whose FWHM is ``resolution`` (Å): FWHM / (2√(2 ln 2))."""
    return float(resolution) * FWHM_TO_SIGMA


def blur_b(resolution: float) -> float:
    """Extra isotropic B (Å²) equivalent to :func:`blur` at ``resolution`` (Å, FWHM): B = 8π²σ² = π²·res²/ln 2.

    For densities made of Gaussians (rhosym.density), blurring equals adding this B to every atom, which is
    the exact path for densities evaluated at points (``DirectModel``, via :func:`thermal` or its ``blur``).
    """
    return 8.0 * math.pi**2 * blur_sigma(resolution) ** 2


def resolution_of_b(b: float) -> float:
    """Inverse of :func:`blur_b`: the FWHM (Å) whose blur equals an extra B (Å²): √(B ln 2) / π."""
    if b < 0:
        raise ValueError(f"B must be >= 0, got {b}")
    return math.sqrt(b * math.log(2.0)) / math.pi


def blur(rho, lattice, resolution: float) -> np.ndarray:
    """Resolution loss: ``rho`` (..., nx, ny, nz) on the periodic grid of ``lattice`` (rows a, b, c, Å)
    convolved with an isotropic Gaussian whose FWHM is ``resolution`` (Å; typically 0.5–3).

    Done in Fourier space (numpy.fft over the last three axes): coefficient (h, k, l) with Cartesian
    g = h a* + k b* + l c* (reciprocal lattice, any cell) is multiplied by exp(−2π²σ²|g|²),
    σ = resolution / (2√(2 ln 2)) — the transform of the unit-integral Gaussian, i.e. an extra
    B = :func:`blur_b` (``exp(−B s²)``, s = |g|/2). F(000) is multiplied by 1, so ∫ρ is preserved exactly.
    The filter acts on the grid's (aliased) Fourier series; on the Nyquist planes of even grids of
    non-orthogonal cells it is the mean over the two aliases (the real part is returned). ``resolution``
    0 returns an unchanged copy. Same dtype as the input (float32 stays float32).
    """
    resolution = float(resolution)
    if not resolution >= 0 or not math.isfinite(resolution):
        raise ValueError(f"resolution must be finite and >= 0, got {resolution}")
    shape = _check_grid(rho)
    if resolution == 0:
        return _float(rho)
    sigma = blur_sigma(resolution)
    return _apply_filter(rho, np.exp(-2.0 * math.pi**2 * sigma**2 * g_squared(shape, lattice)))


# ----------------------------------------------------------------------------------- missing wedge

def wedge_mask(shape, lattice, half_angle_deg: float, tilt_axis=(0, 1, 0), beam_axis=(0, 0, 1)) -> np.ndarray:
    """Boolean (nx, ny, nz) mask of the FFT coefficients :func:`missing_wedge` removes (numpy.fft order).

    A coefficient with Cartesian g is removed when its projection p on the plane ⟂ ``tilt_axis`` is nonzero
    (|p| > 1e-9 |g|: g along the tilt axis, and F(000), are never removed) and the line of p makes an angle
    < ``half_angle_deg`` with the beam axis (|p·b| > cos(half_angle)·|p|; g and −g alike); at 90° every
    such coefficient is removed. ``beam_axis`` is made orthogonal to ``tilt_axis`` (Gram–Schmidt) and both
    are normalized; they must not be parallel. On even grids the mask is closed under the Hermitian partner
    (−h, −k, −l mod n) so that the output stays real.
    """
    half = float(half_angle_deg)
    if not 0.0 <= half <= 90.0:
        raise ValueError(f"half_angle_deg must be in [0, 90], got {half}")
    shape = tuple(int(n) for n in shape)
    t = np.asarray(tilt_axis, dtype=np.float64)
    b = np.asarray(beam_axis, dtype=np.float64)
    if t.shape != (3,) or b.shape != (3,) or np.linalg.norm(t) == 0:
        raise ValueError("tilt_axis and beam_axis must be nonzero Cartesian 3-vectors")
    t = t / np.linalg.norm(t)
    b = b - (b @ t) * t
    if np.linalg.norm(b) < 1e-9 * max(np.linalg.norm(beam_axis), 1e-300):
        raise ValueError("beam_axis must not be parallel to tilt_axis")
    b = b / np.linalg.norm(b)
    if half == 0:
        return np.zeros(shape, dtype=bool)
    g2 = g_squared(shape, lattice)
    gt = _dot_g(shape, lattice, t)
    gb = _dot_g(shape, lattice, b)
    p2 = np.maximum(g2 - gt**2, 0.0)
    off_axis = p2 > (1e-9) ** 2 * g2
    if half >= 90.0:
        removed = off_axis
    else:
        removed = off_axis & (gb**2 > math.cos(math.radians(half)) ** 2 * p2)
    return removed | _partner(removed)


def missing_wedge(rho, lattice, half_angle_deg: float, tilt_axis=(0, 1, 0), beam_axis=(0, 0, 1)) -> np.ndarray:
    """Single-axis tomography: the Fourier coefficients of ``rho`` (..., nx, ny, nz; periodic grid of
    ``lattice``, rows a, b, c, Å) within a wedge of half-angle ``half_angle_deg`` about the beam axis are set
    to zero, then transformed back (real output, input dtype).

    The wedge lies in the plane ⟂ ``tilt_axis``: a coefficient whose Cartesian reciprocal vector g, projected
    on that plane, makes an angle < half_angle with ``beam_axis`` is removed (:func:`wedge_mask`); g along the
    tilt axis itself is never removed, nor F(000) (∫ρ preserved). Axes are Cartesian, in the frame of the
    lattice rows. A tilt range of ±θ corresponds to a missing-wedge half-angle of 90° − θ (±60° → 30°).
    ``half_angle_deg`` 0 returns an unchanged copy; 90° keeps only the coefficients along the tilt axis.
    """
    shape = _check_grid(rho)
    mask = wedge_mask(shape, lattice, half_angle_deg, tilt_axis, beam_axis)
    if not mask.any():
        return _float(rho)
    return _apply_filter(rho, (~mask).astype(np.float64))


# ----------------------------------------------------------------------------------- thermal

def thermal(structure, extra_b: float, default_b: float = DEFAULT_B):
    """A copy of the pymatgen ``structure`` with every site's ``b_iso`` (Å², site property) increased by
    ``extra_b`` (≥ 0): thermal smearing of structure-derived densities (and XRD patterns, which read the same
    property). Sites without a finite ``b_iso`` start from ``default_b`` — give the default of the consumer
    (rhosym.density: 0.5, the default here; rhosym.xrd: ``XRDSettings.b_iso``, 0). For Gaussian-model
    densities, ``thermal(s, blur_b(res))`` equals :func:`blur` at ``res``.
    """
    extra_b = float(extra_b)
    if not extra_b >= 0 or not math.isfinite(extra_b):
        raise ValueError(f"extra_b must be finite and >= 0, got {extra_b}")
    out = structure.copy()
    old = (structure.site_properties or {}).get("b_iso")
    new = []
    for i in range(len(structure)):
        v = old[i] if old is not None else None
        v = float(v) if v is not None and np.isfinite(float(v)) else float(default_b)
        new.append(v + extra_b)
    out.add_site_property("b_iso", new)
    return out


# ----------------------------------------------------------------------------------- XRD

def _rows(pattern) -> tuple[np.ndarray, bool]:
    p = np.asarray(pattern, dtype=np.float32)
    if p.ndim not in (1, 2):
        raise ValueError(f"patterns must have shape (n,) or (batch, n), got {p.shape}")
    return (p[None] if p.ndim == 1 else p), p.ndim == 1


def _max1(p: np.ndarray) -> np.ndarray:
    top = p.max(axis=1, keepdims=True)
    return (p / np.where(top > 0, top, 1.0)).astype(np.float32)


def xrd_noise(pattern, sigma: float, rng=None) -> np.ndarray:
    """Patterns (n,) or (batch, n) plus i.i.d. Gaussian noise of standard deviation ``sigma`` relative to the
    maximum 1 (rhosym.xrd.add_noise), then each row rescaled to a maximum of 1 (not clipped: values may go
    slightly negative). ``sigma`` 0 returns the patterns as float32. Same shape, float32."""
    from rhosym.xrd import add_noise as _xrd_add_noise

    sigma = float(sigma)
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    p, one = _rows(pattern)
    out = _max1(_xrd_add_noise(p, _rng(rng), sigma)) if sigma > 0 else p.copy()
    return out[0] if one else out


def xrd_broaden(d, f2, settings=None, factor: float = 1.0) -> np.ndarray:
    """The pattern (n_points,) float32, maximum 1, re-rendered from the sticks ``(d, f2)`` with every peak
    FWHM multiplied by ``factor`` (≥ 1; rhosym.xrd.render ``width_scale``). ``factor`` 1 is the stored render."""
    from rhosym.xrd import XRDSettings, render

    factor = float(factor)
    if not factor >= 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    return render(np.asarray(d), np.asarray(f2), settings or XRDSettings(), width_scale=factor).astype(np.float32)


def xrd_zero_shift(pattern, shift_deg, step: float = 0.01) -> np.ndarray:
    """Patterns (n,) or (batch, n) on a 2θ grid of ``step`` degrees with every peak moved by ``shift_deg``
    degrees (scalar or one per row; positive: to higher 2θ, as render's ``zero_shift``), by
    rhosym.xrd.shift_patterns (linear interpolation, zeros shifted in), rescaled to a maximum of 1 per row.
    Same shape, float32."""
    from rhosym.xrd import shift_patterns

    p, one = _rows(pattern)
    out = _max1(shift_patterns(p, np.asarray(shift_deg, dtype=np.float64), step))
    return out[0] if one else out


# ----------------------------------------------------------------------------------- lattice

def lattice_noise(params, rel_sigma: float, rng=None) -> np.ndarray:
    """Lattice parameters (n, 6) or (6,) = a, b, c (Å), α, β, γ (degrees), perturbed: each length multiplied
    by (1 + rel_sigma·N(0,1)), each angle plus rel_sigma·90°·N(0,1) (independent draws). Validity (positive
    lengths, a realizable cell) is not enforced. ``rel_sigma`` 0 returns a copy. float64, same shape."""
    rel_sigma = float(rel_sigma)
    if not rel_sigma >= 0:
        raise ValueError(f"rel_sigma must be >= 0, got {rel_sigma}")
    p = np.array(params, dtype=np.float64)
    if p.shape[-1:] != (6,) or p.ndim not in (1, 2):
        raise ValueError(f"params must have shape (n, 6) or (6,), got {p.shape}")
    if rel_sigma == 0:
        return p
    z = _rng(rng).normal(size=p.shape)
    p[..., :3] *= 1.0 + rel_sigma * z[..., :3]
    p[..., 3:] += rel_sigma * 90.0 * z[..., 3:]
    return p


# ----------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Perturbation:
    """One perturbation: ``strength`` (its parameter name) in ``unit``; ``levels`` from none (first) to
    strong; ``moderate`` (one of the levels); ``applies_to`` input kinds ("grid", "points", "xrd",
    "lattice"); ``random`` whether ``fn`` takes an ``rng``."""

    name: str
    strength: str
    unit: str
    levels: tuple
    moderate: float
    applies_to: tuple
    fn: Callable
    random: bool
    definition: str

    @property
    def none(self) -> float:
        return self.levels[0]


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in [
    Perturbation("noise", "snr", "", (math.inf, 20.0, 10.0, 5.0, 2.0, 1.0), 5.0, ("grid", "points"), add_noise,
                 True, "SNR = RMS(rho - mean rho) / sigma_noise; inf = none"),
    Perturbation("blur", "resolution", "Å", (0.0, 0.5, 1.0, 1.5, 2.0, 3.0), 1.5, ("grid",), blur, False,
                 "FWHM of the Gaussian point-spread function; extra B = pi^2 res^2 / ln 2"),
    Perturbation("wedge", "half_angle", "deg", (0.0, 10.0, 20.0, 30.0, 45.0, 60.0), 30.0, ("grid",),
                 missing_wedge, False, "missing-wedge half-angle about the beam axis = 90 deg - tilt range"),
    Perturbation("thermal", "extra_b", "Å²", (0.0, 0.5, 1.0, 2.0, 4.0, 8.0), 2.0, ("grid", "points", "xrd"),
                 thermal, False, "isotropic B added to every site (structure level)"),
    Perturbation("xrd_noise", "sigma", "", (0.0, 0.005, 0.01, 0.02, 0.05, 0.1), 0.02, ("xrd",), xrd_noise, True,
                 "Gaussian noise standard deviation relative to the maximum 1"),
    Perturbation("xrd_broaden", "factor", "", (1.0, 1.5, 2.0, 3.0, 5.0), 2.0, ("xrd",), xrd_broaden, False,
                 "factor on every Caglioti FWHM"),
    Perturbation("xrd_shift", "shift", "deg", (0.0, 0.02, 0.05, 0.1, 0.2, 0.5), 0.1, ("xrd",), xrd_zero_shift,
                 False, "zero shift of 2-theta"),
    Perturbation("lattice_noise", "rel_sigma", "", (0.0, 0.005, 0.01, 0.02, 0.05, 0.1), 0.02, ("lattice",),
                 lattice_noise, True, "lengths x (1 + s N(0,1)), angles + s 90 deg N(0,1)"),
]}

GRID_PERTURBATIONS = ("noise", "blur", "wedge")


def apply_grid(name: str, rho, lattice, strength: float, rng=None) -> np.ndarray:
    """Apply the dense-grid perturbation ``name`` (noise, blur or wedge, default axes) at ``strength`` to
    ``rho`` (nx, ny, nz) in the cell ``lattice``; ``rng`` is used by noise only. thermal is structure-level
    (:func:`thermal`, then recompute the density)."""
    if name == "noise":
        return add_noise(rho, strength, rng)
    if name == "blur":
        return blur(rho, lattice, strength)
    if name == "wedge":
        return missing_wedge(rho, lattice, strength)
    raise ValueError(f"{name!r} is not a dense-grid perturbation (one of {', '.join(GRID_PERTURBATIONS)})")
