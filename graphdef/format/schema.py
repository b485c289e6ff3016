"""The JSON Schema of the format, and schema errors turned into located, actionable problems."""
from __future__ import annotations

import functools
import itertools
import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Problem, did_you_mean
from .source import Source

if TYPE_CHECKING:  # for the annotations only: jsonschema is imported where it is used
    import jsonschema

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
    twice as fast, which matters for models of thousands of vertices. jsonschema is imported here, when
    the first document is validated: reading the schema (`graphdef schema`, saving a model) needs none of it.
    """
    import jsonschema

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
    return [problem for _, problem in located(source, root)]


def located(source: Source, root: str | None = None) -> list[tuple[tuple, Problem]]:
    """Every schema violation with the document path it concerns (so the loader can go on elsewhere), in file order.

    A document that is not a mapping, or lacks `graphdef:`, gets that one problem and nothing of its
    content is echoed: it may be any file (a password file named as an include)."""
    data = source.data
    if not isinstance(data, dict) or "graphdef" not in data:
        what = "model" if root is None else "file of functions"
        return [((), Problem(f"not a graphdef {what}: it has no `graphdef: 1` line at the top", source.file,
                             hint="is this the right file? a graphdef file starts with `graphdef: 1`"))]
    found = []
    data = _lighten(data, (), source, found)
    if isinstance(data.get("functions"), dict):
        data["functions"] = {name: _lighten(spec, ("functions", name), source, found, expressions=True)
                             for name, spec in data["functions"].items()}
    found += [pair for e in _validator(root).iter_errors(data) for pair in _explain(e, source)]
    return sorted(found, key=lambda pair: (pair[1].line or 0, pair[1].column or 0))


def _lighten(part, path: tuple, source: Source, found: list, expressions: bool = False):
    """A copy of a model or function without what is checked faster here: plain nodes, and literals
    (a million numbers would take jsonschema a minute, trying each against the `literal` anyOf).
    A function's constants may also be attribute expressions (strings, left to the schema)."""
    if not isinstance(part, dict):
        return part
    part = dict(part)
    if isinstance(part.get("nodes"), dict):
        part["nodes"] = {k: v for k, v in part["nodes"].items() if not plain_node(k, v)}
    if isinstance(part.get("constants"), dict):
        part["constants"] = {k: _valueless(v, path + ("constants", k), source, found) if isinstance(v, dict)
                             else v if expressions and isinstance(v, str)
                             else _literal(v, path + ("constants", k), source, found)
                             for k, v in part["constants"].items()}
    for section in ("parameters", "state"):
        if isinstance(part.get(section), dict):
            part[section] = {k: _valueless(v, path + (section, k), source, found) for k, v in part[section].items()}
    return part


def _valueless(spec, path: tuple, source: Source, found: list):
    if not isinstance(spec, dict) or "value" not in spec:
        return spec
    return {**spec, "value": _literal(spec["value"], path + ("value",), source, found)}


def _literal(value, path: tuple, source: Source, found: list):
    """0 in place of a literal, its problem (if any) added to `found`."""
    bad = first_bad(value)
    if bad is not None:
        where = path + bad
        found.append((where, source.problem(where, f"invalid value {_short(_at(value, bad))}",
                                            "expected " + _lower(schema()["$defs"]["literal"]["description"]))))
    return 0


def first_bad(value) -> tuple | None:
    """Where in a literal the first entry that is neither a number nor a list sits (None: it is all numbers)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            bad = None if type(item) in (int, float) else first_bad(item)
            if bad is not None:
                return (i, *bad)
        return None
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) else ()


def _at(value, path: tuple):
    for i in path:
        value = value[i]
    return value


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
ATTRIBUTE_VALUES = (int, float, str, bool, type(None), list)  # what a plain node's attributes may hold


def plain_node(name, node) -> bool:
    """True only for a node the schema's `node` definition surely accepts (checked against jsonschema by a test).
    Written as loops: it runs once per node, and a large model has a million."""
    if not (isinstance(name, str) and NAME.fullmatch(name) and isinstance(node, dict)
            and isinstance(node.get("op"), str) and isinstance(node.get("inputs"), list)
            and isinstance(node.get("description", ""), str) and "parameters" not in node):
        return False
    for i in node["inputs"]:
        if not (isinstance(i, str) and NAME.fullmatch(i) or isinstance(i, (int, float)) and not isinstance(i, bool)):
            return False
    for key, value in node.items():
        if key not in ("op", "inputs", "description") and not isinstance(value, ATTRIBUTE_VALUES):
            return False
    return True


def _explain(error, source: Source):
    """(path, Problem) pairs in plain words for one jsonschema error."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(allowed), key=str):
            yield path + (key,), source.problem(path + (key,), f"unknown key '{key}'",
                                                did_you_mean(key, allowed) or f"allowed keys: {', '.join(allowed)}")
    elif error.validator == "propertyNames" or error.schema_path and "propertyNames" in error.schema_path:
        yield path + (error.instance,), source.problem(path + (error.instance,), f"'{error.instance}' is not a valid "
                                                      "name", _lower(schema()["$defs"]["name"]["description"]))
    else:
        yield path, source.problem(path, *_describe(error, path))


def _describe(error, path: tuple) -> tuple:
    """(message, hint) for an error about one value."""
    if error.validator == "required":
        key = error.message.split("'")[1]
        return f"missing required key '{key}'", f"add '{key}:'"
    if error.validator == "const":
        return f"expected {error.validator_value!r}, got {_short(error.instance)}", None
    if error.validator == "enum":
        choices = [str(c) for c in error.validator_value]
        return f"invalid value {_short(error.instance)}", did_you_mean(error.instance, choices) or \
            f"expected one of: {', '.join(choices)}"
    if error.validator in ("anyOf", "oneOf", "pattern", "not"):
        return f"invalid value {_short(error.instance)}", "expected " + _lower(error.schema.get("description")
                                                                               or error.message)
    if error.validator == "type" and error.instance is None and path:
        section = "section " if len(path) == 1 else ""
        return f"{section}'{path[-1]}' is empty or wrongly indented", \
            f"write its entries under it, indented further; expected {_kind(error.validator_value)}"
    if error.validator == "type":
        return f"expected {_kind(error.validator_value)}, got {_short(error.instance)}", None
    if error.validator == "maxItems" and path and path[-1] == "shape":
        return f"a shape has at most {error.validator_value} dimensions, this one has {len(error.instance)}", None
    return error.message, None


KINDS = {"object": "a mapping", "array": "a list", "string": "a string", "number": "a number",
         "integer": "an integer", "boolean": "true or false", "null": "nothing (null)"}


def _kind(types) -> str:
    words = [KINDS.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    return " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:].rstrip(".")


def _short(value) -> str:
    """A value as JSON, cut short: a message quotes what it refuses, never a whole file's worth."""
    text = json.dumps(_trimmed(value), default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _trimmed(value, depth: int = 3):
    """Enough of a value to show its start: a few entries, a few levels, the start of a string."""
    if isinstance(value, str):
        return value[:41]
    if isinstance(value, list):
        return [_trimmed(v, depth - 1) for v in value[:8]] if depth else []
    if isinstance(value, dict):
        return {str(k)[:41]: _trimmed(v, depth - 1) for k, v in itertools.islice(value.items(), 8)} if depth else {}
    return value
