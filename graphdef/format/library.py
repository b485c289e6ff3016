"""Where functions come from: the standard library (stdlib.yaml), a model's own `functions:`, and the
files it includes, read only inside the model's folder unless allowed. functions.py expands calls."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import schema
from ..errors import GraphDefError
from ..ops import OPS
from ..ops.registry import REQUIRED, Attr
from .source import LIMITS, Limits, Source, parse, read_file

ATTRIBUTE_TYPES = {"int": int, "float": float, "bool": bool, "string": str, "ints": list[int],
                   "floats": list[float], "any": None}


@dataclass(frozen=True)
class Function:
    name: str
    attributes: dict  # name -> Attr, the same records ops declare theirs with
    inputs: tuple  # the names of its inputs, in call order
    body: dict  # {inputs, parameters, state, constants, nodes, outputs}, attribute names standing for values
    doc: str
    source: Source  # where it is written
    path: tuple  # its place in that source

    def signature(self) -> str:
        attrs = [f"{a.name}: {a.type_name()}" + ("" if a.default is REQUIRED else f" = {a.default!r}")
                 for a in self.attributes.values()]
        return f"{self.name}({', '.join([*self.inputs, *attrs])})"


def declared_attributes(spec: dict) -> dict:
    """A function's `attributes:` section ({name: {type, default?, check?, description?}}) as Attr records."""
    return {name: Attr(name, ATTRIBUTE_TYPES[d["type"]], d.get("default", REQUIRED), d.get("check"),
                       d.get("description", "")) for name, d in spec.items()}


@functools.cache
def standard_library() -> dict:
    """The functions every model may call: graphdef/format/stdlib.yaml."""
    path = resources.files("graphdef.format") / "stdlib.yaml"
    problems = []
    found = _defined(parse(path.read_text(encoding="utf-8"), str(path)), {}, problems)
    if problems:
        raise GraphDefError(problems)
    return found


@dataclass(frozen=True)
class Reader:
    """Reads included files: only inside `base` (the model's folder) unless allowed, within the limits."""

    base: Path
    allow_outside: bool
    limits: Limits

    def outside(self, path: Path) -> bool:
        """True for a file graphdef may not read: a shared model cannot make it read /etc/passwd."""
        return not self.allow_outside and not path.is_relative_to(self.base)

    def read(self, path: Path) -> Source:
        library = read_file(path, self.limits)
        check = schema.check(library, "library")
        if check:
            raise GraphDefError(check)
        return library


def included(source: Source, reader: Reader | None = None, stack: tuple = ()) -> dict:
    """Functions of a document and of everything it includes; names defined twice are errors.

    Without a reader (a loaded model's includes read again, to save it) any path is read: the
    includes were confined, or allowed outside, when the model was loaded."""
    found, problems = {}, []
    here = Path(source.file).resolve() if source.file else None
    base = here.parent if here else Path.cwd().resolve()
    reader = reader or Reader(base, True, LIMITS)
    for i, name in enumerate(source.data.get("include") or []):
        path = _resolved(base, name)
        if path is None:
            problems.append(source.problem(("include", i), f"'{name}' is not a usable file name", "check the path"))
            continue
        if path in stack or path == here:
            chain = " -> ".join(p.name for p in (*stack, here, path) if p)
            problems.append(source.problem(("include", i), f"include cycle: {chain}", "remove one of the includes"))
            continue
        if reader.outside(path):
            problems.append(source.problem(("include", i), f"included file {path} is outside the model's folder",
                                           "move it into the model's folder (or below), or allow it explicitly "
                                           "(allow_outside)"))
            continue
        try:
            library = reader.read(path)
            problems += _merge(found, included(library, reader, (*stack, here)), source, ("include", i))
        except GraphDefError as e:
            problems += [source.problem(("include", i), f"cannot include '{name}'", "see the errors that follow")]
            problems += e.errors
    problems += _merge(found, _defined(source, found, problems), source, ("functions",))
    if problems:
        raise GraphDefError(problems)
    return found


def _resolved(base: Path, name: str) -> Path | None:
    try:
        return (base / name).resolve()
    except (OSError, ValueError):  # a NUL byte, a name too long
        return None


def _merge(found: dict, new: dict, source: Source, path: tuple) -> list:
    problems = []
    for name, fn in new.items():
        if name in found and found[name] is not fn:
            problems.append(source.problem(path, f"function '{name}' is defined twice: at {_where(found[name])} "
                                           f"and at {_where(fn)}", "rename one of them"))
        found[name] = fn
    return problems


def _defined(source: Source, known: dict, problems: list) -> dict:
    found = {}
    for name, spec in (source.data.get("functions") or {}).items():
        if name in OPS:
            problems.append(source.problem(("functions", name), f"function '{name}' has the name of a primitive op",
                                           "rename the function"))
            continue
        clash = set(spec.get("attributes") or {}) & _inner_names(spec)
        if clash:
            problems.append(source.problem(("functions", name, "attributes"),
                                           f"attribute names also name values inside the function: {sorted(clash)}",
                                           "rename them"))
        found[name] = Function(name, declared_attributes(spec.get("attributes") or {}), tuple(spec.get("inputs") or ()),
                               spec, spec.get("description", ""), source, ("functions", name))
    return found


def _inner_names(spec: dict) -> set:
    return set(spec.get("inputs") or []) | set(spec.get("parameters") or {}) | set(spec.get("state") or {}) | \
        set(spec.get("constants") or {}) | set(spec.get("nodes") or {})


def _where(fn: Function) -> str:
    return fn.source.where(fn.path)
