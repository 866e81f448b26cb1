"""rhosym.io.mp_json and rhosym.mp_download: MP charge-density JSON (as pymatgen/MP write it), file names, ids, metadata and download_mp."""

import bz2
import gzip
import json
import sys
import threading
import time
import types

import numpy as np
import pandas as pd
import pytest

from rhosym import mp_download as mpd
from rhosym.io import mp_json as mp
from rhosym.io.chgcar import read_chgcar

CHGCARS = {  # file: (electrons, magnetic moment or None)
    "Li_bcc_nospin_CHGCAR.gz": (1.0, None),
    "Li_bcc_spin_CHGCAR.gz": (1.0, -0.020),
    "Co_monolayer_fm_CHGCAR": (9.0, 2.07),
    "Ag4_hex_spin_CHGCAR": (76.0, 0.0),
}


def _monty_json(obj) -> bytes:
    from monty.json import MontyEncoder

    return json.dumps(obj, cls=MontyEncoder).encode()


@pytest.fixture(scope="module")
def mp_json(tmp_path_factory):
    """For each shared CHGCAR: the pymatgen ``Chgcar``, its bare ``to_json()`` (gzip) and the same wrapped
    under ``data`` beside a ``task_id`` (gzip), made once per module."""
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA}): real-data test skipped")
    from pymatgen.io.vasp import Chgcar

    out = tmp_path_factory.mktemp("mp_json")
    made = {}
    for i, name in enumerate(CHGCARS):
        src = SHARED_DATA / "chgcar" / name
        chg = Chgcar.from_file(str(src))
        stem = name.split("_CHGCAR")[0]
        bare = out / f"{stem}.json.gz"
        bare.write_bytes(gzip.compress(chg.to_json().encode(), mtime=0))
        wrapped = out / f"task-{i}_chgcar.json.gz"
        wrapped.write_bytes(gzip.compress(_monty_json({"task_id": f"mp-{9000 + i}", "data": chg}), mtime=0))
        made[name] = {"src": src, "chgcar": chg, "bare": bare, "wrapped": wrapped}
    return made


# ----------------------------------------------------------------------------------- reading real files
@pytest.mark.shared
@pytest.mark.parametrize("layout", ["bare", "wrapped"])
@pytest.mark.parametrize("name", list(CHGCARS))
def test_json_equals_chgcar_text(shared_data, mp_json, name, layout):
    ref = read_chgcar(mp_json[name]["src"])
    got = mp.read_chgcar_json(mp_json[name][layout])
    assert got.shape == ref.shape and got.species == ref.species
    np.testing.assert_allclose(got.lattice, ref.lattice, atol=1e-9)
    np.testing.assert_allclose(got.frac_coords, ref.frac_coords, atol=1e-9)
    assert got.total.dtype == np.float64 and got.spin == ref.spin
    np.testing.assert_allclose(got.channels(4), ref.channels(4), rtol=1e-6, atol=1e-6)
    electrons, moment = CHGCARS[name]
    assert got.n_electrons == pytest.approx(electrons, abs=1e-3)
    assert got.n_electrons == pytest.approx(ref.n_electrons, rel=1e-9)
    if moment is None:
        assert got.magnetic_moment is None
    else:
        assert got.magnetic_moment == pytest.approx(moment, abs=0.01)
        assert got.magnetic_moment == pytest.approx(ref.magnetic_moment, rel=1e-9, abs=1e-12)


@pytest.mark.shared
def test_ids_of_bare_and_wrapped(shared_data, mp_json):
    co = mp_json["Co_monolayer_fm_CHGCAR"]
    mp._IDS_CACHE.clear()  # scanned from the text, not remembered from a read
    assert mp.chgcar_json_ids(co["bare"]) == {"task_id": None, "material_id": None}
    assert mp.chgcar_json_ids(co["wrapped"]) == {"task_id": "mp-9002", "material_id": None}
    mp.read_chgcar_json(co["wrapped"])
    assert mp.chgcar_json_ids(co["wrapped"])["task_id"] == "mp-9002"


@pytest.mark.shared
def test_plain_lists_and_other_compressions(shared_data, mp_json, tmp_path):
    """jsanitized nested lists (no monty numpy dicts), plain .json, .json.bz2, .json.xz, a one-element list."""
    import lzma

    from monty.json import jsanitize

    li = mp_json["Li_bcc_spin_CHGCAR.gz"]
    ref = read_chgcar(li["src"])
    doc = jsanitize(li["chgcar"].as_dict())
    assert isinstance(doc["data"]["total"], list)
    text = json.dumps({"task_id": "mp-7", "material_id": "mp-135", "data": doc}).encode()
    files = {"a.json": text, "b.json.bz2": bz2.compress(text), "c.json.xz": lzma.compress(text, preset=0),
             "d.json.gz": gzip.compress(b"[" + text + b"]")}
    for fname, data in files.items():
        (tmp_path / fname).write_bytes(data)
        got = mp.read_chgcar_json(tmp_path / fname)
        np.testing.assert_array_equal(got.total, ref.total)
        np.testing.assert_array_equal(got.mag, ref.mag)
    mp._IDS_CACHE.clear()
    assert mp.chgcar_json_ids(tmp_path / "b.json.bz2") == {"task_id": "mp-7", "material_id": "mp-135"}


@pytest.mark.shared
def test_read_speed_json_vs_text(shared_data, mp_json):
    co = mp_json["Co_monolayer_fm_CHGCAR"]
    t0 = time.perf_counter()
    mp.read_chgcar_json(co["bare"])
    t_json = time.perf_counter() - t0
    t0 = time.perf_counter()
    read_chgcar(co["src"])
    t_text = time.perf_counter() - t0
    print(f"Co 24x24x196: read_chgcar_json {t_json:.3f} s, read_chgcar {t_text:.3f} s")
    assert t_json < 2.0


# ----------------------------------------------------------------------------------- broken input
def _tiny_doc(total=None, diff=None, structure=True):
    grid = np.ones((2, 3, 4)) * 24.0 if total is None else total
    doc = {"@module": "pymatgen.io.vasp.outputs", "@class": "Chgcar", "data": {"total": grid}}
    if diff is not None:
        doc["data"]["diff"] = diff
    if structure:
        doc["poscar"] = {"structure": {"lattice": {"matrix": np.eye(3) * 3.0},
                                       "sites": [{"species": [{"element": "Li", "occu": 1}],
                                                  "abc": [0, 0, 0]}]}}
    return doc


def test_tiny_doc_reads(tmp_path):
    p = tmp_path / "x.json"
    p.write_bytes(_monty_json(_tiny_doc(diff=np.zeros((2, 3, 4)))))
    d = mp.read_chgcar_json(p)
    assert d.shape == (2, 3, 4) and d.n_electrons == 24.0 and d.magnetic_moment == 0.0
    assert d.species == ["Li"] and d.volume == pytest.approx(27.0)


@pytest.mark.parametrize("case,match", [
    ("empty", "empty file"),
    ("truncated_gzip", "truncated"),
    ("not_json", "not JSON"),
    ("json_list", "not a charge density"),
    ("no_structure", "no structure"),
    ("no_total", "no data.total"),
    ("ragged", "grid shape inconsistent"),
    ("two_d", "grid shape inconsistent"),
    ("diff_shape", "grid shape inconsistent"),
    ("nan", "NaN/Inf"),
    ("inf_in_diff", "NaN/Inf"),
    ("bad_lattice", "bad structure"),
])
def test_bad_inputs_raise_one_line_value_error(tmp_path, case, match):
    p = tmp_path / f"{case}.json.gz"
    good = gzip.compress(_monty_json(_tiny_doc()))
    if case == "empty":
        data = b""
    elif case == "truncated_gzip":
        data = good[: len(good) // 2]
    elif case == "not_json":
        data = gzip.compress(b"CHGCAR text\n 1.0\n{not json")
    elif case == "json_list":
        data = gzip.compress(b"[1, 2, 3]")
    elif case == "no_structure":
        data = gzip.compress(_monty_json(_tiny_doc(structure=False)))
    elif case == "no_total":
        doc = _tiny_doc()
        doc["data"] = {"diff": doc["data"]["total"]}
        data = gzip.compress(_monty_json(doc))
    elif case == "ragged":
        doc = _tiny_doc()
        doc["data"]["total"] = [[[1.0, 2.0], [3.0]], [[1.0, 2.0], [3.0, 4.0]]]
        data = gzip.compress(_monty_json(doc))
    elif case == "two_d":
        data = gzip.compress(_monty_json(_tiny_doc(total=np.ones((4, 4)))))
    elif case == "diff_shape":
        data = gzip.compress(_monty_json(_tiny_doc(diff=np.zeros((2, 3, 5)))))
    elif case == "nan":
        t = np.ones((2, 3, 4))
        t[1, 1, 1] = np.nan
        data = gzip.compress(_monty_json(_tiny_doc(total=t)))
    elif case == "inf_in_diff":
        d = np.zeros((2, 3, 4))
        d[0, 0, 0] = np.inf
        data = gzip.compress(_monty_json(_tiny_doc(diff=d)))
    elif case == "bad_lattice":
        doc = _tiny_doc()
        doc["poscar"]["structure"]["lattice"]["matrix"] = [[1, 0, 0], [0, 1, 0]]
        data = gzip.compress(_monty_json(doc))
    p.write_bytes(data)
    with pytest.raises(ValueError, match=match) as ei:
        mp.read_chgcar_json(p)
    assert "\n" not in str(ei.value) and len(str(ei.value)) < 300


def test_ids_of_broken_files_raise_value_error(tmp_path):
    (tmp_path / "e.json.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        mp.chgcar_json_ids(tmp_path / "e.json.gz")
    good = gzip.compress(_monty_json({"task_id": "mp-1", "data": _tiny_doc()}))
    (tmp_path / "t.json.gz").write_bytes(good[:-20])
    with pytest.raises(ValueError, match="truncated"):
        mp.chgcar_json_ids(tmp_path / "t.json.gz")


def test_ids_ignore_nested_keys(tmp_path):
    doc = {"data": _tiny_doc(), "meta": {"task_id": "mp-nested"}, "task_id": "mp-top", "material_id": 149}
    doc["data"]["poscar"]["structure"]["properties"] = {"material_id": "mp-deep"}
    p = tmp_path / "a.json"
    p.write_bytes(_monty_json(doc))
    assert mp.chgcar_json_ids(p) == {"task_id": "mp-top", "material_id": "149"}


# ----------------------------------------------------------------------------------- names and ids
@pytest.mark.parametrize("name,want", [
    ("mp-149.json.gz", True), ("mp-1234567_chgcar.json.gz", True), ("task-xxxx.json.gz", True),
    ("mp-149_CHGCAR.json", True), ("mp-149.chgcar.json.bz2", True), ("mp-9.json.xz", True),
    ("metadata.json", False), ("metadata.json.gz", False), ("summary.json", False), ("manifest.json", False),
    ("materials_2024.json", False), ("mp20_metadata.json", False), ("mp-149_CHGCAR.gz", False),
    ("mp-149.json.gz.part-1-2", False), (".mp-149.json.gz", False), ("metadata.csv", False),
])
def test_is_chgcar_json(name, want):
    assert mp.is_chgcar_json(name) is want


@pytest.mark.parametrize("name,want", [
    ("mp-149.json.gz", "mp-149"), ("mp-149_CHGCAR.json.gz", "mp-149"), ("mp-149.chgcar.json.gz", "mp-149"),
    ("CHGCAR_mp-149.json", "mp-149"), ("task-xxxx.json.gz", "task-xxxx"), ("Li_bcc_spin.json", "Li_bcc_spin"),
    ("some/dir/mp-1234567_chgcar.json.bz2", "mp-1234567"), ("mp-5/CHGCAR.json.gz", "mp-5"),
])
def test_file_id(name, want):
    assert mp.file_id(name) == want


def test_read_metadata_csv_and_resolve(tmp_path):
    p = tmp_path / "meta.csv"
    pd.DataFrame({"material_id": ["mp-149", "mp-149", "mp-13", "mp-22"],
                  "task_id": ["mp-1791788", "mp-1234", "mp-555", None],
                  "band_gap": [0.61, None, 0.0, 1.5],
                  "formation_energy_per_atom": [0.0, 0.0, -0.1, None]}).to_csv(p, index=False)
    meta = mp.read_metadata(p)
    assert list(meta.index) == ["mp-149", "mp-13", "mp-22"]
    assert {"band_gap", "formation_energy", "task_id", "task_ids"} <= set(meta.columns)
    assert meta.at["mp-149", "band_gap"] == pytest.approx(0.61)
    assert np.isnan(meta.at["mp-22", "formation_energy"])
    assert meta.at["mp-149", "task_ids"] == ("mp-1791788", "mp-1234") and meta.at["mp-22", "task_ids"] == ()
    # a file named by a task id -> its material id, by the metadata
    assert mp.resolve_material_id("mp-1234", meta) == ("mp-149", "mp-1234")
    assert mp.resolve_material_id(mp.file_id("mp-555.json.gz"), meta) == ("mp-13", "mp-555")
    # a file named by a material id keeps it
    assert mp.resolve_material_id("mp-149", meta) == ("mp-149", "mp-1791788")
    assert mp.resolve_material_id("mp-22", meta) == ("mp-22", None)
    # the document's own task id, when the file name says nothing
    assert mp.resolve_material_id("task-1", meta, {"task_id": "mp-555"}) == ("mp-13", "mp-555")
    # the document's own material id wins
    assert mp.resolve_material_id("mp-555", meta, {"task_id": "mp-555", "material_id": "mp-13"}) == \
        ("mp-13", "mp-555")
    # unknown: the file id, with the document's task id
    assert mp.resolve_material_id("mp-999", meta, {"task_id": "mp-999"}) == ("mp-999", "mp-999")
    assert mp.resolve_material_id("mp-1234", None) == ("mp-1234", None)
    assert mp.resolve_material_id("mp-1234", {"mp-1234": "mp-149"}) == ("mp-149", "mp-1234")


def test_read_metadata_json_forms(tmp_path):
    recs = [{"material_id": "mp-1", "task_ids": ["mp-10", "mp-11"], "band_gap": 1.0, "formation_energy": -1.0},
            {"material_id": "mp-2", "band_gap": 2.0}]
    forms = {"a.json": recs, "b.json": {"data": recs},
             "c.json": {"mp-1": {"task_ids": ["mp-10", "mp-11"], "band_gap": 1.0, "formation_energy": -1.0},
                        "mp-2": {"band_gap": 2.0}}}
    for fname, obj in forms.items():
        (tmp_path / fname).write_text(json.dumps(obj))
    (tmp_path / "d.json.gz").write_bytes(gzip.compress(json.dumps(recs).encode()))
    for fname in ["a.json", "b.json", "c.json", "d.json.gz"]:
        meta = mp.read_metadata(tmp_path / fname)
        assert list(meta.index) == ["mp-1", "mp-2"], fname
        assert meta.at["mp-1", "formation_energy"] == -1.0 and np.isnan(meta.at["mp-2", "formation_energy"])
        assert mp.resolve_material_id("mp-11", meta) == ("mp-1", "mp-11")
    (tmp_path / "bad.csv").write_text("id,band_gap\nmp-1,1.0\n")
    with pytest.raises(ValueError, match="no material_id"):
        mp.read_metadata(tmp_path / "bad.csv")


def test_classify_error():
    class MPRestError(Exception):
        pass

    assert mpd.classify_error(ConnectionError("reset")) == "transient"
    assert mpd.classify_error(TimeoutError()) == "transient"
    assert mpd.classify_error(MPRestError("REST query returned with error status code 429 on URL x")) == "transient"
    assert mpd.classify_error(MPRestError("REST query returned with error status code 503")) == "transient"
    assert mpd.classify_error(MPRestError("No object found: s3://materialsproject-parsed/chgcars/x")) == "missing"
    assert mpd.classify_error(KeyError("mp-1")) == "missing"
    assert mpd.classify_error(RuntimeError("bad things")) == "failed"


# ----------------------------------------------------------------------------------- download_mp
def _payload(tid: str) -> bytes:
    """A small .json.gz as the open-data bucket holds it (a task doc with the Chgcar under ``data``)."""
    return gzip.compress(_monty_json({"task_id": tid, "data": _tiny_doc()}), mtime=0)


class _Summary:
    def __init__(self, labels):
        self.labels = labels
        self.calls = []

    def search(self, material_ids, fields):
        self.calls.append((list(material_ids), list(fields)))
        out = []
        for m in material_ids:
            if m in self.labels:
                bg, fe = self.labels[m]
                out.append(types.SimpleNamespace(material_id=m, band_gap=bg, formation_energy_per_atom=fe)
                           if m.endswith("1") else {"material_id": m, "band_gap": bg,
                                                    "formation_energy_per_atom": fe})
        return out


class _FakeClient:
    """mp-api's MPRester, as download_mp uses it: charge density by material id (with the task doc) and
    summary search. ``transient``: material -> how many calls fail with a 503 first; ``absent``: no object."""

    def __init__(self, payloads, tasks, delay=0.0, transient=None, absent=(), none=(), labels=None):
        self.payloads, self.tasks, self.delay = payloads, tasks, delay
        self.transient = dict(transient or {})
        self.absent, self.none = set(absent), set(none)
        self.calls: list[str] = []
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        self.summary = _Summary(labels or {})

    def get_charge_density_from_material_id(self, material_id, inc_task_doc=False):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append(material_id)
        try:
            if self.delay:
                time.sleep(self.delay)
            with self.lock:
                left = self.transient.get(material_id, 0)
                if left:
                    self.transient[material_id] = left - 1
            if left:
                raise RuntimeError("REST query returned with error status code 503 on URL https://api")
            if material_id in self.absent:
                raise RuntimeError(f"No object found: s3://materialsproject-parsed/chgcars/{material_id}.json.gz")
            if material_id in self.none:
                return None
            payload = self.payloads[material_id]
            return (payload, {"task_id": self.tasks[material_id]}) if inc_task_doc else payload
        finally:
            with self.lock:
                self.active -= 1


def _cfg(tmp_path, ids, **kw):
    return {"kind": "mp_chgcar", "path": str(tmp_path / "mp"), "metadata": str(tmp_path / "meta.csv"),
            "mp_ids": ids, **kw}


def test_download_bounded_concurrency(tmp_path):
    ids = [f"mp-{i}" for i in range(1, 13)]
    tasks = {m: f"mp-{1000 + i}" for i, m in enumerate(ids)}
    fake = _FakeClient({m: _payload(tasks[m]) for m in ids}, tasks, delay=0.05)
    res = mpd.download_mp(_cfg(tmp_path, ids, download_workers=3), client=fake, sleep=lambda s: None)
    assert res["downloaded"] == ids and not res["failed"] and not res["missing"]
    assert 1 < fake.max_active <= 3
    fake2 = _FakeClient({m: _payload(tasks[m]) for m in ids}, tasks, delay=0.02)
    mpd.download_mp(_cfg(tmp_path / "w2", ids), client=fake2, workers=2, sleep=lambda s: None)
    assert fake2.max_active <= 2


def test_download_retries_with_growing_backoff(tmp_path):
    tasks = {"mp-1": "mp-101", "mp-2": "mp-102"}
    fake = _FakeClient({m: _payload(t) for m, t in tasks.items()}, tasks, transient={"mp-1": 3, "mp-2": 99})
    delays: list[float] = []
    res = mpd.download_mp(_cfg(tmp_path, ["mp-1", "mp-2"]), client=fake, workers=1, retries=3, backoff=0.5,
                         sleep=delays.append)
    assert res["downloaded"] == ["mp-1"] and fake.calls.count("mp-1") == 4
    assert "mp-2" in res["failed"] and "gave up after 4 tries" in res["failed"]["mp-2"]
    assert fake.calls.count("mp-2") == 4 and len(delays) == 6
    first, second = delays[:3], delays[3:]  # workers=1: mp-1's three waits, then mp-2's
    for d in (first, second):
        assert d[0] >= 0.5 and all(b > a for a, b in zip(d, d[1:]))
        assert d[2] >= 4 * 0.5
    assert "mp-2\t" in (tmp_path / "mp" / "failed.txt").read_text()


def test_download_missing_not_retried(tmp_path, caplog):
    tasks = {"mp-1": "mp-101"}
    fake = _FakeClient({"mp-1": _payload("mp-101")}, tasks, absent={"mp-404"}, none={"mp-405"})
    delays: list[float] = []
    with caplog.at_level("WARNING", logger="rhosym.mp_download"):
        res = mpd.download_mp(_cfg(tmp_path, ["mp-404", "mp-1", "mp-405"]), client=fake, sleep=delays.append)
    assert set(res["missing"]) == {"mp-404", "mp-405"} and res["downloaded"] == ["mp-1"]
    assert fake.calls.count("mp-404") == 1 and not delays
    lines = (tmp_path / "mp" / "missing.txt").read_text().splitlines()
    assert "mp-404\tNo object found: s3://materialsproject-parsed/chgcars/mp-404.json.gz" in lines
    assert "mp-405\tno charge density" in lines
    assert "mp-404 has no charge density" in caplog.text


def test_download_bytes_unchanged_resume_and_metadata(tmp_path):
    ids = ["mp-1", "mp-2", "mp-3", "mp-404"]
    tasks = {"mp-1": "mp-101", "mp-2": "mp-102", "mp-3": "mp-103"}
    payloads = {m: _payload(t) for m, t in tasks.items()}
    labels = {"mp-1": (1.1, -0.5), "mp-2": (0.0, 0.25), "mp-3": (3.0, -1.0)}
    cfg = _cfg(tmp_path, ids)
    out = tmp_path / "mp"
    fake = _FakeClient(payloads, tasks, absent={"mp-404"}, labels=labels)
    res = mpd.download_mp(cfg, client=fake, sleep=lambda s: None)
    assert res["downloaded"] == ["mp-1", "mp-2", "mp-3"] and list(res["missing"]) == ["mp-404"]
    for m, t in tasks.items():  # named by task id, byte-identical to what the client returned
        assert (out / f"{t}.json.gz").read_bytes() == payloads[m]
    meta_csv = pd.read_csv(cfg["metadata"])
    assert list(meta_csv.columns) == ["material_id", "task_id", "band_gap", "formation_energy_per_atom"]
    assert meta_csv.set_index("material_id").loc["mp-2", "task_id"] == "mp-102"
    assert meta_csv.set_index("material_id").loc["mp-1", "band_gap"] == pytest.approx(1.1)
    assert np.isnan(meta_csv.set_index("material_id").loc["mp-404", "band_gap"])
    # labels join on the material id: each file (named by task id) resolves to its material
    meta = mp.read_metadata(cfg["metadata"])
    for f in sorted(out.glob("*.json.gz")):
        assert mp.is_chgcar_json(f.name)
        mid, tid = mp.resolve_material_id(mp.file_id(f), meta, mp.chgcar_json_ids(f))
        assert tasks[mid] == tid and meta.at[mid, "band_gap"] == labels[mid][0]

    # a killed run: mp-2's file never completed, a half-written temporary is left behind
    (out / "mp-102.json.gz").unlink()
    (out / "mp-102.json.gz.part-12345-678").write_bytes(payloads["mp-2"][:30])
    fake2 = _FakeClient(payloads, tasks, absent={"mp-404"}, labels=labels)
    res2 = mpd.download_mp(cfg, client=fake2, sleep=lambda s: None)
    assert res2["skipped"] == ["mp-1", "mp-3"] and res2["downloaded"] == ["mp-2"]
    assert sorted(fake2.calls) == ["mp-2", "mp-404"]
    assert (out / "mp-102.json.gz").read_bytes() == payloads["mp-2"]
    assert not list(out.glob("*.part*"))
    # the record of complete files is lost: the metadata's task ids still find them
    (out / "downloads.tsv").unlink()
    fake3 = _FakeClient(payloads, tasks, labels=labels)
    res3 = mpd.download_mp(_cfg(tmp_path, ["mp-1", "mp-2", "mp-3"]), client=fake3, sleep=lambda s: None)
    assert res3["skipped"] == ["mp-1", "mp-2", "mp-3"] and fake3.calls == []
    assert not (out / "missing.txt").exists()


def test_download_truncated_bytes_are_retried(tmp_path):
    good = _payload("mp-101")

    class Flaky(_FakeClient):
        n = 0

        def get_charge_density_from_material_id(self, material_id, inc_task_doc=False):
            self.n += 1
            data = good if self.n > 1 else good[:-10]
            return data, {"task_id": "mp-101"}

    fake = Flaky({}, {})
    delays: list[float] = []
    res = mpd.download_mp(_cfg(tmp_path, ["mp-1"]), client=fake, sleep=delays.append)
    assert res["downloaded"] == ["mp-1"] and len(delays) == 1 and fake.n == 2
    assert (tmp_path / "mp" / "mp-101.json.gz").read_bytes() == good


def test_download_task_id_from_bytes_when_no_task_doc(tmp_path):
    class Plain:
        def get_charge_density_from_material_id(self, material_id):
            return _payload("mp-777")

    res = mpd.download_mp(_cfg(tmp_path, ["mp-1"]), client=Plain(), sleep=lambda s: None)
    assert res["downloaded"] == ["mp-1"] and (tmp_path / "mp" / "mp-777.json.gz").is_file()
    assert pd.read_csv(tmp_path / "meta.csv")["task_id"].tolist() == ["mp-777"]


@pytest.mark.shared
def test_download_chgcar_object_written_as_mp_json(shared_data, mp_json, tmp_path):
    li = mp_json["Li_bcc_spin_CHGCAR.gz"]
    fake = _FakeClient({"mp-135": li["chgcar"]}, {"mp-135": "mp-1791"})
    res = mpd.download_mp(_cfg(tmp_path, ["mp-135"]), client=fake, sleep=lambda s: None)
    assert res["downloaded"] == ["mp-135"]
    f = tmp_path / "mp" / "mp-1791.json.gz"
    raw = gzip.decompress(f.read_bytes())
    assert raw.lstrip().startswith(b"{") and b'"@class": "Chgcar"' in raw  # JSON, not CHGCAR text
    assert mp.chgcar_json_ids(f) == {"task_id": "mp-1791", "material_id": "mp-135"}
    got, ref = mp.read_chgcar_json(f), read_chgcar(li["src"])
    np.testing.assert_array_equal(got.total, ref.total)
    np.testing.assert_array_equal(got.mag, ref.mag)
    from monty.serialization import loadfn

    assert loadfn(f)["data"].data["total"].shape == ref.shape  # monty/pymatgen read it back too


def test_make_client_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "mp_api", None)
    monkeypatch.setitem(sys.modules, "mp_api.client", None)
    with pytest.raises(RuntimeError, match="mp-api is not installed") as ei:
        mpd.make_client()
    assert "\n" not in str(ei.value)
    fake_mod = types.ModuleType("mp_api.client")
    fake_mod.MPRester = lambda api_key: ("rester", api_key)
    monkeypatch.setitem(sys.modules, "mp_api", types.ModuleType("mp_api"))
    monkeypatch.setitem(sys.modules, "mp_api.client", fake_mod)
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="MP_API_KEY is not set"):
        mpd.make_client()
    monkeypatch.setenv("MP_API_KEY", "k123")
    assert mpd.make_client() == ("rester", "k123")


def test_download_config_errors(tmp_path):
    with pytest.raises(ValueError, match="no mp_ids"):
        mpd.download_mp({"path": str(tmp_path)}, client=object())
