"""Drawing a model as the lecture does: values on the vertices, local derivatives on the edges.

Built with the `graphviz` package, imported when a drawing is made (the command line reads
MAX_NODES from here for every command); rendering to SVG, PNG or PDF needs Graphviz's `dot`
program (Debian package `graphviz`), while `.dot` output needs nothing more.
"""
from __future__ import annotations

import contextlib
import math
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import GraphDefError, Problem
from .explain import LOCAL, format_number
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


def to_dot(model, inputs: dict | None = None, of: str | None = None, max_nodes: int = MAX_NODES, *,
           wrt=None) -> graphviz.Digraph:
    """The model as a Graphviz graph; with inputs, forward values (and with `of`, ∂of/∂vertex) shown.

    Gradients are shown for the vertices between `wrt` (default: inputs and parameters, labels
    left out, as `graphdef grad` does) and `of`. The direction (top-to-bottom or left-to-right) is
    chosen from the graph's depth and width (see _layout), so deep or wide graphs stay readable.
    """
    import graphviz
    if of is not None and inputs is None:
        raise GraphDefError(Problem("drawing gradients needs input values", hint="add --at NAME=VALUE for each input"))
    values = grads = None
    if inputs is not None:
        trace = model.trace(inputs, of or (model.loss or model.outputs[0]), wrt if of is not None else None)
        values, grads = trace.values, (trace.grads if of is not None else None)
    scalar = values is not None and all(np.size(v) == 1 for v in values.values())
    local = edge_derivatives(model.steps, values, set(model.graph)) if scalar else {}
    dot = graphviz.Digraph(model.name, graph_attr={"label": _title(model, values, of), "labelloc": "t",
                                                   "labeljust": "l", "fontname": "Helvetica", "fontsize": "12"},
                           node_attr={"fontname": "Helvetica", "fontsize": "11"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    rep, clusters, keep, note = _view(model, max_nodes)
    members, labels = {}, {}  # cluster -> its vertices, drawn together in one subgraph; vertex -> its label
    for v in model.graph.vertices.values():
        if rep[v.name] == v.name and v.name in keep:
            members.setdefault(clusters.get(v.name), []).append(v)
            labels[v.name] = _label(v, values, grads, of)
    boxes = sorted({r for v, r in rep.items() if r != v and r in keep})  # collapsed groups
    labels.update({box: f"{box[:-2]}\n({sum(r == box for r in rep.values())} vertices)" for box in boxes})
    edges, collapsed_edges = [], set()
    for u, v, k in model.graph.nx.edges(keys=True):
        ru, rv = rep[u], rep[v]
        if ru == rv or ru not in keep or rv not in keep:
            continue
        if (ru, rv) == (u, v):
            edges.append(((u, v, k), _edge(model, (u, v, k), values, local)))
        elif (ru, rv) not in collapsed_edges:
            collapsed_edges.add((ru, rv))
            edges.append(((ru, rv, None), {"style": "bold"}))
    dot.attr(rankdir=_layout(labels, [e for e, _ in edges], labelled=any("label" in a for _, a in edges)))
    for cluster, vertices in members.items():
        with (dot.subgraph(name=f"cluster_{cluster}") if cluster else contextlib.nullcontext(dot)) as place:
            if cluster:
                place.attr(label=cluster, style="rounded,dashed", color="#adb5bd")
            for v in vertices:
                place.node(v.name, labels[v.name], id=f"v:{v.name}", **STYLE[v.kind])
    for box in boxes:
        dot.node(box, labels[box], **STYLE["group"])
    for (u, v, k), attrs in edges:
        dot.edge(u, v, **({"id": f"e:{u}:{v}:{k}"} if k is not None else {}), **attrs)
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


TARGET_ASPECT = 1.5  # width / height that reads well at a README's width
MAX_WIDTH = 10.0  # inches: about 900 px, a README's width, where text of 11 points is still read at full size
NODE_HEIGHT, LINE_HEIGHT, CHAR_WIDTH = 0.3, 0.17, 0.075  # inches, for Helvetica 11 as dot draws it
NODE_SEP, RANK_SEP, EDGE_LABEL = 0.25, 0.5, 0.35  # dot's default separations; room an edge label takes


def _title(model, values, of) -> str:
    """The name, then a legend saying what the numbers are: which are totals, which are local."""
    lines = [model.name]
    if values is not None:
        lines.append("vertex: name, op, value" + (f", and ∂{of}/∂v, the total derivative of {of} through every path"
                                                 if of else ""))
        scalar = all(np.size(v) == 1 for v in values.values())
        lines.append(f"edge x → y: the local derivative {LOCAL}y/∂x of y's op alone" if scalar
                     else "edge: the shape of the value it carries")
        lines[-1] += "; dashed: from a constant" if any(v.kind == "literal" for v in model.graph.vertices.values()) \
            else ""
    return "\n".join(lines)


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
    """Label an edge with its local derivative (scalar graphs) or the shape it carries; an edge from
    a literal is dashed (no gradient flows back to a constant) but labelled like the others."""
    u, v, k = edge
    tail = model.graph.vertices[u]
    attrs = {"style": "dashed"} if tail.kind == "literal" else {}
    if edge in local:
        attrs["label"] = format_number(local[edge])
    elif values is not None and np.size(values[u]) != 1:
        attrs["label"] = show_shape(np.shape(values[u]))
    elif values is None and tail.shape:
        attrs["label"] = show_shape(tail.shape)
    elif tail.kind == "literal":
        attrs["label"] = "constant"
    if model.graph.nx.number_of_edges(u, v) > 1:
        attrs["taillabel"] = f"#{k}"
    return attrs


def _layout(labels: dict, edges: list, labelled: bool) -> str:
    """The rankdir whose drawing fits MAX_WIDTH and comes closest to TARGET_ASPECT (else the narrower),
    from sizes estimated on the labels (dot is not run twice): a level of the graph is a row
    top-to-bottom, a column left-to-right.

    So a deep graph with wide layers (the lecture's network: inputs, two layers, softmax, loss)
    is drawn top-to-bottom, one layer a row, instead of a strip too long to read; a short chain
    left-to-right; a long thin one (stacked diamonds) top-to-bottom, the least bad of the two.
    """
    level = _levels(labels, edges)
    size = {v: _size(text) for v, text in labels.items()}
    rows = [[v for v in labels if level[v] == r] for r in range(max(level.values(), default=0) + 1)]
    gap = EDGE_LABEL if labelled else 0.0
    tb = (max(sum(size[v][0] + NODE_SEP for v in row) for row in rows),
          sum(max(size[v][1] for v in row) + RANK_SEP + gap for row in rows))
    lr = (sum(max(size[v][0] for v in row) + RANK_SEP + 2 * gap for row in rows),
          max(sum(size[v][1] + NODE_SEP for v in row) for row in rows))
    fitting = [o for o in (("LR", lr), ("TB", tb)) if o[1][0] <= MAX_WIDTH]
    if not fitting:
        return min((("LR", lr), ("TB", tb)), key=lambda o: o[1][0])[0]
    return min(fitting, key=lambda o: abs(math.log(o[1][0] / o[1][1] / TARGET_ASPECT)))[0]


def _levels(labels: dict, edges: list) -> dict:
    """Longest-path depth of each vertex; a source (input, parameter, constant) sits just above its
    first consumer rather than at the top, as dot draws it."""
    preds, succs = {v: [] for v in labels}, {v: [] for v in labels}
    for u, v, _ in edges:
        preds[v].append(u)
        succs[u].append(v)
    level, order = {}, _topological(labels, preds)
    for v in order:  # collapsed groups may feed each other both ways: a cycle, whose back edges are skipped
        level[v] = max((level[u] + 1 for u in preds[v] if u in level), default=0)
    for v in order:
        if not preds[v] and succs[v]:
            level[v] = max(min(level[w] for w in succs[v]) - 1, 0)
    return level


def _topological(labels: dict, preds: dict) -> list:
    done, order = set(), []
    remaining = list(labels)
    while remaining:
        ready = [v for v in remaining if all(u in done for u in preds[v])] or remaining[:1]
        done.update(ready)
        order += ready
        remaining = [v for v in remaining if v not in done]
    return order


def _size(label: str) -> tuple[float, float]:
    """(width, height) in inches dot gives a vertex with this label, roughly."""
    lines = label.split("\n")
    return max(len(line) for line in lines) * CHAR_WIDTH + 0.4, NODE_HEIGHT + LINE_HEIGHT * len(lines)


def _column_height(row_heights: list, columns: int) -> float:
    per = math.ceil(len(row_heights) / columns)
    return max(sum(row_heights[i:i + per]) for i in range(0, len(row_heights), per))


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
