"""Composition: functions (named subgraphs) expanded into primitive nodes when a model loads.

A node whose op names a function is a call. Expansion copies the function's body under
the call's name: its parameters become CALL/NAME, its internal nodes CALL/NAME, and its
first output takes the call's own name, so the interpreter only ever sees registered
ops and gradients flow through by the chain rule. Inside a body, a string equal to an
attribute's name stands for the attribute's value (in shapes, op names, attributes and
inputs), and so does an expression of attributes (expressions.py); a `repeat` node calls
a function several times. Every expanded value keeps the position where the function
wrote it, and errors name the call too. Where functions come from: library.py.
"""
from __future__ import annotations

import dataclasses
import reprlib
from pathlib import Path

from . import schema
from ..errors import GraphDefError, Problem, did_you_mean
from .expressions import ExpressionError, evaluate, substitute
from .initializers import ALIASES, INITIALIZERS
from .library import Function, Reader, included, standard_library
from ..ops import OPS
from ..ops.registry import bind_attrs
from .source import BROKEN, LIMITS, Limits, Source

CALL_KEYS = ("op", "inputs", "description", "parameters")
REPEAT_KEYS = ("op", "inputs", "description", "parameters", "function", "times", "over", "given", "shared",
               "sequence")
REPEAT = object()  # marks a `repeat` node, which the expander unrolls
REFERENCES = ("inputs", "over", "given")  # keys of a node whose entries name values
REPEAT_SIGNATURE = ("repeat(inputs..., function: string, times: int, over: names = [], given: names = [], "
                    "shared: bool = false, sequence: bool = false, ...)")
REPEAT_DOC = ("the function applied `times` times: inputs carried from step to step, one item of each `over` "
              "sequence per step, the `given` values unchanged at every step; `sequence: true` also stacks "
              "every step's first output as NODE/sequence; other keys are its attributes (`step`, `times` in "
              "expressions)")
FAILED = object()  # an attribute expression that could not be computed (and was reported)
EXPRESSION_HINT = ("an attribute expression may use the attributes in scope, numbers, strings and lists, "
                   "+ - * / // % **, comparisons, and/or/not, x if c else y, indexing, len/min/max")


def expand(source: Source, limits: Limits = LIMITS, allow_outside: bool = False) -> tuple[Source, list]:
    """The same document with every call replaced by the nodes of its function (recursively), and the
    problems of the calls that could not be expanded: each of those is left BROKEN, so that the
    loader still checks every other vertex. Includes must sit in the model's folder (or below)
    unless `allow_outside`; the expansion stops as soon as it passes limits.max_vertices."""
    base = Path(source.file).resolve().parent if source.file else Path.cwd().resolve()
    functions = included(source, Reader(base, allow_outside, limits))
    ops = {spec["op"] for spec in (source.data.get("nodes") or {}).values() if spec is not BROKEN}
    if ops - OPS.keys() - functions.keys():  # a call of the standard library (or an unknown op): read it
        functions = {**standard_library(), **functions}
    if not ops & (functions.keys() | {"repeat"}):
        return source, []
    _check_size(source, functions, limits)
    expander = _Expander(source, functions, limits)
    return expander.run(), expander.problems


def _check_size(source: Source, functions: dict, limits: Limits) -> None:
    """Refuse at once a model whose calls expand past max_vertices: counted without expanding, each
    function once, so a 3 KB file of nested calls asking for billions of vertices costs milliseconds.
    The count is a lower bound (an op named by an attribute counts 1); the expansion counts exactly."""
    sizes = {}

    def size(fn: Function) -> int:
        if fn.name not in sizes:
            sizes[fn.name] = 1  # while it is counted: a recursive call is reported by the expansion
            body = fn.body
            sizes[fn.name] = len(body.get("constants") or {}) + sum(map(node_size, (body.get("nodes") or {}).values()))
        return sizes[fn.name]

    def node_size(node) -> int:
        """A node's vertices: a call's function's, a repeat's times × its function's (when times is a number)."""
        if node is BROKEN:
            return 1
        if node.get("op") == "repeat" and node.get("function") in functions:
            times = node.get("times")
            steps = times if isinstance(times, int) and not isinstance(times, bool) and times > 0 else 1
            made = size(functions[node["function"]]) + len(node.get("over") or []) + 2 * bool(node.get("sequence"))
            return steps * made
        return size(functions[node["op"]]) if node.get("op") in functions else 1

    doc = source.data
    try:
        count = sum(len(doc.get(k) or {}) for k in ("inputs", "parameters", "state", "constants")) + sum(
            map(node_size, (doc.get("nodes") or {}).values()))
    except RecursionError:  # functions nested deeper than Python recurses: the expansion stops at max_depth
        return
    if count > limits.max_vertices:
        raise GraphDefError(Problem(f"function calls expand the model to at least {count:,} vertices, more than "
                                    f"{limits.max_vertices:,}", source.file, hint=limits.exceeded("max_vertices")))


# -- expanding calls -------------------------------------------------------------------

class _Expander:
    def __init__(self, source: Source, functions: dict, limits: Limits):
        self.source, self.functions, self.limits = source, functions, limits
        doc = source.data
        self.parameters = dict(doc.get("parameters") or {})
        self.state = dict(doc.get("state") or {})
        self.constants = dict(doc.get("constants") or {})
        self.nodes = {}
        self.inputs = len(doc.get("inputs") or {})
        self.positions, self.calls, self.members = dict(source.positions), {}, {}
        self.problems = []
        self.written = {}  # id(fn) -> positions of its body, by (section, name): copied without a search

    def run(self) -> Source:
        for name, spec in (self.source.data.get("nodes") or {}).items():
            fn = None if spec is BROKEN else self.functions.get(spec["op"], REPEAT if spec["op"] == "repeat" else None)
            if fn is None:
                self.add(self.nodes, name, spec)
                continue
            sections = (self.nodes, self.parameters, self.state, self.constants)
            before = (len(self.problems), *map(len, sections))
            self.call(fn, spec, target=name, prefix=name, site=(self.source, ("nodes", name)), chain=())
            if len(self.problems) > before[0]:  # leave nothing half-made: the call is reported, and BROKEN
                for section, size in zip(sections, before[1:]):
                    while len(section) > size:
                        section.popitem()  # the last added first: what this call added
                self.nodes[name] = BROKEN
        doc = {**self.source.data, "parameters": self.parameters, "constants": self.constants, "nodes": self.nodes,
               **({"state": self.state} if self.state else {})}
        return Source(doc, self.source.file, self.positions, self.calls, self.members)

    def add(self, section: dict, name: str, spec) -> None:
        """Add a vertex, counting: nested calls can multiply a 3 KB file into billions of vertices. A name
        taken already (a node of the model named like a call's internal vertex, a repeat's step or a
        multi-output's NODE/1) is an error: replacing either would silently change the model."""
        if name in section:
            self.problems.append(self.source.problem((("nodes" if section is self.nodes else "parameters"), name),
                                                     f"'{name}' is defined twice: by the model and by expanding a call "
                                                     "or repeat (calls name their vertices CALL/NAME, repeats' steps "
                                                     "NODE1, NODE2...)", "rename one of them"))
            return
        section[name] = spec
        if self.inputs + len(self.nodes) + len(self.parameters) + len(self.state) + len(self.constants) \
                > self.limits.max_vertices:
            raise GraphDefError(Problem(f"function calls expand the model to more than {self.limits.max_vertices:,} "
                                        "vertices", self.source.file, hint=self.limits.exceeded("max_vertices")))

    def error(self, place: tuple, message: str, hint: str | None = None, chain: tuple = ()):
        source, path = place
        problem = source.problem(path, message, hint)
        if chain:
            problem = dataclasses.replace(problem, message=f"{problem.message} [{self._describe(chain)}]")
        self.problems.append(problem)

    def _describe(self, chain: tuple) -> str:
        return str(_Chain(chain))

    def call(self, fn: Function, spec: dict, target: str, prefix: str, site: tuple, chain: tuple,
             scope: dict | None = None) -> list | None:
        """Expand one call: `target` names its first output, `prefix` its internals. Returns the names
        of its outputs (None when it could not be expanded). `scope`: the attributes of the function
        the call is written in, which a repeat's expressions may read."""
        if fn is REPEAT:
            return self.repeat(spec, target, prefix, site, chain, scope or {})
        if any(fn.name == f for f, _, _ in chain):
            cycle = " -> ".join([f for f, _, _ in chain] + [fn.name])
            return self.error(site, f"recursive function call: {cycle}", "a function cannot call itself", chain)
        if len(chain) >= self.limits.max_depth:
            return self.error(site, f"function calls nest deeper than {self.limits.max_depth} levels",
                              self.limits.exceeded("max_depth"), chain)
        attrs = self._bind(fn, spec, site, chain)
        if attrs is None:
            return
        body = fn.body
        chain = chain + ((fn.name, prefix, site),)
        inputs = body.get("inputs") or []
        if len(spec["inputs"]) != len(inputs):
            return self.error((site[0], site[1] + ("inputs",)),
                              f"function '{fn.name}' takes {len(inputs)} inputs ({', '.join(inputs)}), "
                              f"got {len(spec['inputs'])}", chain=chain[:-1])
        env = dict(zip(inputs, spec["inputs"]))
        bound = spec.get("parameters") or {}  # NAME: this function's own; CALL/NAME: a nested call's (shared)
        own = {k: v for k, v in bound.items() if "/" not in k}
        for key in (k for k in bound if "/" in k and k.split("/", 1)[0] not in (body.get("nodes") or {})):
            self.error((site[0], site[1] + ("parameters", key)), f"function '{fn.name}' has no call "
                       f"'{key.split('/', 1)[0]}' whose parameter '{key}' could be bound", chain=chain)
        env |= self._parameters(fn, body, attrs, own, prefix, site, chain)
        env |= self._parameters(fn, body, attrs, {}, prefix, site, chain, "state")
        for name, value in (body.get("constants") or {}).items():
            place = self._origin(fn, ("constants", name))
            computed = self._computed(value["value"] if isinstance(value, dict) else value, attrs, place, chain)
            value = {**value, "value": computed} if isinstance(value, dict) else computed
            env[name] = self._place(self.constants, f"{prefix}/{name}", value, fn, ("constants", name), "constants")
        outputs = body["outputs"]
        env |= {n: target if n == outputs[0] else f"{prefix}/{n}" for n in body.get("nodes") or {}}
        for name, node in (body.get("nodes") or {}).items():
            inherited = {k.split("/", 1)[1]: v for k, v in bound.items() if k.split("/", 1)[0] == name and "/" in k}
            self._node(fn, name, node, env, attrs, prefix, chain, inherited)
        made = [target if i == 0 else f"{prefix}/{out}" for i, out in enumerate(outputs)]
        for i, (out, name) in enumerate(zip(outputs, made)):
            if out not in (body.get("nodes") or {}) or (i > 0 and env[out] != name):
                source = env.get(out) or self._further(fn, out, attrs, prefix, env) or out
                self.add(self.nodes, name, {"op": "identity", "inputs": [source]})
                self._belongs(name, prefix, chain)
        return made

    def repeat(self, spec: dict, target: str, prefix: str, site: tuple, chain: tuple, scope: dict) -> list | None:
        """A `repeat` node: its function called `times` times, the outputs of a step feeding the next.

        Step i (from 1) is the call PREFIX{i}; the last one's outputs are the node's own (NODE,
        NODE/NAME). `inputs` are the carried values, `over` sequences whose item i (along axis 0)
        step i also gets, `given` values every step gets as they are (weights, a mask); the function
        takes them in that order. The other keys are the function's attributes, expressions of
        `step` (from 0) and `times` allowed; `shared: true` gives every step the first step's
        parameters; `sequence: true` adds NODE/sequence, every step's first output stacked.
        """
        fn = self.functions.get(spec.get("function"))
        if fn is None:
            return self.error((site[0], site[1] + ("function",)),
                              f"repeat: unknown function {spec.get('function')!r}",
                              did_you_mean(str(spec.get("function")), self.functions) or "name a function to repeat",
                              chain)
        try:
            times = evaluate(str(spec.get("times")), scope) if isinstance(spec.get("times"), str) else spec.get("times")
        except ExpressionError as e:
            return self.error((site[0], site[1] + ("times",)), f"repeat: {e}", EXPRESSION_HINT, chain)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            return self.error((site[0], site[1] + ("times",)), f"repeat needs times: a count of at least 1, "
                              f"got {times!r}", "write times: 3, or an expression such as len(sizes) - 1", chain)
        carried, over, fixed = list(spec["inputs"]), list(spec.get("over") or []), list(spec.get("given") or [])
        wanted = fn.body.get("inputs") or []
        if len(carried) + len(over) + len(fixed) != len(wanted):
            return self.error((site[0], site[1] + ("inputs",)), f"repeat: function '{fn.name}' takes {len(wanted)} "
                              f"inputs ({', '.join(wanted)}), given {len(carried)} carried (inputs), {len(over)} "
                              f"sequences (over) and {len(fixed)} fixed (given)",
                              "carried values come first, then one item of each sequence, then the given values",
                              chain)
        given = {k: v for k, v in spec.items() if k not in REPEAT_KEYS}
        first, firsts = f"{prefix}1", []
        for step in range(times):
            here = {**scope, "step": step, "times": times}
            try:
                attrs = {k: substitute(v, here) for k, v in given.items()}
            except ExpressionError as e:
                return self.error(site, f"repeat, step {step}: {e}", EXPRESSION_HINT, chain)
            items = [self._item(sequence, step, times, f"{prefix}{step + 1}/over{j}", site, chain)
                     for j, sequence in enumerate(over)]
            shared = {p[len(first) + 1:]: p for p in self.parameters if p.startswith(first + "/")} \
                if spec.get("shared") and step else {}  # every parameter of step 1, its nested calls' too
            last = step == times - 1
            made = self.call(fn, {"op": fn.name, "inputs": carried + items + fixed, **attrs, "parameters": shared},
                             target if last else f"{prefix}{step + 1}", f"{prefix}{step + 1}", site, chain)
            if made is None:
                return None
            firsts.append(made[0])
            if len(made) < len(carried):
                return self.error(site, f"repeat: function '{fn.name}' has {len(made)} outputs, fewer than the "
                                  f"{len(carried)} values it carries", "carry as many inputs as the function "
                                  "returns first", chain)
            carried = made[:len(carried)]
        for name in made[1:]:  # NODE/NAME for the further outputs, as for any call
            alias = f"{prefix}/{name.rsplit('/', 1)[-1]}"
            self.add(self.nodes, alias, {"op": "identity", "inputs": [name]})
            self._belongs(alias, prefix, chain)
        outputs = [target, *(f"{prefix}/{n.rsplit('/', 1)[-1]}" for n in made[1:])]
        return outputs + [self._sequence(firsts, prefix, chain)] if spec.get("sequence") else outputs

    def _sequence(self, outputs: list, prefix: str, chain: tuple) -> str:
        """PREFIX/sequence: the steps' outputs stacked along a new first axis (as `over` reads a sequence)."""
        stacked = None
        for step, name in enumerate(outputs, 1):
            item = f"{prefix}{step}/item"
            self.add(self.nodes, item, {"op": "unsqueeze", "inputs": [name], "axis": 0})
            here = f"{prefix}/sequence" if step == len(outputs) else f"{prefix}{step}/sequence"
            spec = {"op": "concat", "inputs": [stacked, item], "axis": 0} if stacked else {"op": "identity",
                                                                                        "inputs": [item]}
            self.add(self.nodes, here, spec)
            for made in (item, here):
                self._belongs(made, prefix, chain)
            stacked = here
        return stacked

    def _computed(self, value, attrs: dict, place: tuple, chain: tuple):
        """`value` with its attribute expressions computed; FAILED (and a problem at `place`) when one cannot be."""
        try:
            return substitute(value, attrs)
        except ExpressionError as e:
            self.error(place, str(e), EXPRESSION_HINT, chain)
            return FAILED

    def _further(self, fn: Function, ref: str, attrs: dict, prefix: str, env: dict) -> str | None:
        """The vertex of `ref` = NODE/OUTPUT, a further output of a node of fn's body (None: not one):
        CALL/NAME for a call (or repeat), NODE/i for an op with several outputs."""
        head, _, output = ref.rpartition("/")
        node = (fn.body.get("nodes") or {}).get(head)
        if node is None:
            return None
        try:
            op = substitute(node.get("op"), attrs)
        except ExpressionError:
            return None  # reported where the node is expanded
        return f"{prefix}/{head}/{output}" if op in self.functions or op == "repeat" else f"{env[head]}/{output}"

    def _item(self, sequence: str, step: int, times: int, name: str, site: tuple, chain: tuple) -> str:
        """Item `step` of a sequence of `times` items (its first per-sample axis), for one step of a repeat;
        a problem with it is reported where the repeat is written."""
        checked = {"size": times} if step == 0 else {}  # the first step checks the length, once
        self.add(self.nodes, name, {"op": "select", "inputs": [sequence], "axis": 0, "index": step, **checked})
        self._belongs(name, name.rsplit("/", 1)[0], chain)
        source, path = site
        where = source.positions.get(path)
        if where is not None:
            self.positions[("nodes", name)] = (*where[:2], where[2] if len(where) > 2 else source.file)
        return name

    def _bind(self, fn: Function, spec: dict, site: tuple, chain: tuple) -> dict | None:
        source, path = site
        given = {k: v for k, v in spec.items() if k not in CALL_KEYS}
        attrs, problems = bind_attrs(f"function '{fn.name}'", fn.attributes, given, fn.signature())
        for attr in fn.attributes.values():
            if attr.check and not problems and not _holds(attr.check, attrs):
                problems.append((attr.name if attr.name in given else None,
                                 f"attribute '{attr.name}' of function '{fn.name}' must satisfy {attr.check}",
                                 attr.description or f"usage: {fn.signature()}"))
        for key, message, hint in problems:
            self.error((source, path + ((key,) if key else ())), message, hint, chain)
        return None if problems else attrs

    def _parameters(self, fn, body, attrs, shared: dict, prefix: str, site: tuple, chain: tuple,
                    section: str = "parameters") -> dict:
        """The call's parameters (or, with section="state", its state): CALL/NAME, or the model's shared ones."""
        env = {}
        for key in set(shared) - set(body.get("parameters") or {}) if section == "parameters" else ():
            self.error((site[0], site[1] + ("parameters", key)), f"function '{fn.name}' has no parameter '{key}'",
                       did_you_mean(key, body.get("parameters") or {}), chain[:-1])
        for name, spec in (body.get(section) or {}).items():
            if name in shared:
                env[name] = shared[name]
                if shared[name] not in self.parameters:
                    self.error((site[0], site[1] + ("parameters", name)),
                               f"shared parameter '{shared[name]}' is not a parameter of the model",
                               did_you_mean(shared[name], self.parameters), chain[:-1])
                continue
            spec = {k: self._computed(v, attrs, self._origin(fn, (section, name, k)), chain) for k, v in spec.items()}
            if FAILED in spec.values():
                continue
            bad = [d for d in spec.get("shape", []) if not isinstance(d, int) or isinstance(d, bool) or d < 0]
            init = spec.get("init")
            init = init.get("type") if isinstance(init, dict) else init
            if bad:
                self.error(self._origin(fn, (section, name, "shape")),
                           f"shape entries {bad} are not sizes", "name int attributes of the function", chain)
            elif init is not None and not isinstance(init, str):
                self.error(self._origin(fn, (section, name, "init")), f"initializer {init!r} is not a name",
                           f"one of: {', '.join([*INITIALIZERS, *ALIASES])}", chain)
            elif init is not None and init not in INITIALIZERS and init not in ALIASES:
                self.error(self._origin(fn, (section, name, "init")), f"unknown initializer '{init}'",
                           did_you_mean(init, [*INITIALIZERS, *ALIASES]), chain)
            else:
                env[name] = self._place(getattr(self, section), f"{prefix}/{name}", spec, fn, (section, name), section)
                self._belongs(env[name], prefix, chain)
        return env

    def _node(self, fn: Function, name: str, node: dict, env: dict, attrs: dict, prefix: str, chain: tuple,
              inherited: dict | None = None):
        """One node of a function's body; `inherited`: parameters bound to the node (a call) from outside."""
        place = self._origin(fn, ("nodes", name))
        new = {}
        for key, value in node.items():
            if key in REFERENCES and isinstance(value, list):
                new[key] = []
                for i, ref in enumerate(value):
                    if isinstance(ref, str) and ref not in env and self._further(fn, ref, attrs, prefix, env):
                        env[ref] = self._further(fn, ref, attrs, prefix, env)
                    if isinstance(ref, str) and ref not in env and ref not in attrs:
                        self.error((place[0], place[1] + (key, i)), f"undefined reference '{ref}' in function "
                                   f"'{fn.name}'", did_you_mean(ref, list(env) + list(attrs)), chain)
                    new[key].append(env.get(ref, attrs.get(ref, ref)) if isinstance(ref, str) else ref)
            elif key != "parameters":
                new[key] = self._computed(value, attrs, (place[0], place[1] + (key,)), chain)
        if FAILED in new.values() or not self._substituted(fn, node, new, place, chain):
            return
        new["op"] = "identity" if new["op"] == "none" else new["op"]
        if "parameters" in node or inherited:
            new["parameters"] = {**{k: env.get(v, v) for k, v in (node.get("parameters") or {}).items()},
                                 **(inherited or {})}
        target = env[name]
        inner = self.functions.get(new["op"], REPEAT if new["op"] == "repeat" else None)
        if inner is not None:
            return self.call(inner, new, target=target, prefix=f"{prefix}/{name}", site=place, chain=chain,
                             scope=attrs)
        self.add(self.nodes, target, new)
        self._copy_positions(fn, ("nodes", name), ("nodes", target))
        self._belongs(target, prefix, chain)

    def _place(self, section: dict, full: str, value, fn: Function, inner: tuple, kind: str) -> str:
        """Add a call's parameter or constant, unless the model already declares one of that name (a saved model)."""
        if full not in section:
            self.add(section, full, value)
            self._copy_positions(fn, inner, (kind, full))
        return full

    def _origin(self, fn: Function, inner: tuple) -> tuple:
        """(source, path) where a function wrote something; a Python-built function points at nothing."""
        return fn.source, fn.path + inner

    def _substituted(self, fn: Function, node: dict, new: dict, place: tuple, chain: tuple) -> bool:
        """After attributes are substituted, the op is still a name and every input a name or numbers."""
        ok = isinstance(new["op"], str)
        if not ok:
            self.error((place[0], place[1] + ("op",)), f"op {_shown(new['op'])} is not a name (it is the value of "
                       f"attribute '{node['op']}')", "give that attribute the name of an op or function", chain)
        for i, ref in enumerate(new["inputs"]):
            if not isinstance(ref, str) and schema.first_bad(ref) is not None:
                ok = False
                self.error((place[0], place[1] + ("inputs", i)), f"input {_shown(ref)} is neither a name nor numbers",
                           "an input is a name, a number or a list of numbers", chain)
        return ok

    def _copy_positions(self, fn: Function, inner: tuple, outer: tuple):
        """Where the function wrote `inner` (a vertex of its body), recorded for its copy `outer`."""
        for rest, position in self._written(fn).get(inner, ()):
            self.positions[outer + rest] = position

    def _written(self, fn: Function) -> dict:
        """Positions of a function's body grouped by vertex, found once: copying them is then linear."""
        if id(fn) not in self.written:
            table, n = {}, len(fn.path)
            for path, position in fn.source.positions.items():
                if path[:n] == fn.path and len(path) >= n + 2:
                    where = (*position[:2], position[2] if len(position) > 2 else fn.source.file)
                    table.setdefault(path[n:n + 2], []).append((path[n + 2:], where))
            self.written[id(fn)] = table
        return self.written[id(fn)]

    def _belongs(self, vertex: str, prefix: str, chain: tuple):
        self.members[vertex] = prefix
        self.calls[vertex] = _Chain(chain)


class _Chain:
    """The calls a vertex was expanded from, written out ("in function 'f', called as 'h1' at m.yaml:3:5")
    only when an error shows it: formatting it for each of a million vertices would cost more than expanding."""

    __slots__ = ("calls",)

    def __init__(self, calls: tuple):
        self.calls = calls  # (function, prefix, (source, path) of the call)

    def __bool__(self) -> bool:
        return bool(self.calls)

    def __str__(self) -> str:
        return ", ".join(f"in function '{fn}', called as '{prefix}' at {site[0].where(site[1])}"
                         for fn, prefix, site in reversed(self.calls))


def _holds(check: str, attrs: dict) -> bool:
    """Whether an attribute's check is true for these attributes (a check that cannot be computed is not)."""
    try:
        return bool(evaluate(check, attrs))
    except ExpressionError:
        return False


def _shown(value) -> str:
    return reprlib.repr(value)
