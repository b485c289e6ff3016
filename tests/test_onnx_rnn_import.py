"""ONNX's GRU, LSTM and RNN import as the standard library's step functions (gru_step, lstm_step,
rnn_step), one call per item of the sequence and direction.

- PyTorch's nn.GRU, nn.LSTM and nn.RNN, exported by TorchScript (opset 17, batch axis dynamic, float64),
  give PyTorch's outputs (all of them: y, h_n, c_n) on another batch size, and the gradients of
  L = Σ output · R with respect to the ONNX initializers W, R, B, pulled back to the torch weights by
  ONNX's packing (written out here, gate orders included), equal autograd's.
- Single nodes with what PyTorch never exports (layout 1, GRU's linear_before_reset 0, both directions,
  biases and initial states given) equal onnxruntime, and their gradients central differences.
- ONNX's own node test cases for the three ops pass, and what is not imported is refused by name.
"""
import io
import warnings

import numpy as np
import pytest

import graphdef

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
gx = pytest.importorskip("graphdef.onnx")

from batch_cases import run_onnxruntime  # noqa: E402 - after the skips
from graphdef.tools.onnx.conformance import model_name  # noqa: E402 - needs onnx

h, T = onnx.helper, onnx.TensorProto
EXPORT_BATCH, RUN_BATCH = 4, 3
INPUT, HIDDEN, STEPS = 3, 4, 5
# ONNX's gate block k is PyTorch's block ORDER[k]: GRU z r h <- r z n; LSTM i o f c <- i f g o
ORDER = {"gru": [1, 0, 2], "lstm": [0, 3, 1, 2], "rnn": [0]}


def assert_close(actual, expected, what, rtol=1e-9):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * float(np.abs(expected).max(initial=0.0)),
                               err_msg=what)


# -- PyTorch's modules, exported ---------------------------------------------------------------

class Outputs(torch.nn.Module):
    """A recurrent module with its outputs flat: y, h_n (, c_n); given states when the export reads them."""

    def __init__(self, module):
        super().__init__()
        self.m = module

    def forward(self, x, *state):
        y, last = self.m(x, (state if len(state) > 1 else state[0]) if state else None)
        return (y, *last) if isinstance(last, tuple) else (y, last)


def build(kind, batch_first, bidirectional, layers, nonlinearity):
    torch.manual_seed(len(kind) + 2 * batch_first + 4 * bidirectional + 8 * layers)
    options = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    module = getattr(torch.nn, kind.upper())(INPUT, HIDDEN, num_layers=layers, batch_first=batch_first,
                                             bidirectional=bidirectional, **options).double().eval()
    with torch.no_grad():
        for p in module.parameters():  # no zero or equal biases: each initializer must be told apart
            p.add_(0.1 * torch.randn_like(p))
    return Outputs(module)


def sample(batch, batch_first, seed):
    return np.random.default_rng(seed).normal(size=(batch, STEPS, INPUT) if batch_first else (STEPS, batch, INPUT))


def states(kind, module, batch, seed):
    """Initial states [layers · directions, batch, hidden], one per state of the cell."""
    count = module.m.num_layers * (2 if module.m.bidirectional else 1)
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(count, batch, HIDDEN)) for _ in range(2 if kind == "lstm" else 1)]


def export(module, kind, given_state):
    """The module exported by TorchScript with a dynamic batch, and the names of its state inputs and outputs."""
    batch_first = module.m.batch_first
    x = torch.from_numpy(sample(EXPORT_BATCH, batch_first, 0))
    state_names = ["h0", "c0"][:2 if kind == "lstm" else 1] if given_state else []
    inputs = (x, *(torch.from_numpy(s) for s in states(kind, module, EXPORT_BATCH, 0))) if given_state else (x,)
    outputs = ["y", "h_n", "c_n"][:3 if kind == "lstm" else 2]
    axes = {"x": {0 if batch_first else 1: "batch"}, "y": {0 if batch_first else 1: "batch"},
            **{n: {1: "batch"} for n in state_names + outputs[1:]}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=17, input_names=["x", *state_names],
                          output_names=outputs, dynamic_axes=axes)
    return onnx.load_from_string(buffer.getvalue()), state_names, outputs


def with_probe(proto, outputs):
    """The model with an input probe_O shaped like each output O and the output probe_loss = Σ_O Σ O · probe_O."""
    probed = onnx.ModelProto()
    probed.CopyFrom(proto)
    sums = []
    for o in outputs:
        info = next(v for v in probed.graph.output if v.name == o)
        r = onnx.ValueInfoProto()
        r.CopyFrom(info)
        r.name = f"probe_{o}"
        probed.graph.input.append(r)
        probed.graph.node.extend([h.make_node("Mul", [o, r.name], [f"{o}_times_r"]),
                                  h.make_node("ReduceSum", [f"{o}_times_r"], [f"{o}_sum"], keepdims=0)])
        sums.append(f"{o}_sum")
    probed.graph.node.append(h.make_node("Sum", sums, ["probe_loss"]))
    probed.graph.output.append(h.make_tensor_value_info("probe_loss", T.DOUBLE, []))
    return probed


def onnx_weights(proto, kind):
    """(W, R, B) initializer names of each recurrent node, in layer order."""
    return [list(n.input[1:4]) for n in proto.graph.node if n.op_type == kind.upper()]


def onnx_rows(kind):
    """Row k of an ONNX gate matrix is row onnx_rows(kind)[k] of PyTorch's."""
    return np.concatenate([np.arange(k * HIDDEN, (k + 1) * HIDDEN) for k in ORDER[kind]])


def torch_names(layer, directions):
    """Per direction, PyTorch's names of what ONNX packs as W, R, B (B holds bias_ih, then bias_hh)."""
    return [[f"{n}_l{layer}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            for suffix in ["", "_reverse"][:directions]]


def packed(kind, module, layer):
    """W, R, B of one layer as ONNX packs them: a direction's gate blocks in ONNX's order, stacked."""
    p, rows = {n: t.detach().numpy() for n, t in module.m.named_parameters()}, onnx_rows(kind)
    names = torch_names(layer, 2 if module.m.bidirectional else 1)
    return [np.stack([p[d[0]][rows] for d in names]), np.stack([p[d[1]][rows] for d in names]),
            np.stack([np.concatenate([p[d[2]][rows], p[d[3]][rows]]) for d in names])]


def pulled_back(kind, module, layer, onnx_grads):
    """dL/d(torch weights) of one layer from dL/d(W, R, B), by the inverse of `packed`."""
    rows, (dW, dR, dB) = onnx_rows(kind), onnx_grads
    torch_grads = {}
    for d, names in enumerate(torch_names(layer, dW.shape[0])):
        for name, value in zip(names, (dW[d], dR[d], dB[d][:len(rows)], dB[d][len(rows):])):
            torch_grads[name] = np.zeros_like(value)
            torch_grads[name][rows] = value
    return torch_grads


TORCH_CASES = [pytest.param(kind, bf, bi, layers, nl, given, id=f"{kind}{'-' + nl if nl != 'tanh' else ''}"
                            f"-{'batch_first' if bf else 'seq_first'}-{'bi' if bi else 'uni'}-{layers}l"
                            f"{'-h0' if given else ''}")
               for kind in ("gru", "lstm", "rnn")
               for bf, bi, layers, nl, given in [(False, False, 1, "tanh", False), (True, True, 1, "tanh", False),
                                                 (False, True, 2, "tanh", True), (True, False, 2, "tanh", False)]] + [
    pytest.param("rnn", True, True, 1, "relu", False, id="rnn-relu-batch_first-bi-1l")]


@pytest.mark.parametrize("kind, batch_first, bidirectional, layers, nonlinearity, given_state", TORCH_CASES)
def test_pytorch_export_equals_pytorch_values_and_gradients(kind, batch_first, bidirectional, layers, nonlinearity,
                                                              given_state):
    module = build(kind, batch_first, bidirectional, layers, nonlinearity)
    proto, state_names, outputs = export(module, kind, given_state)
    x = sample(RUN_BATCH, batch_first, 1)
    given = states(kind, module, RUN_BATCH, 1) if given_state else []
    expected = module(torch.from_numpy(x), *(torch.from_numpy(s) for s in given))
    probes = {f"probe_{o}": np.random.default_rng(10 + k).normal(size=e.shape)
              for k, (o, e) in enumerate(zip(outputs, expected))}
    loss = sum((e * torch.from_numpy(probes[f"probe_{o}"])).sum() for o, e in zip(outputs, expected))
    loss.backward()

    model = gx.from_proto(with_probe(proto, outputs))
    weights = onnx_weights(proto, kind)
    assert len(weights) == layers
    names = {n: model_name(model, n) for layer in weights for n in layer}
    assert set(names.values()) <= set(model.parameters), "W, R and B are the imported model's parameters"
    values, grads = model.value_and_gradients({"x": x, **dict(zip(state_names, given)), **probes}, of="probe_loss",
                                              wrt=list(names.values()))
    for o, e in zip(outputs, expected):
        assert_close(values[o], e.detach().numpy(), f"{kind}: output {o}")
    assert_close(values["probe_loss"], loss.item(), "L")
    torch_params = dict(module.m.named_parameters())
    for layer, layer_names in enumerate(weights):
        for name, value in zip(layer_names, packed(kind, module, layer)):
            assert_close(model.parameters[names[name]], value, f"{kind}: {name} is PyTorch's weights packed")
        for name, grad in pulled_back(kind, module, layer, [grads[names[n]] for n in layer_names]).items():
            assert_close(grad, torch_params[name].grad.numpy(), f"{kind}: dL/d{name}")


# -- single nodes: what PyTorch does not export -----------------------------------------------------

GATES = {"GRU": 3, "LSTM": 4, "RNN": 1}


def single_node(op, dtype, direction="forward", layout=0, bias=True, initial=False, extra_inputs=(), **attrs):
    """One recurrent node on x [seq, batch, input] (batch first with layout 1), batch size free, its
    weights initializers; every output graphed."""
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(len(op))
    gates, np_type = GATES[op], np.float32 if dtype == T.FLOAT else np.float64
    weights = {"W": (dirs, gates * HIDDEN, INPUT), "R": (dirs, gates * HIDDEN, HIDDEN)}
    if bias:
        weights["B"] = (dirs, 2 * gates * HIDDEN)
    initializers = [onnx.numpy_helper.from_array(rng.normal(0, 0.5, s).astype(np_type), n) for n, s in weights.items()]
    state = [dirs, "batch", HIDDEN] if layout == 0 else ["batch", dirs, HIDDEN]
    inputs = [h.make_tensor_value_info("x", dtype, [STEPS, "batch", INPUT] if layout == 0 else ["batch", STEPS, INPUT])]
    names = ["x", "W", "R", "B" if bias else ""]
    if initial:
        names += ["", "h0"] + (["c0"] if op == "LSTM" else [])
        inputs += [h.make_tensor_value_info(n, dtype, state) for n in names[5:]]
    names += list(extra_inputs)
    outputs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    node = h.make_node(op, names, outputs, direction=direction, hidden_size=HIDDEN, layout=layout, **attrs)
    y = [STEPS, dirs, "batch", HIDDEN] if layout == 0 else ["batch", STEPS, dirs, HIDDEN]
    graph = h.make_graph([node], op.lower(), inputs, [h.make_tensor_value_info("Y", dtype, y)] +
                         [h.make_tensor_value_info(n, dtype, state) for n in outputs[1:]], initializers)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def feeds(proto, batch, dtype):
    rng = np.random.default_rng(7)
    shapes = {i.name: [d.dim_value or batch for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    return {n: rng.normal(size=s).astype(dtype) for n, s in shapes.items()}


NODE_CASES = [pytest.param(op, direction, layout, bias, initial, attrs, id=f"{op}-{direction}-layout{layout}"
                           f"{'' if bias else '-no_bias'}{'-h0' if initial else ''}"
                           + "".join(f"-{k}{v}" for k, v in attrs.items()))
              for op, attrs in [("GRU", {"linear_before_reset": 0}), ("GRU", {"linear_before_reset": 1}),
                                ("LSTM", {}), ("RNN", {})]
              for direction, layout, bias, initial in [("bidirectional", 1, True, True), ("reverse", 0, False, False),
                                                       ("forward", 1, False, True)]]


@pytest.mark.parametrize("op, direction, layout, bias, initial, attrs", NODE_CASES)
def test_single_node_equals_onnxruntime(op, direction, layout, bias, initial, attrs):
    """onnxruntime computes layout 0 only: a batch-first node is compared with its twin of layout 0, fed the
    same inputs with the batch moved to axis 1 (Y [seq, dirs, batch, hidden], the states [dirs, batch, hidden])."""
    proto = single_node(op, T.FLOAT, direction, layout, bias, initial, **attrs)
    x = feeds(proto, RUN_BATCH, np.float32)
    got = gx.from_proto(proto).forward(x)
    twin = single_node(op, T.FLOAT, direction, 0, bias, initial, **attrs)
    swap = (lambda v: np.swapaxes(v, 0, 1)) if layout else (lambda v: v)
    expected = run_onnxruntime(twin, {k: swap(v) for k, v in x.items()})
    for name, want in expected.items():
        want = np.transpose(want, (2, 0, 1, 3)) if layout and name == "Y" else swap(want)
        assert_close(got[name], want, f"{op} output {name}", rtol=2e-5)


@pytest.mark.parametrize("op, direction, layout, bias, initial, attrs", NODE_CASES)
def test_single_node_gradients_equal_central_differences(op, direction, layout, bias, initial, attrs):
    proto = with_probe(single_node(op, T.DOUBLE, direction, layout, bias, initial, **attrs),
                       ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2])
    model = gx.from_proto(proto)
    x = feeds(proto, 2, np.float64)
    wrt = sorted(model.parameters)
    assert len(wrt) == (3 if bias else 2)
    reverse = model.gradients(x, of="probe_loss", wrt=wrt)
    numeric = model.gradients(x, of="probe_loss", wrt=wrt, method="numeric")
    for name in wrt:
        assert_close(reverse[name], numeric[name], f"{op}: dL/d{name}", rtol=1e-6)


# -- ONNX's own test cases, and what is refused -------------------------------------------------------

def onnx_cases():
    import onnx.backend.test.case.node as node_cases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    return [pytest.param(c, id=c.name) for c in sorted(cases, key=lambda c: c.name)
            if {n.op_type for n in c.model.graph.node} & {"GRU", "LSTM", "RNN"}]


@pytest.mark.parametrize("case", onnx_cases())
def test_onnx_node_cases(case):
    """Every case imports and gives ONNX's expected outputs, but the one with peepholes (refused)."""
    if "peepholes" in case.name:
        with pytest.raises(graphdef.GraphDefError, match=r"LSTM ×1 \(peephole weights"):
            gx.from_proto(case.model)
        return
    imported = gx.from_proto(case.model)
    names = [i.name for i in case.model.graph.input]
    for inputs, expected in case.data_sets:
        values = imported.forward(dict(zip(names, inputs)))
        for output, want in zip(case.model.graph.output, expected):
            assert_close(values[output.name], want, f"{case.name}: {output.name}", rtol=1e-5)


@pytest.mark.parametrize("op, attrs, extra, message", [
    ("LSTM", {"clip": 1.0}, (), "attribute clip=1.0"),
    ("LSTM", {"input_forget": 1}, (), "attribute input_forget=1"),
    ("GRU", {"activations": ["Relu", "Tanh"]}, (), "activations"),
    ("RNN", {"activations": ["Affine"], "activation_alpha": [2.0], "activation_beta": [1.0]}, (), "activation_"),
    ("GRU", {}, ("lengths",), "sequence_lens \\[5, 5, 4\\] shorter than the sequence"),
])
def test_what_is_not_imported_is_refused_by_name(op, attrs, extra, message):
    proto = single_node(op, T.DOUBLE, extra_inputs=extra, **attrs)
    if extra:
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array([5, 5, 4], np.int32), "lengths"))
    with pytest.raises(graphdef.GraphDefError, match=f"{op} ×1 .*{message}"):
        gx.from_proto(proto)


def test_sequence_lengths_of_the_full_sequence_are_no_lengths():
    proto = single_node("GRU", T.DOUBLE, extra_inputs=("lengths",))
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.full(3, STEPS, np.int32), "lengths"))
    plain = single_node("GRU", T.DOUBLE)
    x = feeds(plain, 3, np.float64)
    assert_close(gx.from_proto(proto).forward(x)["Y"], gx.from_proto(plain).forward(x)["Y"], "Y", rtol=1e-15)
