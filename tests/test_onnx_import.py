"""ONNX import's core: symbolic sizes, the shape arithmetic of dynamic-batch exports, folding, integers, naming."""
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdef

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
gx = pytest.importorskip("graphdef.onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from batch_cases import run_onnxruntime  # noqa: E402
from graphdef.tools.onnx.dims import Dim  # noqa: E402
from graphdef.tools.onnx.proto import Unsupported  # noqa: E402

# -- symbolic sizes ----------------------------------------------------------------------------

SYMBOLS = ("batch", "seq")
EXPRESSIONS = st.recursive(st.one_of(st.integers(-4, 9), st.sampled_from(SYMBOLS)),
                           lambda inner: st.tuples(st.sampled_from("+-*"), inner, inner), max_leaves=8)


def evaluate(expression, values):
    """An expression tree on Dims (values None) or on numbers (values: symbol -> int)."""
    if isinstance(expression, tuple):
        op, a, b = expression
        return {"+": operator.add, "-": operator.sub, "*": operator.mul}[op](evaluate(a, values), evaluate(b, values))
    if isinstance(expression, str):
        return Dim.symbol(expression) if values is None else values[expression]
    return expression


def substitute(size, values) -> int:
    if not isinstance(size, Dim):
        return size
    return sum(c * int(np.prod([values[s] for s in m])) for m, c in size.terms.items())


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS, st.fixed_dictionaries({s: st.integers(1, 50) for s in SYMBOLS}))
def test_size_arithmetic_agrees_with_numbers(expression, values):
    """A polynomial in the free sizes, evaluated symbolically then at numbers, is the numbers' result."""
    assert substitute(evaluate(expression, None), values) == evaluate(expression, values)


@settings(max_examples=200, deadline=None)
@given(EXPRESSIONS, st.integers(1, 6), st.sampled_from(SYMBOLS),
       st.fixed_dictionaries({s: st.integers(1, 50) for s in SYMBOLS}))
def test_exact_division_of_sizes(expression, k, symbol, values):
    """(e·k·s) // (k·s) is e, for every size s stands for; a division that is not exact is refused."""
    e = evaluate(expression, None)
    divisor = Dim.symbol(symbol) * k
    assert substitute((e * divisor) // divisor, values) == substitute(e, values)
    with pytest.raises(Unsupported):
        _ = (Dim.symbol(symbol) * 2 + 1) // Dim.symbol(symbol)


def test_a_size_is_generic():
    """A symbolic size is no particular number and exceeds any constant: broadcasting with 1 keeps it."""
    b = Dim.symbol("batch")
    assert b != 1 and b > 10**9 and max(b, 1) is b and b * 2 == 2 * b and (b * 6) // 6 == b
    assert (b * 4) % 2 == 0 and b - b == 0 and isinstance(b * 3 // b, int)


# -- building ONNX graphs ------------------------------------------------------------------------

def graph(nodes, inputs, outputs=("y",), inits=(), opset=18):
    return h.make_model(h.make_graph(nodes, "g", inputs, [h.make_tensor_value_info(o, T.FLOAT, None) for o in outputs],
                                     list(inits)), opset_imports=[h.make_opsetid("", opset)])


def ints(name, values):
    return nh.from_array(np.asarray(values, np.int64), name)


def same_as_onnxruntime(proto, feeds, rtol=1e-6):
    model = gx.from_proto(proto)
    ours = model.forward({gx.model_name(model, k): v for k, v in feeds.items()})
    for name, value in run_onnxruntime(proto, feeds).items():
        got = ours[gx.model_name(model, name)]
        assert np.shape(got) == np.shape(value), name
        np.testing.assert_allclose(got, value, rtol=rtol, atol=1e-6, err_msg=name)
    return model


def shape_chain(rng, rank: int):
    """A random reshape target computed as exporters write it: Shape, Gather of sizes, arithmetic, Concat."""
    nodes = [h.make_node("Shape", ["x"], ["s"])]
    pieces = []
    for axis in rng.permutation(rank)[:rng.integers(1, rank + 1)]:
        nodes.append(h.make_node("Gather", ["s", f"i{axis}"], [f"d{axis}"], axis=0))
        pieces.append(f"d{axis}")
    product = pieces[0]
    for k, piece in enumerate(pieces[1:]):
        nodes.append(h.make_node("Mul", [product, piece], [f"p{k}"]))
        product = f"p{k}"
    nodes += [h.make_node("Unsqueeze", [product, "zero"], ["u"]),
              h.make_node("Concat", ["u", "minus_one"], ["target"], axis=0),
              h.make_node("Reshape", ["x", "target"], ["r"]),
              h.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
              h.make_node("Flatten", ["t"], ["f"], axis=1),
              h.make_node("Relu", ["f"], ["y"])]
    inits = [ints(f"i{a}", a) for a in range(rank)] + [ints("zero", [0]), ints("minus_one", [-1])]
    return nodes, inits


@pytest.mark.parametrize("seed", range(12))
def test_dynamic_batch_shape_arithmetic_imports_with_a_free_batch(seed):
    """The class of exporters' shape subgraphs: any product of sizes read from Shape, as a Reshape target,
    imports and runs at batch sizes other than the export's, equal to onnxruntime."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(2, 5))
    sizes = ["batch"] + [int(d) for d in rng.integers(1, 4, rank - 1)]
    nodes, inits = shape_chain(rng, rank)
    proto = graph(nodes, [h.make_tensor_value_info("x", T.FLOAT, sizes)], inits=inits)
    for batch in (1, 3, 5):
        x = rng.normal(size=[batch, *sizes[1:]]).astype(np.float32)
        same_as_onnxruntime(proto, {"x": x})


def test_torch_style_head_split_with_free_batch():
    """MultiheadAttention's exported pattern: [T, B·H, D] from Shape(x)[1] · heads, then back."""
    x = h.make_tensor_value_info("x", T.FLOAT, [6, "batch", 16])
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Gather", ["s", "one"], ["b"], axis=0),
             h.make_node("Mul", ["b", "heads"], ["bh"]), h.make_node("Unsqueeze", ["bh", "zero"], ["ubh"]),
             h.make_node("Concat", ["six", "ubh", "eight"], ["target"], axis=0),
             h.make_node("Reshape", ["x", "target"], ["split"]),
             h.make_node("Transpose", ["split"], ["t"], perm=[1, 0, 2]),
             h.make_node("Shape", ["x"], ["s2"]), h.make_node("Reshape", ["t", "back"], ["y0"]),
             h.make_node("Identity", ["y0"], ["y"])]
    inits = [ints("one", 1), ints("heads", 2), ints("zero", [0]), ints("six", [6]), ints("eight", [8]),
             ints("back", [-1, 6, 8])]
    proto = graph(nodes, [x], inits=inits)
    for batch in (1, 4):
        same_as_onnxruntime(proto, {"x": np.random.default_rng(batch).normal(size=(6, batch, 16)).astype(np.float32)})


def test_known_values_are_folded_and_scalars_are_constants():
    """A computation on constants runs once, at import (ONNX's reference): no graphdef node is left of it;
    a one-value float initializer is a constant, a larger one a parameter."""
    nodes = [h.make_node("Constant", [], ["c"], value=nh.from_array(np.arange(3, dtype=np.float32))),
             h.make_node("Exp", ["c"], ["e"]), h.make_node("Mul", ["e", "scale"], ["k"]),
             h.make_node("Mul", ["x", "k"], ["xk"]), h.make_node("Add", ["xk", "w"], ["y"])]
    inits = [nh.from_array(np.float32(0.5), "scale"), nh.from_array(np.ones(3, np.float32), "w")]
    proto = graph(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["batch", 3])], inits=inits)
    model = same_as_onnxruntime(proto, {"x": np.ones((2, 3), np.float32)})
    assert len(model.steps) == 2 and list(model.parameters) == ["w"] and "scale" not in model.parameters


def test_integer_inputs_import_as_integer_inputs():
    """Token ids: an int64 graph input stays integer and indexes an embedding; the gradient reaches the table."""
    nodes = [h.make_node("Gather", ["table", "ids"], ["e"], axis=0),
             h.make_node("ReduceMean", ["e", "axes"], ["y"], keepdims=0)]
    inits = [nh.from_array(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32), "table"),
             ints("axes", [1])]
    proto = graph(nodes, [h.make_tensor_value_info("ids", T.INT64, ["batch", 5])], inits=inits)
    ids = np.random.default_rng(1).integers(0, 10, (3, 5))
    model = same_as_onnxruntime(proto, {"ids": ids})
    assert model.input_dtypes["ids"] == "int64"
    grads = model.gradients({"ids": ids}, of="y", wrt=["table"])
    expected = np.zeros((10, 4))
    np.add.at(expected, ids.ravel(), 1 / 5)
    np.testing.assert_allclose(grads["table"], expected, rtol=1e-6)


def test_split_outputs_keep_their_onnx_names():
    nodes = [h.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
             h.make_node("Sub", ["c", "a"], ["y"])]
    proto = graph(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["batch", 6])], outputs=("y", "b"))
    model = same_as_onnxruntime(proto, {"x": np.arange(12, dtype=np.float32).reshape(2, 6)})
    assert {"a", "y", "b"} <= set(model.graph)


def test_an_attribute_graphdef_cannot_honour_is_named():
    proto = graph([h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], storage_order=1)],
                  [h.make_tensor_value_info("x", T.FLOAT, [1, 1, 4, 4])])
    with pytest.raises(graphdef.GraphDefError, match="MaxPool ×1 .*storage_order"):
        gx.from_proto(proto)


def test_a_size_graphdef_cannot_know_is_a_clear_error():
    """Two sizes known only at run time in one Reshape target, neither kept in place: refused, naming the node's
    op and why ([batch, seq] viewed as [seq, batch])."""
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Gather", ["s", "swap"], ["t"], axis=0),
             h.make_node("Reshape", ["x", "t"], ["y"])]
    proto = graph(nodes, [h.make_tensor_value_info("x", T.FLOAT, ["batch", "seq"])], inits=[ints("swap", [1, 0])])
    with pytest.raises(graphdef.GraphDefError, match="Reshape ×1 .*more than one size known only at run time"):
        gx.from_proto(proto)


def test_imported_schemas_are_counted():
    imported, total = gx.imported_schemas()
    assert total > 150 and len(imported) >= 100
    assert {"Conv", "GRU", "LSTM", "RNN", "BatchNormalization", "Gather", "Einsum", "Shape"} <= set(imported)


# -- what import must refuse rather than guess ---------------------------------------------------

def batch_sizes(*nodes, inits=(), opset=18, x_type=T.FLOAT):
    """A model whose nodes read `b`, the batch size of x [B, 4], through Shape and Gather."""
    head = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Gather", ["s", "zero"], ["b"], axis=0)]
    return graph(head + list(nodes), [h.make_tensor_value_info("x", x_type, ["B", 4])],
                 inits=[ints("zero", 0), *inits], opset=opset)


REFUSED = {
    "a comparison with the batch size": (batch_sizes(h.make_node("Equal", ["b", "one"], ["e"]),
                                                     h.make_node("Where", ["e", "two", "one_f"], ["k"]),
                                                     h.make_node("Mul", ["x", "k"], ["y"]),
                                                     inits=[ints("one", 1), nh.from_array(np.float32(2), "two"),
                                                            nh.from_array(np.float32(1), "one_f")]),
                                         "comparison of the sizes B and 1"),
    "min of the batch size and 3": (batch_sizes(h.make_node("Min", ["b", "three"], ["m"]),
                                                h.make_node("Unsqueeze", ["m", "axes"], ["u"]),
                                                h.make_node("Slice", ["x", "start", "u"], ["y"]),
                                                inits=[ints("three", 3), ints("axes", [0]), ints("start", [0])]),
                                    "min of the sizes B and 3"),
    "a target with a different size": (batch_sizes(h.make_node("Mul", ["b", "two"], ["n"]),
                                                   h.make_node("Unsqueeze", ["n", "axes"], ["u"]),
                                                   h.make_node("Concat", ["u", "four"], ["t"], axis=0),
                                                   h.make_node("Reshape", ["x", "t"], ["y"]),
                                                   inits=[ints("two", 2), ints("axes", [0]), ints("four", [4])]),
                                       "not the same number of values"),
    "an index past the shape": (batch_sizes(h.make_node("Gather", ["s", "five"], ["g"], axis=0),
                                            h.make_node("Reshape", ["x", "g"], ["y"]), inits=[ints("five", [5])]),
                                "Gather): cannot be computed on the sizes it reads: index 5"),
    "a float scale of a size": (batch_sizes(h.make_node("Cast", ["b"], ["f"], to=T.FLOAT),
                                            h.make_node("Mul", ["f", "half"], ["y"]),
                                            inits=[nh.from_array(np.float32(0.5), "half")]),
                                "arithmetic on sizes known only at run time"),
    "a cast to int8 (it wraps)": (graph([h.make_node("Cast", ["x"], ["y"], to=T.INT8)],
                                        [h.make_tensor_value_info("x", T.FLOAT, [2])]), "Cast to int8"),
    "a split into too few outputs": (graph([h.make_node("Split", ["x", "parts"], ["y", "z"], axis=1)],
                                           [h.make_tensor_value_info("x", T.FLOAT, [2, 6])], outputs=("y", "z"),
                                           inits=[ints("parts", [2, 2, 2])]), "3 split sizes for 2 outputs"),
    "an opset newer than onnx knows": (graph([h.make_node("Relu", ["x"], ["y"])],
                                             [h.make_tensor_value_info("x", T.FLOAT, [2])], opset=999),
                                       "opset 999 is newer"),
    "GRU weights for two directions in a forward GRU": (
        graph([h.make_node("GRU", ["x", "w", "r"], ["y"], hidden_size=3)],
              [h.make_tensor_value_info("x", T.FLOAT, [5, "B", 4])],
              inits=[nh.from_array(np.ones((2, 9, 4), np.float32), "w"),
                     nh.from_array(np.ones((2, 9, 3), np.float32), "r")]), "W has shape [2, 9, 4]"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_import_cannot_know_or_the_file_gets_wrong_is_refused_by_name(case):
    """Classes the attacker found: a decision that depends on the batch size, malformed size arithmetic,
    narrow casts, mismatched counts and weights. Each a GraphDefError naming why, never a guess or a crash."""
    proto, words = REFUSED[case]
    with pytest.raises(graphdef.GraphDefError) as info:
        gx.from_proto(proto, file="m.onnx")
    assert words in str(info.value) and str(info.value).startswith("m.onnx")


def test_casts_from_booleans_and_no_blame_after_an_unsupported_node():
    """A mask made floats imports (it recursed); nodes after an op graphdef lacks are not called damaged."""
    proto = graph([h.make_node("Greater", ["x", "zero"], ["m"]), h.make_node("Cast", ["m"], ["f"], to=T.FLOAT),
                   h.make_node("Mul", ["x", "f"], ["y"])], [h.make_tensor_value_info("x", T.FLOAT, ["B", 3])],
                  inits=[nh.from_array(np.float32(0), "zero")])
    same_as_onnxruntime(proto, {"x": np.array([[-1, 2, 0.5], [3, -4, 0]], np.float32)})
    blamed = graph([h.make_node("Det", ["x"], ["d"]), h.make_node("Add", ["d", "k"], ["y"])],
                   [h.make_tensor_value_info("x", T.FLOAT, [3, 3])], inits=[ints("k", [1])])
    with pytest.raises(graphdef.GraphDefError) as info:
        gx.from_proto(blamed)
    assert "Det ×1" in str(info.value) and "damaged" not in str(info.value)


def test_dynamic_batch_and_sequence_keep_their_axes():
    """Attention's head split with a free batch and a free sequence: [B, T, 16] -> [B, T, 2, 8] and back is
    graphdef's reshape keeping the two leading axes (batch_dims), equal to onnxruntime at other sizes."""
    x = h.make_tensor_value_info("x", T.FLOAT, ["batch", "seq", 16])
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Gather", ["s", "first_two"], ["bt"], axis=0),
             h.make_node("Concat", ["bt", "heads"], ["split_to"], axis=0),
             h.make_node("Reshape", ["x", "split_to"], ["split"]),
             h.make_node("Transpose", ["split"], ["t"], perm=[0, 2, 1, 3]), h.make_node("Exp", ["t"], ["e"]),
             h.make_node("Transpose", ["e"], ["back"], perm=[0, 2, 1, 3]),
             h.make_node("Concat", ["bt", "width"], ["merge_to"], axis=0),
             h.make_node("Reshape", ["back", "merge_to"], ["y"])]
    proto = graph(nodes, [x], inits=[ints("first_two", [0, 1]), ints("heads", [2, 8]), ints("width", [16])])
    model = gx.from_proto(proto)
    assert all(n.attrs.get("batch_dims") for n in model.steps if n.op.name == "reshape")
    for batch, seq in [(1, 1), (2, 5), (3, 9)]:
        same_as_onnxruntime(proto, {"x": np.random.default_rng(seq).normal(size=(batch, seq, 16)).astype(np.float32)})
