"""Typed settings: defaults written once, unknown keys fail with the closest name, schemas and the
reference generated from the classes, every shipped config loads, no dead settings, resources stay out
of params."""

from __future__ import annotations

import re
import typing

import pytest
import yaml
from pydantic import BaseModel

from rhosym import configdoc
from rhosym import registry as R
from rhosym import settings as S
from tests.conftest import ROOT

BASE = {"datasets": {"s": {"kind": "synthetic", "n": 4}}}


def test_schemas_and_reference_are_generated_and_current():
    for rel, schema in configdoc.schemas().items():
        path = ROOT / "workflow" / "schemas" / rel
        assert path.is_file(), f"{rel} missing: run `rhosym config-schema --write`"
        assert yaml.safe_load(path.read_text()) == yaml.safe_load(configdoc.dump(schema)), \
            f"{rel} is stale: run `rhosym config-schema --write`"
    shipped = {str(p.relative_to(ROOT / "workflow" / "schemas")) for p in (ROOT / "workflow" / "schemas").rglob("*.yaml")}
    assert shipped == set(configdoc.schemas()), "a schema file no settings class makes"
    assert (ROOT / "docs" / "config.md").read_text() == configdoc.render(), \
        "docs/config.md is stale: run `rhosym config-schema --write`"


@pytest.mark.parametrize("patch,where,suggestion", [
    ({"trian": {}}, "at the top level", "train"),
    ({"train": {"epoch": 3}}, "in train", "epochs"),
    ({"train": {"models": {"sparse_cnn": {"model": {"chanels": [8]}}}}}, "in train.models.sparse_cnn.model",
     "channels"),
    ({"train": {"models": {"sparse_cn": {}}}}, "in train.models", "sparse_cnn"),
    ({"density": {"spcing": 0.1}}, "in density", "spacing"),
    ({"datasets": {"s": {"kind": "synthetic", "n": 4, "max_atom": 3}}}, "in datasets.s", "max_atoms"),
    ({"experiments": [{"models": ["lattice"], "tasks": ["symmetry"], "sampling": ["grid"], "seed": [1]}]},
     "in experiments[0]", "seeds"),
    ({"train": {"augment": {"rotations": False}}}, "in train.augment", "rotation"),
])
def test_typos_fail_naming_the_key_where_it_is_and_the_closest_name(patch, where, suggestion):
    cfg = S.merge(BASE, patch)
    with pytest.raises(S.ConfigError) as e:
        S.parse_config(cfg)
    msg = str(e.value)
    bad = re.findall(r"unknown (?:key|model) '([^']+)'", msg)
    assert bad and where in msg and f"did you mean {suggestion!r}" in msg, msg


def test_values_are_checked_too():
    with pytest.raises(S.ConfigError, match=r"train.epochs: .*integer"):
        S.parse_config(S.merge(BASE, {"train": {"epochs": "many"}}))
    with pytest.raises(S.ConfigError, match="do not apply to kind synthetic"):
        S.parse_config(S.merge(BASE, {"datasets": {"s": {"kind": "synthetic", "n": 4, "path": "x"}}}))
    with pytest.raises(S.ConfigError, match="mp_chgcar densities keep the CHGCAR's own cell"):
        S.parse_config({"datasets": {"m": {"kind": "mp_chgcar", "path": "x", "cell": "niggli"}}})
    with pytest.raises(S.ConfigError, match="not under datasets"):
        S.parse_config(S.merge(BASE, {"experiments": [{"datasets": ["t"], "models": ["lattice"], "tasks": ["symmetry"]}]}))
    with pytest.raises(S.ConfigError, match="sparse_cnn.*channels|channels.*chanels|chanels"):
        S.parse_config(S.merge(BASE, {"train": {"models": {"sparse_cnn": {"model": {"chanels": [8]}}}}}))


SHIPPED = [["config.yaml"], ["config.tiny.yaml"], ["config.mp20.yaml"], ["config.paper.yaml"],
           ["config/benchmarks/public.yaml"], ["config/benchmarks/public.yaml", "config/benchmarks/public-full.yaml"],
           ["tests/slurm/config.slurm.yaml"]]


@pytest.mark.parametrize("files", SHIPPED, ids=["+".join(f) for f in SHIPPED])
def test_every_shipped_config_loads_as_snakemake_layers_it(files):
    cfg = S.parse_config(S.layered([ROOT / f for f in files if f != "config.yaml"], base=ROOT / "config.yaml"))
    assert cfg.datasets and cfg.labels.symprec > 0


def test_the_paper_config_runs_the_papers_settings():
    """Loaded exactly as Snakemake merges it: standalone, so nothing of the demo leaks in."""
    cfg = S.parse_config(S.layered([ROOT / "config.paper.yaml"], base=ROOT / "config.yaml"))
    assert set(cfg.datasets) == {"mp", "icsd"}  # no synthetic demo data set
    assert cfg.density.spacing == 0.06 and cfg.density.path == "dense"
    assert cfg.sample.voxel == 0.25 and cfg.sample.threshold == 0.0
    assert (cfg.sample.min_points, cfg.sample.max_points) == (5000, 30000)
    sp = cfg.train_resolved("sparse_cnn", "space_group")
    assert sp["model"]["channels"] == [128, 128, 256, 512, 1024] and sp["model"]["blocks"] == [0, 1, 2, 2, 3]
    assert sp["max_batch_size"] == 64 and sp["optimizer"] == "adam"
    assert (sp["scheduler"], sp["plateau_factor"], sp["plateau_patience"]) == ("plateau", 0.5, 5)
    reg = cfg.train_resolved("sparse_cnn", "band_gap")
    assert reg["lr"] == 5e-5 and reg["max_batch_size"] == 32 and reg["model"]["blocks"] == [0, 2, 3, 4, 3]
    pn = cfg.train_resolved("pointnet", "crystal_system")
    assert pn["lr"] == 1e-4 and pn["model"]["channels"] == [64, 128, 1024] and pn["max_batch_size"] == 32
    assert cfg.train_resolved("cogn", "band_gap")["model"]["units"] == 128
    assert cfg.datasets["icsd"].resolved_cell == "conventional_refined"  # ICSD densities came from solved structures


def test_defaults_are_written_once_and_are_the_published_values():
    d = S.Config.model_validate(BASE)
    assert d.density.spacing == 0.06 and d.sample.voxel == 0.25 and d.sample.max_points == 30000
    assert d.train_resolved("sparse_cnn", "crystal_system")["model"]["channels"][-1] == 1024
    from rhosym.density import _D

    assert _D.spacing == S.DensitySettings().spacing


def test_job_resources_never_reach_params():
    cfg = S.parse_config(S.merge(BASE, {"train": {"threads": 7, "mem_mb": 999, "runtime": 99, "gpus": 0,
                                                  "device": "cpu", "num_workers": 3,
                                                  "models": {"cgcnn": {"runtime": 5}}}}))
    for model in R.STUDY_MODELS:
        p = cfg.train_params(model, "crystal_system").model_dump()
        assert not set(S.RESOURCE_KEYS) & set(p), model
    assert cfg.train_resource("cgcnn", "runtime") == 5 and cfg.train_resource("cogn", "runtime") == 99
    changed = S.parse_config(S.merge(BASE, {"train": {"runtime": 1, "threads": 1}}))
    assert changed.train_params("sparse_cnn", "symmetry") == cfg.train_params("sparse_cnn", "symmetry")


def test_data_root_is_one_setting():
    cfg = S.parse_config({"data_root": "/data", "datasets": {"m": {"kind": "cif_dir", "path": "{data_root}/cifs"}}})
    assert cfg.datasets["m"].path == "/data/cifs"


def test_standalone_configs_are_not_layered(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"standalone": True, "datasets": {"x": {"kind": "synthetic", "n": 2}}}))
    assert set(S.layered([f], base=ROOT / "config.yaml")["datasets"]) == {"x"}
    g = tmp_path / "d.yaml"
    g.write_text(yaml.safe_dump({"train": {"runtime": 99}}))
    assert set(S.layered([g], base=ROOT / "config.yaml")["datasets"]) == {"synthetic"}


# ------------------------------------------------------------------------------------------ dead settings
def _leaves(cls, prefix=""):
    for name, f in cls.model_fields.items():
        sub = [a for a in [f.annotation, *typing.get_args(f.annotation)]
               if isinstance(a, type) and issubclass(a, BaseModel)]
        sub += [b for a in typing.get_args(f.annotation) for b in typing.get_args(a)
                if isinstance(b, type) and issubclass(b, BaseModel)]
        if sub and not (cls is S.TrainSettings and name == "models"):
            yield from _leaves(sub[0], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", name


def test_every_settings_key_is_read_by_some_code():
    """A key of the schemas that no code reads is a dead setting: wire it or remove it."""
    skip = {"settings.py", "configdoc.py", "registry.py"}
    code = "\n".join(p.read_text() for p in (ROOT / "src" / "rhosym").rglob("*.py") if p.name not in skip)
    code += "\n".join(p.read_text() for p in (ROOT / "workflow").rglob("*.smk")) + (ROOT / "Snakefile").read_text()
    classes = [S.Config] + [spec.config for spec in R.MODELS.values()]
    consumed_by_the_loader = {"data_root", "standalone"}  # rhosym.settings itself applies these two
    dead = []
    for cls in classes:
        for path, key in _leaves(cls):
            used = re.search(rf"\.{re.escape(key)}\b|[\"']{re.escape(key)}[\"']", code)
            if not used and key not in consumed_by_the_loader:
                dead.append(f"{cls.__name__}: {path}")
    assert not dead, f"settings no code reads: {dead}"
