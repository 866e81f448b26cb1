"""One error contract for every ``rhosym`` command (rhosym.cli): a fixed set of bad inputs through every
command that takes them, in-process and through the installed console script. Bad input gives exit
status 1 (predict: 2 for a checkpoint it cannot use) and exactly one line ``rhosym CMD: FILE: REASON``
on stderr (labels/predict: the input's own ``{"source", "error"}`` line on stdout), never a traceback;
``--debug`` shows the traceback. The good inputs still work."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from rhosym import cli

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
RHOSYM = Path(sys.executable).with_name("rhosym")
LINE = re.compile(r"^rhosym (?P<cmd>[a-z][a-z-]*): (?P<file>[^:]+?(?:#[^:]+)?): (?P<reason>\S.*)$")

OCC2_CIF = """data_occ2
_cell_length_a 5.0
_cell_length_b 5.0
_cell_length_c 5.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0.0 0.0 0.0 2.0
Cl1 Cl 0.5 0.5 0.5 1.0
"""


@pytest.fixture(autouse=True)
def _fresh_log_handlers():
    """The commands log to the sys.stderr they find (capsys's, in-process); drop that handler after each
    test, so that nothing later writes to a closed capture."""
    import logging

    yield
    root = logging.getLogger("rhosym")
    for h in list(root.handlers):
        root.removeHandler(h)


def _li() -> Structure:
    return Structure(Lattice.cubic(3.0), ["Li"], [[0.0, 0.0, 0.0]])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bad inputs (and the good ones next to them)."""
    from pymatgen.io.vasp import Chgcar

    from rhosym.io.chgcar import write_chgcar

    d = tmp_path_factory.mktemp("inputs")
    f = {}
    f["empty"] = d / "empty.cif"
    f["empty"].write_text("")
    f["not_cif"] = d / "not_a.cif"
    f["not_cif"].write_text("this is not a CIF\njust some text\n")
    f["occ2"] = d / "occ2.cif"
    f["occ2"].write_text(OCC2_CIF)
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.0, 0.0, 0.0], [0.01, 0.0, 0.0]])  # 0.05 A apart
    f["close"] = d / "close" / "close.cif"
    f["close"].parent.mkdir()
    close.to(filename=str(f["close"]))
    li = _li()
    grid = (6, 6, 6)
    total = np.full(grid, 3.0 / li.volume)  # 3 electrons in the cell
    good = write_chgcar(d / "Li_CHGCAR", li, total)
    f["good_chgcar"] = good
    text = good.read_bytes()
    f["truncated"] = d / "truncated_CHGCAR"
    f["truncated"].write_bytes(text[: len(text) * 2 // 3])
    # a NaN in the middle of the grid, written in the field width of the other values (as VASP writes them)
    head, grid_line, data = text.decode().partition("\n   6   6   6\n")
    values = data.split()
    values[len(values) // 2] = "NaN".rjust(len(values[0]))
    rows = [" " + " ".join(values[i:i + 5]) for i in range(0, len(values), 5)]
    f["nan"] = d / "nan_CHGCAR"
    f["nan"].write_text(head + grid_line + "\n".join(rows) + "\n")
    f["missing"] = d / "missing.cif"
    f["junk_pt"] = d / "junk.pt"
    f["junk_pt"].write_bytes(b"\x00\x01not a checkpoint at all\xff" * 10)
    f["good_cif"] = d / "nacl.cif"  # the primitive cell: ingest's conventional cell has 8 atoms
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) \
        .get_primitive_structure().to(filename=str(f["good_cif"]))
    # the same charge density as an MP charge-density JSON
    from monty.json import MontyEncoder

    f["json"] = d / "mp-1234.json.gz"
    with gzip.open(f["json"], "wt") as fh:
        json.dump({"task_id": "mp-1234", "data": Chgcar.from_file(str(good)).as_dict()}, fh, cls=MontyEncoder)
    return f


# the reason each bad input gives (a regex searched in the line)
WHY = {"empty": "unparsable CIF", "not_cif": "unparsable CIF", "occ2": "occupancy", "close": "atoms closer than",
       "truncated": "truncated|shorter", "nan": "NaN", "missing": "no such file"}
STRUCTURE_BAD = ("empty", "not_cif", "occ2", "close", "truncated", "missing")  # bad as structures


def _main(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_error_line(err: str, cmd: str, path, why: str) -> re.Match:
    """``err`` is exactly one line ``rhosym CMD: PATH: REASON`` with REASON matching ``why``."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    m = LINE.match(lines[0])
    assert m, lines[0]
    assert m["cmd"] == cmd and m["file"].split("#")[0] == str(path), lines[0]
    assert re.search(why, m["reason"], re.I), lines[0]
    assert "internal error" not in m["reason"], lines[0]
    return m


def _stdout_error(out: str, path, why: str) -> dict:
    (line,) = out.splitlines()
    rec = json.loads(line)
    assert set(rec) == {"source", "error"} and rec["source"].split("#")[0] == str(path), rec
    assert re.search(why, rec["error"], re.I) and "\n" not in rec["error"], rec
    return rec


# ------------------------------------------------------------------------------------ single-input commands

@pytest.mark.parametrize("bad", list(WHY))
def test_density_bad_inputs(files, capsys, tmp_path, bad):
    out = tmp_path / "d.zarr"
    rc, _, err = _main(capsys, "density", files[bad], "--out", out)
    assert rc == 1
    _one_error_line(err, "density", files[bad], WHY[bad])
    assert not out.exists()  # nothing left behind


@pytest.mark.parametrize("cmd", ["xrd", "graph"])
@pytest.mark.parametrize("bad", STRUCTURE_BAD)
def test_xrd_graph_bad_inputs(files, capsys, tmp_path, cmd, bad):
    rc, _, err = _main(capsys, cmd, files[bad], "--out", tmp_path / ("p.csv" if cmd == "xrd" else "g.npz"))
    assert rc == 1
    _one_error_line(err, cmd, files[bad], WHY[bad])


def test_checks_are_ingests(files, capsys, tmp_path):
    """The 0.05 A CIF: the reason ingest gives, from density, xrd and graph; the check options apply."""
    from rhosym.ingest import ingest_shard
    from rhosym.shards import list_units

    ds = {"kind": "cif_dir", "path": str(files["close"].parent)}
    df = ingest_shard("close", ds, 0, list_units(ds))
    (reason,) = df["reason"]
    assert reason.startswith("atoms closer than 0.5 A")
    for cmd, out in (("density", "d.zarr"), ("xrd", "p.csv"), ("graph", "g.npz")):
        rc, _, err = _main(capsys, cmd, files["close"], "--out", tmp_path / out)
        assert rc == 1 and _one_error_line(err, cmd, files["close"], "closer")["reason"] == reason
    # a smaller --min-distance lets it through xrd; --max-sites 1 rejects NaCl's 8-site conventional cell
    rc, _, err = _main(capsys, "xrd", files["close"], "--out", tmp_path / "p.csv", "--min-distance", "0.01")
    assert rc == 0, err
    rc, _, err = _main(capsys, "xrd", files["good_cif"], "--out", tmp_path / "p.csv", "--max-sites", "4")
    assert rc == 1 and _one_error_line(err, "xrd", files["good_cif"], "8 sites over max_sites 4")


def test_density_good_cif_chgcar_and_json(files, capsys, tmp_path):
    from rhosym.density import iter_density_store

    out = tmp_path / "nacl.zarr"
    rc, _, err = _main(capsys, "density", files["good_cif"], "--out", out, "--spacing", "0.2")
    assert rc == 0, err
    ((_, rho, a),) = list(iter_density_store(out))
    assert a["n_electrons_expected"] == 112 and abs(a["n_electrons"] - 112) < 0.56  # conventional (8 atoms)
    rc, _, _ = _main(capsys, "density", files["good_cif"], "--out", out, "--spacing", "0.2", "--cell", "as_is")
    ((_, rho, a),) = list(iter_density_store(out))
    assert rc == 0 and a["n_electrons_expected"] == 28
    stores = {}
    for key in ("good_chgcar", "json"):
        stores[key] = tmp_path / f"{key}.zarr"
        rc, _, err = _main(capsys, "density", files[key], "--out", stores[key], "--channels", "1")
        assert rc == 0, err
    (_, rho_c, a_c), = list(iter_density_store(stores["good_chgcar"]))
    (_, rho_j, a_j), = list(iter_density_store(stores["json"]))
    assert a_c["n_electrons"] == pytest.approx(3.0, abs=1e-6) and a_j["n_electrons"] == pytest.approx(3.0, abs=1e-6)
    assert a_j["shape"] == a_c["shape"] == [6, 6, 6]
    np.testing.assert_allclose(rho_j, rho_c, rtol=1e-6)
    rc, _, err = _main(capsys, "density", files["json"], "--out", tmp_path / "x.zarr", "--cell", "conventional")
    assert rc == 1 and _one_error_line(err, "density", files["json"], "as_is")


def test_sample_bad_stores(files, capsys, tmp_path):
    dense = tmp_path / "li.zarr"
    assert _main(capsys, "density", files["good_chgcar"], "--out", dense, "--channels", "1")[0] == 0
    good = tmp_path / "s.zarr"
    rc, _, err = _main(capsys, "sample", dense, "--out", good, "--method", "grid", "--voxel", "0.5")
    assert rc == 0, err
    (tmp_path / "empty_dir").mkdir()
    bad = {files["empty"]: "not a density store", tmp_path / "none.zarr": "no such store",
           good: "a sample store", tmp_path / "empty_dir": "not a density store"}
    for store, why in bad.items():
        out = tmp_path / "o.zarr"
        rc, _, err = _main(capsys, "sample", store, "--out", out)
        assert rc == 1
        _one_error_line(err, "sample", store, why)
        assert not out.exists()


def test_debug_shows_the_traceback(files, capsys, tmp_path):
    rc, _, err = _main(capsys, "--debug", "density", files["close"], "--out", tmp_path / "d.zarr")
    assert rc == 1 and "Traceback (most recent call last)" in err and "StructureRejected" in err
    assert LINE.match(err.splitlines()[-1])  # the one line comes last


def test_internal_error_says_so(capsys, monkeypatch, files, tmp_path):
    import rhosym.xrd

    def boom(*a, **k):
        raise TypeError("a bug")

    monkeypatch.setattr(rhosym.xrd, "simulate", boom)
    rc, _, err = _main(capsys, "xrd", files["good_cif"], "--out", tmp_path / "p.csv")
    assert rc == 1 and "Traceback" not in err
    (line,) = err.splitlines()
    assert line == (f"rhosym xrd: {files['good_cif']}: internal error (rerun with --debug for the traceback): "
                    "TypeError: a bug")


# ------------------------------------------------------------------------------------ labels

@pytest.mark.parametrize("bad", ["empty", "not_cif", "occ2", "truncated", "missing"])
def test_labels_bad_inputs(files, capsys, bad):
    rc, out, err = _main(capsys, "labels", files[bad])
    assert rc == 1 and "Traceback" not in err
    _stdout_error(out, files[bad], WHY[bad])


def test_labels_some_good(files, capsys):
    rc, out, err = _main(capsys, "labels", files["missing"], files["good_cif"], files["empty"])
    recs = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and "Traceback" not in err and len(recs) == 3
    assert "error" in recs[0] and recs[1]["space_group"] == 225 and "error" in recs[2]


# ------------------------------------------------------------------------------------ predict, convert-checkpoint

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A one-epoch lattice model on an ingest shard of tests/fixtures/cif_tiny (seconds)."""
    import torch

    from rhosym import train as T
    from rhosym.ingest import ingest_shard
    from rhosym.shards import list_units

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    ds = {"kind": "cif_dir", "path": str(FIX / "cif_tiny")}
    shard = root / "shard-00000.parquet"
    df = ingest_shard("cif", ds, 0, list_units(ds), None, None, shard)
    man = df[df["status"] == "ok"].drop(columns=["structure"])
    ids = man["id"].tolist()
    split = pd.DataFrame({"id": ids, "split": ["val" if i % 4 == 0 else "train" for i in range(len(ids))]})
    cfg = {"epochs": 1, "batch_budget": 100_000, "max_batch_size": 8, "model": {"hidden": [8]}}
    T.train(T.TrainJob(model="lattice", task="crystal_system", input="lattice", stores=[str(shard)], manifest=man,
                       split=split, out_dir=root / "m", cfg=cfg, dataset="cif", device="cpu",
                       provenance={"kind": "cif_dir", "cell": "conventional", "labels": {}, "ingest": {}}))
    return root / "m" / "checkpoint.pt"


@pytest.mark.parametrize("bad", STRUCTURE_BAD)
def test_predict_bad_inputs(files, checkpoint, capsys, bad):
    rc, out, err = _main(capsys, "predict", files[bad], "--model", checkpoint, "--device", "cpu")
    assert rc == 1 and "Traceback" not in err
    _stdout_error(out, files[bad], WHY[bad])


def test_predict_some_good_and_check_options(files, checkpoint, capsys):
    rc, out, err = _main(capsys, "predict", files["close"], files["good_cif"], "--model", checkpoint,
                         "--device", "cpu")
    recs = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and "Traceback" not in err and "closer" in recs[0]["error"] and "prediction" in recs[1]
    rc, out, _ = _main(capsys, "predict", files["good_cif"], "--model", checkpoint, "--device", "cpu",
                       "--max-sites", "4")
    assert rc == 1 and "8 sites over max_sites 4" in json.loads(out)["error"]


def _format1(checkpoint, path, extra=None):
    """A rhosym 0.1 (format 1) checkpoint: a full pickle (here with a Path object in it)."""
    import torch

    from rhosym import checkpoint as C

    st = C.load(checkpoint)
    d = {**st["meta"].to_dict(), "format": 1, "state_dict": st["state_dict"], "where": Path("/somewhere")}
    torch.save({**d, **(extra or {})}, path)
    return path


def test_predict_unusable_checkpoints(files, checkpoint, capsys, tmp_path):
    unsafe = _format1(checkpoint, tmp_path / "old.pt")
    cases = {files["missing"].with_suffix(".pt"): "no such checkpoint file",
             files["junk_pt"]: "not a readable checkpoint", unsafe: "refused: .*convert-checkpoint"}
    for ck, why in cases.items():
        rc, out, err = _main(capsys, "predict", files["good_cif"], "--model", ck, "--device", "cpu")
        assert rc == 2 and out == ""
        _one_error_line(err, "predict", ck, why)
    rc, out, err = _main(capsys, "predict", files["good_cif"], "--model", checkpoint, "--device", "cpu",
                         "--method", "grid")
    assert rc == 2 and _one_error_line(err, "predict", checkpoint, "refused: --method/--voxel apply to density")


def test_convert_checkpoint(files, checkpoint, capsys, tmp_path):
    old = _format1(checkpoint, tmp_path / "old.pt")
    new = tmp_path / "new.pt"
    rc, _, err = _main(capsys, "convert-checkpoint", old, new)
    assert rc == 0, err
    rc, out, _ = _main(capsys, "predict", files["good_cif"], "--model", new, "--device", "cpu")
    assert rc == 0 and "prediction" in json.loads(out)
    cases = {files["junk_pt"]: "not a readable format-1 checkpoint", tmp_path / "none.pt": "no such file",
             checkpoint: "not a format-1 rhosym checkpoint"}
    for ck, why in cases.items():
        rc, _, err = _main(capsys, "convert-checkpoint", ck, tmp_path / "x.pt")
        assert rc == 1
        _one_error_line(err, "convert-checkpoint", ck, why)
        assert not (tmp_path / "x.pt").exists()


# ------------------------------------------------------------------------------------ ingest, bench

def test_ingest_bad_configs(capsys, tmp_path):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"results": str(tmp_path / "res"),
                                   "datasets": {"d": {"kind": "cif_dir", "path": str(tmp_path / "nowhere")}}}))
    rc, _, err = _main(capsys, "ingest", cfg, "d")
    assert rc == 1 and _one_error_line(err, "ingest", cfg, "nowhere.*does not exist")
    rc, _, err = _main(capsys, "ingest", cfg, "other")
    assert rc == 1 and _one_error_line(err, "ingest", cfg, "no data set 'other' \\(data sets: d\\)")
    bad_kind = tmp_path / "k.yaml"
    bad_kind.write_text(yaml.safe_dump({"datasets": {"d": {"kind": "nope", "path": "x"}}}))
    rc, _, err = _main(capsys, "ingest", bad_kind, "d")
    assert rc == 1 and _one_error_line(err, "ingest", bad_kind, "kind")
    not_map = tmp_path / "l.yaml"
    not_map.write_text("- a\n- b\n")
    rc, _, err = _main(capsys, "ingest", not_map, "d")
    assert rc == 1 and _one_error_line(err, "ingest", not_map, "not a config")
    rc, _, err = _main(capsys, "ingest", tmp_path / "none.yaml", "d")
    assert rc == 1 and _one_error_line(err, "ingest", tmp_path / "none.yaml", "no such file")


def test_bench_unknown_kind(capsys):
    import pkgutil

    import rhosym.bench

    rc, _, err = _main(capsys, "bench", "no_such_kind")
    known = sorted(m.name for m in pkgutil.iter_modules(rhosym.bench.__path__))
    assert rc == 1 and "Traceback" not in err
    assert err.strip() == f"rhosym bench: unknown benchmark 'no_such_kind'; known: {', '.join(known)}"


def test_usage_errors_stay_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["density"])
    assert e.value.code == 2


# ------------------------------------------------------------------------------------ the console script

def _script(*argv) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # the warnings a user would see
    return subprocess.run([str(RHOSYM), *map(str, argv)], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(not RHOSYM.is_file(), reason="the rhosym console script is not installed beside python")
def test_console_script(files, checkpoint, tmp_path):
    p = _script("density", files["close"], "--out", tmp_path / "d.zarr")
    assert p.returncode == 1
    _one_error_line(p.stderr, "density", files["close"], "atoms closer than 0.5 A")
    p = _script("density", files["nan"], "--out", tmp_path / "d.zarr")
    assert p.returncode == 1
    _one_error_line(p.stderr, "density", files["nan"], "NaN")
    p = _script("predict", files["good_cif"], "--model", files["junk_pt"], "--device", "cpu")
    assert p.returncode == 2 and p.stdout == ""
    _one_error_line(p.stderr, "predict", files["junk_pt"], "not a readable checkpoint")
    p = _script("labels", files["missing"])
    assert p.returncode == 1 and "Traceback" not in p.stderr
    _stdout_error(p.stdout, files["missing"], "no such file")
    p = _script("--debug", "xrd", files["occ2"], "--out", tmp_path / "p.csv")
    assert p.returncode == 1 and "Traceback (most recent call last)" in p.stderr
    assert LINE.match(p.stderr.splitlines()[-1])
