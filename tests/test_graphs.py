"""Crystal graphs (rhosym.graphs): CGCNN neighbours vs pymatgen, coGN asymmetric units, disorder, stores."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from rhosym import graphs
from rhosym.atom_features import N_FEATURES, atom_init_table, compute_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def rutile() -> Structure:
    return Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                     [[0, 0, 0], [0.305, 0.305, 0]])


def monoclinic() -> Structure:
    return Structure.from_spacegroup("P2_1/c", Lattice.monoclinic(5.15, 5.21, 5.31, 99.2), ["Zr", "O", "O"],
                                     [[0.276, 0.040, 0.209], [0.070, 0.332, 0.345], [0.450, 0.757, 0.479]])


def test_atom_init_table_shipped_matches_computed():
    table = atom_init_table()
    assert table.shape == (99, N_FEATURES)
    np.testing.assert_array_equal(table, compute_table())
    # every element: one bin per property group it has data for; Fe is d-block group 8 period 4
    assert set(np.unique(table[1:])) == {0.0, 1.0}
    fe = table[26]
    assert fe[7] == 1 and fe[18 + 3] == 1  # group 8, period 4


@pytest.mark.parametrize("structure", [nacl(), rutile(), monoclinic()], ids=["nacl", "rutile", "mono"])
def test_cgcnn_neighbours_match_pymatgen(structure):
    g = graphs.build_graph(structure, "cgcnn", {"cell": "input"})
    n = len(structure)
    assert g["atom_fea"].shape == (n, N_FEATURES) and len(g["z"]) == n
    src = g["edge_index"][:, 0]
    counts = np.bincount(src, minlength=n)
    assert counts.max() <= 12 and g["edge_dist"].max() <= 8.0
    for i in range(n):
        ref = sorted(nb.nn_distance for nb in structure.get_neighbors(structure[i], 8.0))[:12]
        ours = np.sort(g["edge_dist"][src == i])
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(g["edge_vec"], axis=1), g["edge_dist"], atol=1e-5)


def test_cgcnn_primitive_cell_is_smaller():
    g = graphs.build_graph(nacl(), "cgcnn")
    assert len(g["z"]) == 2 and sorted(g["z"].tolist()) == [11, 17]
    assert g["edge_dist"].min() == pytest.approx(2.82, abs=1e-3)


def test_cogn_asymmetric_unit_rock_salt():
    conv = graphs.build_graph(nacl(), "cogn", {"cell": "input"})
    assert len(conv["z"]) == 2 and conv["multiplicity"].tolist() == [4, 4]
    prim = graphs.build_graph(nacl(), "cogn")
    assert len(prim["z"]) == 2 and prim["multiplicity"].tolist() == [1, 1]
    # whole shells kept: 6 + 12 + 8 = 26 neighbours of each node (24 cap + ties)
    assert np.bincount(prim["edge_index"][:, 0]).tolist() == [26, 26]
    # Na's 6 nearest neighbours are Cl
    na = int(np.nonzero(prim["z"] == 11)[0][0])
    cl = 1 - na
    first = (prim["edge_index"][:, 0] == na) & (prim["edge_dist"] < 2.9)
    assert first.sum() == 6 and (prim["edge_index"][first, 1] == cl).all()


def test_cogn_multiplicities_sum_to_sites():
    for s, nodes in ((rutile(), 2), (monoclinic(), 3)):
        g = graphs.build_graph(s, "cogn", {"cell": "input"})
        assert len(g["z"]) == nodes
        assert g["multiplicity"].sum() == len(s)
        np.testing.assert_allclose(g["node_weight"], g["multiplicity"])
        np.testing.assert_allclose(np.linalg.norm(g["edge_vec"], axis=1), g["edge_dist"], atol=1e-5)
    g = graphs.build_graph(rutile(), "cogn", {"cell": "input"})
    assert dict(zip(g["z"].tolist(), g["multiplicity"].tolist())) == {22: 2, 8: 4}


def test_disorder_reject_and_average():
    s = nacl()
    s.replace_species({"Na": {"Na": 0.5, "K": 0.3}})
    with pytest.raises(graphs.DisorderError):
        graphs.build_graph(s, "cgcnn")
    g = graphs.build_graph(s, "cogn", {"disorder": "average"})
    table = atom_init_table()
    site = int(np.nonzero(g["occupancy"] < 1)[0][0])
    assert g["occupancy"][site] == pytest.approx(0.8) and g["z"][site] == 11
    np.testing.assert_allclose(g["atom_fea"][site], (0.5 * table[11] + 0.3 * table[19]) / 0.8, atol=1e-6)
    assert g["node_weight"][site] == pytest.approx(0.8)


def _ingest(tmp_path, structures):
    rows = [{"id": k, "kind": "synthetic", "status": "ok" if v is not None else "rejected",
             "structure": json.dumps(v.as_dict()) if v is not None else None} for k, v in structures.items()]
    path = tmp_path / "shard-00000.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize("kind", ["cgcnn", "cogn"])
def test_graph_shard_store_roundtrip(tmp_path, kind):
    dis = nacl()
    dis.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    ingest = _ingest(tmp_path, {"a": nacl(), "b": rutile(), "c": dis, "d": None})
    out = tmp_path / kind / "shard-00000.zarr"
    counts = graphs.run_graphs_shard(ingest, out, kind, {})
    assert counts["ok"] == 2 and counts["rejected"] == 1 and counts["disordered"] == 1
    items = graphs.read_graphs(out)
    assert [it["id"] for it in items] == ["a", "b"]
    ref = graphs.build_graph(rutile(), kind)
    for name in ("atom_fea", "edge_index", "edge_dist", "edge_vec", "node_weight"):
        np.testing.assert_array_equal(items[1][name], ref[name])
    store = graphs.GraphStore(out)
    assert store.attrs["kind"] == kind and store.attrs["cutoff"] == 8.0
    assert store.arrays["edge_index"].dtype == np.int32 and store.arrays["atom_fea"].dtype == np.float32
    assert "disordered" in store.attrs["rejected"]["c"]
    # the trainer's loader reads the same layout
    from rhosym import inputs
    from rhosym.inputs.base import ReadOptions

    k = inputs.kind(kind)
    row = k.read(k.open(str(out)), 1, ReadOptions())
    np.testing.assert_array_equal(row["edge_dist"], ref["edge_dist"])
    # average keeps the disordered one
    counts = graphs.run_graphs_shard(ingest, out, kind, {"disorder": "average"})
    assert counts["ok"] == 3 and counts["rejected"] == 0


def test_cli_graph(tmp_path):
    from rhosym.cli import main

    cif = tmp_path / "rutile.cif"
    rutile().to(filename=str(cif))
    npz = tmp_path / "g.npz"
    assert main(["graph", str(cif), "--kind", "cogn", "--out", str(npz)]) == 0
    data = np.load(npz)
    assert data["multiplicity"].sum() == 6 and data["edge_index"].shape[1] == 2
    js = tmp_path / "g.json"
    assert main(["graph", str(cif), "--kind", "cgcnn", "--out", str(js)]) == 0
    doc = json.loads(js.read_text())
    assert len(doc["z"]) == 6 and doc["attrs"]["max_neighbors"] == 12
    dis = nacl()
    dis.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    dcif = tmp_path / "dis.cif"
    dis.to(filename=str(dcif))
    assert main(["graph", str(dcif), "--out", str(npz)]) == 1
    assert main(["graph", str(dcif), "--disorder", "average", "--out", str(npz)]) == 0


@pytest.mark.shared
def test_mp20_rows():
    path = SHARED / "mp20_public" / "mp20_public.csv"
    if not path.is_file():
        pytest.skip(f"../shared/data is absent: {path}")
    df = pd.read_csv(path, nrows=15)
    for cif in df["cif"]:
        s = Structure.from_str(cif, fmt="cif")
        g = graphs.build_graph(s, "cogn")
        assert g["multiplicity"].sum() == g["n_sites"]
        c = graphs.build_graph(s, "cgcnn")
        assert np.bincount(c["edge_index"][:, 0]).max() <= 12 and c["edge_dist"].max() <= 8.0
