"""The new elementwise ops, reductions and einsum where the generated tests do not look: ties, bounds,
kinks, thresholds, non-finite values, equation errors, ONNX forms chosen by dtype and opset, and a model."""
import numpy as np
import pytest

import graphdef
from graphdef.ops import OPS

torch = pytest.importorskip("torch")


def ours(name, *inputs, g=None, **attrs):
    """(value, gradient of each input) of one op by its own rules; g defaults to ones."""
    op = OPS[name]
    attrs = op.bind(attrs)
    inputs = [np.asarray(x, dtype=float) for x in inputs]
    out = np.asarray(op.forward(*inputs, **attrs))
    g = np.ones_like(out) if g is None else g
    grads = [graphdef.ops.unbroadcast(np.asarray(rule(g, out, *inputs, **attrs)), x.shape)
             for rule, x in zip(op.backward, inputs)]
    return out, grads


def theirs(function, *inputs, g=None):
    """(value, gradient of each input) of a PyTorch function of float64 tensors."""
    tensors = [torch.tensor(np.asarray(x, dtype=float), requires_grad=True) for x in inputs]
    out = function(*tensors)
    out.backward(torch.ones_like(out) if g is None else torch.tensor(g))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


def assert_same(a, b):
    (value, grads), (value1, grads1) = a, b
    np.testing.assert_allclose(value, value1, rtol=1e-12, atol=1e-15)
    for k, (got, expected) in enumerate(zip(grads, grads1)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15, err_msg=f"gradient of input {k}")


def model(text: str) -> graphdef.Model:
    return graphdef.loads("graphdef: 1\nname: t\n" + text)


# -- ties and bounds: PyTorch's conventions --------------------------------------------

@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_binary_extremes_split_ties_half_and_half(name):
    x, y = [1.0, 2.0, 3.0, -1.0], [[1.0, 0.0, 3.0, 5.0], [2.0, 2.0, 0.0, -1.0]]
    got = ours(name, x, y)
    assert_same(got, theirs(getattr(torch, name), x, y))
    assert 0.5 in got[1][0]  # the ties were there


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (1, False), ([0, 2], True), (-1, True)])
def test_reductions_share_ties_evenly(name, axis, keepdims):
    x = np.array([[[1.0, 3.0], [3.0, -2.0], [3.0, 3.0]], [[0.0, -2.0], [-2.0, 1.0], [1.0, -2.0]]])
    function = lambda t: getattr(torch, "a" + name)(t, dim=() if axis is None else axis, keepdim=keepdims)  # noqa
    shape = ours(name, x, axis=axis, keepdims=keepdims)[0].shape
    g = np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape)  # a different gradient per output element
    got = ours(name, x, g=g, axis=axis, keepdims=keepdims)
    assert_same(got, theirs(function, x, g=g))
    assert np.count_nonzero(got[1][0]) > np.size(got[0]), "no tie was split"


def test_clip_passes_the_gradient_at_its_bounds_and_without_bounds_is_identity():
    x = [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert_same(ours("clip", x, min=-0.5, max=0.5), theirs(lambda t: torch.clamp(t, min=-0.5, max=0.5), x))
    assert_same(ours("clip", x, min=0.5, max=-0.5), theirs(lambda t: torch.clamp(t, min=0.5, max=-0.5), x))
    value, (grad,) = ours("clip", x)
    assert np.array_equal(value, x) and np.array_equal(grad, np.ones(5))


@pytest.mark.parametrize("name, attrs, function", [
    ("leaky_relu", {"negative_slope": 0.2}, lambda t: torch.nn.functional.leaky_relu(t, 0.2)),
    ("elu", {"alpha": 2.0}, lambda t: torch.nn.functional.elu(t, 2.0)),
    ("clip", {"min": 0.0}, lambda t: torch.clamp(t, min=0.0)),
    ("softplus", {"threshold": 1.0}, lambda t: torch.nn.functional.softplus(t, 1.0, 1.0)),
])
def test_kinks_take_pytorchs_side(name, attrs, function):
    x = [-1.0, 0.0, 1.0, 2.0]
    assert_same(ours(name, x, **attrs), theirs(function, x))


def test_softplus_is_linear_above_its_threshold_and_exact_far_below():
    x = [-700.0, -40.0, -1e-9, 19.0, 21.0, 1000.0]
    for beta in (1.0, 2.0):
        value, grads = ours("softplus", x, beta=beta)
        value1, grads1 = theirs(lambda t: torch.nn.functional.softplus(t, beta), x)
        np.testing.assert_allclose(value, value1, rtol=1e-14, atol=0)
        np.testing.assert_allclose(grads[0], grads1[0], rtol=1e-12, atol=0)
    assert value[-1] == 1000.0 and np.isfinite(value).all()


def test_gelu_forms_against_pytorch_and_unknown_form_refused():
    x = np.linspace(-6, 6, 25)
    for form in ("none", "tanh"):
        function = lambda t: torch.nn.functional.gelu(t, approximate=form)  # noqa: E731
        assert_same(ours("gelu", x, approximate=form), theirs(function, x))
    with pytest.raises(graphdef.GraphDefError, match="approximate must be one of none, tanh, got 'exact'"):
        model("inputs: {x: {shape: [3]}}\nnodes: {y: {op: gelu, inputs: [x], approximate: exact}}\noutputs: [y]\n")


def test_logsumexp_is_stable_and_keeps_infinities():
    x = np.array([[1000.0, 1000.0, -1000.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0]])
    got = OPS["logsumexp"].forward(x, axis=1)
    np.testing.assert_allclose(got, torch.logsumexp(torch.tensor(x), dim=1).numpy(), rtol=1e-15)
    assert got[0] == pytest.approx(1000 + np.log(2)) and got[1] == -np.inf and got[2] == np.inf
    finite = x[:1]
    assert_same(ours("logsumexp", finite, axis=-1, keepdims=True),
                theirs(lambda t: torch.logsumexp(t, dim=-1, keepdim=True), finite))


def test_cumsum_needs_an_axis_to_run_along():
    with pytest.raises(graphdef.GraphDefError, match="axis 0 is out of range for rank 0"):
        model("inputs: {x: {shape: []}}\nnodes: {y: {op: cumsum, inputs: [x], axis: 0}}\noutputs: [y]\n")


# -- einsum ---------------------------------------------------------------------------

@pytest.mark.parametrize("equation, shapes, message", [
    ("ij,jk,kl->il", ([2, 3], [3, 4]), "has 3 operand"),
    ("ii,i->i", ([2, 2], [2]), "repeats 'i' in one term"),
    ("ij,jk->iz", ([2, 3], [3, 4]), "the output's 'z' names no axis"),
    ("ij,jk->ik", ([2, 3], [4, 5]), "'j' names axes of sizes 3 and 4"),
    ("ij,jk", ([2, 3, 1], [3, 4]), "operand 1 has 3 axes, its subscripts 'ij' name 2"),
    ("i.j,jk", ([2, 3], [3, 4]), "'i.j' should be letters with at most one '...'"),
])
def test_einsum_equation_errors_name_the_problem(equation, shapes, message):
    with pytest.raises(graphdef.GraphDefError, match=message):
        model(f"inputs: {{x: {{shape: {shapes[0]}}}, y: {{shape: {shapes[1]}}}}}\n"
              f"nodes: {{o: {{op: einsum, inputs: [x, y], equation: '{equation}'}}}}\noutputs: [o]\n")


@pytest.mark.parametrize("equation, shapes", [
    ("Ab,ba", ((2, 3), (3, 4))),  # implicit output: letters once, alphabetically (capitals first)
    ("b...a,...c", ((2, 1, 3, 4), (5, 1, 6))),  # '...' broadcast, implicit output
    ("...i,...i->i", ((2, 3), (4, 1, 3))),  # '...' summed when the output leaves it out
    ("ij,kj->j", ((1, 3), (2, 1))),  # size-1 letters broadcast
])
def test_einsum_follows_torch_semantics(equation, shapes):
    rng = np.random.default_rng(0)
    x, y = (rng.normal(size=s) for s in shapes)
    got = ours("einsum", x, y, equation=equation)
    assert_same(got, theirs(lambda a, b: torch.einsum(equation, a, b), x, y))
    assert got[0].shape == OPS["einsum"].shape(*shapes, equation=equation)


ATTENTION = """inputs: {q: {shape: [4, 3]}, k: {shape: [5, 3]}, v: {shape: [5, 2]}}
nodes:
  scores: {op: einsum, inputs: [q, k], equation: "qd,kd->qk"}
  weights: {op: softmax, inputs: [scores], axis: -1}
  mixed: {op: einsum, inputs: [weights, v], equation: "...k,kd->...d"}
  act: {op: gelu, inputs: [mixed]}
  top: {op: max, inputs: [act], axis: 0}
  out: {op: logsumexp, inputs: [top]}
outputs: [out]
"""


def test_attention_model_on_a_batch_matches_pytorch():
    """Queries batched, keys and values shared: einsum's batching rule adds a letter to q alone."""
    rng = np.random.default_rng(1)
    feeds = {"q": rng.normal(size=(3, 4, 3)), "k": rng.normal(size=(5, 3)), "v": rng.normal(size=(5, 2))}
    values, grads = model(ATTENTION).value_and_gradients(feeds, of="out", wrt=["q", "k", "v"])

    def per_sample(q, k, v):
        w = torch.softmax(torch.einsum("qd,kd->qk", q, k), dim=-1)
        return torch.logsumexp(torch.amax(torch.nn.functional.gelu(torch.einsum("...k,kd->...d", w, v)), dim=0), 0)
    tensors = {n: torch.tensor(a, requires_grad=True) for n, a in feeds.items()}
    out = torch.vmap(per_sample, in_dims=(0, None, None))(*tensors.values())
    out.sum().backward()
    np.testing.assert_allclose(values["out"], out.detach().numpy(), rtol=1e-12)
    for name, t in tensors.items():
        np.testing.assert_allclose(grads[name], t.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


# -- ONNX forms --------------------------------------------------------------------------

def exported(text: str, x, opset: int = 18, dtype: str = "float64"):
    """(graphdef's y, a function running the export in onnxruntime on x, the ONNX node types) of a model
    run on a batch of one x."""
    ort = pytest.importorskip("onnxruntime")
    gx = pytest.importorskip("graphdef.onnx")
    m = graphdef.loads("graphdef: 1\nname: t\n" + text, dtype=dtype)
    proto = gx.export(m, opset=opset)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    run = lambda x: session.run(["y"], {"x": np.asarray([x], dtype=dtype)})[0][0]  # noqa: E731
    return m.forward({"x": np.asarray([x], dtype=dtype)})["y"][0], run, {n.op_type for n in proto.graph.node}


ONE = "inputs: {{x: {{shape: [{n}]}}}}\nnodes: {{y: {{op: {op}, inputs: [x]{attrs}}}}}\noutputs: [y]\n"


def test_erf_in_float64_is_a_series_as_exact_as_scipy_and_keeps_nan():
    x = np.concatenate([np.linspace(-7, 7, 561), [1e-300, -1e-12, 5.9999, 40.0, -1e300]])
    value, run, types = exported(ONE.format(n=len(x), op="erf", attrs=""), x)
    assert "Erf" not in types and "Gather" in types
    np.testing.assert_allclose(run(x), value, rtol=4e-16, atol=4e-16)
    assert np.isnan(run(np.where(x == 40.0, np.nan, x))[x == 40.0]).all()  # a NaN indexes no row out of range


@pytest.mark.parametrize("op, attrs, opset", [("erf", "", 18), ("gelu", "", 20), ("gelu", "", 17),
                                              ("gelu", ", approximate: tanh", 20), ("leaky_relu", "", 18),
                                              ("elu", ", alpha: 0.3", 19), ("softplus", ", beta: 3", 17)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_export_native_nodes_in_float32_and_elementary_ones_in_float64(op, attrs, opset, dtype):
    """onnxruntime has float32 kernels only for these: the float64 export must run in it at every opset."""
    x = np.concatenate([np.linspace(-3, 3, 13), [-30.0, 1e-9, 30.0]])
    value, run, types = exported(ONE.format(n=len(x), op=op, attrs=attrs), x, opset, dtype)
    native = {"erf": "Erf", "gelu": "Gelu" if opset >= 20 else "Erf", "leaky_relu": "LeakyRelu", "elu": "Elu",
              "softplus": "Softplus"}[op]
    assert (native in types) == (dtype == "float32"), types
    tolerance = 2e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(run(x), value, rtol=tolerance, atol=tolerance)
