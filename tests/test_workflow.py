"""The DAG from the registry and the settings: a sixth model added through the registry alone, a typo
failing before any job, a resource change rerunning nothing, tracked and stable shards."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rhosym import registry as R
from rhosym import workflow as W
from rhosym.settings import parse_config
from tests.conftest import ROOT

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CIFS = ROOT / "tests" / "fixtures" / "cif_tiny"


def _smk(cfg: dict, tmp_path: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(ROOT), "--configfile", str(path),
                           "--nolock", "--cores", "2", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _jobs(proc) -> dict[str, int]:
    """``{rule: count}`` from the job-stats table of a dry run (empty when nothing is to be done)."""
    out, counts, table = proc.stdout + proc.stderr, {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        if table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
    return counts


def test_a_sixth_model_through_the_registry_alone(monkeypatch):
    """Adding a model is one registry entry (plus its module): experiments, wildcards and targets follow,
    and the settings read the model names from the registry when they parse (no reload)."""
    spec = R.ModelSpec("toy_net", "Toy network", ("grid", "random"), R.PointNetConfig, 7)
    monkeypatch.setitem(R.MODELS, "toy_net", spec)
    monkeypatch.setattr(R, "STUDY_MODELS", R.STUDY_MODELS + ("toy_net",))
    cfg = parse_config({"datasets": {"s": {"kind": "synthetic", "n": 4}},
                        "experiments": [{"models": ["toy_net", "lattice"], "tasks": ["symmetry"]}],
                        "train": {"models": {"toy_net": {"model": {"channels": [8]}}}}})
    exps = W.expand_experiments(cfg)
    assert {e.model for e in exps} == {"toy_net", "lattice"}
    toy = next(e for e in exps if e.model == "toy_net")
    assert toy.input == "grid" and W.sample_methods_needed(cfg, "s", exps) == ["grid"]
    assert cfg.train_resolved("toy_net", "symmetry")["model"]["channels"] == [8]


def test_a_fit_free_model_runs_once_whatever_the_seeds():
    """The classical finder trains nothing: two seeds would be two copies of one answer (and two rows of
    the same numbers averaged as if they were independent)."""
    cfg = parse_config({"datasets": {"s": {"kind": "synthetic", "n": 4}},
                        "experiments": [{"models": ["classical", "lattice"], "tasks": ["symmetry"],
                                         "seeds": [0, 1, 2]}]})
    seeds = {m: sorted(e.seed for e in W.expand_experiments(cfg) if e.model == m) for m in ("classical", "lattice")}
    assert seeds == {"classical": [0], "lattice": [0, 1, 2]}


def test_a_plain_density_model_is_also_tested_with_its_blocks_transforms():
    """The rotation study: ``augment: [none, rot]`` trains a plain and a rotation-trained network, and BOTH
    are tested on rotated inputs (-trot) beside their plain test; a block without ``none`` adds nothing to
    its plain models, and models that read no density get no transformed test."""
    cfg = parse_config({"datasets": {"s": {"kind": "synthetic", "n": 4}},
                        "experiments": [{"models": ["sparse_cnn", "lattice"], "tasks": ["symmetry"],
                                         "augment": ["none", "rot"]},
                                        {"models": ["pointnet"], "tasks": ["symmetry"], "augment": ["shift"]}]})
    tests = sorted((t.experiment.model, t.experiment.augment, t.test) for t in W.expand_transfers(cfg))
    assert tests == [("pointnet", "shift", "shift"), ("sparse_cnn", "", "rot"), ("sparse_cnn", "rot", "rot")]
    plain = next(t for t in W.expand_transfers(cfg) if t.experiment.model == "sparse_cnn" and not t.experiment.augment)
    assert plain.variant == "grid-f1-trot-formula-s0"  # tested rotated, trained plain (no -arot)


@pytest.mark.slow
def test_a_sixth_model_builds_the_dag(tmp_path):
    """The same through Snakemake: a registry entry made by a plugin module builds the DAG for it."""
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(
        "from rhosym import registry as R\n"
        "R.MODELS['toy_net'] = R.ModelSpec('toy_net', 'Toy', ('grid', 'random'), R.PointNetConfig, 7)\n"
        "R.STUDY_MODELS = R.STUDY_MODELS + ('toy_net',)\n"
        "R.DENSITY_MODELS = R.DENSITY_MODELS + ('toy_net',)\n")
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport toy_plugin  # noqa\n"
                         f"include: {str(ROOT / 'Snakefile')!r}\n")
    cfg = {"standalone": True, "results": str(tmp_path / "res"), "shard_size": 8,
           "datasets": {"s": {"kind": "synthetic", "n": 8}},
           "experiments": [{"models": ["toy_net"], "tasks": ["symmetry"]}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([SNAKEMAKE, "-s", str(snakefile), "-d", str(ROOT), "--configfile", str(tmp_path / "c.yaml"),
                           "--nolock", "all", "-n", "--quiet", "rules"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _jobs(proc).get("train_model") == 1 and _jobs(proc).get("predict_test") == 1


def test_a_typo_fails_before_any_job(tmp_path):
    cfg = {"standalone": True, "results": str(tmp_path / "res"), "datasets": {"s": {"kind": "synthetic", "n": 4}},
           "trian": {}, "train": {"models": {"sparse_cnn": {"model": {"chanels": [8]}}}}}
    proc = _smk(cfg, tmp_path, "-n", "all", check=False)
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    assert "unknown key 'trian' at the top level; did you mean 'train'?" in err
    assert "unknown key 'chanels' in train.models.sparse_cnn.model; did you mean 'channels'?" in err
    assert not (tmp_path / "res").exists()


@pytest.mark.slow
def test_resources_rerun_nothing_and_shards_track_their_files(tmp_path):
    """A finished run; then: a changed job resource schedules no job, editing one CIF reruns its ingest
    shard (and what depends on it) only, adding one CIF leaves the other shards' outputs valid."""
    cifs = tmp_path / "cifs"
    shutil.copytree(CIFS, cifs)
    cfg = {"standalone": True, "results": str(tmp_path / "res"), "shard_size": 4,
           "datasets": {"c": {"kind": "cif_dir", "path": str(cifs)}},
           "split": {"group_by": "none", "fractions": [0.6, 0.2, 0.2]},
           "experiments": [{"models": ["lattice"], "tasks": ["crystal_system"]}],
           "density": {"path": "direct", "spacing": 0.2}, "sample": {"voxel": 0.8, "threshold": 0.05},
           "graphs": {"kinds": []}, "train": {"epochs": 1, "threads": 1, "runtime": 20},
           "figures": {"points_sweep": []}, "robustness": {"models": []}, "evaluate": {"bootstrap": 10}}
    cfgd = parse_config(cfg)
    shards = W.assigned(cfgd, "c")
    assert len(shards) == 4
    _smk(cfg, tmp_path, "all", timeout=1200)
    # 1. resources: no job
    for change in ({"runtime": 99}, {"threads": 2, "mem_mb": 1234, "gpus": 0, "device": "cpu", "num_workers": 1}):
        proc = _smk({**cfg, "train": {**cfg["train"], **change}}, tmp_path, "-n", "all")
        assert _jobs(proc) == {}, proc.stdout[-2000:]
    # 2. edit one CIF: its shard only
    target = next(u for units in shards.values() for u in units if u.key == "NaCl_cubic.cif")
    shard = next(s for s, units in shards.items() if target in units)
    path = Path(target.ref)
    path.write_text(path.read_text().replace("_cell_length_a", "_cell_length_a ", 1) + "\n")
    proc = _smk(cfg, tmp_path, "-n", "all")
    jobs = _jobs(proc)
    assert jobs.get("ingest_shard") == 1 and f"shard-{shard}" in proc.stdout + proc.stderr, jobs
    # 3. add one CIF: at most the shard it lands in changes
    shutil.copy(CIFS / "MgO_bfactors.cif", cifs / "MgO_copy.cif")
    after = W.assigned(parse_config(cfg), "c")
    changed = [s for s in shards if [u.key for u in shards[s]] != [u.key for u in after[s] if u.key != "MgO_copy.cif"]]
    assert changed == []  # no existing unit moved
    landed = [s for s, units in after.items() if any(u.key == "MgO_copy.cif" for u in units)]
    proc = _smk(cfg, tmp_path, "-n", "all")
    assert _jobs(proc).get("ingest_shard") == len({shard, *landed}), _jobs(proc)
