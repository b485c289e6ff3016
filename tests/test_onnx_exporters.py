"""ONNX with real exporters: PyTorch models exported by both of PyTorch's ONNX exporters (TorchScript,
opset 17, and dynamo, opset 18+; batch axis dynamic) import into graphdef, compute PyTorch's
outputs on another batch size, and give the parameter gradients PyTorch's autograd gives.

Everything is float64 (both exporters accept float64 modules and write float64 graphs), so the
comparisons are tight: relative 1e-9, with an absolute floor of 1e-9 times the largest magnitude
of the compared array (sums reordered by another implementation leave ~1e-15 relative noise, and
a relative test alone fails on entries that cancel to near zero).

The families, the exports and the map from the exported initializers back to the PyTorch
parameters (transposes, batch-norm folds, GRU/LSTM gate packing) are in tests/torch_exports.py.
"""
import json

import numpy as np
import pytest

import graphdef

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")  # the dynamo exporter needs it
gx = pytest.importorskip("graphdef.onnx")

import torch_exports as te  # noqa: E402 - needs torch

RTOL = 1e-9
RUN_BATCH, GRAD_BATCH = 7, 3  # both differ from te.EXPORT_BATCH: the imported batch axis must be free
assert te.EXPORT_BATCH not in (RUN_BATCH, GRAD_BATCH)

CASES = [pytest.param(f, e, id=f"{f}-{e}") for f in te.FAMILIES for e in te.EXPORTERS]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """(family, exporter) -> path of the exported .onnx file, each exported once per session."""
    return te.Exports(tmp_path_factory.mktemp("torch_exports"))


def assert_close(actual, expected, what, rtol=RTOL, scale=None):
    """Relative `rtol`, with an absolute floor of rtol * scale (default: expected's largest magnitude)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, PyTorch's {expected.shape}"
    atol = rtol * (float(np.abs(expected).max(initial=0.0)) if scale is None else scale)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def float_initializers(proto) -> dict:
    return {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer
            if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)}


def single_input(model) -> str:
    names = [n for n in model.inputs if n != "probe_r"]
    assert len(names) == 1, f"the imported model has inputs {list(model.inputs)}; the PyTorch model has one"
    return names[0]


# -- the exports themselves, and the test's own map (independent of graphdef's importer) --------

@pytest.mark.parametrize("family, exporter", CASES)
def test_export_is_float64_and_maps_onto_the_torch_parameters(family, exporter, exported):
    """Every float initializer the exporter wrote is float64 and is a known function of the module's
    parameters (or a scalar constant such as a softmax scale); every parameter is used by one."""
    proto = onnx.load(exported(family, exporter))
    dtypes = {t.name: t.data_type for t in proto.graph.initializer
              if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)}
    assert set(dtypes.values()) <= {onnx.TensorProto.DOUBLE}, f"float32 initializers: {dtypes}"
    arrays = float_initializers(proto)
    matched, unmatched = te.match(family, arrays)
    assert [k for k in unmatched if arrays[k].size > 1] == [], "initializers matching no torch parameter"
    assert te.parameters_not_covered(family, matched) == []
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value, f"the exported batch axis is not symbolic: {batch}"


def onnx_rnn(kind, x, W, R, B):
    """ONNX's GRU (linear_before_reset=1, which is PyTorch's GRU) or LSTM, one forward direction,
    zero initial state, written from the operator's specification: every step's hidden state."""
    gates = 3 if kind == "gru" else 4
    w, r = W[0].chunk(gates), R[0].chunk(gates)
    wb, rb = (b.chunk(gates) for b in B[0].chunk(2))
    h = c = torch.zeros(x.shape[0], R.shape[-1], dtype=x.dtype)
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if kind == "gru":  # gates z, r, h
            z = torch.sigmoid(xt @ w[0].T + h @ r[0].T + wb[0] + rb[0])
            reset = torch.sigmoid(xt @ w[1].T + h @ r[1].T + wb[1] + rb[1])
            n = torch.tanh(xt @ w[2].T + reset * (h @ r[2].T + rb[2]) + wb[2])
            h = (1 - z) * n + z * h
        else:  # gates i, o, f, c
            i, o, f, g = (xt @ w[k].T + h @ r[k].T + wb[k] + rb[k] for k in range(4))
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_rnn_packing_follows_the_onnx_operator(kind):
    """The map's W, R, B (packed from the torch module) run through ONNX's GRU/LSTM equations give
    the torch module's outputs, and gradients with respect to W, R, B pulled back by the map give
    autograd's gradients of the torch weights: the gate orders, the bias layout and te.pull_back
    are right."""
    module = te.build(kind)
    x = torch.from_numpy(te.sample(kind, 5, seed=3))
    r = torch.from_numpy(np.random.default_rng(4).normal(size=(5, x.shape[1], module.r.hidden_size)))
    with torch.no_grad():
        tensors = te._tensors(module)
        packed = {c: c.fn(tensors).clone().requires_grad_(True) for c in te.rnn_candidates("r", module.r)}
    ours = onnx_rnn(kind, x, *packed.values())
    theirs = module.r(x)[0]
    assert_close(ours.detach().numpy(), theirs.detach().numpy(), f"{kind}: ONNX equations on the packed weights")
    grads = torch.autograd.grad((ours * r).sum(), list(packed.values()))
    pulled = te.pull_back(kind, {c.label: c for c in packed}, {c.label: g.numpy() for c, g in zip(packed, grads)})
    names = [n for n, _ in module.r.named_parameters()]
    want = torch.autograd.grad((theirs * r).sum(), list(module.r.parameters()))
    for name, g in zip(names, want):
        assert_close(pulled[f"r.{name}"], g.numpy(), f"{kind}: dL/d{name} through the packing")


# -- importing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("family, exporter", CASES)
def test_imports(family, exporter, exported):
    model = gx.load(exported(family, exporter))
    assert len(model.outputs) == 1, model.outputs
    single_input(model)
    assert model.parameters, "no parameters imported"


@pytest.mark.parametrize("family, exporter", CASES)
def test_outputs_equal_pytorch_on_another_batch_size(family, exporter, exported):
    model = gx.load(exported(family, exporter))
    x = te.sample(family, RUN_BATCH, seed=1)
    got = model.forward({single_input(model): x})[model.outputs[0]]
    assert_close(got, te.run_torch(family, x), f"{family} exported by {exporter}: output")


def with_probe(proto):
    """The exported model with an input probe_r shaped like its output y and a scalar output
    probe_loss = ReduceSum(y * probe_r): the loss whose gradients are compared."""
    h = onnx.helper
    probed = onnx.ModelProto()
    probed.CopyFrom(proto)
    y = probed.graph.output[0]
    r = onnx.ValueInfoProto()
    r.CopyFrom(y)
    r.name = "probe_r"
    probed.graph.input.append(r)
    probed.graph.node.extend([h.make_node("Mul", [y.name, "probe_r"], ["probe_product"]),
                              h.make_node("ReduceSum", ["probe_product"], ["probe_loss"], keepdims=0)])
    probed.graph.output.append(h.make_tensor_value_info("probe_loss", onnx.TensorProto.DOUBLE, []))
    return probed


@pytest.mark.parametrize("family, exporter", CASES)
def test_parameter_gradients_equal_autograd(family, exporter, exported):
    """L = sum(output * R), R fixed and random: graphdef's dL/d(imported parameter), pulled back through
    the exporter's rewrite of each parameter (te.pull_back), equals autograd's dL/d(torch parameter)
    for every parameter of the module."""
    model = gx.from_proto(with_probe(onnx.load(exported(family, exporter))), family)
    assert "probe_loss" in model.graph.vertices, "the probe's loss node did not keep its name"
    matched, unmatched = te.match(family, model.parameters)
    missing = te.parameters_not_covered(family, matched)
    assert missing == [], f"torch parameters that no imported parameter is computed from: {missing}"
    loose = {k: model.parameters[k].shape for k in unmatched if model.parameters[k].size > 1}
    assert loose == {}, "imported parameters matching no torch parameter (their gradients would go unchecked)"

    x = te.sample(family, GRAD_BATCH, seed=2)
    y = te.run_torch(family, x)
    r = np.random.default_rng(5).normal(size=y.shape)
    want_loss, want = te.torch_gradients(family, x, r)
    feeds = {single_input(model): x, "probe_r": r}
    values, grads = model.value_and_gradients(feeds, of="probe_loss", wrt=list(matched))
    assert_close(values["probe_loss"], want_loss, "L", scale=float(np.abs(y * r).sum()))  # a sum that cancels
    got = te.pull_back(family, matched, grads)
    for name in want:
        assert_close(got[name], want[name], f"{family} exported by {exporter}: dL/d{name}")


# -- training an imported CNN -------------------------------------------------------------------

def blob_images(n: int, rng) -> tuple:
    """n noisy 1x28x28 images of 10 classes: class k has a bright 6x6 patch at the k-th of ten places."""
    y = np.arange(n) % 10
    rng.shuffle(y)
    x = 0.3 * rng.normal(size=(n, 1, 28, 28))
    for i, k in enumerate(y):
        row, col = 2 + 12 * (k // 5), 1 + 5 * (k % 5)
        x[i, 0, row:row + 6, col:col + 5] += 2.0
    return x, y.astype(np.int64)


def test_imported_lenet_trains(tmp_path, exported, cli):
    """The LeNet family, exported by TorchScript, imported with a loss (`graphdef import --loss`),
    trains with `graphdef train` on 64 images written to an .npz: before training its loss is
    PyTorch's cross-entropy, after two epochs the loss on the data is lower (9.38 -> 1.77 when
    written), and the trained model loads and predicts."""
    x, y = blob_images(64, np.random.default_rng(0))
    data = tmp_path / "blobs.npz"
    np.savez(data, x=x, y=y)
    imported = tmp_path / "lenet.yaml"
    code, _, err = cli("import", exported("lenet", "torchscript"), "-o", imported, "--loss", "softmax_cross_entropy")
    assert code == 0, err

    def loss_of(model_file):
        code, out, err = cli("eval", model_file, "--data", data, "--json")
        assert code == 0, err
        return json.loads(out)["loss"]

    before = loss_of(imported)  # the imported network with its added loss is PyTorch's network with its loss
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(te.build("lenet")(torch.from_numpy(x)), torch.from_numpy(y)).item()
    assert before == pytest.approx(want, rel=RTOL)
    code, out, err = cli("train", imported, "--data", data, "--epochs", "2", "--batch-size", "16",
                         "--optimizer", "adam", "--lr", "0.003", "--seed", "0", "-o", tmp_path / "run", "--json")
    assert code == 0, err
    assert [h["epoch"] for h in json.loads(out)["history"]] == [1, 2], out[:500]
    trained = tmp_path / "run" / "model.yaml"
    after = loss_of(trained)
    assert after < 0.9 * before, f"loss {before} before training, {after} after"
    model = graphdef.load(trained)
    assert set(model.inputs) == {"x", "y"}, model.inputs  # the image, and the target the added loss reads
    scores = model.forward({"x": x[:5]})[model.outputs[0]]  # inference needs no target
    assert scores.shape == (5, 10) and np.isfinite(scores).all()
