"""Crystal graphs: CGCNN (every atom of the cell) and coGN (asymmetric-unit nodes with multiplicities).

* **Store** (``graphs/{cgcnn,cogn}/shard-*.zarr``): CSR, per-structure node and edge ranges in
  ``node_offsets``/``edge_offsets``; node arrays are sliced by the node range, edge arrays by the edge
  range; edge indices are local to the structure.
* **Batch**: the arrays concatenated, ``edge_index`` shifted to batch-global node numbers, ``batch``
  (node → sample), ``counts`` (nodes per sample), ``edge_counts``.
* **From a structure**: :func:`rhosym.graphs.build_graph` (spglib's primitive cell / asymmetric unit).
"""

from __future__ import annotations

import numpy as np

from rhosym.inputs.base import InputKind, ReadOptions, stack


class Graph(InputKind):
    primitive_cell = True  # graphs.cell: primitive (the default) builds them on spglib's primitive cell
    node_arrays: tuple[str, ...] = ("atom_fea",)
    edge_arrays: tuple[str, ...] = ("edge_index", "edge_dist")

    def index(self, handle):
        ids = [str(i) for i in handle.attrs.get("ids", [])]
        return ids, np.diff(np.asarray(handle["node_offsets"][:], dtype=np.int64))

    def read(self, handle, row: int, opts: ReadOptions) -> dict:
        n0, n1 = (int(v) for v in handle["node_offsets"][row:row + 2])
        e0, e1 = (int(v) for v in handle["edge_offsets"][row:row + 2])
        out = {a: np.asarray(handle[a][n0:n1], dtype=np.float32) for a in self.node_arrays}
        for a in self.edge_arrays:
            out[a] = np.asarray(handle[a][e0:e1], dtype=np.int64 if a == "edge_index" else np.float32)
        return out

    def size(self, sample: dict) -> int:
        return int(len(sample["atom_fea"]) + np.asarray(sample["edge_index"]).reshape(-1, 2).shape[0])

    def in_features(self, features: int, sample: dict) -> int:
        return int(np.asarray(sample["atom_fea"]).shape[1])

    def nodes(self, atoms: int) -> int:
        return atoms

    def synthetic(self, rng, atoms: int = 20, n_atom_fea: int = 92, neighbours: int = 12, **_):
        n = self.nodes(atoms)
        fea = np.zeros((n, n_atom_fea), dtype=np.float32)
        fea[np.arange(n), rng.integers(0, n_atom_fea, n)] = 1.0
        centre = np.repeat(np.arange(n), neighbours)
        nbr = rng.integers(0, n, n * neighbours)
        dist = rng.uniform(1.5, 8.0, n * neighbours).astype(np.float32)
        s = {"atom_fea": fea, "edge_index": np.stack([centre, nbr], 1).astype(np.int64), "edge_dist": dist}
        if "node_weight" in self.node_arrays:
            s["node_weight"] = rng.integers(1, 9, n).astype(np.float32)
            vec = rng.normal(size=(n * neighbours, 3))
            s["edge_vec"] = (vec / np.linalg.norm(vec, axis=1, keepdims=True) * dist[:, None]).astype(np.float32)
        return s

    def batch(self, samples):
        import torch

        n_nodes = np.array([len(s["atom_fea"]) for s in samples], dtype=np.int64)
        n_edges = np.array([np.asarray(s["edge_index"]).reshape(-1, 2).shape[0] for s in samples])
        offsets = np.concatenate([[0], np.cumsum(n_nodes)[:-1]])
        width = np.asarray(samples[0]["atom_fea"]).shape[1]
        ei = [np.asarray(s["edge_index"], dtype=np.int64).reshape(-1, 2) + o for s, o in zip(samples, offsets)]
        out = {"atom_fea": stack(samples, "atom_fea", np.float32, width),
               "edge_index": torch.from_numpy(np.concatenate(ei, axis=0)),
               "edge_dist": stack(samples, "edge_dist", np.float32).reshape(-1),
               "batch": torch.from_numpy(np.repeat(np.arange(len(samples), dtype=np.int64), n_nodes)),
               "counts": torch.from_numpy(n_nodes), "edge_counts": torch.from_numpy(n_edges.astype(np.int64))}
        return out

    #: store attribute → GraphSettings key, for this kind
    settings_keys: tuple[tuple[str, str], ...] = ()

    def configure(self, s, store, method, voxel):
        from rhosym.settings import GraphSettings, section

        super().configure(s, store, method, voxel)
        cfg = {k: store[k] for k in ("cutoff", "cell", "symprec", "disorder") if store.get(k) is not None}
        cfg.update({k2: store[k1] for k1, k2 in self.settings_keys if k1 in store})
        s.graphs = section(GraphSettings, cfg)

    def from_structure(self, structure, uid, s):
        from rhosym.graphs import build_graph

        g = build_graph(structure, self.name, s.graphs)
        out = {"atom_fea": np.asarray(g["atom_fea"], np.float32),
               "edge_index": np.asarray(g["edge_index"], np.int64).reshape(-1, 2),
               "edge_dist": np.asarray(g["edge_dist"], np.float32)}
        if "node_weight" in self.node_arrays:
            out["node_weight"] = np.asarray(g["node_weight"], np.float32)
            out["edge_vec"] = np.asarray(g["edge_vec"], np.float32).reshape(-1, 3)
        return out, {"symmetry_finder": True}  # spglib's primitive cell / asymmetric unit


class CGCNNGraph(Graph):
    name = "cgcnn"
    settings_keys = (("max_neighbors", "cgcnn_max_neighbors"), ("gaussian_step", "gaussian_step"))


class CoGNGraph(Graph):
    name = "cogn"
    node_arrays = ("atom_fea", "node_weight")
    edge_arrays = ("edge_index", "edge_dist", "edge_vec")
    settings_keys = (("max_neighbors", "cogn_max_neighbors"), ("tie_tolerance", "cogn_tie_tolerance"),
                     ("distance_bins", "distance_bins"))

    def nodes(self, atoms: int) -> int:
        return max(1, atoms // 4)  # the asymmetric unit of a cell of ``atoms`` atoms, roughly

    def batch(self, samples):
        out = super().batch(samples)
        out["node_weight"] = stack(samples, "node_weight", np.float32).reshape(-1)
        if all("edge_vec" in s for s in samples):
            out["edge_vec"] = stack(samples, "edge_vec", np.float32, 3)
        return out


CGCNN = CGCNNGraph()
COGN = CoGNGraph()
