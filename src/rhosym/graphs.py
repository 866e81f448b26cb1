"""Crystal graphs for the CGCNN and coGN baselines, stored so a loader needs no pymatgen.

**Cell.** With ``graphs.cell: primitive`` (default) every structure is first reduced to spglib's standard
primitive cell (``SpacegroupAnalyzer.get_primitive_standard_structure``, tolerance ``graphs.symprec``),
which also idealizes the positions to the symmetry found; ``input`` keeps the ingest cell. If spglib
fails the input cell is used with every atom its own class (P1), and the structure is counted under
``counts["p1_fallback"]``. One spglib search per structure gives both the cell and the classes: the
dataset's standardized cell and its atoms' classes carried through pymatgen's transformations, computed
on arrays with pymatgen's arithmetic (:mod:`rhosym.standard_cell`; magnetic moments and a few rare
cases take pymatgen's objects): bit for bit pymatgen's cell, and the classes
of the group the cell was standardized to (spglib run again on the idealized cell agrees on all but 1 of
1,355 MP-20 structures, where it merges two orbits; docs/benchmarks/preprocessing.md). The shard job hands
:func:`build_graph` the ingest's structure JSON, read straight into arrays (:func:`rhosym.standard_cell.cell_from_dict`).

**CGCNN** (Xie & Grossman 2018): one node per site; edges to the neighbours within ``graphs.cutoff``
(8 Å), at most ``graphs.cgcnn_max_neighbors`` (12) per atom, nearest first (periodic images included,
as pymatgen ``get_neighbors``). The Gaussian expansion of the distances is left to the model; its
parameters are attributes (``gaussian_dmin`` 0, ``gaussian_dmax`` = cutoff, ``gaussian_step`` 0.2,
CGCNN's defaults).

**coGN** (Ruff et al. 2023, kgcnn's asymmetric-unit graphs): nodes are the asymmetric unit (one node
per class of spglib's ``equivalent_atoms``), with the class size as ``multiplicity``; edges go from
each asymmetric-unit atom to its neighbours in the whole crystal within the cutoff, at most
``graphs.cogn_max_neighbors`` (24) nearest, plus any neighbour tied with the last one within
``graphs.cogn_tie_tolerance`` Å (so symmetry-equivalent shells are not cut). The edge target is the
neighbour's asymmetric-unit node; ``edge_vec`` is the Cartesian vector from the source atom to the
neighbour's image, so a model can use geometry. Distance bins: attribute ``distance_bins`` (32).

**Disorder** (``graphs.disorder``): ``reject`` (default) rejects structures with partially occupied or
mixed sites (counted); ``average`` keeps one node per site with the occupancy-weighted average of its
species' feature vectors (Chen et al.), ``occupancy`` = the site's total occupancy and ``z`` = its
majority species.

**Store** ``results/{ds}/graphs/{kind}/shard-{shard}.zarr`` (zarr v3; CSR over structures; per structure
``i`` nodes ``node_offsets[i]:node_offsets[i+1]`` and edges ``edge_offsets[i]:edge_offsets[i+1]``):

============== ============ ======== =======================================================
array          shape        dtype    meaning
============== ============ ======== =======================================================
node_offsets   (n+1,)       int64    node ranges
edge_offsets   (n+1,)       int64    edge ranges
atom_fea       (N, 91)      float32  CGCNN-style features (:mod:`rhosym.atom_features`)
z              (N,)         int16    atomic number (majority species of a mixed site)
occupancy      (N,)         float32  total site occupancy (1 for ordered sites)
multiplicity   (N,)         int32    sites of the class in the cell (1 for CGCNN)
node_weight    (N,)         float32  multiplicity × occupancy (for weighted pooling)
edge_index     (E, 2)       int32    [source node, target node], local to the structure
edge_dist      (E,)         float32  Å
edge_vec       (E, 3)       float32  Cartesian neighbour image − source atom, Å
============== ============ ======== =======================================================

Attributes: ``ids``, ``rejected``, ``counts`` (``ok``, ``rejected``, ``disordered``, ``p1_fallback``),
``kind``, ``cutoff``, ``max_neighbors``, ``cell``, ``symprec``, ``disorder``, ``n_atom_features``, and
the Gaussian / bin parameters. Read with :class:`GraphStore` or :func:`read_graphs`.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from pathlib import Path

import numpy as np

from rhosym.registry import GRAPH_KINDS
from rhosym.settings import GraphSettings, section
from rhosym.standard_cell import (
    Cell,
    input_cell,
    number_ordered,
    standard_primitive_cell,
)

log = logging.getLogger("rhosym.graphs")

KINDS = GRAPH_KINDS
NODE_ARRAYS = ("atom_fea", "z", "occupancy", "multiplicity", "node_weight")
EDGE_ARRAYS = ("edge_index", "edge_dist", "edge_vec")


class DisorderError(ValueError):
    pass


def prepare_structure(structure, cfg: dict | None = None):
    """``(structure, equivalent_atoms, p1_fallback)``: the cell the graphs use and each site's class.
    ``structure``: a pymatgen ``Structure``, or an ingest row's ``structure`` JSON (text or dict).

    Raises :class:`DisorderError` for a disordered structure when ``disorder`` is ``reject``.
    """
    cell, equiv, p1 = _prepare_cell(input_cell(structure), section(GraphSettings, cfg))
    return cell.structure(), equiv, p1


def _prepare_cell(cell: Cell, c: GraphSettings):
    """:func:`prepare_structure` with the cells as :class:`Cell` (no pymatgen sites built)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if c.disorder not in ("reject", "average"):
        raise ValueError(f"graphs.disorder must be reject or average, not {c['disorder']!r}")
    numbered = number_ordered(cell.species)
    if numbered is None:
        n_dis = sum(1 for s in cell.structure() if not s.is_ordered)
        if c.disorder == "reject":
            raise DisorderError(f"{n_dis} partially occupied or mixed sites (graphs.disorder = reject)")
    if c.cell not in ("primitive", "input"):
        raise ValueError(f"graphs.cell must be primitive or input, not {c['cell']!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's OLD_ERROR_HANDLING notice
            if c.cell == "primitive":
                return (*standard_primitive_cell(cell, numbered, float(c.symprec)), False)
            ds = SpacegroupAnalyzer(cell.structure(), symprec=c.symprec).get_symmetry_dataset()
        if ds is None:
            raise ValueError("spglib found no symmetry")
        equiv = np.asarray(ds.equivalent_atoms, dtype=np.int64)
        return cell, equiv, False
    except Exception as exc:  # noqa: BLE001 - spglib failures: fall back to P1
        log.debug("spglib failed (%s); P1 fallback", exc)
        return cell, np.arange(len(cell.species)), True


def _neighbors(cell: Cell, cutoff: float):
    """Every (center, neighbour image) pair within ``cutoff``: center, nbr, image, dist, and the Cartesian
    coordinates of the sites.

    pymatgen's ``Structure.get_neighbor_list`` on the arrays: ``find_points_in_spheres`` over the
    Cartesian coordinates, pairs of a site with itself within 1e-8 Å dropped."""
    cart = np.dot(cell.frac, cell.lattice.matrix)
    try:
        from pymatgen.optimization.neighbors import find_points_in_spheres
    except ImportError:  # pragma: no cover - pymatgen without its compiled extension
        center, nbr, images, dist = cell.structure().get_neighbor_list(r=cutoff)
    else:
        coords = np.ascontiguousarray(cart, dtype=float)
        center, nbr, images, dist = find_points_in_spheres(
            coords, coords, r=cutoff, pbc=np.ascontiguousarray(cell.lattice.pbc, dtype=np.int64),
            lattice=np.ascontiguousarray(cell.lattice.matrix, dtype=float), tol=1e-8)
        keep = ~((center == nbr) & (dist <= 1e-8))
        center, nbr, images, dist = center[keep], nbr[keep], images[keep], dist[keep]
    return np.asarray(center, dtype=np.int64), np.asarray(nbr, dtype=np.int64), \
        np.asarray(images, dtype=np.float64), np.asarray(dist), cart


def _nearest(center: np.ndarray, dist: np.ndarray, k: int, tie_tol: float = 0.0, within: float = np.inf,
             centers: np.ndarray | None = None) -> np.ndarray:
    """Indices of pairs kept: per center, sorted by distance, the ``k`` nearest (+ ties within tol), in the
    order of ``np.lexsort((dist, center))`` (center, then distance, then index). ``centers``: only the
    pairs of these centers (sorted indices; default all).

    ``within``: first try with the pairs no farther than this only (fewer to sort); the answer is the same
    when every center has ``k`` of them and its ``k``-th distance plus ``tie_tol`` is within it (then every
    pair kept is among them, and the order is the same order restricted), else all pairs are used."""
    if not len(center):
        return np.zeros(0, dtype=np.int64)
    n_center = int(center.max()) + 1
    if centers is not None:
        is_center = np.zeros(max(n_center, int(centers[-1]) + 1 if len(centers) else 0), dtype=bool)
        is_center[centers] = True
        pairs = is_center[center]
    if within < np.inf:
        near = dist <= within
        sub = np.flatnonzero(near if centers is None else near & pairs)
        keep, kth = _nearest_all(center[sub], dist[sub], k, tie_tol, n_center)
        ok = kth + tie_tol <= within  # False where a center has fewer than k pairs within (kth inf)
        if centers is not None:
            ok |= ~is_center[:n_center]
        if ok.all() or np.all(ok | (np.bincount(center, minlength=n_center) == 0)):  # or none at all
            return sub[keep]
    if centers is None:
        return _nearest_all(center, dist, k, tie_tol)[0]
    idx = np.flatnonzero(pairs)
    return idx[_nearest_all(center[idx], dist[idx], k, tie_tol)[0]]


def _nearest_all(center: np.ndarray, dist: np.ndarray, k: int, tie_tol: float, n_center: int | None = None):
    """``(kept pair indices, k-th distance by center)`` (inf for a center with fewer than ``k`` pairs)."""
    order = np.lexsort((dist, center))
    c, d = center[order], dist[order]
    rank = np.arange(len(c)) - np.searchsorted(c, c)  # place within the center's pairs (c is sorted)
    keep = rank < k
    if n_center is None:
        n_center = int(c[-1]) + 1 if len(c) else 0
    kth_by_center = np.full(n_center, np.inf)
    at_k = rank == k - 1
    kth_by_center[c[at_k]] = d[at_k]
    if tie_tol > 0 and len(c):
        keep |= d <= kth_by_center[c] + tie_tol
    return order[keep], kth_by_center


_FEATURES: dict = {}  # species items -> (feature row, z, occupancy) of a site


def _site_features(comp):
    """``(features, z, total occupancy)`` of a site of species ``comp``: the occupancy-weighted average of
    its species' rows of :func:`~rhosym.atom_features.atom_init_table`, its majority species."""
    key = tuple(comp.items())
    out = _FEATURES.get(key)
    if out is None:
        from rhosym.atom_features import N_FEATURES, atom_init_table

        table = atom_init_table()
        fea = np.zeros(N_FEATURES, dtype=np.float32)
        tot = 0.0
        best = (-1.0, 0)
        for sp, o in key:
            zz = int(getattr(sp, "Z", 0))
            if not 1 <= zz < len(table):
                raise ValueError(f"no atom features for species {sp}")
            fea += o * table[zz]
            tot += o
            if o > best[0]:
                best = (o, zz)
        if tot > 0:
            fea /= tot
        out = (fea, best[1], tot)
        if len(_FEATURES) > 4096:
            _FEATURES.clear()
        _FEATURES[key] = out
    return out


def _node_features(cell: Cell, sites: np.ndarray):
    from rhosym.atom_features import N_FEATURES

    by_comp: dict = {}
    rows = []
    for j in sites.tolist():
        comp = cell.species[j]
        row = by_comp.get(id(comp))
        if row is None:
            row = by_comp[id(comp)] = _site_features(comp)
        if row[2] <= 0:
            raise ValueError(f"site {j} has no occupancy")
        rows.append(row)
    fea = np.array([r[0] for r in rows], dtype=np.float32).reshape(len(rows), N_FEATURES)
    return fea, np.array([r[1] for r in rows], dtype=np.int16), np.array([r[2] for r in rows], dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _default_settings() -> GraphSettings:
    return section(GraphSettings, None)


def build_graph(structure, kind: str, cfg: dict | None = None) -> dict:
    """The graph arrays (see the module docstring) of one structure; ``kind`` is cgcnn or cogn.
    ``structure``: a pymatgen ``Structure``, or an ingest row's ``structure`` JSON (text or dict), read
    straight into arrays (the same graph as from ``structure_from_json``'s ``Structure``).

    The returned dict also holds ``p1_fallback`` (bool) and ``n_sites`` (sites of the cell used).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown graph kind {kind!r}")
    c = _default_settings() if cfg is None else section(GraphSettings, cfg)
    cell, equiv, p1 = _prepare_cell(input_cell(structure), c)
    n_sites = len(cell.species)
    center, nbr, images, dist, cart = _neighbors(cell, float(c.cutoff))
    # a radius that holds about twice the neighbours kept at this cell's density: sorting only the pairs
    # within it gives the same edges when it holds enough of them (_nearest checks, else sorts all)
    k = int(c.cgcnn_max_neighbors if kind == "cgcnn" else c.cogn_max_neighbors)
    (a1, a2, a3), (b1, b2, b3), (c1, c2, c3) = cell.lattice.matrix.tolist()
    volume = abs(a1 * (b2 * c3 - b3 * c2) - a2 * (b1 * c3 - b3 * c1) + a3 * (b1 * c2 - b2 * c1))
    within = (3 * 2 * k * volume / (4 * math.pi * max(n_sites, 1))) ** (1 / 3)
    if kind == "cgcnn":
        nodes = np.arange(n_sites)
        node_of_site = nodes
        mult = np.ones(n_sites, dtype=np.int32)
        keep = _nearest(center, dist, k, within=within)
    else:
        nodes, inverse, counts = np.unique(equiv, return_inverse=True, return_counts=True)
        node_of_site = inverse.astype(np.int64)
        mult = counts.astype(np.int32)
        tie = float(c.cogn_tie_tolerance)
        keep = _nearest(center, dist, k, tie, within=within + tie, centers=nodes)
    # keep is in (center, distance) order, and a node's index grows with its center's (nodes: sorted
    # sites), so it is in (node, distance) order too: the edges of each node, nearest first
    vec = cart[nbr[keep]] + images[keep] @ cell.lattice.matrix - cart[center[keep]]
    fea, z, occ = _node_features(cell, nodes)
    edge_index = np.stack([node_of_site[center[keep]], node_of_site[nbr[keep]]], axis=1).astype(np.int32)
    return {
        "atom_fea": fea,
        "z": z,
        "occupancy": occ,
        "multiplicity": mult,
        "node_weight": (mult * occ).astype(np.float32),
        "edge_index": edge_index.reshape(-1, 2),
        "edge_dist": dist[keep].astype(np.float32),
        "edge_vec": vec.astype(np.float32).reshape(-1, 3),
        "p1_fallback": p1,
        "n_sites": n_sites,
    }


def store_attrs(kind: str, cfg: dict | None = None) -> dict:
    from rhosym.atom_features import N_FEATURES

    c = section(GraphSettings, cfg)
    a = {
        "kind": kind,
        "cutoff": float(c.cutoff),
        "cell": c.cell,
        "symprec": float(c.symprec),
        "disorder": c.disorder,
        "n_atom_features": N_FEATURES,
        "atom_features": "rhosym.atom_features (CGCNN-style one-hot, from pymatgen Element data)",
    }
    if kind == "cgcnn":
        a.update(max_neighbors=int(c.cgcnn_max_neighbors), gaussian_dmin=0.0,
                 gaussian_dmax=float(c.cutoff), gaussian_step=float(c.gaussian_step),
                 gaussian_var=float(c.gaussian_step))
    else:
        a.update(max_neighbors=int(c.cogn_max_neighbors), tie_tolerance=float(c.cogn_tie_tolerance),
                 distance_bins=int(c.distance_bins), distance_min=0.0, distance_max=float(c.cutoff))
    return a


def concat_graphs(graphs: list[dict]) -> dict[str, np.ndarray]:
    """CSR arrays of a list of :func:`build_graph` results."""
    from rhosym.atom_features import N_FEATURES

    nn = [len(g["z"]) for g in graphs]
    ne = [len(g["edge_dist"]) for g in graphs]
    out = {
        "node_offsets": np.concatenate([[0], np.cumsum(nn)]).astype(np.int64),
        "edge_offsets": np.concatenate([[0], np.cumsum(ne)]).astype(np.int64),
    }
    empty = {"atom_fea": np.zeros((0, N_FEATURES), np.float32), "z": np.zeros(0, np.int16),
             "occupancy": np.zeros(0, np.float32), "multiplicity": np.zeros(0, np.int32),
             "node_weight": np.zeros(0, np.float32), "edge_index": np.zeros((0, 2), np.int32),
             "edge_dist": np.zeros(0, np.float32), "edge_vec": np.zeros((0, 3), np.float32)}
    for name in NODE_ARRAYS + EDGE_ARRAYS:
        out[name] = np.concatenate([g[name] for g in graphs]) if graphs else empty[name]
    return out


def run_graphs_shard(ingest_path: str | Path, out_path: str | Path, kind: str, cfg: dict | None = None) -> dict:
    """Graphs of every ``ok`` structure of one ingest shard; returns the counts."""
    from rhosym.ingest import read_ingest
    from rhosym.logs import progress
    from rhosym.store import write_store

    c = section(GraphSettings, cfg)
    rows = read_ingest(ingest_path, ["id", "structure"])
    log.info("%s: %d ok rows; %s graphs, disorder=%s, cell=%s", ingest_path, len(rows), kind,
             c.disorder, c.cell)
    ids: list[str] = []
    graphs: list[dict] = []
    rejected: dict[str, str] = {}
    n_disordered = n_p1 = 0
    for row in progress(rows, desc=f"graphs {kind}"):
        sid = str(row["id"])
        try:
            g = build_graph(row["structure"], kind, c)  # the JSON, read as structure_from_json reads it
        except DisorderError as exc:
            n_disordered += 1
            rejected[sid] = f"disordered: {exc}"
            continue
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reason
            rejected[sid] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            continue
        n_p1 += bool(g["p1_fallback"])
        ids.append(sid)
        graphs.append(g)
    counts = {"ok": len(ids), "rejected": len(rejected), "disordered": n_disordered, "p1_fallback": n_p1}
    attrs = {"ids": ids, "rejected": rejected, "counts": counts, **store_attrs(kind, c)}
    write_store(out_path, concat_graphs(graphs), attrs)
    log.info("graphs %s %s: %d ok, %d rejected (%d disordered), %d P1 fallbacks", kind, out_path,
             counts["ok"], counts["rejected"], n_disordered, n_p1)
    for sid, why in list(rejected.items())[:20]:
        log.info("rejected %s: %s", sid, why)
    return counts


class GraphStore:
    """Indexable reader of a graph shard: ``store[i]`` is a dict of numpy arrays (module docstring)
    plus ``id``; ``store.attrs`` the attributes. Reads whole arrays once (shards are small)."""

    def __init__(self, path: str | Path):
        from rhosym.store import read_store

        self.arrays, self.attrs = read_store(path)
        self.ids = list(self.attrs.get("ids", []))
        self._n = self.arrays["node_offsets"]
        self._e = self.arrays["edge_offsets"]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        n0, n1 = int(self._n[i]), int(self._n[i + 1])
        e0, e1 = int(self._e[i]), int(self._e[i + 1])
        out = {name: self.arrays[name][n0:n1] for name in NODE_ARRAYS if name in self.arrays}
        out.update({name: self.arrays[name][e0:e1] for name in EDGE_ARRAYS if name in self.arrays})
        out["id"] = self.ids[i]
        return out


def read_graphs(path: str | Path) -> list[dict]:
    """Every graph of a shard store as a list of dicts (see :class:`GraphStore`)."""
    store = GraphStore(path)
    return [store[i] for i in range(len(store))]
