"""Electron density of a structure or a CHGCAR, on a dense grid or evaluated directly at points.

Structure-derived densities are all-electron densities from the IT92 Gaussian form factors
(``gemmi.DensityCalculatorX``) of a P1 model of the given cell: one gemmi atom per species on a site,
weighted by its occupancy (partial occupancy and mixed sites), with isotropic B from the site property
``b_iso`` (Å²) or ``density.b_iso``, plus the global ``density.blur`` (added to every B, not subtracted
back: the stored density is the blurred one, which still integrates to the same count). Each Gaussian
``a·(4π/(b+B))^{3/2}·exp(−4π² r²/(b+B))`` integrates to ``a``, so ∫ρ dV = Σ f(0)·occ ≈ Σ Z·occ (the IT92 fit
misses a few 1e-4: NaCl at 0.06 Å gives 111.97 of 112 electrons). B + blur must be > 0 (the IT92 constant
term is a delta function otherwise). The grid is ``ceil(length / spacing)`` points along each lattice
vector (actual spacing ≤ ``spacing``). ``gemmi`` truncates each atom at the radius where its density
drops below ``density.cutoff`` (e/Å³); :class:`DirectModel` uses the same radii.

Dense store (``results/{ds}/density/shard-{shard}.zarr``, see ``docs/formats.md``): a zarr v3 group with
one float32 array per structure, named ``s00000``, ``s00001``, ... in store order, shape
``(C, nx, ny, nz)`` (channel, then grid index along a, b, c; point ``[i, j, k]`` is at fractional
``(i/nx, j/ny, k/nz)``), chunked and compressed with zstd/blosc. Channels: ``["total"]`` for
structure-derived kinds; for ``mp_chgcar`` ``density.channels`` (default 4) =
``["total", "magnetization", "up", "down"]`` (non-spin files: magnetization 0, up = down = total/2).
Array attributes: ``id, kind, cell`` (3×3 lattice rows, Å, the frame of every Cartesian coordinate
later), ``shape, spacing`` (per axis, Å), ``channels, n_electrons`` (∫ρ dV found),
``n_electrons_expected`` (Σ Z·occ; the file's own valence count for a CHGCAR), ``magnetic_moment``
(∫m dV, spin CHGCARs; else null), ``spin, bytes``. Group attributes: ``ids``, ``arrays`` (array names,
parallel to ``ids``), ``rejected``, ``counts``, ``kind``, ``config``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rhosym.ingest import read_ingest, structure_from_json  # noqa: F401 - re-exported for callers
from rhosym.settings import DensitySettings, section

log = logging.getLogger("rhosym.density")

_D = DensitySettings()  # the defaults (rhosym.settings)


def _element(sym: str):
    import gemmi

    el = gemmi.Element(sym)
    if el.atomic_number == 0 or el.name.upper() != sym.upper():
        raise ValueError(f"element {sym!r} unknown to gemmi")
    if not el.it92.get_coefs() or sum(el.it92.get_coefs()) == 0:
        raise ValueError(f"no IT92 form factor for {sym}")
    return el


def atoms_of(structure, b_iso: float) -> list[tuple[str, np.ndarray, float, float]]:
    """``(element, frac, occupancy, B)`` for every species on every site."""
    b_site = structure.site_properties.get("b_iso") if structure.site_properties else None
    out = []
    for i, site in enumerate(structure):
        b = b_iso
        if b_site is not None and b_site[i] is not None and np.isfinite(b_site[i]):
            b = float(b_site[i])
        for sp, occ in site.species.items():
            sym = getattr(sp, "symbol", None)
            if not sym or getattr(sp, "Z", 0) == 0 or type(sp).__name__ == "DummySpecies":
                raise ValueError(f"site {i} holds a non-element species {sp}")
            out.append((sym, np.mod(site.frac_coords, 1.0), float(occ), b))
    return out


def expected_electrons(structure) -> float:
    """Σ Z·occ over every species on every site."""
    return float(sum(sp.Z * occ for site in structure for sp, occ in site.species.items()))


def grid_shape(lattice_abc, spacing: float) -> tuple[int, int, int]:
    return tuple(max(1, math.ceil(x / spacing - 1e-9)) for x in lattice_abc)


def _calculator(structure, b_iso: float, blur: float, cutoff: float):
    import gemmi

    st = gemmi.Structure()
    L = structure.lattice
    st.cell = gemmi.UnitCell(*L.abc, *L.angles)
    st.spacegroup_hm = "P 1"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    res = gemmi.Residue()
    res.name = "UNK"
    res.seqid = gemmi.SeqId(1, " ")
    for k, (sym, frac, occ, b) in enumerate(atoms_of(structure, b_iso)):
        if b + blur <= 0:
            raise ValueError(f"B + blur must be > 0 (got {b + blur}) for {sym}")
        a = gemmi.Atom()
        a.name = f"{sym}{k}"[:4]
        a.element = _element(sym)
        a.pos = st.cell.orthogonalize(gemmi.Fractional(*frac))
        a.occ = occ
        a.b_iso = b
        res.add_atom(a)
    chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    dc = gemmi.DensityCalculatorX()
    dc.blur = blur
    dc.cutoff = cutoff
    dc.d_min = 0.0
    return st, dc


def dense_density(structure, spacing: float | None = None, shape: tuple[int, int, int] | None = None,
                  b_iso: float = _D.b_iso, blur: float = _D.blur,
                  cutoff: float = _D.cutoff) -> tuple[np.ndarray, dict]:
    """All-electron density (e/Å³, float32, shape (nx, ny, nz)) of ``structure`` on a periodic grid.

    Give ``spacing`` (Å) or an explicit ``shape``. Returns ``(rho, info)`` with info ``shape, spacing,
    n_electrons, n_electrons_expected``.
    """
    import gemmi

    if shape is None:
        if spacing is None:
            raise ValueError("give spacing or shape")
        shape = grid_shape(structure.lattice.abc, spacing)
    shape = tuple(int(n) for n in shape)
    # gemmi clamps each atom's stencil to (n-1) grid steps along an axis, which truncates diffuse atoms
    # in cells smaller than their radius; compute on a supercell then and keep its first cell.
    reps = supercell_repeats(structure, shape, max_radius(structure, b_iso, blur, cutoff))
    big = structure * reps if reps != (1, 1, 1) else structure
    st, dc = _calculator(big, b_iso, blur, cutoff)
    dc.grid.set_unit_cell(st.cell)
    dc.grid.spacegroup = gemmi.SpaceGroup("P 1")
    dc.grid.set_size(*[n * k for n, k in zip(shape, reps)])
    dc.put_model_density_on_grid(st[0])
    rho = np.array(dc.grid, copy=False)[: shape[0], : shape[1], : shape[2]].astype(np.float32)
    info = {
        "shape": list(rho.shape),
        "spacing": [float(x / n) for x, n in zip(structure.lattice.abc, rho.shape)],
        "n_electrons": float(rho.astype(np.float64).mean() * structure.volume),
        "n_electrons_expected": expected_electrons(structure),
    }
    return rho, info


def max_radius(structure, b_iso: float, blur: float, cutoff: float) -> float:
    """Largest truncation radius (Å) gemmi uses for the atoms of ``structure``."""
    import gemmi

    dc = gemmi.DensityCalculatorX()
    dc.blur = blur
    dc.cutoff = cutoff
    r = 0.0
    for sym, b in {(sym, b) for sym, _f, _o, b in atoms_of(structure, b_iso)}:
        atom = gemmi.Atom()
        atom.element = _element(sym)
        atom.b_iso = b
        atom.occ = 1.0
        r = max(r, float(dc.estimate_radius(atom)))
    return r


def supercell_repeats(structure, shape, radius: float) -> tuple[int, int, int]:
    """Repeats along a, b, c so that gemmi's stencil (clamped to n-1 steps) covers ``radius``."""
    rec = np.linalg.norm(np.linalg.inv(structure.lattice.matrix), axis=0)  # 1/interplanar spacing
    out = []
    for n, ar in zip(shape, rec):
        du = math.ceil(radius * n * ar)  # stencil half-width in grid steps (gemmi: spacing = 1/(n*ar))
        out.append(max(1, math.ceil((du + 1) / n)))
    return tuple(out)


@dataclass
class DirectModel:
    """The same IT92 Gaussians as :func:`dense_density`, evaluated at arbitrary Cartesian points.

    Coordinates are in the frame of ``structure.lattice.matrix`` (rows a, b, c).
    """

    lattice: np.ndarray  # (3, 3)
    cart: np.ndarray  # (M, 3) atom positions in the cell
    amp: np.ndarray  # (M, 5) occ * a_k (4π/(b_k+B))^{3/2}, last = constant term
    expo: np.ndarray  # (M, 5) 4π²/(b_k+B)
    radius: np.ndarray  # (M,) truncation radius (gemmi's estimate)

    @classmethod
    def from_structure(cls, structure, b_iso: float = _D.b_iso, blur: float = _D.blur,
                       cutoff: float = _D.cutoff) -> DirectModel:
        import gemmi

        _st, dc = _calculator(structure, b_iso, blur, cutoff)
        lat = np.asarray(structure.lattice.matrix, dtype=np.float64)
        cart, amp, expo, radius = [], [], [], []
        cache: dict[tuple[str, float], tuple] = {}
        for sym, frac, occ, b in atoms_of(structure, b_iso):
            key = (sym, b)
            if key not in cache:
                co = np.array(_element(sym).it92.get_coefs(), dtype=np.float64)
                bb = np.append(co[4:8], 0.0) + b + blur
                aa = np.append(co[:4], co[8])
                atom = gemmi.Atom()
                atom.element = _element(sym)
                atom.b_iso = b
                atom.occ = 1.0
                cache[key] = (aa * (4 * np.pi / bb) ** 1.5, 4 * np.pi**2 / bb, float(dc.estimate_radius(atom)))
            a_k, e_k, r = cache[key]
            cart.append(frac @ lat)
            amp.append(occ * a_k)
            expo.append(e_k)
            radius.append(r)
        return cls(lat, np.array(cart), np.array(amp), np.array(expo), np.array(radius))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """ρ (e/Å³, float64) at Cartesian ``points`` (N, 3), periodic images within the radii.

        Atoms are grouped by identical (amplitudes, exponents, radius); for each group one KD-tree query
        finds the (point, atom image) pairs within the group's radius, among the images no farther than
        the radius from the cell (the points are wrapped into it). The Gaussians are evaluated in float32
        (relative error ~1e-6, far below the 1e-3 the dense grid is matched to) and summed in float64.
        """
        from scipy.spatial import cKDTree

        points = np.asarray(points, dtype=np.float64)
        inv = np.linalg.inv(self.lattice)
        frac = points @ inv
        wrapped = (frac - np.floor(frac)) @ self.lattice
        d = 1.0 / np.linalg.norm(inv, axis=0)  # interplanar spacings
        ptree = cKDTree(wrapped, leafsize=32, balanced_tree=False, compact_nodes=False)  # fastest here
        out = np.zeros(len(points))
        keys = np.concatenate([self.amp, self.expo, self.radius[:, None]], axis=1)
        _, group = np.unique(keys.round(12), axis=0, return_inverse=True)
        for g in np.unique(group):
            sel = np.flatnonzero(group.ravel() == g)
            r = float(self.radius[sel[0]])
            n = np.ceil(r / d).astype(int) + 1
            shifts = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in n], indexing="ij"), -1).reshape(-1, 3)
            img = (self.cart[sel][None, :, :] + (shifts @ self.lattice)[:, None, :]).reshape(-1, 3)
            fimg = img @ inv  # only images within r of the cell can reach a point in it
            img = img[np.all((fimg >= -r / d) & (fimg <= 1.0 + r / d), axis=1)]
            if len(img) == 0:
                continue
            sdm = ptree.sparse_distance_matrix(cKDTree(img, leafsize=4), r, output_type="ndarray")
            r2 = (sdm["v"] ** 2).astype(np.float32)
            val = np.zeros(len(r2))
            for a, e in zip(self.amp[sel[0]], self.expo[sel[0]]):
                val += a * np.exp(np.float32(-e) * r2)
            out += np.bincount(sdm["i"], weights=val, minlength=len(points))
        return out


def density_of_row(row: dict, cfg=None) -> tuple[np.ndarray, dict]:
    """Dense density channels ``(C, nx, ny, nz)`` and attributes of one ingest row.

    Raises ``ValueError`` (one-line reason) when the structure is rejected.
    """
    cfg = section(DensitySettings, cfg)
    kind = row["kind"]
    if kind == "mp_chgcar":
        from rhosym.io.chgcar import CHANNELS_4

        data = read_charge_density(row["chgcar_path"], max_voxels=cfg.max_voxels)
        nch = int(cfg.channels)
        rho = data.channels(nch)
        attrs = {
            "cell": data.lattice.tolist(),
            "shape": list(data.shape),
            "spacing": [float(x / n) for x, n in zip(np.linalg.norm(data.lattice, axis=1), data.shape)],
            "channels": list(CHANNELS_4[:nch]),
            "n_electrons": float(rho[0].astype(np.float64).mean() * data.volume),
            "n_electrons_expected": data.n_electrons,
            "magnetic_moment": data.magnetic_moment,
            "spin": data.spin,
        }
        return rho, attrs
    if not isinstance(row.get("structure"), str | dict):
        raise ValueError("ingest row has no structure")
    s = structure_from_json(row["structure"])
    shape = grid_shape(s.lattice.abc, cfg.spacing)
    nvox = int(np.prod(shape))
    if nvox > cfg.max_voxels:
        raise ValueError(f"grid {shape} has {nvox} voxels > max_voxels {cfg.max_voxels}")
    rho, info = dense_density(s, shape=shape, b_iso=cfg.b_iso, blur=cfg.blur, cutoff=cfg.cutoff)
    if not np.isfinite(rho).all():
        raise ValueError("density grid holds NaN/Inf")
    check_electrons(info["n_electrons"], info["n_electrons_expected"], cfg.tolerance)
    attrs = {"cell": s.lattice.matrix.tolist(), **info, "channels": ["total"], "magnetic_moment": None,
             "spin": False}
    return rho[None], attrs


def _check_voxels(shape, max_voxels: int) -> None:
    nvox = int(np.prod(shape))
    if nvox > max_voxels:
        raise ValueError(f"grid {tuple(int(n) for n in shape)} has {nvox} voxels > max_voxels {max_voxels}")


def read_charge_density(path: str | Path, limits=None, max_voxels: int | None = None):
    """A CHGCAR text file (plain or compressed) or an MP charge-density JSON, as ``ChgcarData``, within
    ``limits`` (rhosym.io.limits; default: those in force) and, given ``max_voxels``, refused when its grid
    has more points (a CHGCAR's from its header, before the data is read)."""
    from rhosym.io.limits import limits_of
    from rhosym.shards import is_density_json

    limits = limits_of(limits)
    if is_density_json(Path(path).name):
        from rhosym.io.mp_json import read_chgcar_json

        data = read_chgcar_json(path, limits)
    else:
        from rhosym.io.chgcar import read_chgcar, read_chgcar_grid

        if max_voxels is not None:
            _check_voxels(read_chgcar_grid(path, limits), max_voxels)
        data = read_chgcar(path, limits)
    if max_voxels is not None:
        _check_voxels(data.shape, max_voxels)
    return data


def check_electrons(found: float, expected: float, tolerance: float) -> None:
    if expected <= 0 or abs(found - expected) > tolerance * expected:
        raise ValueError(f"integrated density {found:.4f} e differs from expected {expected:.4f} e "
                         f"by more than {tolerance:.2%}")


def write_density_store(out: str | Path, rows: list[dict], cfg: dict | None = None,
                        kind: str | None = None) -> dict:
    """Compute and write the dense store of ``rows`` (ingest rows); returns the counts."""
    from rhosym.logs import progress
    from rhosym.store import jsonable, new_store, write_array

    cfg = section(DensitySettings, cfg)
    ids, names, rejected = [], [], {}
    nbytes_total, t0 = 0, time.time()
    with new_store(out) as group:
        for row in progress(rows, desc=f"density {Path(out).name}"):
            sid = str(row["id"])
            try:
                rho, attrs = density_of_row(row, cfg)
            except (ValueError, OSError, KeyError) as e:
                reason = " ".join(str(e).split()) or type(e).__name__
                rejected[sid] = reason
                log.warning("rejected %s: %s", sid, reason)
                continue
            name = f"s{len(ids):05d}"
            chunk = (1, *[min(n, 64) for n in rho.shape[1:]])
            arr = write_array(group, name, rho, chunks=chunk,
                              attrs={"id": sid, "kind": row.get("kind", kind), **attrs})
            nbytes = int(arr.nbytes_stored())
            arr.attrs["bytes"] = nbytes
            nbytes_total += nbytes
            log.info("%s: grid %s, %.3f of %.3f e, %d bytes", sid, attrs["shape"], attrs["n_electrons"],
                     attrs["n_electrons_expected"], nbytes)
            ids.append(sid)
            names.append(name)
        counts = {"ok": len(ids), "rejected": len(rejected)}
        group.attrs.update(jsonable({"ids": ids, "arrays": names, "rejected": rejected, "counts": counts,
                                     "kind": kind or (rows[0]["kind"] if rows else None),
                                     "config": cfg.model_dump()}))
    log.info("density %s: %d ok, %d rejected, %.1f s, %.0f bytes per structure", out, counts["ok"],
             counts["rejected"], time.time() - t0, nbytes_total / max(1, len(ids)))
    return counts


def run_density_shard(ingest: str | Path, out: str | Path, cfg: dict | None = None) -> dict:
    """Snakemake entry: the dense store of one ingest shard."""
    rows = read_ingest(ingest)
    log.info("%s: %d ok rows", ingest, len(rows))
    return write_density_store(out, rows, cfg)


def iter_density_store(path: str | Path):
    """Yield ``(id, rho (C, nx, ny, nz) float32, attrs)`` for every structure of a dense store."""
    from rhosym.store import open_store

    group = open_store(path)
    for name in group.attrs.get("arrays", []):
        arr = group[name]
        yield arr.attrs["id"], np.asarray(arr[...]), dict(arr.attrs)
