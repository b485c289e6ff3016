"""The new elementwise ops, reductions and einsum where the generated tests do not look: ties, bounds,
kinks, thresholds, halves, zeros, non-finite values, integers, equation errors, ONNX forms chosen by dtype
and opset, and a model."""
import numpy as np
import pytest

import graphdef
from batch_cases import run_onnxruntime
from graphdef.ops import OPS

torch = pytest.importorskip("torch")


def ours(name, *inputs, g=None, **attrs):
    """(value, gradient of each input) of one op by its own rules; g defaults to ones."""
    op = OPS[name]
    attrs = op.bind(attrs)
    inputs = [np.asarray(x, dtype=float) for x in inputs]
    out = np.asarray(op.forward(*inputs, **attrs))
    g = np.ones_like(out) if g is None else g
    saved = op.saved(out, *inputs, **attrs)  # what the rules read as `out`: the output, or what the op saves
    grads = [graphdef.ops.unbroadcast(np.asarray(rule(g, saved, *inputs, **attrs)), x.shape)
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


# -- rounding, tests of values, integers --------------------------------------------------

def test_rounding_at_integers_and_halves_follows_pytorch():
    """round takes halves to even (as torch.round and ONNX Round); the gradients are PyTorch's zeros."""
    x = [-2.5, -1.5, -0.5, -0.2, 0.0, 0.5, 1.0, 1.5, 2.5, 2.7]
    for name, function in [("floor", torch.floor), ("ceil", torch.ceil), ("round", torch.round), ("sign", torch.sign)]:
        assert_same(ours(name, x), theirs(function, x))
    assert list(ours("round", x)[0]) == [-2.0, -2.0, -0.0, -0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 3.0]
    value, run, _ = exported(ONE.format(n=len(x), op="round", attrs=""), x)
    assert np.array_equal(run(x), value)


def test_isnan_and_isinf_flag_what_a_node_computed():
    """Inputs must be finite, a node's value need not be: the flags are booleans, which carry no gradient."""
    m = model("inputs: {x: {shape: [4]}}\nnodes:\n  l: {op: log, inputs: [x]}\n  n: {op: isnan, inputs: [l]}\n"
              "  i: {op: isinf, inputs: [l]}\n  s: {op: where, inputs: [n, 0.0, l]}\n  t: {op: sum, inputs: [s]}\n"
              "outputs: [n, i, t]\n")
    values = m.forward({"x": np.array([-1.0, 0.0, 1.0, 2.0])})
    assert values["n"].tolist() == [True, False, False, False] and values["i"].tolist() == [False, True, False, False]
    assert m.graph.vertices["n"].dtype == m.graph.vertices["i"].dtype == "bool"
    np.testing.assert_array_equal(m.gradients({"x": np.array([-1.0, 0.5, 1.0, 2.0])}, of="t")["x"], [0, 2, 1, 0.5])
    y = np.array([np.nan, np.inf, -np.inf, 0.0, -1e308])
    for op, function in [("isnan", torch.isnan), ("isinf", torch.isinf)]:
        assert np.array_equal(OPS[op].forward(y), function(torch.tensor(y)).numpy())


@pytest.mark.parametrize("name, arity", [("add", 2), ("sub", 2), ("mul", 2), ("maximum", 2), ("minimum", 2),
                                         ("neg", 1), ("abs", 1)])
def test_arithmetic_on_integers_stays_integer(name, arity):
    """int64 in, int64 out, as in ONNX and PyTorch; those values have no gradient, the floats beside them keep
    theirs."""
    args = "x, y" if arity == 2 else "x"
    inputs = "inputs: {x: {shape: [4], dtype: int64}, y: {shape: [4], dtype: int64}, f: {shape: [4]}}\n"
    m = model(inputs + f"nodes:\n  r: {{op: {name}, inputs: [{args}]}}\n  c: {{op: cast_like, inputs: [r, f]}}\n"
              "  p: {op: mul, inputs: [c, f]}\n  t: {op: sum, inputs: [p]}\noutputs: [r, t]\n")
    x, y, f = np.array([3, -7, 0, 5]), np.array([-2, -7, 4, 9]), np.array([0.5, 1.0, -2.0, 3.0])
    values, grads = m.value_and_gradients({"x": x, "y": y, "f": f}, of="t")
    expected = OPS[name].torch_function()(*[torch.tensor(v) for v in (x, y)[:arity]]).numpy()
    assert values["r"].dtype == expected.dtype == np.int64 and np.array_equal(values["r"], expected)
    assert set(grads) == {"f"} and np.array_equal(grads["f"], expected)
    alone = model(inputs + f"nodes: {{r: {{op: {name}, inputs: [{args}]}}}}\noutputs: [r]\n")
    feeds = {"x": x[None], "y": y[None]} if arity == 2 else {"x": x[None]}
    exported = run_onnxruntime(pytest.importorskip("graphdef.onnx").export(alone), feeds)["r"]
    assert exported.dtype == np.int64 and np.array_equal(exported[0], expected)


@pytest.mark.parametrize("inputs, node, message", [
    ("{x: {shape: [2]}, i: {shape: [2], dtype: int64}}", "{op: add, inputs: [x, i]}",
     "inputs hold float64 and int64 values; this op takes floats, or integers"),
    ("{b: {shape: [2], dtype: bool}}", "{op: neg, inputs: [b]}", "inputs hold bool values"),
    ("{i: {shape: [2], dtype: int64}}", "{op: exp, inputs: [i]}", "input 1 holds int64 values"),
    ("{i: {shape: [2], dtype: int64}}", "{op: isnan, inputs: [i]}", "input 1 holds int64 values"),
])
def test_integers_meet_floats_only_through_cast_like(inputs, node, message):
    with pytest.raises(graphdef.GraphDefError, match=message):
        model(f"inputs: {inputs}\nnodes: {{y: {node}}}\noutputs: [y]\n")


# -- activations: hard_sigmoid, softsign ------------------------------------------------------

def test_hard_sigmoid_is_onnxs_and_pytorchs_at_its_slope():
    x = np.linspace(-4, 4, 17)
    assert_same(ours("hard_sigmoid", x), theirs(lambda t: torch.clamp(0.2 * t + 0.5, 0, 1), x))
    value, (grad,) = ours("hard_sigmoid", x, alpha=1 / 6)  # F.hardsigmoid, away from its kinks at ±3
    inside = np.abs(x) != 3
    expected = theirs(torch.nn.functional.hardsigmoid, x)
    np.testing.assert_allclose(value, expected[0], rtol=1e-15)
    np.testing.assert_allclose(grad[inside], expected[1][0][inside], rtol=1e-7)  # PyTorch's 1/6 there: a float32
    assert_same(ours("softsign", x), theirs(torch.nn.functional.softsign, x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hard_sigmoid_exports_its_float64_slope_exactly(dtype):
    x = np.linspace(-4, 4, 33)
    value, run, types = exported(ONE.format(n=len(x), op="hard_sigmoid", attrs=", alpha: 0.3, beta: 0.4"), x,
                                 dtype=dtype)
    assert ("HardSigmoid" in types) == (dtype == "float32")  # its alpha, beta are float32 attributes
    np.testing.assert_allclose(run(x), value, rtol=1e-7 if dtype == "float32" else 1e-15, atol=0)


# -- trigonometric and hyperbolic functions: float64 ONNX forms ------------------------------

EXTREMES = np.concatenate([np.linspace(-5, 5, 401), 10.0 ** np.arange(-300, 309, 11), -10.0 ** np.arange(-300, 309, 11),
                           [0.0, 1.0, -1.0, 1 - 1e-12, -1 + 1e-12, 1 + 1e-12, 709.5, 710.2, -710.2, 2.0**28 + 4,
                            np.inf, -np.inf, np.nan, 5e-324, 4e38]])


@pytest.mark.parametrize("op, function", [("tan", np.tan), ("asin", np.arcsin), ("acos", np.arccos),
                                          ("atan", np.arctan), ("sinh", np.sinh), ("cosh", np.cosh),
                                          ("asinh", np.arcsinh), ("acosh", np.arccosh), ("atanh", np.arctanh)])
def test_float64_exports_of_trig_match_numpy_everywhere(op, function):
    """onnxruntime runs these in float32 only: the float64 forms agree with numpy to about an ulp from 1e-300 to
    1e308, at the edges of their domains, and on NaN and infinities (tan near its poles: as far as sin/cos)."""
    gx = pytest.importorskip("graphdef.onnx")
    m = model(f"inputs: {{x: {{shape: [{len(EXTREMES)}]}}}}\nnodes: {{y: {{op: {op}, inputs: [x]}}}}\noutputs: [y]\n")
    got = run_onnxruntime(gx.export(m), {"x": EXTREMES[None]})["y"][0]
    with np.errstate(all="ignore"):
        expected = function(EXTREMES)
    np.testing.assert_allclose(got, expected, rtol=1e-13 if op == "tan" else 2e-15, atol=0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


def test_trig_gradients_match_pytorch_near_the_edges_of_their_domains():
    for name, x in [("asin", [-0.999, 0.0, 0.999]), ("acos", [-0.999, 0.3, 0.999]), ("atanh", [-0.999, 0.5, 0.999]),
                    ("acosh", [1.001, 2.0, 1e6]), ("tan", [-1.5, 0.0, 1.5]), ("asinh", [-1e6, 0.0, 1e-8]),
                    ("sinh", [-700.0, 1e-9, 30.0]), ("cosh", [-30.0, 0.0, 700.0]), ("atan", [-1e8, 0.0, 1e8])]:
        assert_same(ours(name, x), theirs(getattr(torch, name), x))


# -- prod, trilu, tile ----------------------------------------------------------------------

@pytest.mark.parametrize("axis, keepdims", [(None, False), (1, False), (0, True), ([0, 2], False), (-1, True)])
def test_prod_matches_pytorch_where_inputs_are_zero(axis, keepdims):
    x = np.array([[[2.0, 0.0, 3.0], [1.5, -1.0, 0.5]], [[0.0, 4.0, 0.0], [-2.0, 0.5, 3.0]]])
    shape = ours("prod", x, axis=axis, keepdims=keepdims)[0].shape
    g = np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape)  # a different gradient per output element
    torch_prod = lambda t: OPS["prod"].torch_function()(t, axis=axis, keepdims=keepdims)  # noqa: E731
    assert_same(ours("prod", x, g=g, axis=axis, keepdims=keepdims), theirs(torch_prod, x, g=g))


def test_prod_gradient_is_the_product_of_the_others():
    """One zero: the others' product reaches it, 0 the rest; two zeros: 0 everywhere (out/x would be NaN)."""
    _, (grad,) = ours("prod", [[2.0, 0.0, 3.0], [0.0, 4.0, 0.0], [2.0, 5.0, 3.0]], axis=1)
    assert grad.tolist() == [[0.0, 6.0, 0.0], [0.0, 0.0, 0.0], [15.0, 6.0, 10.0]]


def test_trilu_masks_values_of_any_dtype_and_needs_a_matrix():
    m = model("inputs: {b: {shape: [3, 3], dtype: bool}, x: {shape: [2, 3]}}\nnodes:\n"
              "  u: {op: trilu, inputs: [b], k: 1}\n  l: {op: trilu, inputs: [x], upper: false, k: -1}\n"
              "outputs: [u, l]\n")
    b, x = np.ones((3, 3), bool), np.arange(1.0, 7.0).reshape(2, 3)
    values = m.forward({"b": b, "x": x})
    assert values["u"].dtype == bool and values["u"].tolist() == np.triu(b, 1).tolist()
    assert values["l"].tolist() == [[0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]
    with pytest.raises(graphdef.GraphDefError, match=r"trilu takes a matrix, or a stack of them: .* \[3\]"):
        model("inputs: {x: {shape: [3]}}\nnodes: {y: {op: trilu, inputs: [x]}}\noutputs: [y]\n")
    gx = pytest.importorskip("graphdef.onnx")
    with pytest.raises(ValueError, match="trilu needs ONNX opset 14"):  # (as cast_like's below opset 15)
        gx.export(m, opset=13)


def test_tile_gradient_adds_up_the_copies():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = np.arange(24.0).reshape(4, 6)
    value, (grad,) = ours("tile", x, g=g, repeats=[2, 3])
    assert_same((value, [grad]), theirs(lambda t: torch.tile(t, (2, 3)), x, g=g))
    assert grad[0, 0] == sum(g[i, j] for i in (0, 2) for j in (0, 2, 4))
    with pytest.raises(graphdef.GraphDefError, match=r"tile needs one count per axis: repeats \[2\] for an input of "
                                                     r"shape \[2, 2\]"):
        model("inputs: {x: {shape: [2, 2]}}\nnodes: {y: {op: tile, inputs: [x], repeats: [2]}}\noutputs: [y]\n")
    with pytest.raises(graphdef.GraphDefError, match="tile's repeats are counts, 0 or more"):
        model("inputs: {x: {shape: [2]}}\nnodes: {y: {op: tile, inputs: [x], repeats: [-1]}}\noutputs: [y]\n")
