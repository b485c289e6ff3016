"""Drawing a model as the lecture does: values on the vertices, local derivatives on the edges.

Built with the `graphviz` package, imported when a drawing is made (the command line reads
MAX_NODES from here for every command); rendering to SVG, PNG or PDF needs Graphviz's `dot`
program (Debian package `graphviz`), while `.dot` output needs nothing more.
"""
from __future__ import annotations

import contextlib
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import GraphDefError, Problem
from .explain import format_number
from ..ops.registry import show_shape
from ..engine.paths import edge_derivatives
from ..format.serialize import atomic_write

if TYPE_CHECKING:  # for the annotations only: graphviz is imported where it is used
    import graphviz

FORMATS = ("svg", "png", "pdf", "dot")
MAX_NODES = 150
STYLE = {
    "input": {"shape": "ellipse", "style": "filled", "fillcolor": "#cfe2ff"},
    "parameter": {"shape": "box", "style": "filled,rounded", "fillcolor": "#ffe8a3"},
    "state": {"shape": "box", "style": "filled,rounded,dashed", "fillcolor": "#fff3cd"},
    "constant": {"shape": "box", "style": "filled", "fillcolor": "#e9ecef"},
    "literal": {"shape": "plaintext", "fontcolor": "#495057"},
    "node": {"shape": "ellipse"},
    "group": {"shape": "box3d", "style": "filled", "fillcolor": "#f1f3f5"},
}


def to_dot(model, inputs: dict | None = None, of: str | None = None, max_nodes: int = MAX_NODES) -> graphviz.Digraph:
    """The model as a Graphviz graph; with inputs, forward values (and with `of`, ∂of/∂vertex) shown."""
    import graphviz
    if of is not None and inputs is None:
        raise GraphDefError(Problem("drawing gradients needs input values", hint="add --at NAME=VALUE for each input"))
    values = grads = None
    if inputs is not None:
        trace = model.trace(inputs, of or (model.loss or model.outputs[0]), None)
        values, grads = trace.values, (trace.grads if of is not None else None)
    scalar = values is not None and all(np.size(v) == 1 for v in values.values())
    local = edge_derivatives(model.steps, values, set(model.graph)) if scalar else {}
    dot = graphviz.Digraph(model.name, graph_attr={"rankdir": "LR", "label": _title(model, of), "labelloc": "t"},
                           node_attr={"fontname": "Helvetica", "fontsize": "11"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    rep, clusters, keep, note = _view(model, max_nodes)
    members = {}  # cluster -> its vertices, drawn together in one subgraph
    for v in model.graph.vertices.values():
        if rep[v.name] == v.name and v.name in keep:
            members.setdefault(clusters.get(v.name), []).append(v)
    for cluster, vertices in members.items():
        with (dot.subgraph(name=f"cluster_{cluster}") if cluster else contextlib.nullcontext(dot)) as place:
            if cluster:
                place.attr(label=cluster, style="rounded,dashed", color="#adb5bd")
            for v in vertices:
                place.node(v.name, _label(v, values, grads, of), **STYLE[v.kind])
    for box in sorted({r for v, r in rep.items() if r != v and r in keep}):  # collapsed groups
        dot.node(box, f"{box[:-2]}\n({sum(r == box for r in rep.values())} vertices)", **STYLE["group"])
    collapsed_edges = set()
    for u, v, k in model.graph.nx.edges(keys=True):
        ru, rv = rep[u], rep[v]
        if ru == rv or ru not in keep or rv not in keep:
            continue
        if (ru, rv) == (u, v):
            dot.edge(u, v, **_edge(model, (u, v, k), values, local))
        elif (ru, rv) not in collapsed_edges:
            collapsed_edges.add((ru, rv))
            dot.edge(ru, rv, style="bold")
    if note:
        dot.node("_omitted", note, shape="note", fontcolor="#868e96")
    return dot


def write(dot: graphviz.Digraph, path) -> Path:
    """Write the drawing in the format its suffix names; clear errors when `dot` is missing."""
    import graphviz
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise GraphDefError(Problem(f"cannot draw to '{path.name}'", hint=f"use one of: .{', .'.join(FORMATS)}"))
    if fmt == "dot":
        atomic_write(path, dot.source.encode("utf-8"))
        return path
    try:
        data = dot.pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise GraphDefError(Problem(f"drawing .{fmt} needs Graphviz's `dot` program, which is not installed",
                                    hint="install it (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
                                         "graphviz), or write .dot and render it elsewhere")) from None
    atomic_write(path, data)
    return path


def _title(model, of) -> str:
    return model.name + (f"   (∂{of}/∂vertex in the bottom line)" if of else "")


def _label(vertex, values, grads, of) -> str:
    v, kind = vertex.name, vertex.kind
    lines = [v if kind != "node" else f"{v}\n{vertex.op.name}"]
    if kind == "literal":
        lines = [format_number(vertex.value) if np.size(vertex.value) == 1 else "constant"]
    elif values is not None:
        value = values[v]
        lines.append(f"= {format_number(value)}" if np.size(value) == 1 else show_shape(np.shape(value)))
    elif vertex.shape is not None:
        lines.append(show_shape(vertex.shape))
    if grads is not None and v in grads and kind != "literal":
        g = grads[v]
        lines.append(f"∂{of}/∂{v} = {format_number(g)}" if np.size(g) == 1
                     else f"∂{of}/∂{v}: norm {format_number(np.linalg.norm(g))}")
    return "\n".join(lines)


def _edge(model, edge, values, local) -> dict:
    u, v, k = edge
    tail = model.graph.vertices[u]
    attrs = {"style": "dashed"} if tail.kind == "literal" else {}
    if edge in local and not attrs:
        attrs["label"] = format_number(local[edge])
    elif values is not None and np.size(values[u]) != 1:
        attrs["label"] = show_shape(np.shape(values[u]))
    elif values is None and tail.shape:
        attrs["label"] = show_shape(tail.shape)
    if model.graph.nx.number_of_edges(u, v) > 1:
        attrs["taillabel"] = f"#{k}"
    return attrs


def _group_of(model, v: str) -> str | None:
    """Which call or name prefix a vertex belongs to (`h1/W` -> `h1`), for clusters."""
    call = model.graph.vertices[v].call
    if call:
        return call
    base = v.split("[")[0]
    return base.rsplit("/", 1)[0] if "/" in base else None


def _view(model, max_nodes: int):
    """(representative of each vertex, cluster of each vertex, representatives to draw, note).

    Small graphs are drawn whole, groups as clusters; larger ones collapse each group into
    one box, and past max_nodes only what is nearest to the outputs is drawn.
    """
    graph = model.graph
    groups = {v: g for v in graph if (g := _group_of(model, v))}
    if len(graph) <= max_nodes:
        return {v: v for v in graph}, groups, set(graph), None
    rep = {v: f"{groups[v]}/…" if v in groups else v for v in graph}
    keep = set(rep.values())
    if len(keep) <= max_nodes:
        return rep, {}, keep, None
    keep = _nearest_to_outputs(model, rep, max_nodes)
    return rep, {}, keep, f"{len(set(rep.values())) - len(keep)} more vertices or groups, further from the outputs, " \
                          "not drawn (raise --max-nodes)"


def _nearest_to_outputs(model, rep: dict, limit: int) -> set:
    starts = list(dict.fromkeys(rep[v] for v in model.outputs + ([model.loss] if model.loss else [])))
    preds = {}
    for u, v in model.graph.nx.edges():
        preds.setdefault(rep[v], set()).add(rep[u])
    seen, queue = set(starts), deque(starts)
    while queue and len(seen) < limit:
        for u in sorted(preds.get(queue.popleft(), set()) - seen):
            if len(seen) < limit:
                seen.add(u)
                queue.append(u)
    return seen
