"""The lecture's gradient by hand: the sum over all paths of the product of edge derivatives.

Exponential in depth by nature (that is the lecture's point), so it refuses above a limit.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import GraphDefError
from .lift import vjp

PATH_LIMIT = 100_000


def edge_derivatives(steps, env: dict, wanted) -> dict:
    """Local partial ∂v/∂u for every edge (u, v, argument position) of a scalar graph: the
    reference interpreter's vector-Jacobian product with a seed of one."""
    local = {}
    for step in steps:
        out = env[step.name]
        values = [env[a] for a in step.inputs]
        for name, value in [(step.name, out)] + list(zip(step.inputs, values)):
            if name in wanted and np.size(value) != 1:
                raise GraphDefError(f"the paths method needs scalar vertices; '{name}' has shape "
                                    f"{list(np.shape(value))} (use method reverse or numeric)")
        for i, (arg, rule) in enumerate(zip(step.inputs, step.op.backward)):
            if arg in wanted and rule is not None:
                local[(arg, step.name, i)] = float(np.sum(vjp(step, None, i, np.ones_like(out), out, values)))
    return local


def path_stats(graph, target: str) -> dict:
    """vertex -> (number of paths to target, total number of edges over those paths), without listing them."""
    import networkx as nx  # only the paths method needs it: loading a model must not
    stats = {target: (1, 0)}
    for v in reversed(list(nx.topological_sort(graph.subgraph(nx.ancestors(graph, target) | {target})))):
        if v != target:
            below = [stats.get(w, (0, 0)) for _, w in graph.out_edges(v)]
            stats[v] = (sum(n for n, _ in below), sum(edges + n for n, edges in below))
    return stats


def count_paths(graph, source: str, target: str) -> int:
    """Number of distinct edge paths source -> target."""
    return path_stats(graph, target).get(source, (0, 0))[0]


def all_paths(graph, source: str, target: str, limit: int = PATH_LIMIT):
    """Every path as a list of edges (u, v, argument position)."""
    n = count_paths(graph, source, target)
    if n > limit:
        raise GraphDefError(
            f"{n:,} paths lead from '{source}' to '{target}' (limit {limit:,}): the path sum grows "
            "exponentially with depth; use method reverse, which is linear")
    import networkx as nx
    return [list(p) for p in nx.all_simple_edge_paths(graph, source, target)] if source != target else [[]]


def path_gradients(graph, steps, env: dict, of: str, wrt, wanted, limit: int = PATH_LIMIT) -> dict:
    """∂of/∂w = Σ over paths w -> of of the product of edge derivatives along the path."""
    local = edge_derivatives(steps, env, wanted)
    return {w: np.array(sum(math.prod(local.get(e, 0.0) for e in path) for path in all_paths(graph, w, of, limit)),
                        dtype=env[w].dtype).reshape(np.shape(env[w]))
            for w in wrt}
