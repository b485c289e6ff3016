"""What a model holds, as plain data: the counts and the vertex table (`graphdef show` and
`graphdef validate` print them) and the table of compiled steps (`graphdef plan`).

    s = summary(graphdef.load("models/lecture.yaml"))
    s.nodes, s.inputs, s.parameters          # 3, 2, 0
    s.rows[2]                                # ('c', 'node', 'add', '[]', '')
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ops.registry import show_shape

VERTEX_COLUMNS = ("vertex", "kind", "op", "shape", "call")
STEP_COLUMNS = ("#", "vertex", "op", "inputs", "attributes")  # then: on the backward path of OF


@dataclass(frozen=True)
class Summary:
    """A model's size, and its vertex table (`rows`, one per vertex in graph order, as vertex_table)."""

    name: str
    vertices: int  # every kind: inputs, parameters, state, constants, literals, nodes
    steps: int  # forward steps (one per node)
    nodes: int
    inputs: int
    parameters: int  # parameter arrays
    constants: int
    literals: int
    parameter_values: int  # the numbers in all parameter arrays
    state: int  # state arrays (running statistics): saved with the parameters, not trained by gradients
    rows: tuple[tuple[str, str, str, str, str], ...]


@dataclass(frozen=True)
class StepTable:
    """The forward steps in run order, marked when backward from `of` by `wrt` visits them."""

    of: str
    wrt: tuple[str, ...]
    header: tuple[str, ...]  # STEP_COLUMNS and "on the backward path of OF"
    rows: tuple[tuple[str, ...], ...]  # (#, vertex, op, inputs, attributes, "yes" or "")
    backward: int  # how many of the steps backward visits


def vertex_table(model) -> tuple[tuple[str, str, str, str, str], ...]:
    """One row of VERTEX_COLUMNS per vertex, in graph order: name, kind, op, shape as written in
    YAML, and the function call it was expanded from; "" where there is none."""
    return tuple((v.name, v.kind, v.op.name if v.op else "", show_shape(v.shape), v.call or "")
                 for v in model.graph.vertices.values())


def summary(model) -> Summary:
    """How many vertices of each kind, steps and parameter values a model has, and its vertex table."""
    kinds = [v.kind for v in model.graph.vertices.values()]
    return Summary(name=model.name, vertices=len(model.graph), steps=len(model.steps),
                   nodes=kinds.count("node"), inputs=kinds.count("input"), parameters=kinds.count("parameter"),
                   constants=kinds.count("constant"), literals=kinds.count("literal"),
                   parameter_values=int(sum(p.size for p in model.parameters.values())), state=kinds.count("state"),
                   rows=vertex_table(model))


def step_table(model, of: str | None = None, wrt=None) -> StepTable:
    """The compiled plan's forward steps for ∂of/∂wrt (defaults as Model.resolve: the loss, else the
    output; every input and parameter), each with its op, inputs, bound attributes and whether the
    backward sweep visits it."""
    of, wrt = model.resolve(of, wrt)
    backward = model.backward_plan(of, tuple(wrt))[0]
    rows = tuple((str(i), s.name, s.op.name, ", ".join(s.inputs), ", ".join(f"{k}={v}" for k, v in s.attrs.items()),
                  "yes" if s in backward else "") for i, s in enumerate(model.steps))
    return StepTable(of, tuple(wrt), (*STEP_COLUMNS, f"on the backward path of {of}"), rows, len(backward))
