"""Random graphs, differentiated by graphdef and by PyTorch's autograd: values and gradients agree."""
import math

import numpy as np
import pytest

import graphdef
from graphdef.ops import OPS

torch = pytest.importorskip("torch")


def _dims(axis):
    return None if axis is None else (axis if isinstance(axis, int) else tuple(axis))


def _reduce(per, reduction, batch_dims):
    dims = tuple(range(batch_dims, per.ndim))
    if reduction == "none" or not dims and batch_dims:
        return per
    return per.mean(dim=dims) if reduction == "mean" else per.sum(dim=dims)


TORCH = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
    "exp": torch.exp, "neg": torch.neg, "reciprocal": torch.reciprocal, "relu": torch.relu,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "square": torch.square, "sqrt": torch.sqrt,
    "abs": torch.abs, "identity": lambda x: x, "matmul": torch.matmul,
    "log": lambda x, base: torch.log(x) / math.log(base),
    "sum": lambda x, axis, keepdims: x.sum() if axis is None else x.sum(dim=_dims(axis), keepdim=keepdims),
    "mean": lambda x, axis, keepdims: x.mean() if axis is None else x.mean(dim=_dims(axis), keepdim=keepdims),
    "transpose": lambda x, axes: x.permute(*(axes or reversed(range(x.ndim)))),
    "reshape": lambda x, shape: x.reshape(shape),
    "softmax": lambda x, axis: torch.softmax(x, dim=axis),
    "log_softmax": lambda x, axis: torch.log_softmax(x, dim=axis),
    "cross_entropy": lambda p, t, base, axis, reduction, batch_dims:
        _reduce(-(t * torch.log(p)).sum(dim=axis) / math.log(base), reduction, batch_dims),
    "softmax_cross_entropy": lambda z, t, base, axis, reduction, batch_dims:
        _reduce(-(t * torch.log_softmax(z, dim=axis)).sum(dim=axis) / math.log(base), reduction, batch_dims),
}

UNARY = ["exp", "neg", "relu", "sigmoid", "tanh", "square", "abs", "identity", "log", "sqrt", "reciprocal"]
BINARY = ["add", "sub", "mul", "div", "pow", "matmul"]
POSITIVE_ARGS = {"log": [0], "sqrt": [0], "reciprocal": [0], "div": [1], "pow": [0]}


def test_every_builtin_op_has_a_torch_twin():
    assert set(OPS) <= set(TORCH) | {n for n in OPS if n.endswith("_test")}


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
    return (f"graphdef: 1\nname: random\ninputs:\n  x: {{shape: [2, 3]}}\n  y: {{shape: [2, 3]}}\n"
            f"  t: {{shape: [2, 3]}}\nparameters:\n  W: {{shape: [3, 3], init: normal}}\nnodes:\n"
            + "\n".join(lines) + f"\noutputs: [n{count}]\nloss: n{count}\n")


def torch_gradients(model, feeds, batched=()):
    """(loss, gradients of its sum) by PyTorch; inputs named in `batched` are mapped over with torch.vmap."""
    leaves = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in feeds.items()}
    names = list(leaves)

    def per_sample(*values):
        env = dict(zip(names, values))
        env.update({name: torch.tensor(value) for name, value in model.constants.items()})
        for step in model.steps:
            env[step.name] = TORCH[step.op.name](*[env[a] for a in step.inputs], **step.attrs)
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
