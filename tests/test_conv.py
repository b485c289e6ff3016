"""Convolution and pooling: the edge cases the registry-generated tests do not reach.

PyTorch is the oracle for values and gradients (padding 'same' with even kernels, ceil_mode's
dropped window, ties in max pooling, a whole convolutional network), and checks the oracle of
dilated averages, which PyTorch lacks; shape errors name the sizes at fault; ONNX export runs in
onnxruntime with a kernel shared by the batch (the native Conv/ConvTranspose/AveragePool in float32,
the Einsum form in float64) and on a single sample.
"""
import json

import numpy as np
import pytest

import graphdef
from batch_cases import run_onnxruntime
from graphdef.ops import OPS
from graphdef.ops.pooling import _pool_window, _torch_window_mean

torch = pytest.importorskip("torch")
F = torch.nn.functional

CONV_OPS = ["conv1d", "conv2d", "conv_transpose2d"]
POOL_OPS = ["max_pool2d", "avg_pool2d", "global_avg_pool"]


def model_text(x_shape, node: dict, parameters=None, dtype="float64") -> str:
    parameters = parameters or {}
    return json.dumps({"graphdef": 1, "name": "one", "dtype": dtype, "inputs": {"x": {"shape": list(x_shape)}},
                       "parameters": {k: {"shape": list(s), "init": "normal"} for k, s in parameters.items()},
                       "nodes": {"out": node}, "outputs": ["out"]})


def test_padding_same_with_an_even_kernel_pads_more_after_as_pytorch_does():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 5, 6)), rng.normal(size=(3, 2, 2, 4))
    conv = OPS["conv2d"]
    ours = conv.forward(x, w, **conv.bind({"padding": "same", "dilation": [1, 3]}))
    theirs = F.conv2d(torch.tensor(x), torch.tensor(w), padding="same", dilation=(1, 3)).numpy()
    assert ours.shape == (3, 5, 6)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize("size, kernel, stride, padding", [(5, 2, 2, 1), (5, 3, 2, 1), (6, 3, 2, 0), (7, 2, 3, 1),
                                                          (4, 3, 2, 1), (8, 4, 3, 2)])
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_ceil_mode_keeps_the_windows_pytorch_keeps(name, size, kernel, stride, padding):
    """Rounding up adds a last window only when it starts inside the input or its padding before."""
    op = OPS[name]
    attrs = op.bind({"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": True})
    x = np.random.default_rng(size).normal(size=(2, size, size + 1))
    t = torch.tensor(x, requires_grad=True)
    theirs = op.torch_function()(t, **attrs)
    ours = op.forward(x, **attrs)
    assert ours.shape == theirs.shape == op.shape(x.shape, **attrs)
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12)
    g = np.random.default_rng(1).normal(size=ours.shape)
    (theirs * torch.tensor(g)).sum().backward()
    saved = op.saved(ours, x, **attrs)
    np.testing.assert_allclose(op.backward[0](g, saved, x, **attrs), t.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("size, kernel, stride, padding", [(5, 2, 2, 1), (5, 3, 2, 1), (7, 2, 3, 1), (8, 4, 3, 2)])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_the_oracle_of_dilated_averages_is_f_avg_pool2d_undilated(size, kernel, stride, padding, ceil_mode,
                                                                  count_include_pad):
    """PyTorch's avg_pool2d has no dilation: the oracle of a dilated one (depthwise convolutions by ones) counts
    cells as PyTorch does when its windows are not dilated."""
    win = _pool_window((size, size + 1), kernel, stride, padding, 1, ceil_mode)
    x = torch.tensor(np.random.default_rng(size).normal(size=(2, 3, size, size + 1)))
    np.testing.assert_allclose(_torch_window_mean(x, F, win, count_include_pad).numpy(),
                               F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad).numpy(),
                               rtol=1e-12)


def test_ceil_mode_drops_a_window_that_would_start_in_the_padding_after():
    attrs = OPS["avg_pool2d"].bind({"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True})
    assert OPS["avg_pool2d"].shape((1, 5, 5), **attrs) == (1, 3, 3)  # rounding up alone would give 4


def test_max_pool_gives_a_tie_s_gradient_to_the_first_largest_as_pytorch_does():
    op = OPS["max_pool2d"]
    attrs = op.bind({"kernel_size": 2, "stride": 1})
    x = np.ones((1, 3, 3))
    t = torch.tensor(x, requires_grad=True)
    op.torch_function()(t, **attrs).sum().backward()
    ours = op.backward[0](np.ones((1, 2, 2)), op.saved(None, x, **attrs), x, **attrs)
    np.testing.assert_array_equal(ours, t.grad.numpy())
    np.testing.assert_array_equal(ours[0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])


def test_global_avg_pool_takes_one_or_two_spatial_axes():
    op = OPS["global_avg_pool"]
    signal, image = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(1, 3, 4)
    np.testing.assert_array_equal(op.forward(signal, batch_dims=0), [[1.0], [4.0]])
    assert op.forward(image, batch_dims=0).shape == op.shape((1, 3, 4), batch_dims=0) == (1, 1, 1)


@pytest.mark.parametrize("name", CONV_OPS + POOL_OPS)
def test_float32_stays_float32(name):
    op = OPS[name]
    shapes, attrs = op.examples[0]
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=s).astype(np.float32) for s in shapes]
    attrs = op.bind(attrs)
    out = op.forward(*inputs, **attrs)
    assert out.dtype == np.float32
    g = np.ones_like(out)
    assert all(rule(g, op.saved(out, *inputs, **attrs), *inputs, **attrs).dtype == np.float32 for rule in op.backward)


@pytest.mark.parametrize("x, w, attrs, message", [
    ([3, 8, 8], [4, 2, 3, 3], {},
     r"x \[3, 8, 8\] has 3 channels, but w \[4, 2, 3, 3\] takes 2 per group × 1 group = 2"),
    ([4, 8, 8], [6, 2, 3, 3], {"groups": 3}, r"groups=3 does not divide the 4 channels of x \[4, 8, 8\]"),
    ([4, 8, 8], [5, 2, 3, 3], {"groups": 2}, r"groups=2 does not divide the 5 kernels of w \[5, 2, 3, 3\]"),
    ([1, 4, 8], [2, 1, 5, 3], {"padding": [0, 1]},
     r"the kernel reaches 5 along spatial axis 0, more than the padded input's 4 \(4\)"),
    ([1, 8, 2], [2, 1, 3, 3], {"dilation": 2, "padding": [0, 1]},
     r"reaches 5 \(3 dilated by 2\) along spatial axis 1, more than the padded input's 4 \(2 \+ padding 1 \+ 1\)"),
    ([1, 8, 8], [2, 1, 3, 3], {"padding": "same", "stride": 2}, "padding 'same' needs stride 1"),
    ([2, 1, 8, 8], [2, 1, 3, 3], {}, r"conv2d takes x \[C, H, W\] after batch_dims=0 sample axes, got \[2, 1, 8, 8\]"),
    ([1, 8, 8], [2, 1, 3, 3], {"batch_dims": 1}, r"after batch_dims=1 sample axes, got \[1, 8, 8\]"),
    ([2, 1, 8, 8], [2, 1, 3, 3], {"batch_dims": -1}, "batch_dims must be 0 or more"),
])
def test_conv2d_shape_errors_name_the_sizes(x, w, attrs, message):
    node = {"op": "conv2d", "inputs": ["x", "w"], **attrs}
    with pytest.raises(graphdef.GraphDefError, match=message):
        graphdef.loads(model_text(x, node, {"w": w}))


@pytest.mark.parametrize("name, attrs, message", [
    ("max_pool2d", {"kernel_size": 2, "padding": 2}, r"padding \[2, 2\] is more than half the kernel size \[2, 2\]"),
    ("avg_pool2d", {"kernel_size": 9}, "more than the padded input's 8"),
    ("conv_transpose2d", {"stride": 2, "output_padding": 2},
     r"output_padding \[2, 2\] must be .* less than the stride"),
])
def test_other_shape_errors(name, attrs, message):
    params = {"w": [3, 2, 2, 2]} if name == "conv_transpose2d" else {}
    node = {"op": name, "inputs": ["x", *params], **attrs}
    with pytest.raises(graphdef.GraphDefError, match=message):
        graphdef.loads(model_text([3, 8, 8], node, params))


LENET = """
graphdef: 1
name: lenet
inputs:
  x: {shape: [1, 8, 8]}
  y: {shape: [10]}
parameters:
  w1: {shape: [4, 1, 3, 3], init: he_normal}
  b1: {shape: [4, 1, 1], init: normal}
  w2: {shape: [6, 2, 3, 3], init: he_normal}
  W3: {shape: [6, 10], init: he_normal}
nodes:
  c1: {op: conv2d, inputs: [x, w1], padding: same}
  a1: {op: add, inputs: [c1, b1]}
  r1: {op: relu, inputs: [a1]}
  p1: {op: max_pool2d, inputs: [r1], kernel_size: 2, ceil_mode: true}
  c2: {op: conv2d, inputs: [p1, w2], groups: 2, stride: 2}
  p2: {op: avg_pool2d, inputs: [c2], kernel_size: 1}
  g: {op: global_avg_pool, inputs: [p2]}
  k: {op: reshape, inputs: [W3], shape: [6, 10, 1, 1]}
  up: {op: conv_transpose2d, inputs: [g, k]}
  logits: {op: reshape, inputs: [up], shape: [10]}
  loss: {op: softmax_cross_entropy, inputs: [logits, y]}
outputs: [logits]
loss: loss
"""


def torch_lenet(p, x, y):
    h = F.max_pool2d(F.relu(F.conv2d(x, p["w1"], padding="same") + p["b1"]), 2, ceil_mode=True)
    h = F.avg_pool2d(F.conv2d(h, p["w2"], groups=2, stride=2), 1).mean(dim=(-2, -1), keepdim=True)
    logits = F.conv_transpose2d(h, p["W3"].reshape(6, 10, 1, 1)).reshape(len(x), 10)
    return -(y * torch.log_softmax(logits, dim=-1)).sum(dim=-1)


def test_a_convolutional_network_matches_pytorch_end_to_end():
    """A model file of every op on a batch: per-sample losses and parameter gradients equal PyTorch's."""
    model = graphdef.loads(LENET, seed=0)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.uniform(size=(5, 1, 8, 8)), "y": np.eye(10)[rng.integers(0, 10, 5)]}
    values, grads = model.value_and_gradients(feeds, wrt=list(model.parameters))
    params = {k: torch.tensor(v, requires_grad=True) for k, v in model.parameters.items()}
    losses = torch_lenet(params, torch.tensor(feeds["x"]), torch.tensor(feeds["y"]))
    np.testing.assert_allclose(values["loss"], losses.detach().numpy(), rtol=1e-10)
    losses.sum().backward()
    for k, p in params.items():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=k)


# -- ONNX: a kernel shared by the batch, and a single sample --------------------------------

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
gx = pytest.importorskip("graphdef.onnx")


def exported_case(name: str, example: tuple, dtype: str, batched: tuple):
    """A node of the op, its inputs named in `batched` fed a batch of 3 and the others parameters, and an input z
    added to its result (a batched input even when the node has none): the model, feeds and the exported graph."""
    op = OPS[name]
    shapes, attrs = example
    args = dict(zip(["x", "w"], shapes))
    size = op.shape(*shapes, **op.bind(attrs))
    model = graphdef.loads(json.dumps({
        "graphdef": 1, "name": "one", "dtype": dtype,
        "inputs": {**{k: {"shape": list(s)} for k, s in args.items() if k in batched}, "z": {"shape": list(size)}},
        "parameters": {k: {"shape": list(s), "init": "normal"} for k, s in args.items() if k not in batched},
        "nodes": {"node": {"op": name, "inputs": list(args), **attrs}, "out": {"op": "add", "inputs": ["node", "z"]}},
        "outputs": ["out"]}), seed=0)
    rng = np.random.default_rng(0)
    feeds = {k: rng.uniform(-2, 2, size=(3, *s)).astype(dtype) for k, s in [*args.items(), ("z", size)]
             if k in batched or k == "z"}
    return model, feeds, gx.export(model)


def assert_runs_the_same(model, feeds, proto):
    tolerance = 1e-5 if model.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(run_onnxruntime(proto, feeds)["out"], model.forward(feeds)["out"], rtol=tolerance,
                               atol=tolerance)


NATIVE = {"conv1d": "Conv", "conv2d": "Conv", "conv_transpose2d": "ConvTranspose", "avg_pool2d": "AveragePool"}


@pytest.mark.parametrize("name, index, dtype", [
    pytest.param(name, i, dtype, id=f"{name}-{i}-{dtype}") for name in CONV_OPS + POOL_OPS
    for i in range(len(OPS[name].examples)) for dtype in ("float32", "float64")])
def test_export_with_a_kernel_shared_by_the_batch(name, index, dtype):
    """ONNX's own operator in float32 (onnxruntime has no float64 kernels for it), the Einsum form in float64."""
    model, feeds, proto = exported_case(name, OPS[name].examples[index], dtype, batched=("x",))
    types = {n.op_type for n in proto.graph.node}
    if name in NATIVE and not is_dilated_average(name, OPS[name].examples[index][1]):
        assert (NATIVE[name] in types) == (dtype == "float32") and ("Einsum" in types) == (dtype == "float64"), types
    assert_runs_the_same(model, feeds, proto)


def is_dilated_average(name: str, attrs: dict) -> bool:
    return name == "avg_pool2d" and attrs.get("dilation", 1) not in (1, [1, 1])


@pytest.mark.parametrize("opset", [18, 19])
def test_a_dilated_average_exports_as_average_pool_from_opset_19(opset):
    """AveragePool dilates its windows from opset 19 on; before, the export is the Einsum form."""
    attrs = {"kernel_size": 2, "padding": 1, "dilation": [2, 1], "count_include_pad": False}
    model, feeds, _ = exported_case("avg_pool2d", (((2, 6, 5),), attrs), "float32", batched=("x",))
    proto = gx.export(model, opset=opset)
    assert ("AveragePool" in {n.op_type for n in proto.graph.node}) == (opset >= 19)
    assert_runs_the_same(model, feeds, proto)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CONV_OPS + POOL_OPS)
def test_export_of_a_single_sample(name, dtype):
    """A node whose inputs carry no batch: its ONNX nodes see one sample, with no batch axis."""
    assert_runs_the_same(*exported_case(name, OPS[name].examples[1], dtype, batched=()))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CONV_OPS)
def test_export_of_a_kernel_per_sample_on_one_input(name, dtype):
    assert_runs_the_same(*exported_case(name, OPS[name].examples[1], dtype, batched=("w",)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size, dropped", [(5, True), (6, False)])
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_export_of_ceil_mode_where_pytorch_drops_the_last_window_or_keeps_it(name, size, dropped, dtype):
    """ONNX's ceil_mode would keep a window starting in the padding after the input: the export pads instead.
    AveragePool cannot count the padding but not the overhang: an average that does is exported as an Einsum."""
    attrs = {"kernel_size": 3 - dropped, "stride": 2, "padding": 1, "ceil_mode": True}
    model, feeds, proto = exported_case(name, (((2, size, size),), attrs), dtype, batched=("x",))
    assert_runs_the_same(model, feeds, proto)
    einsum = name == "avg_pool2d" and (dtype == "float64" or not dropped)
    assert {n.op_type for n in proto.graph.node} & {"MaxPool", "AveragePool", "Einsum"} == \
        {"Einsum" if einsum else {"max_pool2d": "MaxPool", "avg_pool2d": "AveragePool"}[name]}
