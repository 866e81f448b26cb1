"""The configuration reference and the JSON schemas, generated from the typed settings (rhosym.settings).

``rhosym config-schema --write`` rewrites ``docs/config.md`` and ``workflow/schemas/`` (the whole config,
one schema per section, one per model architecture); ``tests/test_settings.py`` checks they are current.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from rhosym import registry as R
from rhosym import settings as S

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "workflow" / "schemas"


def _fmt_default(v) -> str:
    if v is None:
        return ""
    if isinstance(v, BaseModel):
        return ""
    return "`" + json.dumps(v, default=str) + "`"


def _type(annotation) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        from rhosym.settings import Registered

        marks = [m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Registered)]
        return " \\| ".join(marks[0].names()) if marks else _type(args[0])
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type(args[1])}" if len(args) == 2 else "map"
    if args and origin is not None:  # unions
        parts = [_type(a) for a in args if a is not type(None)]
        return " or ".join(parts)
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "section"
        return annotation.__name__
    return str(annotation)


def _nested(annotation) -> type | None:
    for a in [annotation, *typing.get_args(annotation)]:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        inner = _nested_args(a)
        if inner:
            return inner
    return None


def _nested_args(a):
    for b in typing.get_args(a):
        if isinstance(b, type) and issubclass(b, BaseModel):
            return b
    return None


def rows(cls: type, prefix: str):
    """Markdown table rows ``| key | type | default | meaning |`` of a settings class, nested included."""
    for name, f in cls.model_fields.items():
        if name == "models" and cls is S.TrainSettings:
            yield f"| `{prefix}{name}` | map | `{{}}` | {' '.join((f.description or '').split())} |"
            continue
        default = "required" if f.is_required() else _fmt_default(
            f.default if f.default_factory is None else f.default_factory())
        desc = " ".join((f.description or "").split())
        yield f"| `{prefix}{name}` | {_type(f.annotation)} | {default} | {desc} |"
        sub = _nested(f.annotation)
        if sub is not None and sub is not cls:
            origin = [typing.get_origin(a) for a in [f.annotation, *typing.get_args(f.annotation)]]
            mid = ".<name>." if dict in origin else "[]." if list in origin else "."
            yield from rows(sub, f"{prefix}{name}{mid}")


def _table(cls, prefix) -> list[str]:
    return ["| key | type | default | meaning |", "|---|---|---|---|", *rows(cls, prefix)]


def render() -> str:
    top = [k for k in S.Config.model_fields if k not in S.SECTIONS]
    lines = ["# Configuration reference", "",
             "Generated from the typed settings (`rhosym.settings`) by `rhosym config-schema --write`; do not edit",
             "by hand. Unknown keys are errors. Defaults are the published method's; `config.yaml` (the demo)",
             "shrinks them. JSON schemas of the same classes: `workflow/schemas/`.", "",
             "## Top level", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name in top:
        f = S.Config.model_fields[name]
        default = "required" if f.is_required() else _fmt_default(
            f.default if f.default_factory is None else f.default_factory())
        lines.append(f"| `{name}` | {_type(f.annotation)} | {default} | "
                     f"{' '.join((f.description or '').split())} |")
    lines += ["", "### `datasets.<name>:`", "", " ".join((S.DatasetSettings.__doc__ or "").split()), "",
              *_table(S.DatasetSettings, "datasets.<name>.")]
    lines += ["", "Keys per kind: " + "; ".join(f"`{k}`: {', '.join(sorted(set(v.keys) - {'kind'}))}"
                                                for k, v in R.DATASET_KINDS.items()) + "."]
    lines += ["", "### `experiments[]:`", "", " ".join((S.ExperimentBlock.__doc__ or "").split()), "",
              *_table(S.ExperimentBlock, "experiments[].")]
    for section, cls in S.SECTIONS.items():
        lines += ["", f"## `{section}:`", "", " ".join((cls.__doc__ or "").split()), "", *_table(cls, f"{section}.")]
        if cls is S.TrainSettings:
            lines += ["", "`train.models.<model>` takes any key above, plus `classification:` / `regression:` "
                      "blocks (per task kind) and `model:`, the architecture:", ""]
            for name, spec in R.MODELS.items():
                lines += ["", f"### `train.models.{name}.model` ({spec.display})", "",
                          " ".join((spec.config.__doc__ or "").split()), "", *_table(spec.config, "")]
                proto = {k: v for k, v in spec.train.items()}
                if proto:
                    lines += ["", f"Training protocol of {spec.display} (below your train keys): `{json.dumps(proto)}`"]
    return "\n".join(lines) + "\n"


def schemas() -> dict[str, dict]:
    """``{relative path under workflow/schemas: JSON schema}``."""
    out = {"config.schema.yaml": S.json_schema(S.Config)}
    for name, cls in S.SECTIONS.items():
        out[f"sections/{name}.schema.yaml"] = S.json_schema(cls)
    for name, spec in R.MODELS.items():
        out[f"models/{name}.schema.yaml"] = S.json_schema(spec.config)
    return out


def dump(schema: dict) -> str:
    return yaml.safe_dump(schema, sort_keys=False, allow_unicode=True, width=110)


def write(root: Path = ROOT) -> list[Path]:
    paths = []
    base = root / "workflow" / "schemas"
    for old in base.rglob("*.schema.yaml"):
        old.unlink()
    for rel, schema in schemas().items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dump(schema))
        paths.append(p)
    doc = root / "docs" / "config.md"
    doc.write_text(render())
    paths.append(doc)
    return paths


if __name__ == "__main__":  # pragma: no cover
    for p in write():
        print(p)
