"""What the fast load path must keep: the shortcuts that make large files load quickly (scalars built once
per text, limits counted while building, attributes bound once per op, shape rules asked once per kind of
node, the graph without NetworkX) change no result and lose no error. Behaviour only, never timings."""
import copy
import datetime
import math

import numpy as np
import pytest

import graphdef
from graphdef import GraphDefError, Limits
from graphdef.format.source import parse

HEAD = "graphdef: 1\nname: fast\n"


def chain(n: int, first: int = 0) -> str:
    ops = ("tanh", "sigmoid", "neg", "exp")
    nodes = "".join(f"  v{i + 1}: {{op: {ops[i % 4]}, inputs: [v{i}]}}\n" for i in range(first, n))
    return HEAD + "inputs:\n  v0: {shape: [4]}\nnodes:\n" + nodes + f"  total: {{op: sum, inputs: [v{n}]}}\n" \
        "outputs: [total]\nloss: total\n"


def test_yaml_values_keep_pyyaml_s_meaning():
    """YAML 1.1 as PyYAML reads it, however often a text repeats: yes/on are booleans, 1e-3 (no dot) and
    0o10 are strings, 010 is octal, 1:30 sexagesimal, dates are dates, keys may be numbers."""
    text = ("graphdef: 1\na: [yes, no, on, off, y, 1e-3, 1.0e-3, .inf, 010, 0o10, 0x1F, 1_000, 1:30, ~, '3', "
            "2001-12-14]\nb: [yes, 1.0e-3, 010, 1.0e-3]\nc: {1: one, 2.5: half, null: none}\nd: !!str 3\ne: !!float 1\n")
    data = parse(text).data
    assert data["a"] == [True, False, True, False, "y", "1e-3", 0.001, math.inf, 8, "0o10", 31, 1000, 90, None, "3",
                         datetime.date(2001, 12, 14)]
    assert data["b"] == [True, 0.001, 8, 0.001] and data["c"] == {1: "one", 2.5: "half", None: "none"}
    assert data["d"] == "3" and data["e"] == 1.0


def test_merge_and_value_keys_without_anchors():
    data = parse("graphdef: 1\ny: {<<: {p: 1}, q: 2}\nz: {=: 5}\n").data
    assert data["y"] == {"p": 1, "q": 2} and data["z"] == {"=": 5}


def test_positions_of_every_value():
    source = parse("graphdef: 1\nnodes:\n  c: {op: add, inputs: [a, 1]}\n")
    assert source.positions[("nodes", "c")] == (3, 3) and source.positions[("nodes", "c", "op")] == (3, 7)
    assert source.positions[("nodes", "c", "inputs", 1)] == (3, 28) and source.positions[()] == (1, 1)


@pytest.mark.parametrize("text, limits, message", [
    ("a: [[[[1]]]]\n", Limits(max_depth=4), "nests deeper than 4 levels"),
    ("a: {b: {c: {d: {e: 1}}}}\n", Limits(max_depth=4), "nests deeper than 4 levels"),
    ("a: [" + "1, " * 50 + "1]\n", Limits(max_values=50), "more than 50 values"),
    ("a: &a [1, 1, 1]\nb: [*a, *a, *a, *a, *a, *a]\n", Limits(max_values=20), "more than 20 values"),
])
def test_limits_hold_with_and_without_anchors(text, limits, message):
    with pytest.raises(GraphDefError, match=message):
        parse(text, "m.yaml", limits)


def test_limits_are_not_hit_by_a_document_within_them():
    assert parse("a: [[[1]]]\n", limits=Limits(max_depth=4)).data == {"a": [[[1]]]}
    assert len(parse("a: [" + "1, " * 46 + "1]\n", limits=Limits(max_values=50)).data["a"]) == 47


def test_a_long_chain_loads_as_written():
    model = graphdef.loads(chain(300))
    assert len(model.steps) == 301 and model.graph.vertices["v300"].shape == (4,)
    assert model.graph.order == list(model.graph.vertices)
    x = np.linspace(-1, 1, 4)
    assert model.gradients({"v0": x}, method="numeric")["v0"] == pytest.approx(model.gradients({"v0": x})["v0"],
                                                                                  rel=1e-5)


def test_nodes_written_after_their_users_are_ordered_by_their_inputs():
    text = HEAD + "inputs:\n  x: {shape: []}\nnodes:\n  c: {op: mul, inputs: [b, b]}\n  b: {op: exp, inputs: [a]}\n" \
        "  a: {op: neg, inputs: [x]}\noutputs: [c]\n"
    model = graphdef.loads(text)
    assert model.graph.order == ["x", "a", "b", "c"] and [s.name for s in model.steps] == ["a", "b", "c"]
    assert model.forward({"x": 1.0})["c"] == pytest.approx(math.exp(-1) ** 2)


def test_every_node_like_another_still_gets_its_own_error():
    """A failed rule is not remembered: each node that repeats a mistake is reported at its own line."""
    text = HEAD + "inputs:\n  x: {shape: [3]}\n  y: {shape: [2]}\n  i: {shape: [3], dtype: int64}\nnodes:\n" \
        "  a: {op: exp, inputs: [i]}\n  b: {op: exp, inputs: [i]}\n  c: {op: reshape, inputs: [x]}\n" \
        "  d: {op: reshape, inputs: [x]}\n  e: {op: add, inputs: [x, y]}\n  f: {op: add, inputs: [x, y]}\n" \
        "  g: {op: add, inputs: [x, x]}\noutputs: [a, b, c, d, e, f, g]\n"
    with pytest.raises(GraphDefError) as info:
        graphdef.loads(text)
    assert sorted(p.line for p in info.value.errors) == [8, 9, 10, 11, 12, 13], str(info.value)


def test_nodes_giving_no_attributes_get_every_default_and_their_own_output():
    text = HEAD + "inputs:\n  x: {shape: [2, 3]}\nnodes:\n  s: {op: sum, inputs: [x]}\n  t: {op: sum, inputs: [x]}\n" \
        "  u: {op: sum, inputs: [x], axis: 0}\n  p: {op: split, inputs: [x], sections: 3, axis: 1}\n" \
        "outputs: [s, t, u, p]\n"
    vertices = graphdef.loads(text).graph.vertices
    assert dict(vertices["s"].attrs) == dict(vertices["t"].attrs) == {"axis": None, "keepdims": False}
    assert vertices["u"].attrs["axis"] == 0 and vertices["u"].shape == (3,) and vertices["s"].shape == ()
    assert [vertices[n].attrs["output"] for n in ("p", "p/1", "p/2")] == [0, 1, 2]


def test_vertices_are_immutable_records():
    vertex = graphdef.load("models/lecture.yaml").graph.vertices["e"]
    with pytest.raises(AttributeError):
        vertex.shape = (2,)
    with pytest.raises(TypeError):
        vertex.attrs["x"] = 1
    assert vertex.differentiable and not vertex.batchable and (vertex.line, vertex.column) == (15, 3)


def test_the_graph_s_own_lookups():
    graph = graphdef.load("models/lecture.yaml").graph
    assert len(graph) == 6 and "d[1]" in graph and list(graph) == ["a", "b", "c", "d", "e", "d[1]"]
    assert graph.successors("b") == ["c", "d"] and graph.predecessors("d") == ["b", "d[1]"]
    assert graph.reachable(["a"]) == {"a", "c", "e"} and graph.ancestors(["c"]) == {"a", "b", "c"}
    assert [v.name for v in graph.of_kind("input")] == ["a", "b"] and [s.name for s in graph.steps] == ["c", "d", "e"]


def test_copying_the_graph_does_not_build_its_networkx_view():
    graph = graphdef.load("models/lecture.yaml").graph
    twin = copy.copy(graph)
    assert list(twin.vertices) == list(graph.vertices) and twin.order == graph.order and not hasattr(graph, "_nx")
    assert "nx" not in vars(graph) and "nx" not in vars(twin)  # a cached_property: built on first use only
    assert twin.nx.number_of_edges() == 6 and "nx" in vars(twin)


def test_a_model_without_calls_then_one_with_calls():
    """The standard library is read only for a call; a later model calling it still finds it."""
    graphdef.load("models/lecture.yaml")
    model = graphdef.loads(HEAD + "inputs:\n  x: {shape: [3]}\nnodes:\n  h: {op: dense, inputs: [x], in: 3, out: 2}\n"
                           "outputs: [h]\n")
    assert set(model.parameters) == {"h/W", "h/b"}
    with pytest.raises(GraphDefError, match="unknown op 'dens'"):
        graphdef.loads(HEAD + "inputs:\n  x: {shape: [3]}\nnodes:\n  h: {op: dens, inputs: [x]}\noutputs: [h]\n")


def test_copies_of_an_aliased_list_are_separate():
    data = parse("graphdef: 1\na: &l [1, [2, 3]]\nb: *l\n").data
    data["b"][1].append(4)
    assert data["a"] == [1, [2, 3]] and data["b"] == [1, [2, 3, 4]]
