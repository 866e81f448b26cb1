"""``rhosym bench cctbx-compare``: the parts that run without cctbx (labels, rhosym side, classification)."""

import csv
import json
import subprocess
import sys

import pytest

from rhosym.bench import cctbx_compare as cc


def test_imports_without_cctbx():
    code = ("import sys; sys.modules['cctbx'] = None; import rhosym.bench.cctbx_compare as m; "
            "print(m.CLASSES[0])")  # None in sys.modules: any `import cctbx` would raise ImportError
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "right", out.stderr


def test_reaches_and_classify():
    table = cc._maximal_subgroups()
    assert cc.reaches(221, 225, table) and cc.reaches(225, 221, table)  # k-subgroups both ways (cell changes)
    assert cc.reaches(229, 225, table) and not cc.reaches(1, 2, table)
    d = 48 / 100.0  # Pm-3m, 48 operations per 100 Å^3
    assert cc.classify(221, 221, d, d, table) == "right"
    assert cc.classify(229, 221, 2 * d, d, table) == "supergroup"
    assert cc.classify(123, 221, d / 3, d, table) == "subgroup"
    assert cc.classify(2, 221, d / 24, d, table) == "subgroup"
    assert cc.classify(194, 221, d / 2, d, table) == "other"  # unrelated types
    assert cc.classify(None, 221, "nan", d, table) == "raised"
    assert cc.classify("", 221, "nan", d, table) == "raised"


def test_one_line_message():
    try:
        raise RuntimeError("first line\nsecond line")
    except RuntimeError as exc:
        assert cc._one_line(exc) == "RuntimeError: first line"
    try:
        raise AssertionError
    except AssertionError as exc:
        assert cc._one_line(exc).startswith("AssertionError at test_cctbx_compare.py:")


@pytest.mark.shared
def test_prepare_rhosym_and_merge(shared_data, tmp_path, capsys):
    src = shared_data / "mp20_public" / "mp20_public.csv"
    if not src.is_file():
        pytest.skip("no mp20_public.csv")
    small = tmp_path / "small.csv"
    with open(src, newline="") as fh:
        rows = [r for _, r in zip(range(3), csv.DictReader(fh))]
    with open(small, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    js = tmp_path / "s.json"
    assert cc.main(["prepare", "--csv", str(small), "--n", "2", "--seed", "0", "--out", str(js)]) == 0
    recs = json.loads(js.read_text())
    assert len(recs) == 2 and all(1 <= r["label"] <= 230 for r in recs)
    rs = tmp_path / "r.csv"
    assert cc.main(["rhosym", "--structures", str(js), "--out", str(rs)]) == 0
    fake = tmp_path / "c.csv"  # a cctbx side that raised on both
    with open(fake, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "label", "cctbx_sg", "cctbx_symbol", "cctbx_error", "n_refl",
                                           "cctbx_ops_per_A3", "cctbx_cpu_ms", "cctbx_wall_ms"])
        w.writeheader()
        for r in recs:
            w.writerow({"id": r["id"], "label": r["label"], "cctbx_error": "AssertionError", "cctbx_cpu_ms": 1,
                        "cctbx_wall_ms": 1})
    out = tmp_path / "m.csv"
    assert cc.main(["merge", "--structures", str(js), "--cctbx", str(fake), "--rhosym", str(rs),
                    "--out", str(out)]) == 0
    merged = list(csv.DictReader(open(out)))
    assert len(merged) == 2 and all(m["cctbx_class"] == "raised" for m in merged)
    assert "cctbx: right 0, supergroup 0, subgroup 0, other 0, raised 2" in capsys.readouterr().out
