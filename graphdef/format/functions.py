"""Composition: functions (named subgraphs) expanded into primitive nodes when a model loads.

A node whose op names a function is a call. Expansion copies the function's body under
the call's name: its parameters become CALL/NAME, its internal nodes CALL/NAME, and its
first output takes the call's own name, so the interpreter only ever sees registered
ops and gradients flow through by the chain rule. Inside a body, a string equal to an
attribute's name stands for the attribute's value (in shapes, op names, attributes and
inputs). Every expanded value keeps the position where the function wrote it, and
errors name the call too.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from . import schema
from ..errors import GraphDefError, did_you_mean
from .initializers import ALIASES, INITIALIZERS
from ..ops import OPS
from ..ops.registry import REQUIRED, Attr, bind_attrs
from .source import Source, parse, read_file

ATTRIBUTE_TYPES = {"int": int, "float": float, "bool": bool, "string": str, "ints": list[int],
                   "floats": list[float], "any": None}
CALL_KEYS = ("op", "inputs", "description", "parameters")


@dataclass(frozen=True)
class Function:
    name: str
    attributes: dict  # name -> Attr, the same records ops declare theirs with
    inputs: tuple  # the names of its inputs, in call order
    body: Callable  # attributes -> {inputs, parameters, constants, nodes, outputs}
    doc: str = ""
    source: Source | None = None  # where it is written (None: built in Python)
    path: tuple = ()  # its place in that source

    def signature(self) -> str:
        attrs = [f"{a.name}: {a.type_name()}" + ("" if a.default is REQUIRED else f" = {a.default!r}")
                 for a in self.attributes.values()]
        return f"{self.name}({', '.join([*self.inputs, *attrs])})"


def declared_attributes(spec: dict) -> dict:
    """A function's `attributes:` section ({name: {type, default?}}) as Attr records."""
    return {name: Attr(name, ATTRIBUTE_TYPES[d["type"]], d.get("default", REQUIRED)) for name, d in spec.items()}


def _mlp(attrs):
    """A stack of dense layers from a list of sizes: [64, 128, 10] is 64 -> 128 -> 10."""
    sizes, nodes, previous = attrs["sizes"], {}, "x"
    if len(sizes) < 2:
        raise ValueError("sizes needs at least two entries: inputs and outputs")
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        last = i == len(sizes) - 1
        nodes[f"layer{i}"] = {"op": "dense", "inputs": [previous], "in": n_in, "out": n_out,
                              "activation": attrs["output_activation"] if last else attrs["activation"],
                              "init": attrs["init"]}
        previous = f"layer{i}"
    return {"inputs": ["x"], "nodes": nodes, "outputs": [previous]}


PYTHON_FUNCTIONS = {
    "mlp": Function("mlp", declared_attributes({"sizes": {"type": "ints"},
                                                "activation": {"type": "string", "default": "relu"},
                                                "output_activation": {"type": "string", "default": "none"},
                                                "init": {"type": "string", "default": "glorot_uniform"}}),
                    ("x",), _mlp, doc="a stack of dense layers from a list of sizes (activation between, output_activation last)"),
}


@functools.cache
def standard_library() -> dict:
    """The functions every model may call: graphdef/stdlib.yaml and the ones built in Python."""
    path = resources.files("graphdef.format") / "stdlib.yaml"
    found = _defined(parse(path.read_text(encoding="utf-8"), str(path)), {}, [])
    return {**found, **PYTHON_FUNCTIONS}


def expand(source: Source) -> Source:
    """The same document with every call replaced by the nodes of its function (recursively)."""
    doc = source.data
    functions = {**standard_library(), **_included(source)}
    if not any(spec["op"] in functions for spec in (doc.get("nodes") or {}).values()):
        return source
    return _Expander(source, functions).run()


# -- finding functions ---------------------------------------------------------------

def _included(source: Source, stack: tuple = ()) -> dict:
    """Functions of a document and of everything it includes; names defined twice are errors."""
    found, problems = {}, []
    here = Path(source.file).resolve() if source.file else None
    base = here.parent if here else Path.cwd()
    for i, name in enumerate(source.data.get("include") or []):
        path = (base / name).resolve()
        if path in stack or path == here:
            chain = " -> ".join(p.name for p in (*stack, here, path) if p)
            problems.append(source.problem(("include", i), f"include cycle: {chain}", "remove one of the includes"))
            continue
        try:
            library = read_file(path)
            check = schema.check(library, "library")
            if check:
                raise GraphDefError(check)
            problems += _merge(found, _included(library, (*stack, here)), source, ("include", i))
        except GraphDefError as e:
            problems += [source.problem(("include", i), f"cannot include '{name}'", "see the errors that follow")]
            problems += e.errors
    problems += _merge(found, _defined(source, found, problems), source, ("functions",))
    if problems:
        raise GraphDefError(problems)
    return found


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
                               lambda attrs, spec=spec: spec,
                               spec.get("description", ""), source, ("functions", name))
    return found


def _inner_names(spec: dict) -> set:
    return set(spec.get("inputs") or []) | set(spec.get("parameters") or {}) | set(spec.get("constants") or {}) | \
        set(spec.get("nodes") or {})


def _where(fn: Function) -> str:
    return fn.source.where(fn.path) if fn.source else "graphdef/functions.py"


# -- expanding calls -------------------------------------------------------------------

class _Expander:
    def __init__(self, source: Source, functions: dict):
        self.source, self.functions = source, functions
        doc = source.data
        self.parameters = dict(doc.get("parameters") or {})
        self.constants = dict(doc.get("constants") or {})
        self.nodes = {}
        self.positions, self.calls, self.members = dict(source.positions), {}, {}
        self.problems = []

    def run(self) -> Source:
        for name, spec in (self.source.data.get("nodes") or {}).items():
            fn = self.functions.get(spec["op"])
            if fn is None:
                self.nodes[name] = spec
            else:
                self.call(fn, spec, target=name, prefix=name, site=(self.source, ("nodes", name)), chain=())
        if self.problems:
            raise GraphDefError(self.problems)
        doc = {**self.source.data, "parameters": self.parameters, "constants": self.constants, "nodes": self.nodes}
        return Source(doc, self.source.file, self.positions, self.calls, self.members)

    def error(self, place: tuple, message: str, hint: str | None = None, chain: tuple = ()):
        source, path = place
        problem = source.problem(path, message, hint)
        if chain:
            problem = dataclasses.replace(problem, message=f"{problem.message} [{self._describe(chain)}]")
        self.problems.append(problem)

    def _describe(self, chain: tuple) -> str:
        return ", ".join(f"in function '{fn}', called as '{prefix}' at {where}" for fn, prefix, where in reversed(chain))

    def call(self, fn: Function, spec: dict, target: str, prefix: str, site: tuple, chain: tuple):
        """Expand one call: `target` names its first output, `prefix` its internals."""
        if any(fn.name == f for f, _, _ in chain):
            cycle = " -> ".join([f for f, _, _ in chain] + [fn.name])
            return self.error(site, f"recursive function call: {cycle}", "a function cannot call itself", chain)
        attrs = self._bind(fn, spec, site, chain)
        if attrs is None:
            return
        try:
            body = fn.body(attrs)
        except ValueError as e:
            return self.error(site, f"function '{fn.name}': {e}", chain=chain)
        chain = chain + ((fn.name, prefix, site[0].where(site[1])),)
        inputs = body.get("inputs") or []
        if len(spec["inputs"]) != len(inputs):
            return self.error((site[0], site[1] + ("inputs",)),
                              f"function '{fn.name}' takes {len(inputs)} inputs ({', '.join(inputs)}), "
                              f"got {len(spec['inputs'])}", chain=chain[:-1])
        env = dict(zip(inputs, spec["inputs"]))
        env |= self._parameters(fn, body, attrs, spec.get("parameters") or {}, prefix, site, chain)
        for name, value in (body.get("constants") or {}).items():
            env[name] = self._place(self.constants, f"{prefix}/{name}", value, fn, ("constants", name), "constants")
        outputs = body["outputs"]
        env |= {n: target if n == outputs[0] else f"{prefix}/{n}" for n in body.get("nodes") or {}}
        for name, node in (body.get("nodes") or {}).items():
            self._node(fn, name, node, env, attrs, prefix, chain)
        for i, out in enumerate(outputs):
            made = target if i == 0 else f"{prefix}/{out}"
            if out not in (body.get("nodes") or {}) or (i > 0 and env[out] != made):
                self.nodes[made] = {"op": "identity", "inputs": [env.get(out, out)]}
                self._belongs(made, prefix, chain)

    def _bind(self, fn: Function, spec: dict, site: tuple, chain: tuple) -> dict | None:
        source, path = site
        given = {k: v for k, v in spec.items() if k not in CALL_KEYS}
        attrs, problems = bind_attrs(f"function '{fn.name}'", fn.attributes, given, fn.signature())
        for key, message, hint in problems:
            self.error((source, path + ((key,) if key else ())), message, hint, chain)
        return None if problems else attrs

    def _parameters(self, fn, body, attrs, shared: dict, prefix: str, site: tuple, chain: tuple) -> dict:
        env = {}
        for key in set(shared) - set(body.get("parameters") or {}):
            self.error((site[0], site[1] + ("parameters", key)), f"function '{fn.name}' has no parameter '{key}'",
                       did_you_mean(key, body.get("parameters") or {}), chain[:-1])
        for name, spec in (body.get("parameters") or {}).items():
            if name in shared:
                env[name] = shared[name]
                if shared[name] not in self.parameters:
                    self.error((site[0], site[1] + ("parameters", name)),
                               f"shared parameter '{shared[name]}' is not a parameter of the model",
                               did_you_mean(shared[name], self.parameters), chain[:-1])
                continue
            spec = {k: _substitute(v, attrs) for k, v in spec.items()}
            bad = [d for d in spec.get("shape", []) if not isinstance(d, int) or isinstance(d, bool)]
            init = spec.get("init")
            init = init.get("type") if isinstance(init, dict) else init
            if bad:
                self.error(self._origin(fn, ("parameters", name, "shape")),
                           f"shape entries {bad} are not sizes", "name int attributes of the function", chain)
            elif init is not None and init not in INITIALIZERS and init not in ALIASES:
                self.error(self._origin(fn, ("parameters", name, "init")), f"unknown initializer '{init}'",
                           did_you_mean(init, [*INITIALIZERS, *ALIASES]), chain)
            else:
                env[name] = self._place(self.parameters, f"{prefix}/{name}", spec, fn, ("parameters", name), "parameters")
                self._belongs(env[name], prefix, chain)
        return env

    def _node(self, fn: Function, name: str, node: dict, env: dict, attrs: dict, prefix: str, chain: tuple):
        place = self._origin(fn, ("nodes", name))
        new = {}
        for key, value in node.items():
            if key == "inputs":
                new[key] = []
                for i, ref in enumerate(value):
                    if isinstance(ref, str) and ref not in env and ref not in attrs:
                        self.error((place[0], place[1] + ("inputs", i)), f"undefined reference '{ref}' in function "
                                   f"'{fn.name}'", did_you_mean(ref, list(env) + list(attrs)), chain)
                    new[key].append(env.get(ref, attrs.get(ref, ref)) if isinstance(ref, str) else ref)
            elif key != "parameters":
                new[key] = _substitute(value, attrs)
        new["op"] = "identity" if new["op"] == "none" else new["op"]
        if "parameters" in node:
            new["parameters"] = {k: env.get(v, v) for k, v in node["parameters"].items()}
        target = env[name]
        inner = self.functions.get(new["op"])
        if inner is not None:
            return self.call(inner, new, target=target, prefix=f"{prefix}/{name}", site=place, chain=chain)
        self.nodes[target] = new
        self._copy_positions(fn, ("nodes", name), ("nodes", target))
        self._belongs(target, prefix, chain)

    def _place(self, section: dict, full: str, value, fn: Function, inner: tuple, kind: str) -> str:
        """Add a call's parameter or constant, unless the model already declares one of that name (a saved model)."""
        if full not in section:
            section[full] = value
            self._copy_positions(fn, inner, (kind, full))
        return full

    def _origin(self, fn: Function, inner: tuple) -> tuple:
        """(source, path) where a function wrote something; a Python-built function points at nothing."""
        return (fn.source, fn.path + inner) if fn.source else (Source(None, "graphdef/functions.py"), inner)

    def _copy_positions(self, fn: Function, inner: tuple, outer: tuple):
        if fn.source is None:
            return
        prefix = fn.path + inner
        for path, position in fn.source.positions.items():
            if path[:len(prefix)] == prefix:
                self.positions[outer + path[len(prefix):]] = (*position[:2], position[2] if len(position) > 2
                                                              else fn.source.file)

    def _belongs(self, vertex: str, prefix: str, chain: tuple):
        self.members[vertex] = prefix
        self.calls[vertex] = self._describe(chain)


def _substitute(value, attrs: dict):
    """Attribute names inside a function body stand for the call's attribute values."""
    if isinstance(value, str) and value in attrs:
        return attrs[value]
    if isinstance(value, list):
        return [_substitute(v, attrs) for v in value]
    return value
