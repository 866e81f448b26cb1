"""Static checks of the Snakemake profiles (fast; the live SLURM test is tests/slurm/run.sh)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import ROOT

PROFILES = ROOT / "profiles"
SLURM = PROFILES / "slurm" / "config.yaml"
LOCAL = PROFILES / "local" / "config.yaml"
GPU_RULES = ("train_model", "predict_test", "predict_sweep")
SHARD_RULES = ("ingest_shard", "density_shard", "sample_shard", "xrd_shard", "graphs_shard")


def _load(path):
    with open(path) as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


@pytest.mark.parametrize("path", [LOCAL, SLURM], ids=["local", "slurm"])
def test_profile_parses_and_keys_are_snakemake_options(path):
    from snakemake.cli import get_argument_parser

    prof = _load(path)
    options = {a.lstrip("-") for act in get_argument_parser()._actions for a in act.option_strings}
    unknown = [k for k in prof if k not in options]
    assert not unknown, f"{path.name}: keys that are no snakemake option: {unknown}"


def _resource_expr(value):
    """Evaluate a profile resource value the way Snakemake does (python expression, else string)."""
    try:
        return eval(str(value), {})  # noqa: S307 - the profile is ours
    except (NameError, SyntaxError):
        return value


def test_slurm_profile_executor_and_defaults(monkeypatch):
    prof = _load(SLURM)
    assert prof["executor"] == "slurm"
    assert int(prof["jobs"]) >= 1
    assert int(prof["retries"]) >= 1
    assert prof["rerun-incomplete"] is True
    assert int(prof["latency-wait"]) >= 5
    dr = prof["default-resources"]
    for key in ("slurm_partition", "slurm_account", "mem_mb", "runtime"):
        assert key in dr, f"default-resources lacks {key}"
    assert int(dr["mem_mb"]) > 0 and int(dr["runtime"]) > 0
    # partitions and account come from the environment, with a fallback
    monkeypatch.delenv("RHOSYM_PARTITION", raising=False)
    monkeypatch.delenv("RHOSYM_ACCOUNT", raising=False)
    assert _resource_expr(dr["slurm_partition"]) == "cpu"
    assert _resource_expr(dr["slurm_account"]) == ""
    monkeypatch.setenv("RHOSYM_PARTITION", "short")
    monkeypatch.setenv("RHOSYM_ACCOUNT", "proj42")
    assert _resource_expr(dr["slurm_partition"]) == "short"
    assert _resource_expr(dr["slurm_account"]) == "proj42"


def test_no_site_specific_partition_is_hard_coded():
    prof = _load(SLURM)
    entries = [prof["default-resources"]] + list(prof.get("set-resources", {}).values())
    for res in entries:
        for key in ("slurm_partition", "slurm_account"):
            if key in res:
                assert "os').environ" in str(res[key]), f"{key}: {res[key]!r} is not read from the environment"
    text = SLURM.read_text()
    assert not re.search(r"^\s*(slurm_partition|slurm_account):\s*['\"]?\w+['\"]?\s*$", text, re.M)
    assert "-p " not in text and "--partition" not in text and "--account" not in text


def test_gpu_rules_go_to_the_gpu_partition_with_a_gpu(monkeypatch):
    prof = _load(SLURM)
    sr = prof["set-resources"]
    monkeypatch.setenv("RHOSYM_GPU_PARTITION", "a100")
    for rule in GPU_RULES:
        assert rule in sr, f"set-resources lacks {rule}"
        assert _resource_expr(sr[rule]["slurm_partition"]) == "a100"
        assert not ("gpu" in sr[rule] and "gres" in sr[rule]), "the plugin refuses gpu and gres together"
    # train_model asks for its GPU in the rule (train.gpus); the others here
    rules_text = (ROOT / "workflow" / "rules" / "train.smk").read_text()
    assert re.search(r"\bgpu\s*=", rules_text), "train_model no longer declares resource gpu"
    for rule in ("predict_test", "predict_sweep"):
        assert int(sr[rule].get("gpu", 0)) >= 1 or "gpu" in str(sr[rule].get("gres", ""))


def test_per_shard_rules_are_grouped_and_groups_are_bounded():
    prof = _load(SLURM)
    groups, comps = prof["groups"], prof["group-components"]
    for rule in SHARD_RULES:
        assert rule in groups, f"{rule} is not grouped"
        assert int(comps[groups[rule]]) > 1
    # the width of a group job is bounded by `cores`
    assert 1 <= int(prof["cores"]) <= 64


def test_profile_rule_names_exist_in_the_workflow():
    """Names in set-resources and groups are rules of the workflow (a typo would be ignored silently)."""
    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    defined = set(re.findall(r"^\s*rule (\w+):", text, re.M))
    prof = _load(SLURM)
    named = set(prof["set-resources"]) | set(prof["groups"])
    missing = sorted(named - defined)
    assert not missing, f"profile names rules the workflow does not define: {missing}"


def test_slurm_harness_is_strict_and_cleans_up():
    sh = (ROOT / "tests" / "slurm" / "run.sh").read_text()
    assert "set -euo pipefail" in sh
    assert re.search(r"^trap cleanup EXIT", sh, re.M)
    assert "--profile profiles/slurm" in sh
    for opt in ("--slurm-status-command squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks"):
        assert opt in sh
