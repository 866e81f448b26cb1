"""rhosym.io: the one decompression helper, the input limits (ingest.max_bytes, max_grid_points,
max_input_sites) checked before the expensive step by every reader and command, the CCP4 reader, and the
light imports Snakemake needs while it builds the DAG."""

import bz2
import gzip
import json
import lzma
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rhosym.io import compress as C
from rhosym.io.limits import LimitExceeded, Limits, current, limits_of, use_limits
from tests.test_cli_errors import checkpoint  # noqa: F401 - the trained checkpoint fixture, for predict

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
NACL = (FIX / "cif_tiny" / "NaCl_cubic.cif").read_text()
ONE_LINE_LIMIT = re.compile(r"over the limit ingest\.(max_bytes|max_grid_points|max_input_sites) = \d+ "
                            r"\(raise it in the config or with --max-[a-z-]+\)")


def nacl_supercell_cif(path: Path, n: int) -> Path:
    """A P1 n×n×n NaCl supercell (8 n³ atom-site rows), as a CIF."""
    a = 5.64 * n
    head = ["data_nacl_supercell", *(f"_cell_length_{x} {a:.4f}" for x in "abc"),
            *(f"_cell_angle_{x} 90" for x in ("alpha", "beta", "gamma")),
            "_symmetry_space_group_name_H-M 'P 1'", "loop_", "_symmetry_equiv_pos_as_xyz", "'x, y, z'",
            "loop_", "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
            "_atom_site_fract_z", "_atom_site_occupancy"]
    base = [("Na", 0, 0, 0), ("Na", .5, .5, 0), ("Na", .5, 0, .5), ("Na", 0, .5, .5),
            ("Cl", .5, 0, 0), ("Cl", 0, .5, 0), ("Cl", 0, 0, .5), ("Cl", .5, .5, .5)]
    g = np.arange(n)
    cells = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    rows = []
    for el, *xyz in base:
        frac = (cells + np.array(xyz)) / n
        rows += [f"{el} {el} {x:.6f} {y:.6f} {z:.6f} 1" for x, y, z in frac]
    path.write_text("\n".join(head + [f"{r.split()[0]}{i} {r.split(' ', 1)[1]}" for i, r in enumerate(rows)])
                    + "\n")
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """The inputs over a limit: a 20×20×20 NaCl supercell (64,000 atoms, 2.5 MB), a gzip of 256 MiB of
    zeros (as a CIF and as a CHGCAR), a gzip of a CIF padded to 30 MB (refused with a 1 MB cap), and a
    CHGCAR whose header declares a 1000³ grid."""
    d = tmp_path_factory.mktemp("limits")
    f = {"big": nacl_supercell_cif(d / "big.cif", 20)}
    zeros = d / "zeros.cif.gz"
    with gzip.GzipFile(zeros, "wb", compresslevel=1, mtime=0) as g:
        block = b"\0" * (1 << 24)
        for _ in range(16):
            g.write(block)
    f["zeros"] = zeros
    f["zeros_chgcar"] = d / "zeros_CHGCAR.gz"
    f["zeros_chgcar"].write_bytes(zeros.read_bytes())
    line = b"# padding padding padding padding padding padding padding\n"
    f["padded"] = d / "padded.cif.gz"
    f["padded"].write_bytes(gzip.compress(NACL.encode() + line * (30_000_000 // len(line)), 1, mtime=0))
    f["grid"] = d / "huge_CHGCAR"
    f["grid"].write_text("NaCl\n1.0\n5.64 0 0\n0 5.64 0\n0 0 5.64\nNa Cl\n1 1\nDirect\n0 0 0\n0.5 0.5 0.5\n\n"
                         " 1000 1000 1000\n 0.1 0.2 0.3 0.4 0.5\n")
    f["good"] = FIX / "cif_tiny" / "NaCl_cubic.cif"
    return f


# ------------------------------------------------------------------------------------------- compress

@pytest.mark.parametrize("codec", [None, gzip, bz2, lzma])
def test_decompression_by_magic_streamed_and_capped(tmp_path, codec):
    text = b"".join(b"line %d\n" % i for i in range(5000))
    p = tmp_path / "data.txt"  # a misleading name: the magic bytes decide
    p.write_bytes(codec.compress(text) if codec else text)
    assert C.sniff(p) == {None: "", gzip: "gz", bz2: "bz2", lzma: "xz"}[codec]
    assert C.read_bytes(p) == text and C.decompressed_size(p) == len(text)
    assert C.read_bytes(p.read_bytes()) == text  # a payload in memory
    with C.open_text(p) as fh:
        assert sum(1 for _ in fh) == 5000
    with pytest.raises(LimitExceeded) as e:
        C.read_bytes(p, max_bytes=1000)
    assert ONE_LINE_LIMIT.search(str(e.value)) and "max_bytes = 1000" in str(e.value)
    with use_limits({"max_bytes": 1000}):  # the limit in force reaches readers given none
        with pytest.raises(LimitExceeded):
            C.read_bytes(p)
        assert current().max_bytes == 1000 and current().max_input_sites == Limits().max_input_sites
    assert current() == Limits()


def test_damaged_and_binary_inputs(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"x" * 100_000)[:-10])
    with pytest.raises(ValueError, match="corrupt or truncated compressed file"):
        C.read_bytes(p)
    with pytest.raises(ValueError, match="not a text file"):
        C.read_text(gzip.compress(b"data_x\n" + b"\0" * 1000))


def test_limits_of_settings():
    from rhosym.settings import IngestSettings

    s = IngestSettings(max_bytes=10, max_input_sites=3)
    assert limits_of(s) == Limits(10, IngestSettings().max_grid_points, 3)
    assert IngestSettings().max_bytes == Limits().max_bytes  # one default, in rhosym.io.limits


# ----------------------------------------------------------------------------------------- readers

def test_cif_site_count_matches_pymatgen():
    import gemmi

    from rhosym.io.structures import cif_site_count, read_cif

    for path in sorted((FIX / "cif_tiny").glob("*.cif")):
        if path.name.startswith("bad_"):
            continue
        for block, rec in zip(gemmi.cif.read(str(path)), read_cif(path)):
            n, exact = cif_site_count(block)
            assert exact and n == len(rec.structure), path.name


def test_big_cif_refused_before_the_parse(bad):
    from rhosym.io.structures import read_any, read_csv_row

    t0 = time.process_time()  # CPU seconds of this process: the work, whatever else the machine runs
    (rec,) = read_any(bad["big"])
    assert not rec.ok and rec.error.startswith("64000 sites in the cell as read") and ONE_LINE_LIMIT.search(rec.error)
    row = read_csv_row({"material_id": "m", "cif": bad["big"].read_text()}, source="t.csv")
    assert not row.ok and "64000 sites" in row.error
    assert time.process_time() - t0 < 10
    # symmetry operations count: Fm-3m NaCl is 2 rows, 8 sites
    (ok,) = read_any(bad["good"], limits={"max_input_sites": 8})
    assert ok.ok and len(ok.structure) == 8
    (no,) = read_any(bad["good"], limits={"max_input_sites": 7})
    assert not no.ok and no.error.startswith("8 sites in the cell as read")


def test_poscar_and_chgcar_headers(tmp_path, bad):
    from rhosym.io.chgcar import read_chgcar, read_chgcar_structure
    from rhosym.io.structures import read_poscar

    pos = tmp_path / "POSCAR"
    pos.write_text("big\n1.0\n50 0 0\n0 50 0\n0 0 50\nNa\n90000\nDirect\n0 0 0\n")
    assert "90000 sites in the POSCAR's counts line: over the limit ingest.max_input_sites" in read_poscar(pos).error
    rec = read_chgcar_structure(bad["grid"])
    assert not rec.ok and rec.error.startswith("grid 1000x1000x1000 of 1000000000 points: over the limit")
    with pytest.raises(LimitExceeded, match="max_grid_points"):
        read_chgcar(bad["grid"])
    rec = read_chgcar_structure(bad["zeros_chgcar"])
    assert not rec.ok and "header line longer than" in rec.error
    many = tmp_path / "many_CHGCAR"
    many.write_text("X\n1.0\n50 0 0\n0 50 0\n0 0 50\nNa\n90000\nDirect\n")
    assert "90000 sites in the CHGCAR's counts line" in read_chgcar_structure(many).error


def test_chgcar_within_limits_and_capped(tmp_path):
    from pymatgen.core import Lattice, Structure

    from rhosym.io.chgcar import read_chgcar, read_chgcar_grid, write_chgcar

    s = Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    p = write_chgcar(tmp_path / "X_CHGCAR.gz", s, np.full((6, 5, 4), 0.5))
    assert read_chgcar_grid(p) == (6, 5, 4) and read_chgcar(p).shape == (6, 5, 4)
    with pytest.raises(LimitExceeded, match="decompresses to more than 500 bytes"):
        read_chgcar(p, {"max_bytes": 500})
    with pytest.raises(LimitExceeded, match="grid 6x5x4 of 120 points"):
        read_chgcar(p, {"max_grid_points": 100})


def test_mp_json_grid_and_sites_before_conversion(tmp_path):
    from rhosym.io.mp_json import read_chgcar_json

    site = {"species": [{"element": "Na", "occu": 1}], "abc": [0, 0, 0]}
    doc = {"structure": {"lattice": {"matrix": [[3, 0, 0], [0, 3, 0], [0, 0, 3]]}, "sites": [site] * 3},
           "data": {"total": {"@module": "numpy", "@class": "array", "dtype": "float64",
                              "shape": [1000, 1000, 1000], "data": [1.0]}}}
    p = tmp_path / "mp-1.json.gz"
    p.write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(LimitExceeded, match="data.total grid 1000x1000x1000"):
        read_chgcar_json(p)
    with pytest.raises(LimitExceeded, match="3 sites in the charge density's structure"):
        read_chgcar_json(p, {"max_input_sites": 2})


def _map(path, rho, cell, space_group="P 1", full_x=None):
    import gemmi

    m = gemmi.Ccp4Map()
    m.grid = gemmi.FloatGrid(rho.astype(np.float32), gemmi.UnitCell(*cell), gemmi.SpaceGroup(space_group))
    m.update_ccp4_header(2)
    if full_x:
        m.set_header_i32(8, full_x)
    m.write_ccp4_map(str(path))
    return path


def test_ccp4_header_space_group_reported_not_applied(tmp_path):
    from rhosym.io.ccp4 import read_map

    rho = np.random.default_rng(0).random((10, 12, 14)).astype(np.float32)
    m = read_map(_map(tmp_path / "p212121.ccp4", rho, (5, 6, 7, 90, 90, 90), "P 21 21 21"))
    assert m.space_group == 19 and m.kind == "ccp4" and np.array_equal(m.rho, rho)
    half = _map(tmp_path / "half.ccp4", rho[:5], (5, 6, 7, 90, 90, 90), "P 21 21 21", full_x=10)
    with pytest.raises(ValueError, match="does not cover the unit cell.*space group 19 is not used"):
        read_map(half)  # an asymmetric unit is not expanded by the header's symmetry
    xz = tmp_path / "m.map"
    xz.write_bytes(lzma.compress((tmp_path / "p212121.ccp4").read_bytes()))
    assert np.array_equal(read_map(xz).rho, rho)
    with pytest.raises(LimitExceeded, match="map grid 10x12x14 of 1680 points"):
        read_map(xz, {"max_grid_points": 1000})
    with pytest.raises(LimitExceeded, match="max_bytes = 2000"):
        read_map(xz, {"max_bytes": 2000})


# ------------------------------------------------------------------------------------ every command

# The real command (rhosym.cli.main, the console script's entry point) in a fresh interpreter that writes its
# own peak RSS at exit: VmHWM of /proc/self/status (Linux), else resource.getrusage. (A child's ru_maxrss,
# from getrusage or wait4, starts at the RSS of the parent it was forked from: pytest's, hundreds of MB.)
_WRAP = """import os, resource, sys
from rhosym.cli import main
rc = 1
try:
    rc = main(sys.argv[1:])
finally:
    try:
        kb = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    open(os.environ["RHOSYM_TEST_PEAK_KB"], "w").write(str(kb))
sys.exit(rc)
"""


def _cli(*argv, cwd) -> tuple[int, float, float, str, str]:
    """``rhosym ARGV`` in a subprocess: exit status, CPU seconds (user + system of the child: the work it
    did, whatever else the machine is running), peak RSS (MB), stdout, stderr."""
    import resource

    peak = Path(cwd) / ".peak_kb"
    env = {**os.environ, "RHOSYM_TEST_PEAK_KB": str(peak)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run([sys.executable, "-c", _WRAP, *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return res.returncode, cpu, int(peak.read_text()) / 1024, res.stdout, res.stderr


COMMANDS = {  # command -> extra arguments; labels and predict answer on stdout, the others on stderr
    "density": ["--out", "o.zarr"], "xrd": ["--out", "x.csv"], "graph": ["--out", "g.json"], "labels": [],
    "predict": ["--device", "cpu"],
}
CASES = [("big", [], "64000 sites in the cell as read"),
         ("padded", ["--max-bytes", "1000000"], "decompresses to more than 1000000 bytes"),
         ("zeros", [], "not a text file"),
         ("zeros_chgcar", [], "header line longer than"),
         ("grid", [], "grid 1000x1000x1000")]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_in_seconds_and_bounded_memory(bad, command, tmp_path, request):
    extra = list(COMMANDS[command])
    if command == "predict":
        extra += ["--model", request.getfixturevalue("checkpoint")]
    for case, opts, why in CASES:
        if case not in ("big", "padded") and command not in ("density", "labels"):
            continue  # every reader path is met by density and labels; the others share read_structure
        rc, seconds, peak_mb, out, err = _cli(command, bad[case], *extra, *opts, cwd=tmp_path)
        said = err if command not in ("labels", "predict") else out
        lines = said.strip().splitlines()
        assert rc == 1 and "Traceback" not in err and len(lines) == 1, (command, case, out, err)
        assert why in lines[0], (command, case, lines[0])
        if case in ("big", "padded", "grid"):
            assert ONE_LINE_LIMIT.search(lines[0]), lines[0]
        assert seconds < 10, (command, case, seconds)
        assert peak_mb < 1024, (command, case, peak_mb)
        assert not (tmp_path / "o.zarr").exists()


# ------------------------------------------------------------------------------------------- ingest

def test_ingest_records_refusals_and_goes_on(bad, tmp_path):
    import yaml

    d = tmp_path / "cifs"
    d.mkdir()
    for case in ("big", "zeros", "padded", "good"):
        (d / bad[case].name).write_bytes(bad[case].read_bytes())
    chg = tmp_path / "chg"
    chg.mkdir()
    for case in ("grid", "zeros_chgcar"):
        (chg / bad[case].name).write_bytes(bad[case].read_bytes())
    (chg / "mp-90001_CHGCAR.gz").write_bytes((FIX / "mp_tiny" / "mp-90001_CHGCAR.gz").read_bytes())
    cfg = {"standalone": True, "results": str(tmp_path / "results"), "ingest": {"max_bytes": 5_000_000},
           "datasets": {"c": {"kind": "cif_dir", "path": str(d)}, "m": {"kind": "mp_chgcar", "path": str(chg)}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    for ds, want in (("c", {"big": "64000 sites", "zeros": "not a text file", "padded": "max_bytes",
                            "NaCl_cubic": None}),
                     ("m", {"huge": "max_grid_points", "zeros": "header line longer", "mp-90001": None})):
        rc, seconds, peak_mb, out, err = _cli("ingest", tmp_path / "config.yaml", ds, cwd=tmp_path)
        assert rc == 0 and "Traceback" not in err, err
        assert seconds < 30 and peak_mb < 1024, (ds, seconds, peak_mb)
        man = pd.read_parquet(tmp_path / "results" / ds / "manifest.parquet")
        assert len(man) == len(want), man[["id", "status", "reason"]]
        for _, row in man.iterrows():
            key = next(k for k in want if row["id"].startswith(k) or k in str(row["source"]))
            if want[key] is None:
                assert row["status"] == "ok", row.to_dict()
            else:
                assert row["status"] == "rejected" and want[key] in row["reason"], row.to_dict()
                assert "\n" not in row["reason"]


# ----------------------------------------------------------------------------------------- DAG build

def test_dag_build_imports_nothing_heavy():
    """What the Snakefile and workflow/rules/*.smk import at DAG-build time pulls in no numpy, pandas,
    torch, pymatgen, gemmi, scipy, pyarrow or zarr (``snakemake -n`` stays quick)."""
    imports = set()
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        for line in smk.read_text().splitlines():
            if re.match(r"(from rhosym[\w.]* import |import rhosym)", line):
                imports.add(line.strip())
    assert any("rhosym.settings" in i or "settings as" in i for i in imports), imports
    code = "\n".join(sorted(imports) + [
        "import sys",
        "heavy = sorted(m for m in ('numpy', 'pandas', 'torch', 'pymatgen', 'gemmi', 'scipy', 'pyarrow', "
        "'zarr') if m in sys.modules)",
        "assert not heavy, heavy"])
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
