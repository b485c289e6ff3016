"""Gradients explained the lecture's way: sums over paths, the backward sweep, and what each costs.

Path sums repeat the shared products (LECTURE.md §4); the backward sweep computes each
product once, one multiplication per edge. `cost` counts both without listing any path,
so it also works where the paths number in the billions (the diamond graph).

Notation, as the lecture insists: ∂of/∂v is a total derivative (how `of` moves with v through
every path, what `graphdef grad` prints); ∂ₗy/∂x is a local one (the derivative of y's own op
with respect to its input x, the number on the edge x → y). Written alike they read as the same
thing, and in `∂f/∂e = ∂f/∂e·∂f/∂f` they did; LEGEND says it once at the top of each explanation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import GraphDefError, Problem

from ..engine.paths import PATH_LIMIT, all_paths, edge_derivatives, path_stats

MAX_TERMS = 12  # terms shown per sum; the rest are counted
LOCAL = "∂ₗ"  # marks a local derivative, apart from the total ∂of/∂v


def legend(of: str, forward: bool = False) -> str:
    """The two kinds of derivative the lines below use, said once (forward mode's totals are ∂v/∂w, of each
    vertex v with respect to the pass's input w; reverse mode's ∂of/∂v)."""
    total = "∂v/∂w = total derivative of v with respect to the pass's input w" if forward else \
        f"∂{of}/∂v = total derivative of {of} with respect to v"
    return (f"notation: {total}, through every path;\n"
            f"          {LOCAL}y/∂x = local derivative of y's op alone with respect to its input x (edge x → y)")


@dataclass(frozen=True)
class Cost:
    """Multiplications and additions of the three ways to get ∂of/∂w for every w in wrt, counted on the
    scalar picture (one multiplication per edge derivative applied)."""
    paths: int
    path_multiplications: int
    path_additions: int
    forward_passes: int  # forward mode: one pass per input
    forward_multiplications: int
    forward_additions: int
    sweep_multiplications: int  # reverse mode: one backward sweep per output
    sweep_additions: int

    def __str__(self) -> str:
        return (f"cost: path sum {_count(self.paths, 'path')}, {_count(self.path_multiplications, 'multiplication')}, "
                f"{_count(self.path_additions, 'addition')}; forward mode {_count(self.forward_passes, 'pass')}, "
                f"{_count(self.forward_multiplications, 'multiplication')}, "
                f"{_count(self.forward_additions, 'addition')}; backward sweep "
                f"{_count(self.sweep_multiplications, 'multiplication')} (one per edge), "
                f"{_count(self.sweep_additions, 'addition')}")

    def rows(self) -> list[tuple[str, str, int, int]]:
        """(method, paths or passes, multiplications, additions), for a table side by side."""
        return [("path sum", _count(self.paths, "path"), self.path_multiplications, self.path_additions),
                ("forward mode", _count(self.forward_passes, "pass"), self.forward_multiplications,
                 self.forward_additions),
                ("reverse mode", _count(1, "pass"), self.sweep_multiplications, self.sweep_additions)]

    def verdict(self) -> str:
        """The lecture's conclusion for this graph: which method multiplies least, and why."""
        forward, reverse = self.forward_multiplications, self.sweep_multiplications
        if forward == reverse:
            tie = f"forward and reverse mode tie ({_count(reverse, 'multiplication')})"
            return tie + (": one input, one output" if self.forward_passes == 1 else "")
        best, other = ("reverse mode", "forward mode") if reverse < forward else ("forward mode", "reverse mode")
        why = (f"one sweep back from the output serves all {self.forward_passes} inputs, where forward mode makes "
               "one pass per input") if reverse < forward else "few inputs: each forward pass is short"
        return (f"{best} multiplies less than {other} ({min(forward, reverse):,} against {max(forward, reverse):,}): "
                f"{why}")


def cost(model, of: str, wrt) -> Cost:
    """Work of the path sum, forward mode (one pass per input w, through the vertices between w and of)
    and the backward sweep (one pass, every edge once) for ∂of/∂w, w in wrt."""
    import networkx as nx
    _, wanted = model.backward_plan(of, tuple(wrt))
    sub = model.graph.nx.subgraph(wanted)
    stats = path_stats(sub, of) if of in sub else {}  # `of` out of reach of every wrt: nothing to count
    paths = [stats.get(w, (0, 0)) for w in wrt]
    edges = sub.number_of_edges()
    fan_out = sum(max(sub.out_degree(v) - 1, 0) for v in sub if v != of)
    cones = [sub.subgraph(nx.descendants(sub, w) | {w}) for w in wrt if w in sub]
    return Cost(paths=sum(n for n, _ in paths), path_multiplications=sum(max(e - n, 0) for n, e in paths),
                path_additions=sum(max(n - 1, 0) for n, _ in paths), forward_passes=len(wrt),
                forward_multiplications=sum(c.number_of_edges() for c in cones),
                forward_additions=sum(max(c.in_degree(v) - 1, 0) for c in cones for v in c),
                sweep_multiplications=edges, sweep_additions=fan_out)


def explain_paths(model, inputs: dict, of=None, wrt=None) -> str:
    """Every path of every ∂of/∂w with its product, then the sum (scalar graphs)."""
    t = model.trace(inputs, of, wrt)
    local = edge_derivatives(t.steps, t.values, t.wanted)
    lines = [f"{t.of} = {format_number(t.values[t.of])}", legend(t.of)]
    for w in t.wrt:
        paths = [list(reversed(p)) for p in all_paths(model.graph.nx, w, t.of, PATH_LIMIT)]
        if not paths:
            lines.append(f"∂{t.of}/∂{w} = 0 (no path from {w} to {t.of})")
            continue
        symbols = _sum([_product([local_partial(model.graph.nx, e) for e in p], "·") for p in paths])
        numbers = _sum([_product([format_number(local[e]) for e in p], "×") for p in paths])
        total = sum(math.prod(local[e] for e in p) for p in paths)
        lines.append(f"∂{t.of}/∂{w} = {symbols} = {numbers} = {format_number(total)}")
    lines.append(str(cost(model, t.of, t.wrt)))
    return "\n".join(lines)


def explain_sweep(model, inputs: dict, of=None, wrt=None) -> str:
    """The backward sweep step by step: each vertex's total ∂of/∂v from its consumers' totals times the
    local derivatives of the edges to them, each product once."""
    import networkx as nx
    t = model.trace(inputs, of, wrt)
    scalar = all(np.size(t.values[v]) == 1 for v in t.wanted)
    local = edge_derivatives(t.steps, t.values, t.wanted) if scalar else {}
    graph, of = model.graph.nx, t.of
    lines = [f"{of} = {_shown(t.values[of])}", legend(of),
             f"backward sweep from {of}, each product computed once (total of the consumer × local of the edge):",
             f"∂{of}/∂{of} = 1"]
    for v in reversed(list(nx.lexicographical_topological_sort(graph.subgraph(t.wanted), key=str))):
        if v == of:
            continue
        edges = [(v, u, k) for _, u, k in graph.out_edges(v, keys=True) if u in t.wanted]
        symbols = _sum([f"∂{of}/∂{e[1]}·{local_partial(graph, e)}" for e in edges])
        if scalar:
            numbers = _sum([f"{format_number(t.grads[e[1]])}×{format_number(local[e])}" for e in edges])
            lines.append(f"∂{of}/∂{v} = {symbols} = {numbers} = {format_number(t.grads[v])}")
        else:
            g = t.grads[v]
            lines.append(f"∂{of}/∂{v} = {symbols}   shape {list(g.shape)}, norm {format_number(np.linalg.norm(g))}")
    lines.append(str(cost(model, of, t.wrt)))
    return "\n".join(lines)


def explain_forward(model, inputs: dict, of=None, wrt=None) -> str:
    """Forward mode step by step: one pass per input w, each vertex's total ∂v/∂w from its inputs' totals
    times the local derivatives of the edges from them, each product once per pass (scalar graphs)."""
    t = model.trace(inputs, of, wrt)
    tensors = [v for v in sorted(t.wanted) if np.size(t.values[v]) != 1]
    if tensors:
        raise GraphDefError(Problem(f"forward mode is explained on scalar graphs; '{tensors[0]}' has shape "
                                    f"{list(np.shape(t.values[tensors[0]]))}",
                                    hint="use --explain without --method: the backward sweep shows tensors by norm"))
    local = edge_derivatives(t.steps, t.values, t.wanted)
    graph, of = model.graph.nx, t.of
    lines = [f"{of} = {format_number(t.values[of])}", legend(of, forward=True),
             "forward mode, one pass per input w, each product computed once in it (local of the edge × total of "
             "the input):"]
    for w in t.wrt:
        _, tangents = model.jvp(inputs, {w: 1.0}, outputs=sorted(t.wanted))
        lines.append(f"pass for {w}: ∂{w}/∂{w} = 1")
        cone = {w}
        for step in t.steps:
            edges = [(u, step.name, k) for k, u in enumerate(step.inputs) if u in cone and (u, step.name, k) in local]
            if not edges:
                continue
            cone.add(step.name)
            symbols = _sum([f"{local_partial(graph, e)}·∂{e[0]}/∂{w}" for e in edges])
            numbers = _sum([f"{format_number(local[e])}×{format_number(tangents[e[0]])}" for e in edges])
            lines.append(f"  ∂{step.name}/∂{w} = {symbols} = {numbers} = {format_number(tangents[step.name])}")
        if of not in cone:
            lines.append(f"  ∂{of}/∂{w} = 0 (no path from {w} to {of})")
    lines.append(str(cost(model, of, t.wrt)))
    return "\n".join(lines)


def diamond(depth: int) -> str:
    """A model of `depth` diamonds: x_k feeds two branches that meet again in x_(k+1), so paths double per level."""
    nodes = []
    for k in range(depth):
        nodes += [f"  u{k}: {{op: tanh, inputs: [x{k}]}}", f"  v{k}: {{op: sigmoid, inputs: [x{k}]}}",
                  f"  x{k + 1}: {{op: add, inputs: [u{k}, v{k}]}}"]
    return (f"graphdef: 1\nname: diamond{depth}\ndescription: {depth} stacked diamonds, 2^{depth} paths\n"
            "inputs:\n  x0: {shape: []}\nnodes:\n" + "\n".join(nodes) + f"\noutputs: [x{depth}]\n")


def diamond_table(max_depth: int) -> list[tuple[int, Cost]]:
    """(depth, cost of ∂x_depth/∂x0) for depths 1..max_depth: paths double, the sweep grows linearly."""
    from ..format.loader import loads
    return [(d, cost(loads(diamond(d)), f"x{d}", ["x0"])) for d in range(1, max_depth + 1)]


def local_partial(graph, edge) -> str:
    """The local ∂ₗv/∂u of an edge (u, v, k), marking the argument when u feeds v more than once (x × x)."""
    u, v, k = edge
    return f"{LOCAL}{v}/∂{u}" + (f"[{k}]" if graph.number_of_edges(u, v) > 1 else "")


def _product(factors: list, sign: str) -> str:
    return sign.join(factors) if factors else "1"


def _sum(terms: list) -> str:
    shown = terms[:MAX_TERMS]
    more = f" + … ({len(terms) - MAX_TERMS:,} more terms)" if len(terms) > MAX_TERMS else ""
    return " + ".join(shown) + more


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{('es' if word.endswith('s') else 's') * (n != 1)}"


def format_number(x) -> str:
    """A scalar as people read it: 48, 0.104994, -1.13534; never -0 (a ReLU's zero gradient times a
    negative weight is -0.0 in floating point, and `-0` on a drawing looks like a sign that matters)."""
    text = f"{float(np.asarray(x).reshape(-1)[0]):.6g}"
    return "0" if text == "-0" else text


def _shown(x) -> str:
    return format_number(x) if np.size(x) == 1 else f"array of shape {list(np.shape(x))}"
