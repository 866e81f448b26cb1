"""docs/config.md is rendered from the settings and is current; every shipped config parses and
validates against the generated JSON schema."""

import pytest
from snakemake.utils import validate

from rhosym.configdoc import render
from rhosym.settings import layered, parse_config
from tests.conftest import ROOT

SHIPPED = sorted([p.name for p in ROOT.glob("config*.yaml")]
                 + [str(p.relative_to(ROOT)) for p in (ROOT / "config").rglob("*.yaml")])


def test_config_reference_is_current():
    assert (ROOT / "docs" / "config.md").read_text() == render(), \
        "docs/config.md is stale: run `rhosym config-schema --write`"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_parse_and_validate(name):
    files = [ROOT / name]
    if name.endswith(("public-full.yaml", "public-robust.yaml")):  # overlays of the quick variant
        files = [ROOT / "config" / "benchmarks" / "public.yaml", ROOT / name]
    cfg = layered(files, base=str(ROOT / "config.yaml")) if name != "config.yaml" else layered(
        [], base=str(ROOT / "config.yaml"))
    settings = parse_config(cfg)  # typed: unknown keys and wrong types raise ConfigError
    assert settings.split.group_by in ("none", "formula", "structure")
    assert settings.labels.symprec > 0
    assert settings.datasets, f"{name} declares no data set"
    # the generated schema accepts it too (what `snakemake --lint` users and editors see)
    validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"), set_default=False)
