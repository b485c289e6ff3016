"""The checked graph: one frozen record per vertex, and the NetworkX DAG of their uses.

The loader produces it; everything after (the model, plans, drawings, explanations, ONNX,
the command line) reads it and never changes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import networkx as nx
import numpy as np

from ..ops import Op

KINDS = ("input", "parameter", "state", "constant", "literal", "node")


@dataclass(frozen=True)
class Vertex:
    name: str
    kind: str  # one of KINDS
    shape: tuple | None = None  # per sample; None dims are free sizes, a None shape an unknown rank
    op: Op | None = None  # nodes
    inputs: tuple[str, ...] = ()  # nodes: the vertices their arguments read, in order
    attrs: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # nodes: bound, defaults in
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


class Graph(nx.MultiDiGraph):
    """A networkx.MultiDiGraph (one edge per use, keyed by argument position; vertex attributes
    `kind` and `call`) whose `vertices` hold each vertex's full record."""

    def __init__(self, vertices=(), **attr):
        super().__init__(**attr)
        self.vertices: dict[str, Vertex] = {}
        for v in vertices:
            self.vertices[v.name] = v
            self.add_node(v.name, kind=v.kind, call=v.call)
        for v in self.vertices.values():
            for i, arg in enumerate(v.inputs):
                self.add_edge(arg, v.name, key=i, arg=i)
        self.order = topological_order(self) if self.vertices else []

    def of_kind(self, *kinds) -> list[Vertex]:
        return [v for v in self.vertices.values() if v.kind in kinds]

    @property
    def steps(self) -> tuple[Vertex, ...]:
        """The nodes in an order where each comes after its inputs."""
        return tuple(self.vertices[n] for n in self.order if self.vertices[n].kind == "node")

    def ancestors(self, names, differentiable: bool = False) -> set:
        """The vertices that `names` depend on, themselves included; with `differentiable`, only through
        vertices a gradient flows through (a gradient stops at an integer or boolean vertex)."""
        found, stack = set(names), list(names)
        while stack:
            for u in self.vertices[stack.pop()].inputs:
                if u not in found and (not differentiable or self.vertices[u].differentiable):
                    found.add(u)
                    stack.append(u)
        return found

    def reachable(self, sources) -> set:
        """Every vertex reachable from any of `sources` (themselves included), in one sweep."""
        seen, stack = set(sources), list(sources)
        while stack:
            for v in self.successors(stack.pop()):
                if v not in seen:
                    seen.add(v)
                    stack.append(v)
        return seen


def topological_order(graph: nx.DiGraph) -> list:
    """Vertices in an order where each comes after its inputs, as close to the file's order as possible."""
    position = {n: i for i, n in enumerate(graph)}
    if all(position[u] < position[v] for u, v in graph.edges()):
        return list(graph)  # written in order already: the common case, checked in one sweep
    return list(nx.lexicographical_topological_sort(graph, key=position.get))
