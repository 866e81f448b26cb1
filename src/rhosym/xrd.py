"""Simulated powder X-ray diffraction patterns: the input of the XRD FCN baseline.

The published FCN (Lee et al.; patterns from FullProf as in Park et al. 2017) reads patterns for Cu Kα1/Kα2
(1.54056 / 1.54439 Å, Kα2/Kα1 intensity ratio 0.5) on 2θ = 5°...105° in 0.01° steps (10,001 points;
the network reads the first 8,192). This module computes them from a pymatgen ``Structure``:

1. **Reflections** (:func:`reflections`): every reciprocal-lattice point ``g = h a* + k b* + l c*`` with
   ``|g| ≤ g_max`` (one Friedel half, doubled), vectorized. Structure factor
   ``F(g) = Σ_j occ_j f_j(s) exp(-B_j s²) exp(2πi g·x_j)`` with ``s = |g|/2 = sinθ/λ``, site occupancies
   (mixed sites sum over their species), isotropic B (site property ``b_iso`` in Å², else the
   ``b_iso`` default, 0), and the atomic scattering factors of pymatgen's ``XRDCalculator``
   (``f = Z − 41.78214 s² Σ a_i exp(−b_i s²)``, neutral atoms; oxidation states are ignored, as in
   pymatgen). Reflections with the same d-spacing (all members of a form, and accidental coincidences
   within a relative 1e-7) are merged, so multiplicities are included. The result, the **sticks**, is
   ``(d, |F|²)``: independent of the wavelength.
2. **Sticks at a wavelength** (:func:`stick_pattern`): ``θ = asin(λ / 2d)``, intensity
   ``|F|² · LP(θ)`` with the Lorentz–polarization factor ``(1 + cos² 2θ) / (sin² θ cos θ)`` (pymatgen's
   convention, no monochromator). With ``wavelength=1.54056`` this reproduces ``XRDCalculator("CuKa1")``.
3. **Profile** (:func:`render`): for each wavelength k with ratio r_k (1 and 0.5), every stick becomes a
   pseudo-Voigt ``η L + (1 − η) G`` of unit area, FWHM from Caglioti ``H² = U tan²θ + V tanθ + W``
   (degrees², H at least ``min_fwhm``), evaluated only within ``± window_fwhm · H`` of its centre
   (chunks of peaks broadcast against their windows, each window added as one slice; the Gaussian part
   within ± 6 H, where it is above 1e-43 of its height; no per-point loop). The pattern is scaled to a
   **maximum of 1** (a pattern without any reflection in range is rejected).

Defaults (config section ``xrd``): ``U = 0.02``, ``V = −0.01``, ``W = 0.01`` deg², ``η = 0.5``: FWHM ≈ 0.10°
at 2θ = 5° rising to ≈ 0.18° at 105°, a typical laboratory diffractometer.

Per-shard store ``results/{ds}/xrd/shard-{shard}.zarr`` (zarr v3 group, see ``docs/formats.md``):

* ``patterns`` (n, 10001) float16, maximum 1 per row; a pattern that is not finite after the cast is
  rejected with a reason;
* ``sticks_offsets`` (n+1) int64, ``sticks_d`` (S,) float32 (Å) and ``sticks_f2`` (S,) float32 (merged
  ``|F|²`` scaled to a maximum of 1 per structure): the wavelength-independent sticks, so that a trainer
  can re-render patterns with other widths, wavelengths or a zero shift (:func:`render`,
  :func:`augment_render`);
* attributes ``ids``, ``rejected``, ``counts``, ``two_theta_min``, ``two_theta_max``, ``two_theta_step``,
  ``n_points``, ``wavelengths``, ``wavelength_ratios``, ``U``, ``V``, ``W``, ``eta``, ``window_fwhm``,
  ``min_fwhm``, ``b_iso``, ``scattering_factors``.

Augmentations for training (all off by default; Schuetzke et al. 2021, Szymanski et al. 2021):
:func:`augment_render` (random zero shift and Caglioti width scaling, re-rendered from sticks),
:func:`shift_patterns` (zero shift of rendered patterns), :func:`add_background` (random smooth
polynomial background), :func:`add_noise` (Gaussian noise), and :func:`augment_patterns` that combines the
last three on a batch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from rhosym.settings import XrdSettings

log = logging.getLogger("rhosym.xrd")

CU_KA1 = 1.54056
CU_KA2 = 1.54439
_FS_CONST = 41.78214
_MERGE_RTOL = 1e-7
_F2_RTOL = 1e-10  # sticks weaker than this fraction of the strongest are systematic absences
_GAUSS_FWHM = 6.0  # the Gaussian part of a pseudo-Voigt is evaluated within ± this many FWHM


XRDSettings = XrdSettings  # the typed settings (rhosym.settings), defaults documented there


# ----------------------------------------------------------------------------------- reflections

def _scattering_params() -> dict:
    from pymatgen.analysis.diffraction.xrd import ATOMIC_SCATTERING_PARAMS

    return ATOMIC_SCATTERING_PARAMS


def _site_b(structure, default: float) -> np.ndarray:
    vals = structure.site_properties.get("b_iso")
    if vals is None:
        return np.full(len(structure), float(default))
    out = np.array([float(v) if v is not None else np.nan for v in vals], dtype=np.float64)
    return np.where(np.isfinite(out), out, float(default))


def _hkl_in_sphere(recip: np.ndarray, g_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer hkl (one Friedel half, no 000) with ``|g| ≤ g_max``; ``recip`` rows are a*, b*, c*."""
    real = np.linalg.inv(recip).T  # rows a, b, c
    lim = np.floor(g_max * np.linalg.norm(real, axis=1) + 1e-9).astype(int)
    rng = [np.arange(-n, n + 1) for n in lim]
    h, k, ll = (a.ravel() for a in np.meshgrid(*rng, indexing="ij"))
    half = (h > 0) | ((h == 0) & (k > 0)) | ((h == 0) & (k == 0) & (ll > 0))
    hkl = np.stack([h[half], k[half], ll[half]], axis=1)
    g = np.linalg.norm(hkl @ recip, axis=1)
    keep = g <= g_max
    return hkl[keep], g[keep]


def reflections(structure, d_min: float, b_iso: float = 0.0, chunk: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """The sticks of ``structure``: unique d-spacings (Å, descending) and merged ``|F|²`` (multiplicity
    and Debye–Waller factors included, Lorentz–polarization not), for every reflection with ``d ≥ d_min``.

    Raises ``ValueError`` for a species without scattering factors or a structure without reflections.
    """
    params = _scattering_params()
    recip = np.asarray(structure.lattice.reciprocal_lattice_crystallographic.matrix)
    hkl, g = _hkl_in_sphere(recip, 1.0 / d_min)
    if len(g) == 0:
        raise ValueError(f"no reflection with d >= {d_min:.3f} A")
    s2 = (g / 2.0) ** 2
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    b_site = _site_b(structure, b_iso)
    # per (site, species) weights; form factors computed once per element
    form: dict[str, np.ndarray] = {}
    rows, cols, symbols, occus = [], [], [], []
    for j, site in enumerate(structure):
        for sp, occ in site.species.items():
            sym = getattr(sp, "symbol", None)
            if sym not in params:
                raise ValueError(f"no X-ray scattering factors for species {sp}")
            if sym not in form:
                coeff = np.asarray(params[sym], dtype=np.float64)
                form[sym] = getattr(sp, "Z", 0) - _FS_CONST * s2 * np.sum(
                    coeff[:, 0] * np.exp(-coeff[:, 1] * s2[:, None]), axis=1)
            rows.append(j)
            symbols.append(sym)
            occus.append(float(occ))
            cols.append(len(cols))
    n_sites = len(structure)
    f_re = np.zeros(len(g))
    f_im = np.zeros(len(g))
    step = max(1, chunk // max(n_sites, 1))
    hkl_f = hkl.astype(np.float64)
    for start in range(0, len(g), step):
        sl = slice(start, start + step)
        phase = 2.0 * np.pi * (hkl_f[sl] @ frac.T)  # (m, n_sites)
        dw = np.exp(-s2[sl, None] * b_site[None, :])  # (m, n_sites)
        # site scattering: sum of occupancy-weighted form factors of its species
        w = np.zeros_like(phase)
        for j, sym, occ in zip(rows, symbols, occus):
            w[:, j] += occ * form[sym][sl]
        w *= dw
        f_re[sl] = np.sum(w * np.cos(phase), axis=1)
        f_im[sl] = np.sum(w * np.sin(phase), axis=1)
    f2 = 2.0 * (f_re**2 + f_im**2)  # x2: the Friedel mate
    # merge equal d-spacings
    order = np.argsort(g, kind="stable")
    g, f2 = g[order], f2[order]
    new = np.ones(len(g), dtype=bool)
    new[1:] = np.diff(g) > _MERGE_RTOL * g[1:]
    groups = np.cumsum(new) - 1
    g_u = g[new]
    f2_u = np.bincount(groups, weights=f2)
    keep = f2_u > _F2_RTOL * f2_u.max() if f2_u.size and f2_u.max() > 0 else np.zeros(len(f2_u), bool)
    if not keep.any():
        raise ValueError("all reflections have zero intensity")
    return 1.0 / g_u[keep], f2_u[keep]


def lorentz_polarization(theta: np.ndarray) -> np.ndarray:
    """``(1 + cos² 2θ) / (sin² θ cos θ)`` (θ in radians)."""
    return (1.0 + np.cos(2.0 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))


def stick_pattern(d: np.ndarray, f2: np.ndarray, wavelength: float = CU_KA1) -> tuple[np.ndarray, np.ndarray]:
    """2θ (degrees) and LP-weighted intensities of the sticks at one wavelength (unscaled)."""
    sin_t = wavelength / (2.0 * np.asarray(d, dtype=np.float64))
    ok = sin_t < 1.0
    theta = np.arcsin(sin_t[ok])
    return np.degrees(2.0 * theta), np.asarray(f2, dtype=np.float64)[ok] * lorentz_polarization(theta)


def d_min_for(settings: XRDSettings, margin_deg: float = 5.0) -> float:
    """Smallest d any wavelength needs to fill the 2θ range (plus a margin for peak tails)."""
    tt = min(settings.two_theta_max + margin_deg, 179.0)
    return min(settings.wavelengths) / (2.0 * math.sin(math.radians(tt / 2.0)))


# ----------------------------------------------------------------------------------- profiles

def caglioti_fwhm(two_theta: np.ndarray, U: float, V: float, W: float, min_fwhm: float) -> np.ndarray:  # noqa: N803
    t = np.tan(np.radians(np.asarray(two_theta) / 2.0))
    h2 = U * t * t + V * t + W
    return np.sqrt(np.maximum(h2, min_fwhm**2))


def render_peaks(pos: np.ndarray, inten: np.ndarray, fwhm: np.ndarray, settings: XRDSettings,
                 eta: float | None = None, max_entries: int = 1 << 21) -> np.ndarray:
    """Sum of unit-area pseudo-Voigt peaks (``pos``, ``fwhm`` in degrees) on the settings' grid
    (not normalized). Each peak is evaluated over ``± window_fwhm · fwhm`` only, in chunks; its Gaussian
    part only over ``± 6 fwhm`` (beyond, ``exp(−4 ln2 · 36) < 1e-43`` of its height: nothing a float64
    sum of the Lorentzian tails there can hold)."""
    eta = settings.eta if eta is None else eta
    n = settings.n_points
    x0, dx = settings.two_theta_min, settings.two_theta_step
    out = np.zeros(n, dtype=np.float64)
    half = np.ceil(settings.window_fwhm * fwhm / dx).astype(np.int64)
    centre = np.rint((pos - x0) / dx).astype(np.int64)
    vis = (centre + half >= 0) & (centre - half < n) & (inten > 0)
    pos, inten, fwhm, half, centre = pos[vis], inten[vis], fwhm[vis], half[vis], centre[vis]
    if len(pos) == 0:
        return out
    order = np.argsort(half)
    pos, inten, fwhm, half, centre = pos[order], inten[order], fwhm[order], half[order], centre[order]
    c_ln2 = 4.0 * math.log(2.0)
    g_norm = 2.0 * math.sqrt(math.log(2.0) / math.pi)
    start = 0
    while start < len(pos):
        w = int(half[min(len(pos) - 1, start + max(1, max_entries // (2 * int(half[start]) + 1)) - 1)])
        rows = max(1, max_entries // (2 * w + 1))
        sl = slice(start, start + rows)
        w = int(half[sl].max())
        off = np.arange(-w, w + 1)
        inv_h = 1.0 / fwhm[sl]
        # (x - pos) / fwhm on each peak's grid points centre - w ... centre + w
        u = ((x0 + centre[sl] * dx - pos[sl]) * inv_h)[:, None] + (off * dx)[None, :] * inv_h[:, None]
        q = u * u
        amp = inten[sl] * inv_h
        prof = ((eta * 2.0 / math.pi) * amp)[:, None] / (1.0 + 4.0 * q) if eta > 0 else np.zeros_like(q)
        if eta < 1:
            wg = min(w, int(math.ceil(_GAUSS_FWHM * float(fwhm[sl].max()) / dx)) + 1)  # the Gaussian's columns
            cols = slice(w - wg, w + wg + 1)
            prof[:, cols] += ((1.0 - eta) * g_norm * amp)[:, None] * np.exp(-c_ln2 * q[:, cols])
        # each peak adds its own window (± half) to the pattern, cut at the grid's ends
        for k, (c, hw) in enumerate(zip(centre[sl].tolist(), half[sl].tolist())):
            a, b = max(c - hw, 0), min(c + hw + 1, n)
            if a < b:
                out[a:b] += prof[k, w - c + a: w - c + b]
        start += rows
    return out


def render(d: np.ndarray, f2: np.ndarray, settings: XRDSettings, zero_shift: float = 0.0,
           width_scale: float = 1.0, normalize: bool = True) -> np.ndarray:
    """The profile pattern (``settings.n_points``, float64) from sticks, all wavelengths, maximum 1.

    ``zero_shift`` (degrees) is added to every peak position; ``width_scale`` multiplies the FWHM.
    Raises ``ValueError`` when no peak falls on the grid.
    """
    pos_all, int_all = [], []
    for lam, ratio in zip(settings.wavelengths, settings.wavelength_ratios):
        tt, inten = stick_pattern(d, f2, lam)
        pos_all.append(tt)
        int_all.append(ratio * inten)
    pos = np.concatenate(pos_all)
    inten = np.concatenate(int_all)
    fwhm = caglioti_fwhm(pos, settings.U, settings.V, settings.W, settings.min_fwhm) * width_scale
    pattern = render_peaks(pos + zero_shift, inten, fwhm, settings)
    peak = pattern.max() if pattern.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError("no reflection inside the 2-theta range")
    return pattern / peak if normalize else pattern


def simulate(structure, settings: XRDSettings | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pattern (n_points,) float64 with maximum 1, and the sticks ``(d, f2)`` (f2 scaled to maximum 1)."""
    settings = settings or XRDSettings()
    d, f2 = reflections(structure, d_min_for(settings), settings.b_iso)
    f2 = f2 / f2.max()
    return render(d, f2, settings), d, f2


def to_float16(pattern: np.ndarray) -> np.ndarray:
    """Cast to float16; ``ValueError`` when anything is non-finite or out of [0, 1] after the cast."""
    with np.errstate(over="ignore", invalid="ignore"):
        p16 = np.asarray(pattern, dtype=np.float16)
    if not np.isfinite(p16).all():
        raise ValueError("pattern is not finite in float16")
    if p16.min() < 0 or p16.max() > 1.0:
        raise ValueError(f"pattern outside [0, 1] in float16 ({float(p16.min())}..{float(p16.max())})")
    return p16


# ----------------------------------------------------------------------------------- augmentations

def augment_render(sticks: list[tuple[np.ndarray, np.ndarray]], settings: XRDSettings,
                   rng: np.random.Generator, zero_shift: float = 0.0, width_scale: float = 0.0) -> np.ndarray:
    """Re-render a batch from stored sticks with a random zero shift in ``[-zero_shift, zero_shift]``
    degrees and FWHM scaled by a random factor in ``[1 - width_scale, 1 + width_scale]``.
    Returns (batch, n_points) float32, maximum 1 per row."""
    out = np.zeros((len(sticks), settings.n_points), dtype=np.float32)
    for i, (d, f2) in enumerate(sticks):
        shift = rng.uniform(-zero_shift, zero_shift) if zero_shift else 0.0
        scale = rng.uniform(1.0 - width_scale, 1.0 + width_scale) if width_scale else 1.0
        try:
            out[i] = render(d, f2, settings, zero_shift=shift, width_scale=max(scale, 0.05))
        except ValueError:
            pass  # every peak shifted off the grid: leave zeros
    return out


def shift_patterns(patterns: np.ndarray, shifts_deg: np.ndarray, step: float = 0.01) -> np.ndarray:
    """Zero shift of rendered patterns (batch, n) by ``shifts_deg`` (per row, degrees; linear
    interpolation, zeros shifted in)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    n = patterns.shape[-1]
    x = np.arange(n, dtype=np.float64)
    out = np.empty_like(patterns)
    for i, s in enumerate(np.broadcast_to(np.asarray(shifts_deg, dtype=np.float64), (len(patterns),))):
        out[i] = np.interp(x - s / step, x, patterns[i], left=0.0, right=0.0)
    return out


def add_background(patterns: np.ndarray, rng: np.random.Generator, amplitude: float, degree: int = 4) -> np.ndarray:
    """Add a random smooth, non-negative background: a Chebyshev polynomial of ``degree`` on the
    pattern axis, rescaled to a random maximum in ``[0, amplitude]`` (relative to the peak maximum)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    n = patterns.shape[-1]
    t = np.linspace(-1.0, 1.0, n)
    coef = rng.normal(size=(len(patterns), degree + 1))
    bg = np.polynomial.chebyshev.chebval(t, coef.T)  # (batch, n)
    bg -= bg.min(axis=1, keepdims=True)
    top = bg.max(axis=1, keepdims=True)
    bg = bg / np.where(top > 0, top, 1.0) * rng.uniform(0.0, amplitude, size=(len(patterns), 1))
    return (patterns + bg).astype(np.float32)


def add_noise(patterns: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``sigma`` (relative to the peak maximum of 1)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    return (patterns + rng.normal(0.0, sigma, size=patterns.shape)).astype(np.float32)


def augment_patterns(patterns: np.ndarray, rng: np.random.Generator, zero_shift: float = 0.0,
                     background: float = 0.0, noise: float = 0.0, step: float = 0.01) -> np.ndarray:
    """Zero shift, background and noise on a batch of rendered patterns; renormalized to maximum 1.
    With all amounts 0 (the defaults) the batch is returned unchanged (as float32)."""
    out = np.asarray(patterns, dtype=np.float32)
    if zero_shift:
        out = shift_patterns(out, rng.uniform(-zero_shift, zero_shift, size=len(out)), step)
    if background:
        out = add_background(out, rng, background)
    if noise:
        out = add_noise(out, rng, noise)
    if zero_shift or background or noise:
        top = np.abs(out).max(axis=1, keepdims=True)
        out = out / np.where(top > 0, top, 1.0)
    return out


# ----------------------------------------------------------------------------------- shards

def run_xrd_shard(ingest_path: str | Path, out_path: str | Path, cfg: dict | None = None) -> dict:
    """Patterns and sticks of every ``ok`` structure of one ingest shard; returns the counts."""
    from rhosym.ingest import read_ingest, structure_from_json
    from rhosym.logs import progress
    from rhosym.store import write_store

    settings = XRDSettings.from_config(cfg)
    rows = read_ingest(ingest_path, ["id", "structure"])
    log.info("%s: %d ok rows", ingest_path, len(rows))
    ids: list[str] = []
    rejected: dict[str, str] = {}
    patterns: list[np.ndarray] = []
    sticks_d: list[np.ndarray] = []
    sticks_f2: list[np.ndarray] = []
    for row in progress(rows, desc="xrd"):
        sid = str(row["id"])
        try:
            pattern, d, f2 = simulate(structure_from_json(row["structure"]), settings)
            p16 = to_float16(pattern)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reason
            rejected[sid] = _one_line(f"{type(exc).__name__}: {exc}")
            continue
        ids.append(sid)
        patterns.append(p16)
        sticks_d.append(d.astype(np.float32))
        sticks_f2.append(f2.astype(np.float32))
    n = settings.n_points
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in sticks_d])
    arrays = {
        "patterns": np.stack(patterns) if patterns else np.zeros((0, n), np.float16),
        "sticks_offsets": offsets,
        "sticks_d": np.concatenate(sticks_d) if sticks_d else np.zeros(0, np.float32),
        "sticks_f2": np.concatenate(sticks_f2) if sticks_f2 else np.zeros(0, np.float32),
    }
    counts = {"ok": len(ids), "rejected": len(rejected)}
    attrs = {"ids": ids, "rejected": rejected, "counts": counts, **settings.attrs()}
    write_store(out_path, arrays, attrs)
    log.info("xrd %s: %d ok, %d rejected", out_path, counts["ok"], counts["rejected"])
    for sid, why in list(rejected.items())[:20]:
        log.info("rejected %s: %s", sid, why)
    return counts


def _one_line(msg: str, limit: int = 300) -> str:
    s = " ".join(str(msg).split())
    return s[:limit] + ("..." if len(s) > limit else "")


class XRDStore:
    """Read a shard store: ``len``, ``ids``, ``pattern(i)`` (float32), ``sticks(i)`` -> (d, f2),
    ``settings`` (for :func:`render`)."""

    def __init__(self, path: str | Path):
        from rhosym.store import open_store

        self.group = open_store(path)
        self.attrs = dict(self.group.attrs)
        self.ids = list(self.attrs.get("ids", []))
        self.settings = XRDSettings.from_config(self.attrs)
        self._off = np.asarray(self.group["sticks_offsets"][...], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def pattern(self, i: int) -> np.ndarray:
        return np.asarray(self.group["patterns"][i], dtype=np.float32)

    def sticks(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self._off[i]), int(self._off[i + 1])
        return (np.asarray(self.group["sticks_d"][a:b], dtype=np.float64),
                np.asarray(self.group["sticks_f2"][a:b], dtype=np.float64))


def write_csv(path: str | Path, settings: XRDSettings, pattern: np.ndarray) -> None:
    """Two columns with header ``two_theta,intensity``."""
    np.savetxt(path, np.column_stack([settings.two_theta, pattern]), delimiter=",",
               header="two_theta,intensity", comments="", fmt=["%.2f", "%.6g"])
