"""Gradients explained the lecture's way: sums over paths, the backward sweep, and what each costs.

Path sums repeat the shared products (LECTURE.md §4); the backward sweep computes each
product once, one multiplication per edge. `cost` counts both without listing any path,
so it also works where the paths number in the billions (the diamond graph).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engine.paths import PATH_LIMIT, all_paths, edge_derivatives, path_stats

MAX_TERMS = 12  # terms shown per sum; the rest are counted


@dataclass(frozen=True)
class Cost:
    paths: int
    path_multiplications: int
    path_additions: int
    sweep_multiplications: int
    sweep_additions: int

    def __str__(self) -> str:
        return (f"cost: path sum {_count(self.paths, 'path')}, {_count(self.path_multiplications, 'multiplication')}, "
                f"{_count(self.path_additions, 'addition')}; backward sweep "
                f"{_count(self.sweep_multiplications, 'multiplication')} (one per edge), "
                f"{_count(self.sweep_additions, 'addition')}")


def cost(model, of: str, wrt) -> Cost:
    """Work of the path sum against the backward sweep for ∂of/∂w, w in wrt."""
    _, wanted = model.backward_plan(of, tuple(wrt))
    sub = model.graph.nx.subgraph(wanted)
    stats = path_stats(sub, of)
    paths = [stats.get(w, (0, 0)) for w in wrt]
    edges = sub.number_of_edges()
    fan_out = sum(max(sub.out_degree(v) - 1, 0) for v in sub if v != of)
    return Cost(paths=sum(n for n, _ in paths), path_multiplications=sum(e - n for n, e in paths),
                path_additions=sum(max(n - 1, 0) for n, _ in paths), sweep_multiplications=edges,
                sweep_additions=fan_out)


def explain_paths(model, inputs: dict, of=None, wrt=None) -> str:
    """Every path of every ∂of/∂w with its product, then the sum (scalar graphs)."""
    t = model.trace(inputs, of, wrt)
    local = edge_derivatives(t.steps, t.values, t.wanted)
    lines = [f"{t.of} = {format_number(t.values[t.of])}"]
    for w in t.wrt:
        paths = [list(reversed(p)) for p in all_paths(model.graph.nx, w, t.of, PATH_LIMIT)]
        if not paths:
            lines.append(f"∂{t.of}/∂{w} = 0 (no path from {w} to {t.of})")
            continue
        symbols = _sum([_product([_partial(model.graph.nx, e) for e in p], "·") for p in paths])
        numbers = _sum([_product([format_number(local[e]) for e in p], "×") for p in paths])
        total = sum(math.prod(local[e] for e in p) for p in paths)
        lines.append(f"∂{t.of}/∂{w} = {symbols} = {numbers} = {format_number(total)}")
    lines.append(str(cost(model, t.of, t.wrt)))
    return "\n".join(lines)


def explain_sweep(model, inputs: dict, of=None, wrt=None) -> str:
    """The backward sweep step by step: each vertex's ∂of/∂v from its consumers', each product once."""
    import networkx as nx
    t = model.trace(inputs, of, wrt)
    scalar = all(np.size(t.values[v]) == 1 for v in t.wanted)
    local = edge_derivatives(t.steps, t.values, t.wanted) if scalar else {}
    graph, of = model.graph.nx, t.of
    lines = [f"{of} = {_shown(t.values[of])}", f"backward sweep from {of}, each product computed once:",
             f"∂{of}/∂{of} = 1"]
    for v in reversed(list(nx.lexicographical_topological_sort(graph.subgraph(t.wanted), key=str))):
        if v == of:
            continue
        edges = [(v, u, k) for _, u, k in graph.out_edges(v, keys=True) if u in t.wanted]
        symbols = _sum([f"{_partial(graph, e)}·∂{of}/∂{e[1]}" for e in edges])
        if scalar:
            numbers = _sum([f"{format_number(local[e])}×{format_number(t.grads[e[1]])}" for e in edges])
            lines.append(f"∂{of}/∂{v} = {symbols} = {numbers} = {format_number(t.grads[v])}")
        else:
            g = t.grads[v]
            lines.append(f"∂{of}/∂{v} = {symbols}   shape {list(g.shape)}, norm {format_number(np.linalg.norm(g))}")
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


def _partial(graph, edge) -> str:
    """∂v/∂u for an edge, marking the argument when u feeds v more than once."""
    u, v, k = edge
    return f"∂{v}/∂{u}" + (f"[{k}]" if graph.number_of_edges(u, v) > 1 else "")


def _product(factors: list, sign: str) -> str:
    return sign.join(factors) if factors else "1"


def _sum(terms: list) -> str:
    shown = terms[:MAX_TERMS]
    more = f" + … ({len(terms) - MAX_TERMS:,} more terms)" if len(terms) > MAX_TERMS else ""
    return " + ".join(shown) + more


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def format_number(x) -> str:
    """A scalar as people read it: 48, 0.104994, -1.13534."""
    return f"{float(np.asarray(x).reshape(-1)[0]):.6g}"


def _shown(x) -> str:
    return format_number(x) if np.size(x) == 1 else f"array of shape {list(np.shape(x))}"
