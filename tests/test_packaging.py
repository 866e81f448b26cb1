"""The project's install files agree with each other."""

import re
import tomllib

import yaml

from tests.conftest import ROOT


def _pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_envs_have_the_same_pins_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    py = _pins(project["dependencies"])
    for env_file in (ROOT / "envs").glob("*.yaml"):
        env = yaml.safe_load(env_file.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        pins = _pins(pip)
        for name, version in pins.items():
            assert py.get(name) == version, f"{env_file.name}: {name}=={version} but pyproject has {py.get(name)}"
        missing = set(py) - set(pins)
        assert not missing, f"{env_file.name} lacks {sorted(missing)}"


def test_makefile_pins_torch_like_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch=="))
    assert f"TORCH_PIN := {torch_pin}" in (ROOT / "Makefile").read_text()


def test_cli_lists_its_commands(capsys):
    from rhosym.cli import main

    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "rhosym" in out
