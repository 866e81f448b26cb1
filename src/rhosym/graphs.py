"""Crystal graphs for the CGCNN and coGN baselines, stored so a loader needs no pymatgen.

**Cell.** With ``graphs.cell: primitive`` (default) every structure is first reduced to spglib's standard
primitive cell (``SpacegroupAnalyzer.get_primitive_standard_structure``, tolerance ``graphs.symprec``),
which also idealizes the positions to the symmetry found; ``input`` keeps the ingest cell. If spglib
fails the input cell is used with every atom its own class (P1), and the structure is counted under
``counts["p1_fallback"]``. One spglib search per structure gives both the cell and the classes
(:func:`_standard_primitive`: the dataset's standardized cell and its atoms' classes carried through
pymatgen's transformations): the same cell as pymatgen's, and the classes of the group the cell was
standardized to (spglib run again on the idealized cell agrees on all but 1 of 1,355 MP-20 structures,
where it merges two orbits; docs/benchmarks/preprocessing.md).

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

import logging
import warnings
from pathlib import Path

import numpy as np

from rhosym.registry import GRAPH_KINDS
from rhosym.settings import GraphSettings, section

log = logging.getLogger("rhosym.graphs")

KINDS = GRAPH_KINDS
NODE_ARRAYS = ("atom_fea", "z", "occupancy", "multiplicity", "node_weight")
EDGE_ARRAYS = ("edge_index", "edge_dist", "edge_vec")


class DisorderError(ValueError):
    pass


def prepare_structure(structure, cfg: dict | None = None):
    """``(structure, equivalent_atoms, p1_fallback)``: the cell the graphs use and each site's class.

    Raises :class:`DisorderError` for a disordered structure when ``disorder`` is ``reject``.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    c = section(GraphSettings, cfg)
    if c.disorder not in ("reject", "average"):
        raise ValueError(f"graphs.disorder must be reject or average, not {c['disorder']!r}")
    if not structure.is_ordered:
        n_dis = sum(1 for s in structure if not s.is_ordered)
        if c.disorder == "reject":
            raise DisorderError(f"{n_dis} partially occupied or mixed sites (graphs.disorder = reject)")
    if c.cell not in ("primitive", "input"):
        raise ValueError(f"graphs.cell must be primitive or input, not {c['cell']!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's OLD_ERROR_HANDLING notice
            if c.cell == "primitive":
                return (*_standard_primitive(structure, float(c.symprec)), False)
            ds = SpacegroupAnalyzer(structure, symprec=c.symprec).get_symmetry_dataset()
        if ds is None:
            raise ValueError("spglib found no symmetry")
        equiv = np.asarray(ds.equivalent_atoms, dtype=np.int64)
        return structure, equiv, False
    except Exception as exc:  # noqa: BLE001 - spglib failures: fall back to P1
        log.debug("spglib failed (%s); P1 fallback", exc)
        return structure, np.arange(len(structure)), True


_ORBIT = "_rhosym_orbit"  # a transient site property: the input's symmetry class of each site


def _one_search_analyzer():
    """A :class:`~pymatgen.symmetry.analyzer.SpacegroupAnalyzer` that runs spglib once.

    pymatgen's ``get_primitive_standard_structure`` searches the symmetry three times: the dataset (in
    ``__init__``), ``spglib.refine_cell`` (``get_refined_structure``) and, for monoclinic groups,
    ``spglib.get_symmetry`` (``_get_symmetry``). The last two return what the dataset already holds
    (``std_lattice``, ``std_positions``, ``std_types``; ``rotations``, ``translations``): this subclass
    reads them from it, so the standard cell is the same and costs one search. The refined structure also
    carries each site's symmetry class (site property ``_rhosym_orbit``), which the conventional and
    primitive transformations keep, so the primitive cell's classes need no further search.
    """
    from fractions import Fraction
    from functools import cmp_to_key

    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    class OneSearch(SpacegroupAnalyzer):
        def __init__(self, structure, symprec: float = 0.01, angle_tolerance: float = 5):
            # pymatgen's __init__ without its per-site magnetic-moment checks, for cells without moments
            # (those take pymatgen's own): species numbered in order of first appearance, one search
            from pymatgen.symmetry.analyzer import _get_symmetry_dataset

            props = structure.site_properties
            if "magmom" in props or any(getattr(sp, "spin", None) is not None for sp in structure.types_of_species):
                super().__init__(structure, symprec, angle_tolerance)
                return
            self._symprec, self._angle_tol, self._structure = symprec, angle_tolerance, structure
            self._site_props = props
            species = [site.species for site in structure]
            self._unique_species = []
            zs = []
            for sp in species:
                if sp not in self._unique_species:
                    self._unique_species.append(sp)
                zs.append(self._unique_species.index(sp) + 1)
            self._numbers = zs
            self._cell = (tuple(map(tuple, structure.lattice.matrix.tolist())),
                          tuple(map(tuple, structure.frac_coords.tolist())), tuple(zs))
            self._space_group_data = _get_symmetry_dataset(self._cell, symprec, angle_tolerance)

        def _get_symmetry(self):  # as pymatgen's, from the dataset instead of spglib.get_symmetry
            ds = self._space_group_data
            translations = np.array([[float(Fraction(c).limit_denominator(1000)) for c in t]
                                     for t in ds.translations])
            translations[np.abs(translations) == 1] = 0
            return ds.rotations, translations

        def get_refined_structure(self, keep_site_properties: bool = False):
            ds = self._space_group_data  # as pymatgen's, from the dataset instead of spglib.refine_cell
            numbers = [int(i) for i in ds.std_types]
            species = [self._unique_species[i - 1] for i in numbers]
            props = {}
            if keep_site_properties:
                for k, v in self._site_props.items():
                    props[k] = [v[self._numbers.index(i)] for i in numbers]
            # the class of a standardized atom: that of an input atom on the same primitive-cell atom
            equiv = np.asarray(ds.equivalent_atoms)
            by_prim = dict(zip(np.asarray(ds.mapping_to_primitive).tolist(), equiv.tolist()))
            props[_ORBIT] = [by_prim[int(p)] for p in ds.std_mapping_to_primitive]
            # get_sorted_structure(): a stable sort by Site.__lt__ (electronegativity, then species string)
            keys = {}
            for sp in set(species):
                comp = Structure(ds.std_lattice, [sp], [[0, 0, 0]])[0]
                keys[sp] = (comp.species.average_electroneg, comp.species_string)

            def before(i: int, j: int) -> int:
                (xi, si), (xj, sj) = keys[species[i]], keys[species[j]]
                return -1 if xi < xj or (not xi > xj and si < sj) else (
                    1 if xi > xj or (not xi < xj and sj < si) else 0)

            order = sorted(range(len(species)), key=cmp_to_key(before))
            return Structure(ds.std_lattice, [species[i] for i in order], np.asarray(ds.std_positions)[order],
                             site_properties={k: [v[i] for i in order] for k, v in props.items()})

    return OneSearch


def _primitive_of_conventional(sga, conv):
    """The last step of pymatgen's ``get_primitive_standard_structure``, vectorized: the conventional
    standard cell ``conv`` in the primitive lattice ``T @ conv.lattice`` (``T``: pymatgen's
    conventional-to-primitive matrix), sites wrapped into it and kept once (the first of each set of
    periodic images: same species, fractional coordinates equal within 1e-8), a rhombohedral lattice
    turned to the Setyawan-Curtarolo orientation (fractional coordinates kept)."""
    import math

    from pymatgen.core import Lattice, Structure

    symbol = sga.get_space_group_symbol()
    if symbol.startswith("P"):
        return conv
    prim_lattice = Lattice(sga.get_conventional_to_primitive_transformation_matrix() @ conv.lattice.matrix)
    frac = np.mod(prim_lattice.get_fractional_coords(conv.cart_coords), 1.0)
    species = conv.species_and_occu
    ids: dict = {}
    sp_id = np.array([ids.setdefault(sp, len(ids)) for sp in species])
    keep: list[int] = []
    for i in range(len(frac)):
        if keep:
            k = np.asarray(keep)
            d = frac[k] - frac[i]
            d -= np.round(d)
            if np.any((sp_id[k] == sp_id[i]) & np.all(np.abs(d) <= 1e-8, axis=1)):
                continue
        keep.append(i)
    if symbol.startswith("R"):
        a, alpha = prim_lattice.a, math.radians(prim_lattice.alpha)
        cos_h = math.cos(alpha / 2)
        cos_f = math.cos(alpha) / cos_h
        a_sin_h = a * math.sin(alpha / 2)
        prim_lattice = Lattice(((a * cos_h, -a_sin_h, 0.0), (a * cos_h, a_sin_h, 0.0),
                                (a * cos_f, 0.0, a * math.sqrt(1 - cos_f * cos_f))))
    props = {k: [v[i] for i in keep] for k, v in conv.site_properties.items()}
    return Structure(prim_lattice, [species[i] for i in keep], frac[keep], site_properties=props)


def _standard_primitive(structure, symprec: float):
    """``(primitive standard structure, equivalent_atoms)`` exactly as
    ``SpacegroupAnalyzer(structure, symprec).get_primitive_standard_structure(keep_site_properties=True)``
    and spglib's ``equivalent_atoms`` of that cell, from one symmetry search (:func:`_one_search_analyzer`).
    ``equivalent_atoms[i]`` is the lowest index of the sites of ``i``'s class, as spglib's."""
    sga = _one_search_analyzer()(structure, symprec=symprec)
    prim = _primitive_of_conventional(sga, sga.get_conventional_standard_structure(keep_site_properties=True))
    orbit = np.asarray(prim.site_properties[_ORBIT])
    prim.remove_site_property(_ORBIT)
    first: dict[int, int] = {}
    equiv = np.array([first.setdefault(int(o), i) for i, o in enumerate(orbit)], dtype=np.int64)
    return prim, equiv


def _neighbors(structure, cutoff: float):
    """Every (center, neighbour image) pair within ``cutoff``: center, nbr, dist, Cartesian vector."""
    center, nbr, images, dist = structure.get_neighbor_list(r=cutoff)
    cart = np.asarray(structure.cart_coords)
    vec = cart[nbr] + np.asarray(images, dtype=np.float64) @ structure.lattice.matrix - cart[center]
    return center.astype(np.int64), nbr.astype(np.int64), np.asarray(dist), vec


def _nearest(center: np.ndarray, dist: np.ndarray, k: int, tie_tol: float = 0.0) -> np.ndarray:
    """Indices of pairs kept: per center, sorted by distance, the ``k`` nearest (+ ties within tol)."""
    order = np.lexsort((dist, center))
    c, d = center[order], dist[order]
    start = np.ones(len(c), dtype=bool)
    start[1:] = c[1:] != c[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(c)), 0))
    rank = np.arange(len(c)) - first
    keep = rank < k
    if tie_tol > 0 and len(c):
        # distance of the k-th neighbour of each center (inf when it has fewer)
        kth_by_center = np.full(int(c.max()) + 1, np.inf)
        at_k = rank == k - 1
        kth_by_center[c[at_k]] = d[at_k]
        keep |= d <= kth_by_center[c] + tie_tol
    return order[keep]


def _node_features(structure, sites: np.ndarray):
    from rhosym.atom_features import N_FEATURES, atom_init_table

    table = atom_init_table()
    fea = np.zeros((len(sites), N_FEATURES), dtype=np.float32)
    z = np.zeros(len(sites), dtype=np.int16)
    occ = np.zeros(len(sites), dtype=np.float32)
    for n, j in enumerate(sites):
        species = structure[int(j)].species
        tot = 0.0
        best = (-1.0, 0)
        for sp, o in species.items():
            zz = int(getattr(sp, "Z", 0))
            if not 1 <= zz < len(table):
                raise ValueError(f"no atom features for species {sp}")
            fea[n] += o * table[zz]
            tot += o
            if o > best[0]:
                best = (o, zz)
        if tot <= 0:
            raise ValueError(f"site {j} has no occupancy")
        fea[n] /= tot
        z[n] = best[1]
        occ[n] = tot
    return fea, z, occ


def build_graph(structure, kind: str, cfg: dict | None = None) -> dict:
    """The graph arrays (see the module docstring) of one structure; ``kind`` is cgcnn or cogn.

    The returned dict also holds ``p1_fallback`` (bool) and ``n_sites`` (sites of the cell used).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown graph kind {kind!r}")
    c = section(GraphSettings, cfg)
    s, equiv, p1 = prepare_structure(structure, c)
    center, nbr, dist, vec = _neighbors(s, float(c.cutoff))
    if kind == "cgcnn":
        nodes = np.arange(len(s))
        node_of_site = nodes
        mult = np.ones(len(s), dtype=np.int32)
        keep = _nearest(center, dist, int(c.cgcnn_max_neighbors))
    else:
        nodes, inverse, counts = np.unique(equiv, return_inverse=True, return_counts=True)
        node_of_site = inverse.astype(np.int64)
        mult = counts.astype(np.int32)
        is_rep = np.isin(center, nodes)
        idx = np.nonzero(is_rep)[0]
        keep = idx[_nearest(center[idx], dist[idx], int(c.cogn_max_neighbors),
                            float(c.cogn_tie_tolerance))]
    keep = keep[np.lexsort((dist[keep], node_of_site[center[keep]]))]
    fea, z, occ = _node_features(s, nodes)
    edge_index = np.stack([node_of_site[center[keep]], node_of_site[nbr[keep]]], axis=1).astype(np.int32)
    return {
        "atom_fea": fea,
        "z": z,
        "occupancy": occ,
        "multiplicity": mult,
        "node_weight": (mult * occ).astype(np.float32),
        "edge_index": edge_index.reshape(-1, 2),
        "edge_dist": dist[keep].astype(np.float32),
        "edge_vec": vec[keep].astype(np.float32).reshape(-1, 3),
        "p1_fallback": p1,
        "n_sites": len(s),
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
    from rhosym.ingest import read_ingest, structure_from_json
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
            g = build_graph(structure_from_json(row["structure"]), kind, c)
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
