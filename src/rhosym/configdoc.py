"""Render the configuration reference (docs/config.md) from the JSON schemas in workflow/schemas.

``python -m rhosym.configdoc > docs/config.md``; a test checks that the committed file is current.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "workflow" / "schemas"


def _fmt_default(v) -> str:
    if v is None:
        return ""
    return "`" + json.dumps(v) + "`"


def _type(spec: dict) -> str:
    if "enum" in spec:
        return " \\| ".join(str(e) for e in spec["enum"])
    if "oneOf" in spec:
        return " or ".join(_type(s) for s in spec["oneOf"])
    t = spec.get("type", "")
    if t == "array" and isinstance(spec.get("items"), dict):
        return f"list of {_type(spec['items'])}"
    return t if isinstance(t, str) else "/".join(t)


def _rows(spec: dict, prefix: str):
    for key, sub in (spec.get("properties") or {}).items():
        name = f"{prefix}{key}"
        desc = " ".join(str(sub.get("description", "")).split())
        yield f"| `{name}` | {_type(sub)} | {_fmt_default(sub.get('default'))} | {desc} |"
        if sub.get("type") == "object" and sub.get("properties"):
            yield from _rows(sub, name + ".")
        items = sub.get("items")
        if sub.get("type") == "array" and isinstance(items, dict) and items.get("properties"):
            yield from _rows(items, name + "[].")
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("properties"):
            yield from _rows(extra, name + ".<name>.")


def render() -> str:
    lines = ["# Configuration reference", "",
             "Generated from `workflow/schemas/` by `python -m rhosym.configdoc`; do not edit by hand.",
             "Defaults are filled in by `workflow/rules/common.smk` when the config is validated.", ""]
    main = yaml.safe_load((SCHEMAS / "config.schema.yaml").read_text())
    lines += ["## Top level", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += list(_rows(main, ""))
    for path in sorted((SCHEMAS / "sections").glob("*.schema.yaml")):
        section = path.name.split(".")[0]
        spec = yaml.safe_load(path.read_text())
        lines += ["", f"## `{section}:`", "", " ".join(str(spec.get("description", "")).split()), "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += list(_rows(spec, f"{section}."))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
