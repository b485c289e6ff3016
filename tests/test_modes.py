"""Training and inference modes, and state: dropout draws only in training, batch norm takes batch
statistics in training (checked against PyTorch on whole batches) and its running statistics in
inference, which makes a sample's prediction the same alone as inside a batch; state is saved,
reloaded and restored on resume, bit for bit."""
import io

import numpy as np
import pytest

import graphdef
from batch_cases import close, with_reference

torch = pytest.importorskip("torch")

BN_MODEL = """
graphdef: 1
name: bn
inputs:
  x: {shape: [3, 4, 4]}
  y: {shape: [2]}
parameters:
  w: {value: [1.5, 0.5, -1.0]}
  b: {value: [0.1, 0.2, 0.3]}
  W: {shape: [48, 2], init: glorot_uniform}
state:
  mean: {value: [0.0, 0.0, 0.0]}
  var: {value: [1.0, 1.0, 1.0]}
nodes:
  n: {op: batch_norm, inputs: [x, w, b, mean, var], momentum: 0.3}
  d: {op: dropout, inputs: [n], p: 0.25}
  f: {op: reshape, inputs: [d], shape: [48]}
  z: {op: matmul, inputs: [f, W]}
  L: {op: softmax_cross_entropy, inputs: [z, y]}
outputs: [z]
loss: L
training: {seed: 3}
"""


def batch(rng, n=8):
    return {"x": rng.normal(2.0, 3.0, size=(n, 3, 4, 4)), "y": np.eye(2)[rng.integers(2, size=n)]}


def test_batch_norm_training_step_matches_pytorch_on_the_batch():
    """A training step normalizes with the batch's statistics and moves the running ones as PyTorch does."""
    model = graphdef.loads(BN_MODEL.replace("p: 0.25", "p: 0.0"))
    feeds = batch(np.random.default_rng(0))
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    n = torch.nn.functional.batch_norm(torch.tensor(feeds["x"]), mean, var, torch.tensor(model.parameters["w"]),
                                       torch.tensor(model.parameters["b"]), True, 0.3, 1e-5)
    values, _ = model.train_step(feeds, "L", list(model.parameters))
    close(values["n"], n.numpy(), "batch-normalized values")
    close(model.state["mean"], mean.numpy(), "running mean")
    close(model.state["var"], var.numpy(), "running variance (unbiased, as PyTorch)")


def test_batch_norm_gradients_in_training_match_pytorch():
    rng = np.random.default_rng(2)
    x, weight, bias, g = rng.normal(size=(6, 3, 2, 2)), rng.normal(size=3), rng.normal(size=3), rng.normal(size=(6, 3, 2, 2))
    model = graphdef.loads("""
graphdef: 1
name: bn
inputs: {x: {shape: [3, 2, 2]}, g: {shape: [3, 2, 2]}, w: {shape: [null]}, b: {shape: [null]}}
state: {m: {shape: [3], init: zeros}, v: {shape: [3], init: ones}}
nodes:
  n: {op: batch_norm, inputs: [x, w, b, m, v]}
  p: {op: mul, inputs: [n, g]}
  s: {op: sum, inputs: [p]}
outputs: [s]
""")
    model.training = True
    values, grads = model.value_and_gradients({"x": x, "g": g, "w": weight, "b": bias}, of="s", wrt=["x", "w", "b"])
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
    n = torch.nn.functional.batch_norm(tx, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                                       tw, tb, True, 0.1, 1e-5)
    (n * torch.tensor(g)).sum().backward()
    close(values["n"], n.detach().numpy(), "values")
    for name, t in (("x", tx), ("w", tw), ("b", tb)):
        close(grads[name], t.grad.numpy(), f"gradient of {name}", rtol=1e-9, atol=1e-11)
    reference = with_reference(model)
    _, grads1 = reference.value_and_gradients({"x": x, "g": g, "w": weight, "b": bias}, of="s", wrt=["x", "w", "b"])
    for name in grads:
        close(grads1[name], grads[name], f"reference interpreter, gradient of {name}")


def test_inference_gives_a_sample_the_same_prediction_alone_and_in_a_batch():
    model = graphdef.loads(BN_MODEL)
    rng = np.random.default_rng(4)
    for _ in range(3):
        model.train_step(batch(rng), "L", list(model.parameters))
    assert not np.allclose(model.state["mean"], 0) and not np.allclose(model.state["var"], 1)
    x = batch(rng, 5)["x"]
    together = model.forward({"x": x}, outputs=["z"])["z"]
    for i in range(5):
        close(model.forward({"x": x[i]}, outputs=["z"])["z"], together[i], f"sample {i}")


def test_training_mode_draws_dropout_and_uses_batch_statistics():
    model = graphdef.loads(BN_MODEL)
    feeds = batch(np.random.default_rng(5), 64)
    infer = model.forward(feeds)
    assert np.array_equal(infer["d"], infer["n"])  # inference: dropout is the identity
    model.training = True
    train = model.forward(feeds)
    dropped = train["d"] == 0
    assert 0.2 < dropped.mean() < 0.3  # p = 0.25
    close(train["d"][~dropped], train["n"][~dropped] / 0.75, "kept values scaled by 1/(1-p)")
    close(train["n"].mean(axis=(0, 2, 3)), model.parameters["b"], "batch statistics: each channel's mean is b",
          atol=1e-9)


def test_dropout_backward_uses_the_forward_mask_on_both_engines():
    model = graphdef.loads(BN_MODEL)
    model.training = True
    reference = with_reference(model)
    feeds = batch(np.random.default_rng(6))
    model.reseed(11)
    values, grads = model.value_and_gradients(feeds, wrt=["W", "w", "b"])
    reference.reseed(11)
    values1, grads1 = reference.value_and_gradients(feeds, wrt=["W", "w", "b"])
    close(values["d"], values1["d"], "same draws")
    for name in grads:
        close(grads[name], grads1[name], f"gradient of {name}")
    masked = values["d"] == 0
    _, through = model.value_and_gradients(feeds, wrt=["W"])  # a new draw: another mask, another gradient
    assert not np.allclose(through["W"], grads["W"]) and masked.any()


def test_state_is_saved_reloaded_and_never_a_gradient_target(tmp_path):
    model = graphdef.loads(BN_MODEL)
    model.train_step(batch(np.random.default_rng(7)), "L", list(model.parameters))
    saved = graphdef.load(model.save(tmp_path / "m"))
    for name, value in model.state.items():
        assert np.array_equal(saved.state[name], value), name
    assert "mean" not in model.resolve()[1]
    with pytest.raises(graphdef.GraphDefError, match="cannot differentiate with respect to 'mean'"):
        model.gradients(batch(np.random.default_rng(8)), wrt=["mean"])


def train_bn(tmp_path, name, **kwargs):
    model_file = tmp_path / "bn.yaml"
    model_file.write_text(BN_MODEL)
    rng = np.random.default_rng(9)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(40, 3, 4, 4)), y=np.eye(2)[rng.integers(2, size=40)])
    return graphdef.train(model_file, data=str(tmp_path / "data.npz"), run_dir=tmp_path / name, epochs=3,
                          batch_size=8, out=io.StringIO(), **kwargs)


def test_resume_restores_state_and_dropout_draws_bit_for_bit(tmp_path):
    straight = train_bn(tmp_path, "a")
    stopped = train_bn(tmp_path, "b", callback=lambda run: run.epoch == 1 and run.batch == 2)
    assert stopped.status == "interrupted"
    resumed = graphdef.train(resume=tmp_path / "b", out=io.StringIO())
    for name, value in straight.model.variables.items():
        assert np.array_equal(resumed.model.variables[name], value), name
    assert not np.array_equal(straight.model.state["var"], np.ones(3))


def test_running_statistics_declared_as_parameters_are_refused():
    as_parameters = BN_MODEL.replace("state:\n", "")  # mean and var join the parameters section above
    with pytest.raises(graphdef.GraphDefError, match=r"'mean' is a parameter, but input 'running_mean' of batch_norm "
                                                     r"is state .*declare 'mean' under `state:`"):
        graphdef.loads(as_parameters)


def test_a_running_statistic_is_updated_by_one_op_only():
    with pytest.raises(graphdef.GraphDefError, match=r"state 'mean' would be updated twice"):
        graphdef.loads(BN_MODEL.replace("inputs: [x, w, b, mean, var]", "inputs: [x, w, b, mean, mean]"))


@pytest.mark.parametrize("node, message", [
    ("{op: batch_norm, inputs: [x, w, b, mean, var], eps: -1.0}", "eps must be positive"),
    ("{op: softplus, inputs: [x], beta: 0.0}", "beta must be positive"),
    ("{op: max_pool2d, inputs: [x], kernel_size: -2}", "kernel_size must be positive"),
])
def test_settings_that_only_make_sense_above_zero_are_refused_at_load(node, message):
    with pytest.raises(graphdef.GraphDefError, match=message):
        graphdef.loads(BN_MODEL.replace("{op: batch_norm, inputs: [x, w, b, mean, var], momentum: 0.3}", node))
