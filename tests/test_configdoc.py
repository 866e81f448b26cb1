"""docs/config.md is rendered from the schemas and is current; every shipped config validates."""

import copy

import pytest
import yaml
from snakemake.utils import validate

from rhosym.configdoc import render
from tests.conftest import ROOT


def test_config_reference_is_current():
    assert (ROOT / "docs" / "config.md").read_text() == render(), \
        "docs/config.md is stale: run `python -m rhosym.configdoc > docs/config.md`"


@pytest.mark.parametrize("name", sorted(p.name for p in ROOT.glob("config*.yaml")))
def test_shipped_configs_validate_and_get_defaults(name):
    cfg = yaml.safe_load((ROOT / name).read_text())
    if name != "config.yaml":  # other configs are layered on top of the default one
        base = yaml.safe_load((ROOT / "config.yaml").read_text())
        base.update(copy.deepcopy(cfg))
        cfg = base
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    assert cfg["split"]["group_by"] in ("none", "formula", "structure")
    assert cfg["labels"]["symprec"] > 0
    for path in sorted((ROOT / "workflow" / "schemas" / "sections").glob("*.schema.yaml")):
        section = path.name.split(".")[0]
        cfg.setdefault(section, {})
        validate(cfg[section], str(path))
