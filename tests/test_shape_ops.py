"""Shape and indexing ops end to end: what the registry-generated tests cannot reach.

Models using them through graphdef.loads (split's several outputs, embedding lookups on int64
tokens, bool masks, a shared value joining a batch), ONNX Slice's edge cases and the exports
against onnxruntime, values of every dtype passing through, and the errors a user sees.
"""
import numpy as np
import pytest

import graphdef
from batch_cases import B, check_batch_equivalence, close, run_onnxruntime
from graphdef.engine.lift import PER_SAMPLE, batched_vertices, lift_of
from graphdef.ops import OPS

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
gx = pytest.importorskip("graphdef.onnx")


def model(inputs: str, nodes: str, outputs: str, extra: str = "") -> graphdef.Model:
    return graphdef.loads(f"graphdef: 1\nname: t\ninputs: {inputs}\n{extra}nodes:\n{nodes}\noutputs: {outputs}\n")


def exports_like_graphdef(m: graphdef.Model, feeds: dict) -> None:
    """The model's ONNX export, run by onnxruntime on these feeds, gives graphdef's outputs."""
    theirs = run_onnxruntime(gx.export(m), feeds)
    ours = m.forward(feeds)
    for name, value in theirs.items():
        close(ours[name], value, f"ONNX {name}", rtol=1e-12, atol=1e-14)


# -- split: one vertex per part ------------------------------------------------------------

def test_split_gives_one_vertex_per_part():
    """sections: a list of sizes (torch.split), or an int: the number of equal parts (not torch's chunk size)."""
    m = model("{x: {shape: [2, 6]}}", "  p: {op: split, inputs: [x], sections: [1, 2, 3], axis: -1}\n"
              "  q: {op: split, inputs: [x], sections: 3, axis: 1}", "[p, p/1, p/2, q, q/1, q/2]")
    x = np.arange(12.0).reshape(2, 6)
    values = m.forward({"x": x})
    for name, part in [("p", x[:, :1]), ("p/1", x[:, 1:3]), ("p/2", x[:, 3:]),
                       ("q", x[:, :2]), ("q/1", x[:, 2:4]), ("q/2", x[:, 4:])]:
        close(values[name], part, name)


def test_split_gradient_reaches_each_part():
    m = model("{x: {shape: [6]}}",
              "  p: {op: split, inputs: [x], sections: 3}\n  a: {op: mul, inputs: [p, p/2]}\n"
              "  b: {op: add, inputs: [a, p/1]}\n  loss: {op: sum, inputs: [b]}", "[loss]")
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    close(m.gradients({"x": x})["x"], [5.0, 6.0, 1.0, 1.0, 1.0, 2.0], "∂loss/∂x")
    check_batch_equivalence(m, {"x": np.random.default_rng(0).normal(size=(B, 6))}, {"x"})
    parts = [step for step in m.steps if step.op.name == "split"]
    assert len(parts) == 3
    assert all(lift_of(m.graph, step, batched_vertices(m.graph, {"x"})) is not PER_SAMPLE for step in parts)


@pytest.mark.parametrize("sections", ["3", "[1, 0, 2, 3]"])
def test_split_exports_each_part(sections):
    count = 3 if sections == "3" else 4
    m = model("{x: {shape: [6, 2]}}", f"  p: {{op: split, inputs: [x], sections: {sections}}}",
              "[" + ", ".join(["p"] + [f"p/{i}" for i in range(1, count)]) + "]")
    exports_like_graphdef(m, {"x": np.random.default_rng(1).normal(size=(B, 6, 2))})


def test_split_sizes_must_fit_the_axis():
    with pytest.raises(graphdef.GraphDefError, match="cannot cut axis 0 .size 5. into 2 equal parts"):
        model("{x: {shape: [5]}}", "  p: {op: split, inputs: [x], sections: 2}", "[p]")
    with pytest.raises(graphdef.GraphDefError, match=r"sections \[1, 2\] add up to 3, but axis 0 has size 5"):
        model("{x: {shape: [5]}}", "  p: {op: split, inputs: [x], sections: [1, 2]}", "[p]")


# -- slice: ONNX Slice, edge cases included ---------------------------------------------------

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
SLICES = [([1], [3], None, None), ([-1], [INT64_MIN], [0], [-1]), ([INT64_MAX], [INT64_MIN], [1], [-2]),
          ([-10], [-20], [0], [-1]), ([-100], [100], [1], [1]), ([3], [1], [0], [1]),
          ([2, 0], [-1, 4], [1, 0], [1, 3]), ([10], [-10], [-1], [-3]), ([0], [4], [0], [-1])]


@pytest.mark.parametrize("starts, ends, axes, steps", SLICES)
def test_slice_is_onnx_slice(starts, ends, axes, steps):
    """Against onnxruntime's Slice itself: negative bounds, clamping, INT64 sentinels, negative steps."""
    h, T = onnx.helper, onnx.TensorProto
    x = np.arange(20.0).reshape(4, 5)
    given = {k: v for k, v in dict(starts=starts, ends=ends, axes=axes, steps=steps).items() if v is not None}
    constants = [onnx.numpy_helper.from_array(np.array(v, np.int64), k) for k, v in given.items()]
    graph = h.make_graph([h.make_node("Slice", ["x", *given], ["y"])], "s",
                         [h.make_tensor_value_info("x", T.DOUBLE, x.shape)],
                         [h.make_tensor_value_info("y", T.DOUBLE, None)], constants)
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    attrs = OPS["slice"].bind({"starts": starts, "ends": ends, "axes": axes, "steps": steps})
    ours = OPS["slice"].forward(x, **attrs)
    close(ours, run_onnxruntime(proto, {"x": x})["y"], "slice")
    assert ours.shape == OPS["slice"].shape(x.shape, **attrs)


def test_slice_attributes_are_checked():
    with pytest.raises(graphdef.GraphDefError, match="one start, end, axis and step per sliced axis"):
        model("{x: {shape: [4]}}", "  s: {op: slice, inputs: [x], starts: [0, 1], ends: [2]}", "[s]")
    with pytest.raises(graphdef.GraphDefError, match="steps cannot be 0"):
        model("{x: {shape: [4]}}", "  s: {op: slice, inputs: [x], starts: [0], ends: [2], steps: [0]}", "[s]")
    with pytest.raises(graphdef.GraphDefError, match="repeats an axis"):
        model("{x: {shape: [4, 4]}}", "  s: {op: slice, inputs: [x], starts: [0, 1], ends: [2, 3], axes: [1, -1]}",
              "[s]")


# -- gather: embedding lookups on int64 tokens ------------------------------------------------

EMBEDDING = model("{tokens: {shape: [5], dtype: int64}}",
                  "  e: {op: gather, inputs: [table, tokens]}\n  s: {op: mul, inputs: [e, e]}\n"
                  "  loss: {op: sum, inputs: [s]}", "[e, loss]",
                  "parameters:\n  table: {shape: [4, 3], init: normal}\n")


def test_embedding_lookup_gradient_adds_up_repeated_tokens():
    tokens = np.array([2, 0, 2, 3, 2])
    table = EMBEDDING.parameters["table"]
    values, grads = EMBEDDING.value_and_gradients({"tokens": tokens}, of="loss")
    close(values["e"], table[tokens], "rows of the table")
    expected = 2 * table * np.bincount(tokens, minlength=4)[:, None]  # ∂Σe²/∂row = 2·row per use
    close(grads["table"], expected, "∂loss/∂table")


def test_a_batch_of_token_sequences_shares_the_table():
    tokens = np.random.default_rng(2).integers(0, 4, size=(B, 5))
    values, grads = EMBEDDING.value_and_gradients({"tokens": tokens}, of="loss", wrt=["table"])
    per = [EMBEDDING.value_and_gradients({"tokens": t}, of="loss", wrt=["table"]) for t in tokens]
    close(values["e"], np.stack([v["e"] for v, _ in per]), "the lookups of each sample")
    close(grads["table"], sum(g["table"] for _, g in per), "∂loss/∂table: summed over the samples")
    step = EMBEDDING.steps[0]
    assert lift_of(EMBEDDING.graph, step, batched_vertices(EMBEDDING.graph, {"tokens"})) is not PER_SAMPLE
    exports_like_graphdef(EMBEDDING, {"tokens": tokens})


def test_gather_keeps_the_dtype_of_what_it_reads():
    m = model("{x: {shape: [3, 2], dtype: int64}, i: {shape: [4], dtype: int64}}",
              "  g: {op: gather, inputs: [x, i]}\n  h: {op: gather, inputs: [x, i], axis: -2}", "[g, h]")
    x, i = np.arange(6).reshape(3, 2), np.array([2, 2, 0, 1])
    values = m.forward({"x": x, "i": i})
    assert m.graph.vertices["g"].dtype == "int64" and values["g"].dtype == np.int64
    np.testing.assert_array_equal(values["g"], x[i])
    np.testing.assert_array_equal(values["h"], x[i])


def test_gather_indices_must_be_integers():
    with pytest.raises(graphdef.GraphDefError, match=r"input 2 must hold integers \(int64\)"):
        model("{x: {shape: [3]}, i: {shape: [2]}}", "  g: {op: gather, inputs: [x, i]}", "[g]")


# -- where: bool masks ---------------------------------------------------------------------------

MASKED = model("{mask: {shape: [2, 3], dtype: bool}, x: {shape: [2, 3]}}",
               "  w: {op: where, inputs: [mask, x, fill]}\n  loss: {op: sum, inputs: [w]}", "[w, loss]",
               "parameters:\n  fill: {value: [1.0, 2.0, 3.0]}\n")


def test_where_routes_values_and_gradients_by_the_mask():
    mask = np.array([[True, False, True], [False, False, True]])
    x = np.arange(6.0).reshape(2, 3)
    values, grads = MASKED.value_and_gradients({"mask": mask, "x": x}, of="loss")
    close(values["w"], np.where(mask, x, [1.0, 2.0, 3.0]), "w")
    close(grads["x"], mask.astype(float), "∂loss/∂x")
    close(grads["fill"], (~mask).sum(axis=0), "∂loss/∂fill: summed over the rows it fills")
    rng = np.random.default_rng(3)
    feeds = {"mask": rng.random((B, 2, 3)) < 0.5, "x": rng.normal(size=(B, 2, 3))}
    exports_like_graphdef(MASKED, feeds)


def test_where_needs_a_bool_condition():
    with pytest.raises(graphdef.GraphDefError, match="the condition must hold booleans"):
        model("{c: {shape: [2]}, x: {shape: [2]}}", "  w: {op: where, inputs: [c, x, x]}", "[w]")


# -- joins: a shared value meets a batch ------------------------------------------------------

JOINS = model("{x: {shape: [2, 3]}}",
              "  c: {op: concat, inputs: [x, row], axis: 0}\n  s: {op: stack, inputs: [plane, x], axis: -1}\n"
              "  a: {op: sum, inputs: [c]}\n  b: {op: sum, inputs: [s]}\n  loss: {op: add, inputs: [a, b]}",
              "[c, s, loss]",
              "parameters:\n  row: {shape: [1, 3], init: normal}\n  plane: {shape: [2, 3], init: normal}\n")


def test_a_shared_parameter_joins_each_sample():
    x = np.random.default_rng(4).normal(size=(B, 2, 3))
    row, plane = JOINS.parameters["row"], JOINS.parameters["plane"]
    values, grads = JOINS.value_and_gradients({"x": x}, of="loss")
    assert values["c"].shape == (B, 3, 3) and values["s"].shape == (B, 2, 3, 2)
    close(values["c"][:, 2], np.broadcast_to(row[0], (B, 3)), "the row appended to every sample")
    close(values["s"][..., 0], np.broadcast_to(plane, (B, 2, 3)), "the plane stacked with every sample")
    for name, shape in [("row", (1, 3)), ("plane", (2, 3))]:
        close(grads[name], np.full(shape, float(B)), f"∂loss/∂{name}: one from every sample")
    check_batch_equivalence(JOINS, {"x": x}, {"x"}, of="loss")
    exports_like_graphdef(JOINS, {"x": x})


def test_concat_needs_matching_sizes():
    with pytest.raises(graphdef.GraphDefError, match=r"concat needs equal sizes on every axis but 1: \[2, 3\] and "
                                                     r"\[3, 1\] differ on axis 0"):
        model("{x: {shape: [2, 3]}, y: {shape: [3, 1]}}", "  c: {op: concat, inputs: [x, y], axis: 1}", "[c]")


# -- scalars, batches of one, dtypes -------------------------------------------------------

def test_scalar_samples():
    m = model("{x: {shape: []}, y: {shape: []}}",
              "  s: {op: stack, inputs: [x, y]}\n  f: {op: flatten, inputs: [x]}\n"
              "  u: {op: unsqueeze, inputs: [y], axis: [0, -1]}\n  e: {op: expand, inputs: [x], shape: [2]}",
              "[s, f, u, e]")
    one = m.forward({"x": 1.5, "y": -2.0})
    close(one["s"], [1.5, -2.0], "stack")
    assert one["f"].shape == (1,) and one["u"].shape == (1, 1) and one["e"].shape == (2,)
    rng = np.random.default_rng(5)
    check_batch_equivalence(m, {"x": rng.normal(size=B), "y": rng.normal(size=B)}, {"x", "y"}, of="s")
    check_batch_equivalence(m, {"x": rng.normal(size=B), "y": 0.5}, {"x"}, of="s")


def test_squeeze_keeps_a_batch_of_one():
    m = model("{x: {shape: [1, 3, 1]}}", "  s: {op: squeeze, inputs: [x]}", "[s]")
    assert m.forward({"x": np.ones((1, 1, 3, 1))})["s"].shape == (1, 3)
    assert m.forward({"x": np.ones((1, 3, 1))})["s"].shape == (3,)
    with pytest.raises(graphdef.GraphDefError, match="axis 1 of .1, 3, 1. has size 3"):
        model("{x: {shape: [1, 3, 1]}}", "  s: {op: squeeze, inputs: [x], axis: 1}", "[s]")


def test_moved_values_keep_their_dtype():
    m = model("{b: {shape: [2, 3], dtype: bool}, i: {shape: [2, 3], dtype: int64}}",
              "  p: {op: pad, inputs: [b], pads: [1, 1]}\n  t: {op: flatten, inputs: [i]}\n"
              "  s: {op: slice, inputs: [i], starts: [-1], ends: [-4], axes: [1], steps: [-1]}",
              "[p, t, s]")
    b, i = np.array([[True, False, True]] * 2), np.arange(6).reshape(2, 3)
    values = m.forward({"b": b, "i": i})
    assert values["p"].dtype == bool and values["t"].dtype == values["s"].dtype == np.int64
    np.testing.assert_array_equal(values["p"], np.pad(b, [(0, 0), (1, 1)]))
    np.testing.assert_array_equal(values["s"], i[:, ::-1])


# -- pad -------------------------------------------------------------------------------------

def test_pad_modes():
    pad = OPS["pad"]
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(pad.forward(x, **pad.bind({"pads": [1, 2, 2, 0], "mode": "edge"})),
                                  pad.forward(x, **pad.bind({"pads": [1, 2, 2, 0], "mode": "replicate"})))
    np.testing.assert_array_equal(pad.forward(x, **pad.bind({"pads": [3, 2], "mode": "reflect"})),
                                  np.pad(x, [(0, 0), (3, 2)], "reflect"))
    cropped = pad.forward(x, **pad.bind({"pads": [-1, 2, 0, -2], "value": 7.0}))
    np.testing.assert_array_equal(cropped, np.pad(x[:1, 1:], [(0, 0), (0, 2)], constant_values=7.0))


@pytest.mark.parametrize("attrs, message", [
    ("pads: [4, 0], mode: reflect", "reflect padding by 4 needs a longer axis 1"),
    ("pads: [1, 1, 1]", "odd length"),
    ("pads: [0, 0, 0, 0, 1, 1]", "pad 3 axes, but the input .2, 4. has 2"),
    ("pads: [-1, 0], mode: edge", "negative pads crop, in constant mode only"),
    ("pads: [1, 1], mode: wrap", "pad mode must be one of")])
def test_pad_errors(attrs, message):
    with pytest.raises(graphdef.GraphDefError, match=message):
        model("{x: {shape: [2, 4]}}", f"  p: {{op: pad, inputs: [x], {attrs}}}", "[p]")


def test_expand_errors():
    with pytest.raises(graphdef.GraphDefError, match="only size-1 axes expand"):
        model("{x: {shape: [2, 3]}}", "  e: {op: expand, inputs: [x], shape: [4, 3]}", "[e]")
    with pytest.raises(graphdef.GraphDefError, match="-1 to keep an axis of the input"):
        model("{x: {shape: [3]}}", "  e: {op: expand, inputs: [x], shape: [-1, 3]}", "[e]")


def test_cast_like_turns_integers_and_booleans_into_floats():
    m = graphdef.loads("graphdef: 1\nname: c\ninputs:\n  ids: {shape: [3], dtype: int64}\n  mask: {shape: [3], dtype: bool}\n"
                       "  x: {shape: [3]}\nnodes:\n  f: {op: cast_like, inputs: [ids, x]}\n"
                       "  m: {op: cast_like, inputs: [mask, x]}\n  y: {op: mul, inputs: [f, m]}\n"
                       "  s: {op: mul, inputs: [y, x]}\n  t: {op: sum, inputs: [s]}\n  i: {op: cast_like, inputs: [x, ids]}\n"
                       "outputs: [t, i]\n")
    assert m.graph.vertices["f"].dtype == "float64" and m.graph.vertices["i"].dtype == "int64"
    feeds = {"ids": [[1, 2, 3], [4, 5, 6]], "mask": [[True, False, True]] * 2, "x": [1.0, 1.0, -2.5]}
    values, grads = m.value_and_gradients(feeds, of="t", wrt=["x"])
    close(values["t"], [1 - 7.5, 4 - 15], "sum of ids × mask × x")
    close(grads["x"], [1 + 4, 0, 3 + 6], "gradient through the casts")
    assert values["i"].dtype == np.int64 and values["i"].tolist() == [[1, 1, -2]] * 2  # toward 0, as ONNX; per sample
