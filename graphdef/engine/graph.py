"""The checked graph: one frozen record per vertex, and the DAG of their uses (a NetworkX one on demand).

The loader produces it; everything after (the model, plans, drawings, explanations, ONNX,
the command line) reads it and never changes it.
"""
from __future__ import annotations

import functools
import heapq
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from ..ops import Op

KINDS = ("input", "parameter", "state", "constant", "literal", "node")


class Vertex(NamedTuple):
    """One vertex's record, immutable (a named tuple: a model of 100,000 vertices makes them 5x faster
    than a frozen dataclass would)."""

    name: str
    kind: str  # one of KINDS
    shape: tuple | None = None  # per sample; None dims are free sizes, a None shape an unknown rank
    op: Op | None = None  # nodes
    inputs: tuple[str, ...] = ()  # nodes: the vertices their arguments read, in order
    attrs: MappingProxyType = MappingProxyType({})  # nodes: bound, defaults in
    value: np.ndarray | None = None  # parameters and state (their initial value), constants and literals
    dtype: str = "float64"  # float64 or float32 (the model's), int64 or bool
    line: int | None = None  # where it is declared in the model file (1-based)
    column: int | None = None
    call: str | None = None  # the function call it was expanded from (its prefix), if any
    init: object = None  # parameters drawn from an initializer: its setting (None: a given or trained value)

    @property
    def differentiable(self) -> bool:
        """Floats carry gradients; integers and booleans (indices, labels, masks) do not."""
        return self.dtype.startswith("float")

    @property
    def batchable(self) -> bool:
        """An input that may be fed with an extra leading batch axis: a declared shape not starting with null."""
        return self.kind == "input" and self.shape is not None and not (self.shape and self.shape[0] is None)


class Graph:
    """The checked DAG. `vertices` holds each vertex's record in the file's order, `order` an order where
    each vertex comes after its inputs. An edge is one use: (u, v, k) when u is argument k of v, so a
    vertex a node reads twice gives two edges.

    `nx` is the same graph as a networkx.MultiDiGraph, built on first use: loading and running a model
    need none of it. NetworkX's methods and functions also take a Graph (`nx.ancestors(model.graph, v)`,
    `model.graph.out_degree(v)`): what Graph does not define itself, its `nx` answers."""

    def __init__(self, vertices=(), order: list | None = None):
        """`order`: the vertices' names, each after its inputs, when the caller has worked it out already."""
        self.vertices: dict[str, Vertex] = {v.name: v for v in vertices}
        self.order = order if order is not None else topological_order({n: v.inputs for n, v in self.vertices.items()})
        if len(self.order) < len(self.vertices):
            raise ValueError("the graph has a cycle")  # the loader reports cycles: a Graph never has one

    def __len__(self) -> int:
        return len(self.vertices)

    def __iter__(self):
        return iter(self.vertices)

    def __contains__(self, name) -> bool:
        return name in self.vertices

    def __getattr__(self, name: str):
        if name.startswith("_"):  # pickling and copying ask for these before __init__ has run
            raise AttributeError(name)
        return getattr(self.nx, name)

    @functools.cached_property
    def _readers(self) -> dict:
        """Vertex -> the vertices reading it, one entry per use (found when first asked: loading needs none)."""
        readers = {name: [] for name in self.vertices}
        for v in self.vertices.values():
            for u in v.inputs:
                readers[u].append(v.name)
        return readers

    @functools.cached_property
    def nx(self):
        """The graph as a networkx.MultiDiGraph: one edge per use, keyed by argument position (edge attribute
        `arg`); vertex attributes `kind` and `call`. For drawing, and for analysing the DAG with networkx."""
        import networkx

        graph = networkx.MultiDiGraph()
        graph.add_nodes_from((v.name, {"kind": v.kind, "call": v.call}) for v in self.vertices.values())
        graph.add_edges_from((u, v.name, k, {"arg": k}) for v in self.vertices.values() for k, u in enumerate(v.inputs))
        return graph

    def predecessors(self, name: str) -> list:
        """The vertices `name` reads, each once, in argument order."""
        return list(dict.fromkeys(self.vertices[name].inputs))

    def successors(self, name: str) -> list:
        """The vertices that read `name`, each once, in the file's order."""
        return list(dict.fromkeys(self._readers[name]))

    def of_kind(self, *kinds) -> list[Vertex]:
        return [v for v in self.vertices.values() if v.kind in kinds]

    @property
    def steps(self) -> tuple[Vertex, ...]:
        """The nodes in an order where each comes after its inputs."""
        return tuple(self.vertices[n] for n in self.order if self.vertices[n].kind == "node")

    def ancestors(self, names, differentiable: bool = False) -> set:
        """The vertices that `names` depend on, themselves included; with `differentiable`, only along edges
        a gradient flows through (it stops at an integer or boolean vertex, and at an input the op has no
        gradient rule for: argmax's)."""
        found, stack = set(names), list(names)
        while stack:
            v = self.vertices[stack.pop()]
            for k, u in enumerate(v.inputs):
                if u not in found and (not differentiable or (self.vertices[u].differentiable
                                                              and v.op.backward[k] is not None)):
                    found.add(u)
                    stack.append(u)
        return found

    def reachable(self, sources) -> set:
        """Every vertex reachable from any of `sources` (themselves included), in one sweep."""
        seen, stack = set(sources), list(sources)
        while stack:
            for v in self._readers[stack.pop()]:
                if v not in seen:
                    seen.add(v)
                    stack.append(v)
        return seen


def topological_order(inputs: dict) -> list:
    """The vertices in an order where each comes after its inputs, as close to the given order as possible
    (Kahn's algorithm, the earliest vertex first); `inputs` maps each vertex, in order, to the vertices it
    reads. Vertices on a cycle, or after one, are left out: the order is shorter than `inputs` exactly
    when the graph has a cycle."""
    position = {name: i for i, name in enumerate(inputs)}
    if all(position[u] < i for i, args in enumerate(inputs.values()) for u in args):
        return list(inputs)  # written in order already: the common case, checked in one sweep
    readers = {name: [] for name in inputs}
    for name, args in inputs.items():
        for u in args:
            readers[u].append(name)
    waiting = {name: len(args) for name, args in inputs.items()}
    ready = [position[name] for name, count in waiting.items() if count == 0]
    names, order = list(inputs), []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for v in readers[name]:
            waiting[v] -= 1
            if waiting[v] == 0:
                heapq.heappush(ready, position[v])
    return order
