"""Input kinds (rhosym.inputs): one home per kind, a toy kind added by one module plus one registry entry
and trained through the trainer, and training jobs that run from their typed job file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rhosym import checkpoint as C
from rhosym import inputs
from rhosym import registry as R
from rhosym import train as T
from tests.conftest import ROOT
from tests.test_train_fixtures import write_density_stores, write_lattice_shards, write_manifest_split

SRC = ROOT / "src" / "rhosym"

TOY_KIND = '''
import numpy as np
import pandas as pd
import torch

from rhosym.inputs.base import InputKind


class Toy(InputKind):
    """Reads the cell volume from the ingest shards: one number per structure."""

    name = "toy"
    width = 1

    def open(self, path):
        df = pd.read_parquet(path, columns=["id", "status", "a", "b", "c"])
        df = df[df["status"] == "ok"]
        return {"ids": df["id"].astype(str).tolist(), "v": (df["a"] * df["b"] * df["c"]).to_numpy()}

    def index(self, handle):
        return handle["ids"], np.ones(len(handle["ids"]), dtype=np.int64)

    def read(self, handle, row, opts):
        return {"v": np.array([handle["v"][row]], dtype=np.float32)}

    def fit_norm(self, raw, n, features, max_structures, seed):
        v = np.concatenate([raw(i)["v"] for i in range(n)])
        return {"mean": float(v.mean()), "std": float(v.std() or 1.0)}

    def prepare(self, sample, features, norm):
        return {"v": (sample["v"] - norm["mean"]) / norm["std"]}

    def batch(self, samples):
        return {"v": torch.from_numpy(np.stack([s["v"] for s in samples]).astype(np.float32))}


TOY = Toy()
'''


def test_nothing_outside_inputs_branches_on_the_input_kind():
    lines = []
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC).as_posix()
        if rel.startswith("inputs/") or rel == "registry.py":
            continue
        lines += [f"{rel}:{i}" for i, line in enumerate(p.read_text().splitlines(), 1) if "input_kind" in line]
    assert len(lines) <= 3, lines


def test_no_library_module_receives_the_snakemake_object():
    offenders = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
                 if re.search(r"\(smk\)|\bsmk\.|snakemake\.(input|output|params|wildcards|config|resources)\b"
                              r"|^\s*(import|from) snakemake", p.read_text(), re.M)]
    assert offenders == []


def test_every_registered_kind_implements_the_interface():
    for name in R.INPUT_KINDS:
        k = inputs.kind(name)
        assert k.name == name
        assert type(k).read is not inputs.InputKind.read and type(k).batch is not inputs.InputKind.batch
    assert {inputs.of_model(m).name for m in R.STUDY_MODELS} >= {"density", "xrd", "cgcnn", "cogn", "lattice",
                                                                  "lattice_sym"}
    with pytest.raises(ValueError, match="unknown input kind 'nope'"):
        inputs.kind("nope")


def test_a_toy_kind_is_one_module_plus_one_registry_entry(tmp_path, monkeypatch):
    (tmp_path / "toy_kind.py").write_text(TOY_KIND)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(R.INPUT_KINDS, "toy", R.InputKindSpec("toy", "toy_kind:TOY", "cell volume"))
    # what a model reading it declares (an input and a model entry, as for any model)
    monkeypatch.setitem(R.INPUTS, "toy", R.InputSpec("toy", "toy", "ingest/shard-{shard}.parquet", "ingest_shard",
                                                     "cell volume"))
    monkeypatch.setitem(R.MODELS, "toy_model", R.ModelSpec("toy_model", "Toy", ("toy",), R.LatticeMLPConfig, 9))
    man, split = write_manifest_split(tmp_path, 40)
    shards = write_lattice_shards(tmp_path, man["id"].tolist())
    import rhosym.models as M

    reg = types.SimpleNamespace(INPUT_KIND=M.INPUT_KIND, collate=M.collate,
                                build_model=lambda name, n_out, regression, in_features, cfg=None:
                                torch.nn.Sequential(ToyNet(in_features), torch.nn.Linear(16, n_out)))
    job = T.TrainJob(model="toy_model", task="crystal_system", input="toy", stores=shards, manifest=man, split=split,
                     out_dir=tmp_path / "out", cfg={"epochs": 3, "lr": 0.05}, device="cpu", registry=reg)
    summary = T.train(job)
    assert summary["n_train"] == int((split["split"] == "train").sum()) and summary["epochs_run"] == 3
    meta = C.load(tmp_path / "out" / "checkpoint.pt")["meta"]
    assert meta.input_kind == "toy" and set(meta.norm) == {"mean", "std"} and meta.in_features == 1
    hist = pd.read_csv(tmp_path / "out" / "history.csv")
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]


class ToyNet(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.lin = torch.nn.Linear(width, 16)

    def forward(self, batch):
        return torch.relu(self.lin(batch["v"]))


def test_a_job_runs_from_its_job_file(tmp_path):
    """The job file the rule writes runs by `rhosym train`; the run equals the one from the job object."""
    man, split = write_manifest_split(tmp_path, 24)
    man_p, split_p = tmp_path / "manifest.parquet", tmp_path / "split.parquet"
    man.to_parquet(man_p)
    split.to_parquet(split_p)
    stores = write_density_stores(tmp_path, man["id"].tolist())
    common = dict(model="pointnet", task="crystal_system", input="grid", stores=stores, manifest=str(man_p),
                  split=str(split_p), cfg={"epochs": 2, "model": {"channels": [8, 16], "head": [8], "groups": 2}},
                  seed=3, device="cpu", threads=1, cache_mb=0)
    direct = T.TrainJob(out_dir=str(tmp_path / "direct"), **common)
    assert direct.cfg.optimizer == "adam" and direct.cfg.lr == 1e-4  # PointNet's protocol, merged once
    T.train(direct)
    job = T.TrainJob(out_dir=str(tmp_path / "fromfile"), **common)
    job.to_json(tmp_path / "job.json")
    again = T.TrainJob.from_json(tmp_path / "job.json")
    assert again.cfg == job.cfg and again.stores == job.stores and again.seed == 3
    proc = subprocess.run([sys.executable, "-m", "rhosym.cli", "train", str(tmp_path / "job.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["epochs_run"] == 2
    a = pd.read_csv(tmp_path / "direct" / "history.csv")
    b = pd.read_csv(tmp_path / "fromfile" / "history.csv")
    np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(a["val_metric"], b["val_metric"], rtol=1e-6)


def test_a_bad_job_file_is_one_line(tmp_path):
    bad = tmp_path / "job.json"
    bad.write_text(json.dumps({"format": 1, "model": "pointnet", "oops": 1}))
    proc = subprocess.run([sys.executable, "-m", "rhosym.cli", "train", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("rhosym train:") and "unknown job keys" in proc.stderr
    Path(bad).write_text("not json")
    proc = subprocess.run([sys.executable, "-m", "rhosym.cli", "train", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "not a training job file" in proc.stderr


@pytest.mark.parametrize(("params", "tight", "loose"), [
    ((4, 4, 4, 90, 90, 90), "cP", "cP"), ((4, 4, 4.04, 90, 90, 90), "tP", "cP"), ((4, 4, 6, 90, 90, 120), "hP", "hP"),
    ((5, 5, 5, 60, 60, 60), "cF", "cF"), ((5, 5, 5, 109.4712, 109.4712, 109.4712), "cI", "cI"),
    ((3, 4, 5, 90, 90, 90), "oP", "oP"), ((3, 4, 5, 90, 100, 90), "mP", "mP"),
    ((3.5, 4.2, 5.7, 81, 97, 104), "aP", "aP"), ((4.5, 4.5, 4.5, 75, 75, 75), "hR", "hR")])
def test_metric_symmetry_of_the_lattice_alone(params, tight, loose):
    from rhosym.inputs.lattice_sym import BRAVAIS, TOLERANCES, bravais, symmetry_features

    assert (bravais(params, TOLERANCES[0]), bravais(params, TOLERANCES[1])) == (tight, loose)
    f = symmetry_features(params)
    assert f.sum() == 2 and f[BRAVAIS.index(tight)] == 1 and f[len(BRAVAIS) + BRAVAIS.index(loose)] == 1


def test_the_strengthened_control_trains_and_its_features_are_the_lattice_plus_the_metric(tmp_path):
    from rhosym.inputs.lattice_sym import FEATURES

    man, split = write_manifest_split(tmp_path, 36)
    shards = write_lattice_shards(tmp_path, man["id"].tolist())
    job = T.TrainJob(model="lattice_sym", task="crystal_system", input="lattice_sym", stores=shards, manifest=man,
                     split=split, out_dir=tmp_path / "out", cfg={"epochs": 2, "model": {"hidden": [16]}},
                     device="cpu")
    T.train(job)
    meta = C.load(tmp_path / "out" / "checkpoint.pt")["meta"]
    assert meta.in_features == len(FEATURES) == 13 + 28 and meta.norm["features"] == list(FEATURES)
    assert meta.norm["std"][13:] == [1.0] * 28  # the one-hot part is not rescaled


@pytest.mark.parametrize("input_name", list(R.INPUTS))
def test_every_input_names_a_variant_that_parses(input_name):
    from rhosym import layout as L

    for kw in ({}, {"augment": "shift"}, {"augment": "shiftrot", "test": "shiftrot"}, {"robust": True}):
        v = L.variant(input_name, 1, "formula", 3, **kw)
        p = L.parse_variant(v)
        assert p["input"] == input_name and p["seed"] == 3 and p["augment"] == kw.get("augment", "")
        assert p["test"] == kw.get("test", "") and p["robust"] == kw.get("robust", False)
