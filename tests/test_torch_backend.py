"""graphdef.torch: a model lowered to a torch.nn.Module computes what graphdef computes, and its gradients.

Every registry example (one-op models, per sample and batched, training-mode ones with the same random
draws) and every model of models/ (float64 and float32): the module's outputs equal graphdef's values,
and torch autograd's gradients of the output's sum equal graphdef's reverse mode. Then the round trip
back to a graphdef Model, the state update of batch norm, torch.compile and the attribute names.
"""
import numpy as np
import pytest

import graphdef
from batch_cases import (MODEL_FILES, MODELS, batchings, builtin_ops, close, model_feeds, one_op_model,
                         sample_inputs, seed_of)
from graphdef.ops import OPS

torch = pytest.importorskip("torch")
from graphdef.torch import attribute_key, to_model, to_module, vertex_name  # noqa: E402


def tensors_of(feeds: dict) -> dict:
    """The feeds as tensors, the float ones leaves that collect gradients."""
    return {k: torch.tensor(v, requires_grad=v.dtype.kind == "f") for k, v in feeds.items()}


def grad_of(tensor, shape) -> np.ndarray:
    return np.zeros(shape) if tensor.grad is None else tensor.grad.detach().numpy()


def example_params():
    """Every example of every op, per sample and with each batching of its inputs; training-mode examples
    too (the module and graphdef both take the batch's statistics and draw the same masks)."""
    cases = []
    for name, op in builtin_ops().items():
        for i, _ in enumerate(op.examples):
            for which in [(), *batchings(op.arity)]:
                tag = "-b" + "".join(map(str, which)) if which else ""
                cases.append(pytest.param(name, i, which, id=f"{name}-{i}{tag}"))
    return cases


@pytest.mark.parametrize("name, index, which", example_params())
def test_example_matches_graphdef(name, index, which):
    """The module's value of `out`, and the gradient of its sum for every float input, equal graphdef's."""
    op = OPS[name]
    shapes, attrs = op.examples[index]
    model = one_op_model(name, shapes, attrs)
    module = to_module(model, "cpu")
    feeds = sample_inputs(op, shapes, which, np.random.default_rng(seed_of("torch backend", name, index, which)))
    floats = [k for k, v in feeds.items() if v.dtype.kind == "f"]
    module.reseed(state=model.rng.bit_generator.state)  # dropout: the same draws
    values, grads = model.value_and_gradients(feeds, of="out", wrt=floats)
    tensors = tensors_of(feeds)
    out = module(tensors)["out"]
    close(out.detach().numpy(), values["out"], f"{name} value", rtol=1e-9, atol=1e-10)
    if not out.dtype.is_floating_point or not floats:
        return
    if out.requires_grad:
        out.sum().backward()
    for k in floats:
        close(grad_of(tensors[k], feeds[k].shape), grads[k], f"{name}: gradient of {k}", rtol=1e-8, atol=1e-10)


def lowering_problem(name: str, index: int) -> str | None:
    """Why an op's PyTorch expression cannot serve as its lowering for one example, or None: it must run on a
    batch as per sample, give a tensor of the vertex's dtype on the module's device, and carry gradients when
    the op has them (a numpy-only or CPU-only expression, or one cut off from autograd, fails here)."""
    op = OPS[name]
    shapes, attrs = op.examples[index]
    model = one_op_model(name, shapes, attrs)
    module = to_module(model, "cpu")
    dtype = model.graph.vertices["out"].dtype
    for which in ((), tuple(range(op.arity))):
        feeds = tensors_of(sample_inputs(op, shapes, which, np.random.default_rng(seed_of("usable", name, index))))
        try:
            out = module(feeds)["out"]
        except Exception as e:  # noqa: BLE001 - any failure makes the lowering unusable
            return f"{name}-{index}: {type(e).__name__}: {e}"[:200]
        if not isinstance(out, torch.Tensor) or out.device != module.device or str(out.dtype) != f"torch.{dtype}":
            return f"{name}-{index}: gives {type(out).__name__} {getattr(out, 'dtype', '')}, expected {dtype}"
        differentiable = any(r is not None and v.dtype.is_floating_point for r, v in zip(op.backward, feeds.values()))
        if dtype.startswith("float") and differentiable and not out.requires_grad:
            return f"{name}-{index}: the output carries no gradient"
    return None


def test_every_op_has_a_usable_lowering():
    problems = [lowering_problem(name, i) for name, op in builtin_ops().items() for i, _ in enumerate(op.examples)]
    assert [p for p in problems if p] == []


# -- the models of models/ ---------------------------------------------------------------------------

def model_params():
    return [pytest.param(file, dtype, id=f"{file}-{dtype}") for file in MODEL_FILES for dtype in ("float64", "float32")]


@pytest.mark.parametrize("file, dtype", model_params())
def test_model_matches_graphdef(file, dtype):
    """A batch of 3 through every model: outputs, loss and the gradients of the loss's sum (else the single
    output's) by every float input and parameter."""
    model = graphdef.load(MODELS / file, seed=0, dtype=dtype)
    feeds = model_feeds(model, np.random.default_rng(seed_of("torch backend", file)))
    feeds = {k: v.astype(model.dtype) if v.dtype.kind == "f" else v for k, v in feeds.items()}
    of = model.loss or model.outputs[0]
    values, grads = model.value_and_gradients(feeds, of=of)
    module = to_module(model, "cpu")
    tensors = tensors_of(feeds)
    out = module(tensors)
    assert set(out) == {*model.outputs, *([model.loss] if model.loss else [])}
    rtol, atol = (1e-9, 1e-10) if dtype == "float64" else (2e-4, 2e-5)
    for name, value in out.items():
        assert value.dtype == getattr(torch, model.graph.vertices[name].dtype)
        close(value.detach().numpy(), values[name], f"{file}: value of {name}", rtol, atol)
    out[of].sum().backward()
    for name in grads:
        got = grad_of(tensors[name], feeds[name].shape) if name in tensors else \
            grad_of(module.variable(name), model.parameters[name].shape)
        close(got, grads[name], f"{file}: gradient by {name}", rtol, atol)


def digits(dtype="float64", n=8, seed=0):
    model = graphdef.load(MODELS / "digits.yaml", seed=0, dtype=dtype)
    rng = np.random.default_rng(seed)
    return model, {"x": rng.normal(size=(n, 64)).astype(dtype), "y": np.eye(10)[rng.integers(10, size=n)]}


def test_the_loss_only_when_its_inputs_are_given_and_outputs_chosen():
    model, feeds = digits()
    module = to_module(model, "cpu")
    assert set(module({"x": feeds["x"]})) == {"probs"}
    assert set(module(feeds)) == {"probs", "loss"}
    chosen = module(feeds, outputs=["logits/layer1", "loss"])
    close(chosen["logits/layer1"].detach().numpy(), model.forward(feeds)["logits/layer1"], "a chosen vertex")
    with pytest.raises(graphdef.GraphDefError, match="missing input 'y'"):
        module({"x": feeds["x"]}, outputs=["loss"])
    with pytest.raises(graphdef.GraphDefError, match="shape"):
        module({"x": feeds["x"][:, :5]})


def test_integer_inputs_stay_integers():
    model = graphdef.load(MODELS / "sentiment.yaml", seed=0)
    feeds = model_feeds(model, np.random.default_rng(1))
    module = to_module(model, "cpu")
    integers = [k for k in feeds if k in model.input_dtypes]
    assert integers
    out = module(feeds)
    for name, value in out.items():
        close(value.detach().numpy(), model.forward(feeds)[name], name)
    fed, _ = module._feed(feeds)
    assert all(fed[k].dtype == torch.int64 and not fed[k].requires_grad for k in integers)


# -- modes: dropout and batch norm -------------------------------------------------------------------

def lenet(dtype="float64", n=6):
    model = graphdef.load(MODELS / "lenet.yaml", seed=0, dtype=dtype)
    rng = np.random.default_rng(3)
    return model, {"x": rng.normal(size=(n, 64)).astype(dtype), "y": np.eye(10)[rng.integers(10, size=n)]}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_mode_draws_the_same_masks_and_moves_the_running_statistics(dtype):
    """LeNet in training mode (dropout, batch norm on the batch's statistics): values and gradients equal a
    graphdef training step's with the same draws, and the running statistics move as Model.update_state
    moves them; in eval mode the module uses them as graphdef's inference does."""
    model, feeds = lenet(dtype)
    module = to_module(model, "cpu").train()
    module.reseed(state=model.rng.bit_generator.state)
    values, grads = model.train_step(feeds, model.loss, list(model.parameters))  # mean loss; state updated
    out = module(feeds)
    out[model.loss].mean().backward()
    rtol, atol = (1e-9, 1e-10) if dtype == "float64" else (2e-4, 2e-5)
    close(out[model.loss].detach().numpy(), values[model.loss], "training loss", rtol, atol)
    for name in model.parameters:
        close(module.variable(name).grad.numpy(), grads[name], f"gradient by {name}", rtol, atol)
    for name in model.state:
        close(module.variable(name).numpy(), model.state[name], f"running statistic {name}", rtol, atol)
    model.training = False
    module.eval()
    close(module(feeds)["probs"].detach().numpy(), model.forward(feeds)["probs"], "inference", rtol, atol)


def test_dropout_is_off_in_eval_mode_and_draws_in_training():
    model, feeds = lenet()
    module = to_module(model, "cpu")
    assert not module.training  # the model's mode: inference
    first, second = (module(feeds, outputs=["dropped"])["dropped"] for _ in range(2))
    assert torch.equal(first, second)
    module.train()
    first, second = (module(feeds, outputs=["dropped"])["dropped"] for _ in range(2))
    assert not torch.equal(first, second) and (first == 0).any()


# -- back to graphdef ----------------------------------------------------------------------------------

def test_to_model_round_trip(tmp_path):
    """An optimizer step on the module; to_model gives a graphdef Model computing what the module computes,
    saved and reloaded like any; the source model is left as it was, or updated when given."""
    model, feeds = digits()
    before = {k: v.copy() for k, v in model.parameters.items()}
    module = to_module(model, "cpu")
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    module(feeds)["loss"].mean().backward()
    optimizer.step()
    trained = to_model(module)
    expected = module(feeds)["probs"].detach().numpy()
    close(trained.forward(feeds)["probs"], expected, "to_model's forward")
    assert all(np.array_equal(model.parameters[k], v) for k, v in before.items())
    assert all(trained.parameters[k].dtype == model.dtype for k in trained.parameters)
    reloaded = graphdef.load(trained.save(tmp_path / "saved"))
    close(reloaded.forward(feeds)["probs"], expected, "saved and reloaded")
    assert to_model(module.state_dict(), model) is model
    close(model.forward(feeds)["probs"], expected, "the given model, updated from a state_dict")


def test_to_model_brings_the_state_back():
    model, feeds = lenet("float32")
    module = to_module(model, "cpu").train()
    module(feeds)
    trained = to_model(module)
    for name in model.state:
        assert trained.state[name].dtype == np.float32
        close(trained.state[name], module.variable(name).numpy(), name)
        assert not np.array_equal(trained.state[name], model.state[name])


# -- torch.compile, names ----------------------------------------------------------------------------

@pytest.mark.parametrize("training", [False, True])
def test_torch_compile_gives_the_same_outputs(training):
    model, feeds = lenet()
    module = to_module(model, "cpu").train(training)
    compiled = torch.compile(module, backend="eager")
    state = module.rng.bit_generator.state
    expected = module(feeds)
    module.reseed(state=state)
    got = compiled(feeds)
    for name, value in expected.items():
        close(got[name].detach().numpy(), value.detach().numpy(), f"compiled {name}")


@pytest.mark.parametrize("name", ["h1/W", "d[1]", "a_b", "_x", "__", "1st", "keys", "forward", "é/ü", "a._2f_"])
def test_attribute_keys_are_reversible(name):
    key = attribute_key(name, set(dir(torch.nn.ParameterDict())))
    assert key.isidentifier() and "." not in key and not hasattr(torch.nn.ParameterDict(), key)
    assert vertex_name(key) == name


def test_names_lead_to_the_parameters():
    model, _ = digits("float32")
    module = to_module(model, "cpu")
    state = module.state_dict()
    for name, key in module.names.items():
        if name in model.parameters:
            assert state[key] is not None and module.variable(name).dtype == torch.float32
            np.testing.assert_array_equal(state[key].numpy(), model.parameters[name])


def update_cases():
    return [pytest.param(name, i, id=f"{name}-{i}") for name, op in builtin_ops().items() if op.update is not None
            for i, (_, attrs) in enumerate(op.examples) if attrs.get("training")]


def test_every_op_with_state_has_a_torch_update():
    assert [name for name, op in builtin_ops().items() if op.update is not None and op.torch_update is None] == []


@pytest.mark.parametrize("name, index", update_cases())
def test_torch_update_is_the_numpy_update(name, index):
    """The running statistics the torch backend moves on the device equal the numpy rule's."""
    from test_op_gradients import sample
    op = OPS[name]
    shapes, attrs = op.examples[index]
    full = op.bind({k: v for k, v in attrs.items() if k != "training"}) | {"training": True}
    inputs = sample(op, shapes, np.random.default_rng(seed_of("update", name, index)))
    ours = op.torch_update_function()(*[torch.as_tensor(x) for x in inputs], **full, rng=None)
    theirs = op.update(*inputs, **full)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        close(a.numpy(), b, f"{name}: state {k}", rtol=1e-12, atol=1e-12)
