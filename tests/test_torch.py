"""Random graphs, differentiated by graphdef and by PyTorch's autograd: values and gradients agree."""

import numpy as np
import pytest

import graphdef
from batch_cases import builtin_ops, close, example_cases, mode, one_op_model, sample_inputs, seed_of
from graphdef.ops import OPS, unbroadcast
from test_op_gradients import call, context, sample

torch = pytest.importorskip("torch")


UNARY = ["exp", "neg", "relu", "sigmoid", "tanh", "square", "abs", "identity", "log", "sqrt", "reciprocal"]
BINARY = ["add", "sub", "mul", "div", "pow", "matmul"]
POSITIVE_ARGS = {"log": [0], "sqrt": [0], "reciprocal": [0], "div": [1], "pow": [0]}


def test_every_builtin_op_has_a_torch_twin():
    assert [name for name, op in builtin_ops().items() if op.torch is None] == []


def torch_of(op, training, *inputs, **attrs):
    """The op's PyTorch expression on numpy inputs: (tensors, whose floats require grad; result)."""
    tensors = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    return tensors, op.torch_function()(*tensors, **attrs, **context(op, training))


def op_cases():
    return [pytest.param(name, i, id=f"{name}-{i}") for name, op in builtin_ops().items()
            for i, _ in enumerate(op.examples)]


@pytest.mark.parametrize("name, index", op_cases())
def test_op_matches_pytorch(name, index):
    """Each registry example: the forward value, and each vector-Jacobian product, equal PyTorch autograd's."""
    op = OPS[name]
    shapes, attrs = op.examples[index]
    attrs, training = mode(attrs)
    for output in range(op.outputs(**op.bind(attrs)) if op.outputs else 1):
        full = op.bind(attrs) | ({"output": output} if op.outputs else {})
        rng = np.random.default_rng(seed_of("torch", name, index, output))
        inputs = sample(op, shapes, rng)
        ours = np.asarray(call(op.forward, op, training, *inputs, **full))
        tensors, theirs = torch_of(op, training, *inputs, **full)
        close(ours, theirs.detach().numpy(), f"{name} value", rtol=1e-9, atol=1e-10)
        if not theirs.dtype.is_floating_point:
            continue
        g = rng.normal(size=ours.shape)
        (theirs * torch.tensor(g)).sum().backward()
        out = call(op.save, op, training, *inputs, **full)[1] if op.save else ours
        for k, (x, t, rule) in enumerate(zip(inputs, tensors, op.backward)):
            if rule is not None:
                got = unbroadcast(np.asarray(call(rule, op, training, g, out, *inputs, **full)), x.shape)
                expected = np.zeros(x.shape) if t.grad is None else t.grad.numpy()
                close(got, expected, f"{name}: gradient of input {k}", rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name, index, which", example_cases(batched=True))
def test_op_on_a_batch_matches_torch_vmap(name, index, which):
    """The engine on a batch of 3 (the op's batching rule) against torch.vmap of its PyTorch expression."""
    op = OPS[name]
    shapes, attrs = op.examples[index]
    model = one_op_model(name, shapes, attrs)
    feeds = sample_inputs(op, shapes, which, np.random.default_rng(seed_of("vmap", name, index, which)))
    floats = [k for k, v in feeds.items() if v.dtype.kind == "f"]
    values, grads = model.value_and_gradients(feeds, of="out", wrt=floats)
    tensors = {k: torch.tensor(v, requires_grad=k in floats) for k, v in feeds.items()}
    attrs = model.graph.vertices["out"].attrs
    per_sample = lambda *xs: op.torch_function()(*xs, **attrs, **context(op, False))  # noqa: E731
    theirs = torch.vmap(per_sample, in_dims=tuple(0 if int(k[1:]) in which else None for k in feeds))(
        *tensors.values())
    close(values["out"], theirs.detach().numpy(), "value", rtol=1e-9, atol=1e-10)
    if theirs.dtype.is_floating_point:
        theirs.sum().backward()
        for k in floats:
            expected = np.zeros(feeds[k].shape) if tensors[k].grad is None else tensors[k].grad.numpy()
            close(grads[k], expected, f"gradient of {k}", rtol=1e-8, atol=1e-10)


def random_model(rng, n_nodes=12):
    """A random DAG over [2, 3] values; args that need positive values go through exp(tanh(.))."""
    lines, names, count = [], ["x", "y"], 0

    def add(op, args, **attrs):
        nonlocal count
        count += 1
        name = f"n{count}"
        extra = "".join(f", {k}: {v}" for k, v in attrs.items())
        lines.append(f"  {name}: {{op: {op}, inputs: [{', '.join(args)}]{extra}}}")
        return name

    for _ in range(n_nodes):
        op = rng.choice(UNARY + BINARY)
        args = [names[rng.integers(len(names))] for _ in range(1 if op in UNARY else 2)]
        if op == "matmul":
            args[1] = "W"
        for i in POSITIVE_ARGS.get(op, []):
            args[i] = add("exp", [add("tanh", [args[i]])])
        names.append(add(op, args))
    used = {a for line in lines for a in line.split("[", 1)[1].split("]")[0].split(", ")}
    total = names[-1]
    for name in names[2:-1]:
        if name not in used:  # every dead end joins the loss, so every node is checked
            total = add("add", [total, name])
    logits = add("add", [total, add("log_softmax", [names[rng.integers(2, len(names))]], axis=-1)])
    add("softmax_cross_entropy", [logits, "t"])
    return ("graphdef: 1\nname: random\ninputs:\n  x: {shape: [2, 3]}\n  y: {shape: [2, 3]}\n"
            "  t: {shape: [2, 3]}\nparameters:\n  W: {shape: [3, 3], init: normal}\nnodes:\n"
            + "\n".join(lines) + f"\noutputs: [n{count}]\nloss: n{count}\n")


def torch_gradients(model, feeds, batched=()):
    """(loss, gradients of its sum) by PyTorch; inputs named in `batched` are mapped over with torch.vmap."""
    leaves = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in feeds.items()}
    names = list(leaves)

    def per_sample(*values):
        env = dict(zip(names, values))
        env.update({name: torch.tensor(value) for name, value in model.constants.items()})
        for step in model.steps:
            env[step.name] = step.op.torch_function()(*[env[a] for a in step.inputs], **step.attrs)
        return env[model.loss]

    run = torch.vmap(per_sample, in_dims=tuple(0 if n in batched else None for n in names)) if batched else per_sample
    loss = run(*leaves.values())
    loss.sum().backward()
    return loss.detach().numpy(), {k: np.zeros(v.shape) if v.grad is None else v.grad.numpy()
                                   for k, v in leaves.items()}


@pytest.mark.parametrize("seed", range(25))
def test_random_graph_matches_pytorch(seed):
    rng = np.random.default_rng(seed)
    model = graphdef.loads(random_model(rng), seed=seed)
    feeds = {"x": rng.normal(size=(2, 3)), "y": rng.normal(size=(2, 3)),
             "t": rng.dirichlet(np.ones(3), size=2)}
    values, grads = model.value_and_gradients(feeds)
    expected_loss, expected = torch_gradients(model, {**feeds, "W": model.parameters["W"]})
    assert float(values[model.loss]) == pytest.approx(expected_loss, rel=1e-10)
    for name, g in expected.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-8, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("name", ["mlp.yaml", "lecture_network.yaml"])
def test_models_match_pytorch(name):
    model = graphdef.load(f"models/{name}")
    feeds = ({"x": [[1.0, 0.5], [-1.0, 2.0]], "y": [[1.0, 0.0], [0.0, 1.0]]} if name == "mlp.yaml"
             else {"x1": 1.0, "x2": 0.5, "y1": 1.0, "y2": 0.0})
    values, grads = model.value_and_gradients(feeds)
    batched = ["x", "y"] if name == "mlp.yaml" else []
    expected_loss, expected = torch_gradients(model, {**feeds, **model.parameters}, batched)
    np.testing.assert_allclose(values["E"], expected_loss, rtol=1e-12)
    for k, g in expected.items():
        np.testing.assert_allclose(grads[k], g, rtol=1e-10, atol=1e-12, err_msg=k)
