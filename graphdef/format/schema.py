"""The JSON Schema of the format, and schema errors turned into located, actionable problems."""
from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path

import jsonschema

from ..errors import Problem, did_you_mean
from .source import Source

SCHEMA_NAME = "graphdef-1.schema.json"


def schema_text() -> str:
    """The schema as shipped: inside the installed package, else beside it in a source checkout."""
    packaged = resources.files("graphdef") / "schemas" / SCHEMA_NAME
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_NAME).read_text(encoding="utf-8")


@functools.cache
def schema() -> dict:
    return json.loads(schema_text())


@functools.cache
def _validator(root: str | None) -> jsonschema.Draft202012Validator:
    """The schema's validator, for a model (root None) or for one of its definitions (e.g. 'library').

    References are inlined first (all but recursive ones): it validates the same documents,
    twice as fast, which matters for models of thousands of vertices.
    """
    full = schema()
    root_schema = full if root is None else {"$defs": full["$defs"], "$ref": f"#/$defs/{root}"}
    return jsonschema.Draft202012Validator(_inline(root_schema, full["$defs"]))


def _inline(node, defs: dict, expanding: tuple = ()):
    if isinstance(node, list):
        return [_inline(v, defs, expanding) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    name = ref.removeprefix("#/$defs/")
    if ref.startswith("#/$defs/") and name not in expanding:
        merged = {**_inline(defs[name], defs, expanding + (name,)), **{k: v for k, v in node.items() if k != "$ref"}}
        return merged
    return {k: v if k == "$defs" else _inline(v, defs, expanding) for k, v in node.items()}


def check(source: Source, root: str | None = None) -> list[Problem]:
    """Every schema violation of the document, in file order."""
    data = source.data
    if root is None and isinstance(data, dict) and isinstance(data.get("nodes"), dict):
        # Most nodes are plainly valid: leave those out of the (slow) generic validation.
        data = {**data, "nodes": {k: v for k, v in data["nodes"].items() if not plain_node(k, v)}}
    problems = [p for e in _validator(root).iter_errors(data) for p in _explain(e, source)]
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
SCALARS = (int, float, str, bool, type(None))


def plain_node(name, node) -> bool:
    """True only for a node the schema's `node` definition surely accepts (checked against jsonschema by a test)."""
    return (isinstance(name, str) and NAME.fullmatch(name) is not None and isinstance(node, dict)
            and isinstance(node.get("op"), str) and isinstance(node.get("inputs"), list)
            and all(isinstance(i, str) and NAME.fullmatch(i) or isinstance(i, (int, float)) and not isinstance(i, bool)
                    for i in node["inputs"])
            and isinstance(node.get("description", ""), str) and "parameters" not in node
            and all(isinstance(v, SCALARS) or isinstance(v, list) for k, v in node.items()
                    if k not in ("op", "inputs", "description")))


def _explain(error, source: Source):
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(allowed), key=str):
            yield source.problem(path + (key,), f"unknown key '{key}'",
                                 did_you_mean(key, allowed) or f"allowed keys: {', '.join(allowed)}")
    elif error.validator == "required":
        key = error.message.split("'")[1]
        yield source.problem(path, f"missing required key '{key}'", f"add '{key}:'")
    elif error.validator == "propertyNames" or error.schema_path and "propertyNames" in error.schema_path:
        yield source.problem(path + (error.instance,), f"'{error.instance}' is not a valid name",
                             _lower(schema()["$defs"]["name"]["description"]))
    elif error.validator == "const":
        yield source.problem(path, f"expected {error.validator_value!r}, got {error.instance!r}")
    elif error.validator == "enum":
        choices = [str(c) for c in error.validator_value]
        yield source.problem(path, f"invalid value {_short(error.instance)}",
                             did_you_mean(error.instance, choices) or f"expected one of: {', '.join(choices)}")
    elif error.validator in ("anyOf", "oneOf", "pattern", "not"):
        expected = error.schema.get("description") or error.message
        yield source.problem(path, f"invalid value {_short(error.instance)}", "expected " + _lower(expected))
    else:
        yield source.problem(path, error.message)


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:].rstrip(".")


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
