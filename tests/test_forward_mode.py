"""Forward mode: every op's Jacobian-vector rule, and whole models, against reverse mode, finite
differences and PyTorch's forward-mode autograd (torch.func.jvp).

Cases come from the registry (each op's examples), so a new op cannot slip in without a tangent rule.
"""
import numpy as np
import pytest

import graphdef
from batch_cases import (MODEL_FILES, builtin_ops, check_batch_equivalence, close, example_cases, load_model,
                         mode, model_feeds, one_op_model, sample_inputs, seed_of)
from graphdef.engine.gradients import FORWARD_LIMIT
from graphdef.errors import GraphDefError
from graphdef.ops import OPS, unbroadcast
from test_op_gradients import EPS, call, cases, context, sample


def test_every_differentiable_input_has_a_jvp_rule():
    missing = [f"{name} (input {k})" for name, op in OPS.items() for k, rule in enumerate(op.backward)
               if rule is not None and (len(op.jvp) <= k or op.jvp[k] is None)]
    assert not missing, f"inputs with a vjp rule but no jvp rule: {missing}"


def tangent_of(op, inputs, attrs, training, k, t, out, value):
    """J_k·t by the op's rule (given `out` as the rules get it: what the op saves, if it saves), shaped like the
    forward's value."""
    return np.broadcast_to(call(op.jvp[k], op, training, t, out, *inputs, **attrs), np.shape(value))


def numeric_jvp(op, inputs, attrs, training, k, t):
    """(f(x_k + εt) − f(x_k − εt)) / 2ε."""
    shifted = [call(op.forward, op, training, *inputs[:k], inputs[k] + s * EPS * t, *inputs[k + 1:], **attrs)
               for s in (1, -1)]
    return (np.asarray(shifted[0]) - np.asarray(shifted[1])) / (2 * EPS)


def one_example(name, example, seed_tag):
    """(op, attributes with the output chosen, training, inputs, value, what the rules get as out) per output."""
    op = OPS[name]
    shapes, attrs = example
    attrs, training = mode(attrs)
    for output in range(op.outputs(**op.bind(attrs)) if op.outputs else 1):
        full = op.bind(attrs) | ({"output": output} if op.outputs else {})
        rng = np.random.default_rng(seed_of(seed_tag, name, shapes, output))
        inputs = sample(op, shapes, rng)
        value = np.asarray(call(op.forward, op, training, *inputs, **full))
        out = call(op.save, op, training, *inputs, **full)[1] if op.save else value
        yield op, full, training, inputs, value, out, rng


@pytest.mark.parametrize("name, example", cases())
def test_jvp_matches_finite_differences_and_the_vjp(name, example):
    """J·t against central differences in the direction t, and <J·t, g> = <t, Jᵀ·g> against the vjp rule."""
    assert example is not None, f"op '{name}' declares no examples"
    for op, attrs, training, inputs, value, out, rng in one_example(name, example, "jvp"):
        if value.dtype.kind != "f":
            continue
        g = rng.normal(size=value.shape)
        for k, x in enumerate(inputs):
            if op.backward[k] is None:
                continue
            t = rng.normal(size=x.shape)
            got = tangent_of(op, inputs, attrs, training, k, t, out, value)
            assert got.shape == value.shape
            close(got, numeric_jvp(op, inputs, attrs, training, k, t), f"{name}: J·t of input {k}",
                  rtol=1e-5, atol=1e-6)
            back = unbroadcast(np.asarray(call(op.backward[k], op, training, g, out, *inputs, **attrs)), x.shape)
            close(np.sum(got * g), np.sum(t * back), f"{name}: <J·t, g> = <t, Jᵀ·g> for input {k}",
                  rtol=1e-9, atol=1e-9)


def op_cases():
    return [pytest.param(name, i, id=f"{name}-{i}") for name, op in builtin_ops().items()
            for i, _ in enumerate(op.examples)]


@pytest.mark.parametrize("name, index", op_cases())
def test_jvp_matches_pytorch(name, index):
    """Each registry example: torch.func.jvp of the op's PyTorch expression, one input's tangent at a time."""
    torch = pytest.importorskip("torch")
    for op, attrs, training, inputs, value, out, rng in one_example(name, OPS[name].examples[index], "torch jvp"):
        if value.dtype.kind != "f":
            continue
        for k, x in enumerate(inputs):
            if op.backward[k] is None:
                continue
            t = rng.normal(size=x.shape)
            tensors = [torch.tensor(v) for v in inputs]

            def along(xk):
                return op.torch_function()(*tensors[:k], xk, *tensors[k + 1:], **attrs, **context(op, training))

            _, theirs = torch.func.jvp(along, (tensors[k],), (torch.tensor(t),))
            close(tangent_of(op, inputs, attrs, training, k, t, out, value), theirs.numpy(),
                  f"{name}: J·t of input {k}", rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name, index, which", example_cases(batched=False) + example_cases(batched=True))
def test_forward_mode_equals_reverse_on_every_example(name, index, which):
    """The engine's forward mode through a one-op model, per sample and batched (the op's batching rule, or
    per sample): the gradient of sum(out) equals reverse mode's, which test_batching checks against the samples
    one by one."""
    op = OPS[name]
    shapes, attrs = op.examples[index]
    model = one_op_model(name, shapes, attrs)
    feeds = sample_inputs(op, shapes, which, np.random.default_rng(seed_of("forward", name, index, which)))
    floats = [k for k, v in feeds.items() if v.dtype.kind == "f"]
    if not floats or not model.graph.vertices["out"].dtype.startswith("float"):
        return
    model.reseed(0)  # training-mode dropout: both methods see the same mask
    _, reverse = model.value_and_gradients(feeds, of="out", wrt=floats)
    model.reseed(0)
    _, forward = model.value_and_gradients(feeds, of="out", wrt=floats, method="forward")
    for w in floats:
        close(forward[w], reverse[w], f"{name}: ∂out/∂{w}", rtol=1e-9, atol=1e-10)


def test_forward_mode_per_sample_equals_batch():
    """Batch semantics hold for forward mode too: stacked for batched inputs, summed for shared ones."""
    model = load_model("mlp.yaml")
    feeds = model_feeds(model, np.random.default_rng(1))
    reverse = check_batch_equivalence(model, feeds, set(model.inputs))
    forward = model.gradients(feeds, method="forward")
    for name, parts in reverse.items():
        close(forward[name], np.sum(parts, axis=0) if name in model.parameters else np.stack(parts), name,
              rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("file", MODEL_FILES)
def test_model_jvp_is_the_reverse_gradient_along_a_direction(file):
    """One forward-mode pass with a random tangent on every input and parameter: the tangent of sum(of)
    is Σ_w <∂sum(of)/∂w, t_w>, the reverse-mode gradients dotted with the tangents."""
    model = load_model(file)
    rng = np.random.default_rng(seed_of("model jvp", file))
    feeds = model_feeds(model, rng, n=2)
    of, wrt = model.resolve()
    grads = model.gradients(feeds, of=of, wrt=wrt)
    values = model.forward(feeds)
    tangents = {w: rng.normal(size=np.shape(values[w])) for w in wrt}
    _, pushed = model.jvp(feeds, tangents, outputs=[of])
    expected = sum(np.sum(grads[w] * tangents[w]) for w in wrt)
    close(np.sum(pushed[of]), expected, f"{file}: tangent of sum({of})", rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("file", ["lecture.yaml", "chain.yaml", "diamond.yaml", "lecture_network.yaml",
                                  "logistic.yaml", "mlp.yaml"])
def test_forward_method_equals_reverse_on_models(file):
    model = load_model(file)
    feeds = model_feeds(model, np.random.default_rng(seed_of("forward method", file)), n=None)
    reverse = model.gradients(feeds)
    forward = model.gradients(feeds, method="forward")
    assert forward.keys() == reverse.keys()
    for name in reverse:
        close(forward[name], reverse[name], f"{file}: ∂/∂{name}", rtol=1e-9, atol=1e-10)


def test_forward_method_on_the_lecture(cli):
    code, out, _ = cli("grad", "models/lecture.yaml", "--at", "a=3", "--at", "b=5", "--method", "forward")
    assert code == 0 and out.splitlines() == ["e = 48", "∂e/∂a = 6", "∂e/∂b = 14"]


def test_forward_mode_refuses_too_many_passes():
    model = graphdef.loads("graphdef: 1\nname: big\ninputs:\n  x: {shape: [%d]}\nnodes:\n"
                           "  s: {op: sum, inputs: [x]}\noutputs: [s]\n" % (FORWARD_LIMIT + 1))
    with pytest.raises(GraphDefError, match="one pass per input element"):
        model.gradients({"x": np.ones(FORWARD_LIMIT + 1)}, method="forward")


def test_jvp_checks_its_tangents():
    model = load_model("lecture.yaml")
    with pytest.raises(GraphDefError, match="cannot differentiate with respect to 'zz'"):
        model.jvp({"a": 3.0, "b": 5.0}, {"zz": 1.0})
    with pytest.raises(GraphDefError, match="tangent of 'a' must be finite numbers of shape"):
        model.jvp({"a": 3.0, "b": 5.0}, {"a": [1.0, 2.0]})
    with pytest.raises(GraphDefError, match="tangent of 'a'"):
        model.jvp({"a": 3.0, "b": 5.0}, {"a": float("nan")})
    values, tangents = model.jvp({"a": 3.0, "b": 5.0}, {"b": 1.0})
    assert float(values["e"]) == 48 and float(tangents["e"]) == 14


@pytest.mark.parametrize("file, at", [("lecture.yaml", {"a": 3.0, "b": 5.0}), ("chain.yaml", {"a": 1.0, "b": -2.0}),
                                      ("diamond.yaml", {"x0": 0.5}),
                                      ("lecture_network.yaml", {"x1": 1.0, "x2": 0.5, "y1": 1.0, "y2": 0.0})])
def test_forward_mode_explained_pass_by_pass(file, at):
    """Each line of `grad --method forward --explain` adds up (local × total of the input, summed), and the
    last total of each pass is reverse mode's gradient."""
    import re

    from graphdef.tools.explain import explain_forward
    model = load_model(file)
    text = explain_forward(model, at)
    of, wrt = model.resolve(labels=False)  # what explanations show: the labels' gradients left out
    grads = model.gradients(at, of=of, wrt=wrt)
    passes = text.split("\npass for ")[1:]
    assert [p.split(":")[0] for p in passes] == list(grads)
    for block in passes:
        w = block.split(":")[0]
        last = None
        for line in block.splitlines()[1:]:
            found = re.fullmatch(r"  ∂(\S+)/∂(\S+) = (.+) = (.+) = (\S+)", line)
            if not found:
                continue
            vertex, wrt, _, numbers, result = found.groups()
            assert wrt == w and "∂ₗ" in found.group(3)
            terms = [np.prod([float(x) for x in term.split("×")]) for term in numbers.split(" + ")]
            assert sum(terms) == pytest.approx(float(result), rel=1e-4, abs=1e-5), line
            last = (vertex, float(result))
        assert last[0] == of and last[1] == pytest.approx(float(grads[w]), rel=1e-5, abs=1e-6)


def test_forward_mode_explained_refuses_tensor_graphs(cli):
    code, _, err = cli("grad", "models/mlp.yaml", "--at", "x=[1, 2]", "--at", "y=[0, 1]", "--method", "forward",
                       "--explain")
    assert code == 1 and "scalar graphs" in err and "Traceback" not in err
