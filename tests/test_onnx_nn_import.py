"""ONNX's convolution, pooling, normalization and loss ops import as graphdef ops (tools/onnx/rules_nn.py).

- Single nodes, over their attributes (asymmetric and automatic padding, ceil_mode, dilations, groups,
  1-D and 2-D, output_shape, the opset differences), equal onnxruntime on a batch size of the test's
  choosing (the batch axis is free; float32; weights are initializers, so graphdef's parameters).
- A window op imports as one graphdef op on the whole batch (batch_dims=1), a pad beside it only for padding
  the op cannot do itself; a graphdef export imports with its batch size still free.
- A Conv → BatchNormalization → Relu → MaxPool → AveragePool graph written from a PyTorch module equals it
  in values and in the gradients of every parameter and of the input (inference), and in training
  normalizes by the batch, with PyTorch's gradients, and updates its running statistics as BatchNorm2d does.
- ONNX's own node test cases of these ops pass, but those graphdef cannot represent: refused by name.
- What is not imported is a GraphDefError naming the node and the reason, never a traceback.
"""
import warnings

import numpy as np
import pytest

import graphdef

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
gx = pytest.importorskip("graphdef.onnx")

from batch_cases import run_onnxruntime  # noqa: E402 - after the skips

h, T, nh = onnx.helper, onnx.TensorProto, onnx.numpy_helper
BATCH = 3
LABELS = ("t",)  # inputs holding class labels (int64); every other input holds floats
READ = ("cw",)  # initializers read at import (class weights, which become an attribute): no parameters


def assert_close(actual, expected, what, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * float(np.abs(expected).max(initial=1.0)),
                               err_msg=what)


def node_model(op, names, shapes, params=(), opset=17, outputs=("y",), **attrs):
    """One float32 ONNX node on `names`: those in `params` are initializers (random, of their shape in `shapes`),
    the others graph inputs. The batch axis of x (and of the labels t) is free."""
    rng = np.random.default_rng(len(op) + len(names))
    inputs = [h.make_tensor_value_info(n, T.INT64 if n in LABELS else T.FLOAT, ["N", *shape_of(n, shapes)[1:]]
                                       if n in ("x", *LABELS) else shapes[n]) for n in names if n not in params]
    initializers = [nh.from_array(_positive(n, rng.normal(size=shapes[n])).astype(np.float32), n) for n in params]
    node = h.make_node(op, list(names), list(outputs), **attrs)
    graph = h.make_graph([node], op.lower(), inputs, [h.make_tensor_value_info(o, T.FLOAT, None) for o in outputs],
                         initializers)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


def shape_of(name, shapes):
    """An input's shape; the labels' is x's without its class axis (1)."""
    return shapes[name] if name not in LABELS else shapes["x"][:1] + shapes["x"][2:]


def _positive(name, values):
    """Variances are positive."""
    return np.abs(values) + 0.5 if name == "var" else values


def feeds(proto, shapes, ignore_index=None):
    """Random inputs of `shapes`, x and its labels at BATCH samples (not the batch size written in `shapes`);
    labels are classes of x's axis 1, a few of them ignore_index."""
    rng = np.random.default_rng(11)
    out = {}
    for i in proto.graph.input:
        shape = shape_of(i.name, shapes)
        shape = (BATCH, *shape[1:]) if i.name in ("x", *LABELS) else shape
        if i.name in LABELS:
            labels = rng.integers(0, shapes["x"][1], shape)
            if ignore_index is not None:
                labels.flat[::3] = ignore_index
            out[i.name] = labels.astype(np.int64)
        else:
            out[i.name] = _positive(i.name, rng.normal(size=shape)).astype(np.float32)
    return out


def case(op, names, shapes, params=(), opset=17, outputs=("y",), id=None, **attrs):
    return pytest.param(op, names, shapes, params, opset, outputs, attrs, id=f"{op}-{id}")


X2, X1 = (2, 2, 7, 6), (2, 2, 9)
CONV = {"x": X2, "w": (4, 2, 3, 3), "b": (4,)}
GROUPED = {"x": (2, 4, 7, 6), "w": (6, 2, 3, 2), "b": (6,)}
CONV1 = {"x": X1, "w": (4, 2, 3), "b": (4,)}
TRANSPOSE = {"x": (2, 2, 4, 5), "w": (2, 3, 3, 3), "b": (3,)}
BN = {"x": (2, 4, 5, 6), "scale": (4,), "b": (4,), "mean": (4,), "var": (4,)}
NORM = ("x", "scale", "b")

CASES = [
    case("Conv", ["x", "w", "b"], CONV, "wb", id="default"),
    case("Conv", ["x", "w", "b"], CONV, "wb", pads=[1, 0, 2, 1], strides=[2, 3], id="asymmetric_pads_strides"),
    case("Conv", ["x", "w"], {**CONV, "w": (4, 2, 4, 3)}, "w", auto_pad="SAME_UPPER", strides=[2, 2], id="same_upper"),
    case("Conv", ["x", "w"], {**CONV, "w": (4, 2, 4, 3)}, "w", auto_pad="SAME_LOWER", strides=[2, 1], id="same_lower"),
    case("Conv", ["x", "w", "b"], CONV, "wb", auto_pad="VALID", strides=[2, 2], id="valid"),
    case("Conv", ["x", "w", "b"], GROUPED, "wb", group=2, dilations=[2, 1], pads=[2, 1, 1, 0], id="group_dilations"),
    case("Conv", ["x", "w"], {"x": (2, 4, 5, 5), "w": (4, 1, 3, 3)}, "w", group=4, strides=[2, 2], id="depthwise"),
    case("Conv", ["x", "w", "b"], CONV, "b", id="weights_as_input"),
    case("Conv", ["x", "w", "b"], CONV1, "wb", pads=[2, 1], strides=[2], dilations=[2], id="1d"),
    case("Conv", ["x", "w"], CONV1, "w", auto_pad="SAME_UPPER", strides=[2], id="1d_same_upper"),
    case("ConvTranspose", ["x", "w", "b"], TRANSPOSE, "wb", id="default"),
    case("ConvTranspose", ["x", "w", "b"], TRANSPOSE, "wb", strides=[2, 3], output_padding=[1, 2],
         pads=[1, 0, 0, 2], id="strides_output_padding_pads"),
    case("ConvTranspose", ["x", "w"], TRANSPOSE, "w", strides=[2, 2], output_shape=[8, 12], id="output_shape"),
    case("ConvTranspose", ["x", "w"], TRANSPOSE, "w", strides=[2, 2], output_shape=[10, 12], id="output_shape_longer"),
    case("ConvTranspose", ["x", "w"], TRANSPOSE, "w", strides=[2, 3], auto_pad="SAME_UPPER", id="same_upper"),
    case("ConvTranspose", ["x", "w"], TRANSPOSE, "w", strides=[3, 2], auto_pad="SAME_LOWER", id="same_lower"),
    case("ConvTranspose", ["x", "w", "b"], {"x": (2, 4, 4, 4), "w": (4, 1, 3, 2), "b": (2,)}, "wb", group=2,
         dilations=[2, 1], strides=[1, 2], id="group_dilations"),
    case("ConvTranspose", ["x", "w", "b"], {"x": (2, 2, 5), "w": (2, 3, 3), "b": (3,)}, "wb", strides=[2],
         pads=[1, 0], output_padding=[1], id="1d"),
    case("MaxPool", ["x"], {"x": X2}, kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 1], id="asymmetric_pads"),
    case("MaxPool", ["x"], {"x": X2}, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, id="ceil_mode"),
    case("MaxPool", ["x"], {"x": X2}, kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1], id="dilations_pads"),
    case("MaxPool", ["x"], {"x": X2}, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER", id="same_upper"),
    case("MaxPool", ["x"], {"x": X2}, kernel_shape=[2, 3], auto_pad="SAME_LOWER", id="same_lower"),
    case("MaxPool", ["x"], {"x": X1}, kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1, id="1d"),
    case("AveragePool", ["x"], {"x": X2}, kernel_shape=[3, 3], pads=[1, 1, 1, 1], id="pads_uncounted"),
    case("AveragePool", ["x"], {"x": X2}, kernel_shape=[3, 2], pads=[1, 0, 2, 1], count_include_pad=1,
         id="asymmetric_pads_counted"),
    case("AveragePool", ["x"], {"x": X2}, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
         count_include_pad=1, id="ceil_mode_counted"),
    case("AveragePool", ["x"], {"x": X2}, opset=19, kernel_shape=[2, 2], dilations=[2, 1], pads=[1, 0, 1, 0],
         id="dilations_opset19"),
    case("AveragePool", ["x"], {"x": X2}, kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_LOWER", id="same_lower"),
    case("AveragePool", ["x"], {"x": X1}, kernel_shape=[4], strides=[3], pads=[2, 1], ceil_mode=1, id="1d"),
    case("GlobalAveragePool", ["x"], {"x": X2}, id="2d"),
    case("GlobalAveragePool", ["x"], {"x": X1}, id="1d"),
    case("GlobalMaxPool", ["x"], {"x": X2}, id="2d"),
    case("GlobalMaxPool", ["x"], {"x": X1}, id="1d"),
    case("BatchNormalization", ["x", "scale", "b", "mean", "var"], BN, ("scale", "b", "mean", "var"), epsilon=1e-3,
         momentum=0.8, id="statistics_as_state"),
    case("BatchNormalization", ["x", "scale", "b", "mean", "var"], {**BN, "x": (2, 4)}, ("scale", "b", "mean", "var"),
         id="rank2"),
    case("BatchNormalization", ["x", "scale", "b", "mean", "var"], BN, ("scale", "b"), opset=9,
         id="statistics_as_inputs_opset9"),
    case("LayerNormalization", NORM, {"x": (2, 4, 5), "scale": (5,), "b": (5,)}, "scale b".split(), id="last_axis"),
    case("LayerNormalization", ["x", "scale"], {"x": (2, 4, 5), "scale": (4, 5)}, ["scale"], axis=1, epsilon=0.1,
         id="two_axes_no_bias"),
    case("LayerNormalization", NORM, {"x": (2, 4, 5), "scale": (1, 5), "b": (5,)}, "scale b".split(), axis=-2,
         id="broadcast_scale"),
    case("GroupNormalization", NORM, {"x": (2, 4, 3, 3), "scale": (2,), "b": (2,)}, "scale b".split(), 18,
         num_groups=2, id="per_group_opset18"),
    case("GroupNormalization", NORM, {"x": (2, 6, 5), "scale": (6,), "b": (6,)}, "scale b".split(), 21,
         num_groups=3, epsilon=0.01, id="per_channel_opset21"),
    case("InstanceNormalization", NORM, {"x": (2, 3, 4, 5), "scale": (3,), "b": (3,)}, "scale b".split(), id="2d"),
    case("LpNormalization", ["x"], {"x": (2, 3, 4)}, p=1, axis=1, id="l1"),
    case("LpNormalization", ["x"], {"x": (2, 3, 4)}, id="l2_last_axis"),
    case("MeanVarianceNormalization", ["x"], {"x": (2, 3, 4, 5)}, id="default_axes"),
    case("MeanVarianceNormalization", ["x"], {"x": (2, 3, 4)}, axes=[1, 2], id="axes"),
    case("LRN", ["x"], {"x": (2, 5, 4, 3)}, size=3, alpha=0.01, beta=0.75, bias=2.0, id="odd_size"),
    case("SoftmaxCrossEntropyLoss", ["x", "t"], {"x": (2, 5)}, opset=13, id="mean"),
    case("SoftmaxCrossEntropyLoss", ["x", "t"], {"x": (2, 5, 4)}, opset=13, reduction="sum", ignore_index=1,
         id="extra_axis_sum_ignore_index"),
    case("SoftmaxCrossEntropyLoss", ["x", "t", "cw"], {"x": (2, 5, 2, 2), "cw": (5,)}, ["cw"], 13, ignore_index=-1,
         id="weights_known_mean_ignore_index"),
    case("SoftmaxCrossEntropyLoss", ["x", "t", "w"], {"x": (2, 5, 3), "w": (5,)}, (), 13, ("y", "log_prob"),
         reduction="none", ignore_index=2, id="weights_at_run_time_log_prob"),
    case("SoftmaxCrossEntropyLoss", ["x", "t", "w"], {"x": (2, 5), "w": (5,)}, (), 13, ignore_index=0,
         id="weights_at_run_time_mean"),
    case("NegativeLogLikelihoodLoss", ["x", "t"], {"x": (2, 5, 3)}, reduction="none", id="none"),
    case("NegativeLogLikelihoodLoss", ["x", "t", "cw"], {"x": (2, 5, 2, 3), "cw": (5,)}, ["cw"], ignore_index=4,
         id="weights_known_mean"),
    case("NegativeLogLikelihoodLoss", ["x", "t", "w"], {"x": (2, 5, 3), "w": (5,)}, reduction="sum", ignore_index=3,
         id="weights_at_run_time_sum"),
    case("DepthToSpace", ["x"], {"x": (2, 8, 2, 3)}, opset=13, blocksize=2, id="dcr"),
    case("DepthToSpace", ["x"], {"x": (2, 8, 2, 3)}, opset=13, blocksize=2, mode="CRD", id="crd"),
    case("SpaceToDepth", ["x"], {"x": (2, 2, 4, 6)}, opset=13, blocksize=2, id="dcr"),
]


@pytest.mark.parametrize("op, names, shapes, params, opset, outputs, attrs", CASES)
def test_single_node_equals_onnxruntime(op, names, shapes, params, opset, outputs, attrs):
    proto = node_model(op, names, shapes, params, opset, outputs, **attrs)
    x = feeds(proto, shapes, attrs.get("ignore_index"))
    model = gx.from_proto(proto)
    assert set(model.parameters) | set(model.state) == set(params) - set(READ), "the initializers should be the " \
                                                                                  "parameters and state"
    got = model.forward(x)
    for name, want in run_onnxruntime(proto, x).items():
        assert_close(got[name], want, f"{op} output {name}", rtol=2e-5)


WINDOW_OPS = {"conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d"}
ONE_OP = [  # (case, the window ops and pads its import makes, in order)
    (case("Conv", ["x", "w", "b"], CONV, "wb", pads=[1, 1, 1, 1], strides=[2, 2], id="symmetric"), ["conv2d"]),
    (case("Conv", ["x", "w", "b"], CONV, "wb", pads=[0, 1, 2, 1], id="asymmetric"), ["pad", "conv2d"]),
    (case("Conv", ["x", "w", "b"], CONV, "wb", pads=[1, 0, 2, 1], strides=[2, 3], id="asymmetric_unread"),
     ["conv2d"]),  # the windows never reach the padding after, which is left out
    (case("ConvTranspose", ["x", "w"], TRANSPOSE, "w", strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1],
          id="symmetric"), ["conv_transpose2d"]),
    (case("ConvTranspose", ["x", "w"], TRANSPOSE, "w", strides=[2, 3], pads=[1, 0, 0, 2], output_padding=[1, 2],
          id="asymmetric"), ["conv_transpose2d", "pad"]),
    (case("MaxPool", ["x"], {"x": X2}, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], id="symmetric"),
     ["max_pool2d"]),
    (case("MaxPool", ["x"], {"x": X1}, kernel_shape=[2], strides=[2], ceil_mode=1, id="1d_ceil_mode"),
     ["pad", "max_pool2d"]),
    (case("AveragePool", ["x"], {"x": X2}, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1,
          id="symmetric"), ["avg_pool2d"]),
]


@pytest.mark.parametrize("op, names, shapes, params, opset, outputs, attrs, expected",
                         [pytest.param(*c.values, ops, id=c.id) for c, ops in ONE_OP])
def test_a_window_op_imports_as_one_graphdef_op_on_the_whole_batch(op, names, shapes, params, opset, outputs, attrs,
                                                                    expected):
    """The graphdef op takes the batch itself (batch_dims=1, the batch size free) and pads what it can; a pad
    before it (after it, for a transposed convolution) does the rest."""
    proto = node_model(op, names, shapes, params, opset, outputs, **attrs)
    model = gx.from_proto(proto)
    steps = [s for s in model.steps if s.op.name in WINDOW_OPS | {"pad"}]
    assert [s.op.name for s in steps] == expected
    assert all(s.attrs["batch_dims"] == 1 for s in steps if s.op.name in WINDOW_OPS)
    assert model.graph.vertices["y"].shape[0] is None
    x = feeds(proto, shapes)
    assert_close(model.forward(x)["y"], run_onnxruntime(proto, x)["y"], "y", rtol=2e-5)


def test_a_graphdef_export_imports_with_its_batch_size_free():
    """lenet's flatten reshapes to [batch, -1] after its window ops: the batch size must stay a run-time size."""
    from conftest import MODELS
    model = graphdef.load(MODELS / "lenet.yaml", seed=0)
    imported = gx.from_proto(gx.export(model, with_loss=True))
    rng = np.random.default_rng(0)
    for n in (1, 3, 7):
        x = {"x": rng.uniform(size=(n, 64))}
        assert_close(imported.forward(x)["probs"], model.forward(x)["probs"], f"probs of {n}", rtol=1e-10)


def test_batch_norm_statistics_are_state_and_momentum_is_pytorchs():
    """ONNX's momentum 0.9 keeps 0.9 of the running value: PyTorch's (and graphdef's) momentum 0.1."""
    proto = node_model("BatchNormalization", ["x", "scale", "b", "mean", "var"], BN, ("scale", "b", "mean", "var"))
    model = gx.from_proto(proto)
    assert sorted(model.state) == ["mean", "var"] and sorted(model.parameters) == ["b", "scale"]
    (node,) = [v for v in model.graph.vertices.values() if v.op is not None and v.op.name == "batch_norm"]
    assert node.attrs["momentum"] == 0.1


def test_statistics_merged_with_the_scale_are_read_as_constants():
    """TorchScript merges equal initializers: an untrained BatchNorm's running mean is its bias's zeros.
    The statistic is then read at import; the bias stays a parameter."""
    proto = node_model("BatchNormalization", ["x", "scale", "b", "b", "var"], BN, ("scale", "b", "var"))
    model = gx.from_proto(proto)
    assert sorted(model.parameters) == ["b", "scale"] and sorted(model.state) == ["var"]
    x = feeds(proto, BN)
    assert_close(model.forward(x)["y"], run_onnxruntime(proto, x)["y"], "y", rtol=2e-5)


def test_lrn_of_an_even_size_follows_the_spec():
    """onnxruntime refuses an even size; ONNX's spec: the window reaches floor((size − 1)/2) channels before
    and ceil((size − 1)/2) after."""
    proto = node_model("LRN", ["x"], {"x": (2, 6, 3, 3)}, size=4, alpha=0.3, beta=0.6, bias=1.5)
    x = feeds(proto, {"x": (2, 6, 3, 3)})["x"].astype(np.float64)
    squares = np.pad(x ** 2, [(0, 0), (1, 2), (0, 0), (0, 0)])
    window = sum(squares[:, k:k + 6] for k in range(4))
    assert_close(gx.from_proto(proto).forward({"x": x})["y"], x / (1.5 + 0.3 / 4 * window) ** 0.6, "y", rtol=2e-5)


# -- a small CNN against PyTorch: values and gradients, in inference and in training -------------------

class ConvBNPool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.2)
        with torch.no_grad():
            self.bn.running_mean.normal_()
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.normal_()
            self.bn.bias.normal_()

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2, ceil_mode=True)
        return torch.nn.functional.avg_pool2d(y, 2, padding=1, count_include_pad=False)


def conv_bn_pool_onnx(module):
    """The module written as ONNX nodes (float64), with loss = Σ y·r for a fixed random r."""
    tensors = {k: nh.from_array(v.detach().double().numpy(), k) for k, v in module.state_dict().items()
               if v.is_floating_point()}
    nodes = [h.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             h.make_node("BatchNormalization", ["c", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                         ["n"], epsilon=1e-3, momentum=0.8),
             h.make_node("Relu", ["n"], ["a"]),
             h.make_node("MaxPool", ["a"], ["m"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
             h.make_node("AveragePool", ["m"], ["y"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]),
             h.make_node("Mul", ["y", "r"], ["yr"]),
             h.make_node("ReduceSum", ["yr"], ["loss"], keepdims=0)]
    inputs = [h.make_tensor_value_info("x", T.DOUBLE, ["N", 3, 9, 9]),
              h.make_tensor_value_info("r", T.DOUBLE, ["N", 4, 2, 2])]
    outputs = [h.make_tensor_value_info("y", T.DOUBLE, None), h.make_tensor_value_info("loss", T.DOUBLE, [])]
    graph = h.make_graph(nodes, "conv_bn_pool", inputs, outputs, list(tensors.values()))
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


TRAINED = ["conv.weight", "conv.bias", "bn.weight", "bn.bias"]


def torch_run(module, x, r, training):
    module.train(training)
    xt = torch.from_numpy(x).requires_grad_()
    y = module.double()(xt)
    loss = (y * torch.from_numpy(r)).sum()
    loss.backward()
    grads = {k: p.grad.numpy().copy() for k, p in module.named_parameters()}
    module.zero_grad()
    return y.detach().numpy(), loss.item(), {**grads, "x": xt.grad.numpy()}


@pytest.fixture
def cnn():
    module = ConvBNPool().double()
    rng = np.random.default_rng(4)
    x, r = rng.normal(size=(5, 3, 9, 9)), rng.normal(size=(5, 4, 2, 2))
    return module, gx.from_proto(conv_bn_pool_onnx(module)), x, r


def test_conv_bn_pool_inference_equals_pytorch_values_and_gradients(cnn):
    module, model, x, r = cnn
    assert sorted(model.parameters) == sorted(TRAINED)
    assert sorted(model.state) == ["bn.running_mean", "bn.running_var"]
    want_y, want_loss, want = torch_run(module, x, r, training=False)
    values, grads = model.value_and_gradients({"x": x, "r": r}, of="loss", wrt=[*TRAINED, "x"])
    assert_close(values["y"], want_y, "y", rtol=1e-10)
    assert_close(values["loss"], want_loss, "loss", rtol=1e-10)
    for name in [*TRAINED, "x"]:
        assert_close(grads[name], want[name], f"dloss/d{name}", rtol=1e-9)


def test_conv_bn_pool_trains_as_pytorch_batch_norm(cnn):
    """In training, batch statistics (values and gradients as PyTorch's), and the running statistics move
    as BatchNorm2d's with its momentum (ONNX's 0.8 is PyTorch's 0.2), unbiased variance included."""
    module, model, x, r = cnn
    want_y, want_loss, want = torch_run(module, x, r, training=True)
    model.training = True
    assert_close(model.forward({"x": x, "r": r})["y"], want_y, "y in training", rtol=1e-10)
    model.training = False
    values, grads = model.train_step({"x": x, "r": r}, "loss", TRAINED)
    assert_close(values["loss"], want_loss, "loss in training", rtol=1e-10)
    for name in TRAINED:
        assert_close(grads[name], want[name], f"dloss/d{name} in training", rtol=1e-9)
    for name in ("running_mean", "running_var"):
        assert_close(model.state[f"bn.{name}"], getattr(module.bn, name).numpy(), name, rtol=1e-12)


# -- ONNX's own node test cases ----------------------------------------------------------------------

MINE = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
        "LayerNormalization", "GroupNormalization", "InstanceNormalization", "LpNormalization",
        "MeanVarianceNormalization", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", "LRN", "DepthToSpace",
        "SpaceToDepth"}
AROUND = {"Constant", "Identity", "LogSoftmax", "Reshape", "Shape", "Transpose"}  # in the expanded loss cases
REFUSED = {  # case name part -> the reason its import gives
    "pool_3d": "over 3 spatial axes", "convtranspose_3d": "over 3 spatial axes", "training_mode": "training mode",
    "with_argmax_2d_precomputed_pads": "Indices output", "with_argmax_2d_precomputed_strides": "storage_order=1"}
ROUNDED = {"test_averagepool_2d_ceil_last_window_starts_on_pad"}  # its expected outputs are written to 4 decimals


def onnx_cases():
    import onnx.backend.test.case.node as node_cases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    ops = {c.name: {n.op_type for n in c.model.graph.node} for c in cases}
    return [pytest.param(c, id=c.name) for c in sorted(cases, key=lambda c: c.name)
            if ops[c.name] & MINE and ops[c.name] <= MINE | AROUND]


@pytest.mark.parametrize("case", onnx_cases())
def test_onnx_node_cases(case):
    refused = [why for part, why in REFUSED.items() if part in case.name]
    if refused:
        with pytest.raises(graphdef.GraphDefError, match=refused[0]):
            gx.from_proto(case.model)
        return
    model = gx.from_proto(case.model)
    names = [i.name for i in case.model.graph.input]
    for inputs, expected in case.data_sets:
        values = model.forward(dict(zip(names, inputs)))
        for output, want in zip(case.model.graph.output, expected):
            rtol = 1e-3 if case.name in ROUNDED else 1e-5 if want.dtype == np.float32 else 1e-9
            assert_close(values[output.name], want, f"{case.name}: {output.name}", rtol=rtol)


# -- what is not imported ----------------------------------------------------------------------------

REFUSALS = [
    ("MaxPool", ["x"], {"x": X2}, {"kernel_shape": [2, 2]}, ("y", "i"), "MaxPool's Indices output"),
    ("BatchNormalization", ["x", "scale", "b", "mean", "var"], BN, {"training_mode": 1}, ("y",), "training mode"),
    ("Conv", ["x", "w"], {"x": (2, 2, 4, 4, 4), "w": (3, 2, 2, 2, 2)}, {}, ("y",), "over 3 spatial axes"),
    ("Conv", ["x", "w"], CONV, {"kernel_shape": [2, 2]}, ("y",), "kernel_shape \\[2, 2\\] differs"),
    ("Conv", ["x", "w"], CONV, {"auto_pad": "SAME"}, ("y",), "auto_pad 'SAME' is none of"),
    ("Conv", ["x", "w"], CONV, {"pads": [1, 1]}, ("y",), "two values per spatial axis"),
    ("AveragePool", ["x"], {"x": (2, 2, 3, 3)}, {"kernel_shape": [5, 5]}, ("y",), "more than the padded input"),
    ("MaxPool", ["x"], {"x": X2}, {"kernel_shape": [2]}, ("y",), "kernel_shape \\[2\\] does not have one"),
    ("LpNormalization", ["x"], {"x": (2, 3)}, {"p": 3}, ("y",), "p is 3"),
    ("DepthToSpace", ["x"], {"x": (2, 6, 2, 2)}, {"blocksize": 2}, ("y",), "6 channels do not split"),
    ("GroupNormalization", NORM, {"x": (2, 4, 3), "scale": (4,), "b": (4,)}, {"num_groups": 3}, ("y",),
     "num_groups 3 does not divide"),
    ("SoftmaxCrossEntropyLoss", ["x", "t"], {"x": (2, 3)}, {"reduction": "average"}, ("y",), "reduction 'average'"),
]


@pytest.mark.parametrize("op, names, shapes, attrs, outputs, message", REFUSALS,
                         ids=[f"{r[0]}-{r[-1][:20]}" for r in REFUSALS])
def test_what_is_not_imported_is_a_graphdef_error(op, names, shapes, attrs, outputs, message):
    proto = node_model(op, names, shapes, opset=21 if op == "GroupNormalization" else 17, outputs=outputs, **attrs)
    with pytest.raises(graphdef.GraphDefError, match=f"{op}.*{message}"):
        gx.from_proto(proto)


def test_spatial_sizes_known_only_at_run_time_are_refused():
    proto = node_model("MaxPool", ["x"], {"x": X2}, kernel_shape=[2, 2])
    proto.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "W"
    with pytest.raises(graphdef.GraphDefError, match="MaxPool ×1 \\(MaxPool of an input whose channels or spatial "
                                                     "sizes are known only at run time"):
        gx.from_proto(proto)
