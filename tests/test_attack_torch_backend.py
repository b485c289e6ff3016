"""Attacks on the PyTorch backend (graphdef.torch, --backend torch): the torch backend must compute
what the numpy backend computes and refuse what it refuses, with the same clear errors.
Each bug an attacker found is fixed and kept here: run's missing inputs, gradients with respect to a constant,
fractional or complex feeds to the module, unknown or malformed state_dict keys, a missing device, and negative
token ids (counted from the end on both backends)."""
import io

import numpy as np
import pytest

import graphdef
from conftest import MODELS
from graphdef import GraphDefError
from graphdef.tools.cli import main

torch = pytest.importorskip("torch")
from graphdef.torch import to_model, to_module  # noqa: E402


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out, err)
    return code, out.getvalue(), err.getvalue()


CONSTANT_MODEL = """
graphdef: 1
name: constm
inputs:
  x: {shape: [2]}
parameters:
  w: {value: [1.0, 2.0]}
constants:
  k: {value: [3.0, 4.0]}
nodes:
  a: {op: mul, inputs: [x, w]}
  b: {op: mul, inputs: [a, k]}
  parts: {op: split, inputs: [b], sections: 2}
  q: {op: mul, inputs: [parts/1, 2]}
  s: {op: sum, inputs: [b]}
outputs: [s, q, parts]
"""


# -- properties that hold ------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["run", "lecture.yaml", "--at", "a=3", "--at", "b=5"],
    ["grad", "lecture.yaml", "--at", "a=3", "--at", "b=5"],
    ["grad", "mlp.yaml", "--at", "x=[[1,0.5],[0,1]]", "--at", "y=[[1,0],[0,1]]"],
    ["grad", "lecture_network.yaml", "--at", "x1=1", "--at", "x2=0.5", "--at", "y1=1", "--at", "y2=0"],
    ["run", "digit_sum.yaml", "--at", "digits=[1.5,2,3,0,1,2,3,0]"],
    ["run", "mlp.yaml", "--at", "x=[1,2,3]"],
    ["run", "mlp.yaml", "--at", "x=foo"],
    ["grad", "mlp.yaml", "--at", "x=[[1,0.5],[0,1]]", "--at", "y=[[1,0],[0,1],[1,0]]"],
])
def test_cli_torch_prints_what_numpy_prints(argv):
    argv = [argv[0], MODELS / argv[1], *argv[2:]]
    assert cli(*argv) == cli(*argv, "--backend", "torch")


@pytest.mark.parametrize("argv", [
    ["run", "lecture.yaml", "--at", "a=3", "--at", "b=5", "--backend", "torch", "--device", "cuda"],
    ["eval", "mlp.yaml", "--backend", "torch", "--device", "mps"],
])
def test_missing_device_is_a_clear_error(argv):
    code, out, err = cli(argv[0], MODELS / argv[1], *argv[2:])
    assert code == 1 and "not available" in err and "Traceback" not in err


def test_split_outputs_and_constants_match_numpy():
    model = graphdef.loads(CONSTANT_MODEL)
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    ours = to_module(model, "cpu")({"x": x})
    theirs = model.forward({"x": x})
    for name in ("s", "q", "parts"):
        np.testing.assert_allclose(ours[name].detach().numpy(), theirs[name])


def test_lenet_state_moves_only_in_training_and_state_dict_round_trips():
    model = graphdef.load(MODELS / "lenet.yaml")
    module = to_module(model, "cpu")
    x = np.random.default_rng(0).random((5, 64))
    state = {k: v.clone() for k, v in module.state_dict().items() if k.startswith("state.")}
    module.eval()
    assert torch.equal(module({"x": x})["probs"], module({"x": x})["probs"])
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in state.items())
    module.train()
    module({"x": x})
    assert all(not torch.equal(v, module.state_dict()[k]) for k, v in state.items())
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    back = to_model(torch.load(buffer), graphdef.load(MODELS / "lenet.yaml"))
    module.eval()
    np.testing.assert_allclose(back.forward({"x": x})["probs"], module({"x": x})["probs"].detach().numpy())


def test_train_on_torch_eval_on_numpy_and_resume_across_backends(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("train", MODELS / "logistic.yaml", "--backend", "torch", "--epochs", "2", "-o", a)[0] == 0
    assert cli("train", MODELS / "logistic.yaml", "--epochs", "2", "-o", b)[0] == 0
    evals = {cli("eval", d / "model.yaml", "--json", *extra)[1] for d in (a, b)
             for extra in ([], ["--backend", "torch"])}
    assert len(evals) == 1
    assert cli("train", "--resume", a, "--epochs", "3")[0] == 0  # torch run resumed on numpy
    assert cli("train", "--resume", b, "--epochs", "3", "--backend", "torch")[0] == 0
    rows = [(d / "metrics.csv").read_text().splitlines() for d in (a, b)]
    assert [r.split(",")[:3] for r in rows[0]] == [r.split(",")[:3] for r in rows[1]]


# -- bugs -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["--json"], ["--at", "a=3"]])
def test_run_torch_with_missing_inputs_is_an_error(extra):
    argv = ["run", MODELS / "lecture.yaml", *extra]
    numpy_code, _, numpy_err = cli(*argv)
    code, out, err = cli(*argv, "--backend", "torch")
    assert numpy_code == 1 and "missing input" in numpy_err
    assert code == 1 and "missing input" in err


def test_grad_torch_with_respect_to_a_constant(tmp_path):
    path = tmp_path / "const.yaml"
    path.write_text(CONSTANT_MODEL)
    argv = ["grad", path, "--at", "x=[[1,1],[2,2]]", "--of", "s", "--wrt", "k"]
    numpy = cli(*argv)
    assert numpy[0] == 0 and "∂s/∂k = [3, 6]" in numpy[1]
    assert cli(*argv, "--backend", "torch") == numpy


def test_module_refuses_fractional_token_ids():
    model = graphdef.load(MODELS / "digit_sum.yaml")
    digits = [1.7, 2, 3, 0, 1, 2, 3, 0]
    with pytest.raises(GraphDefError, match="whole numbers"):
        model.forward({"digits": digits})
    with pytest.raises(GraphDefError):
        to_module(model, "cpu")({"digits": digits})


@pytest.mark.parametrize("value", [["a", "b"], None, [[1, 2], [3]], np.array([1j, 2j])],
                         ids=["strings", "none", "ragged", "complex"])
def test_module_refuses_non_numeric_inputs_clearly(value):
    model = graphdef.load(MODELS / "mlp.yaml")
    with pytest.raises(GraphDefError, match="not numeric"):
        model.forward({"x": value})
    with pytest.raises(GraphDefError):
        to_module(model, "cpu")({"x": value})


def test_to_model_refuses_unknown_keys():
    with pytest.raises(GraphDefError):
        to_model({"params.W_1": torch.zeros(2, 2)}, graphdef.load(MODELS / "mlp.yaml"))


@pytest.mark.parametrize("key", ["params.a_b", "params.a_", "params._zz_"])
def test_to_model_malformed_key_is_a_clear_error(key):
    with pytest.raises(GraphDefError):
        to_model({key: torch.zeros(2)}, graphdef.load(MODELS / "mlp.yaml"))


@pytest.mark.parametrize("device", ["cuda", "mps", "tpu"])
def test_to_module_missing_device_is_a_clear_error(device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("cuda present")
    with pytest.raises(GraphDefError):
        to_module(graphdef.load(MODELS / "lecture.yaml"), device)


def test_negative_token_id_same_on_both_backends():
    argv = ["run", MODELS / "digit_sum.yaml", "--at", "digits=[-1,2,3,0,1,2,3,0]"]
    numpy, ours = cli(*argv), cli(*argv, "--backend", "torch")
    assert numpy[0] == ours[0]
