"""The example models of real model families (LeNet, a transformer encoder, a GRU, a text classifier)
train from `graphdef train`, save, reload, evaluate and predict. Their full results (held-out
accuracy, time) are measured by benchmarks/examples.py; here two epochs show the machinery works."""
import io
import json

import numpy as np
import pytest

import graphdef
from batch_cases import close
from conftest import MODELS
from graphdef.training.datasets import BUILTIN

EXAMPLES = ["lenet.yaml", "majority.yaml", "digit_sum.yaml", "sentiment.yaml"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each example trained for two epochs: {file: (history, run folder)}."""
    runs = {}
    for file in EXAMPLES:
        run = tmp_path_factory.mktemp(file.split(".")[0]) / "run"
        runs[file] = graphdef.train(MODELS / file, run_dir=run, epochs=2, out=io.StringIO()), run
    return runs


@pytest.mark.parametrize("file", EXAMPLES)
def test_example_learns_and_reloads_to_the_same_results(trained, file):
    history, run = trained[file]
    assert history.status == "finished" and history[1]["loss"] < history[0]["loss"]
    classes = graphdef.load(MODELS / file).inputs["y"][-1]
    assert history[-1]["val_accuracy"] > min(2 / classes, 0.75)  # well above chance after two epochs
    reloaded = graphdef.load(run / "model.yaml")
    result = graphdef.evaluate(reloaded)
    assert result["accuracy"] == pytest.approx(history[-1]["val_accuracy"], abs=1e-12)
    assert result["loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-9)
    for name, value in history.model.variables.items():
        assert np.array_equal(reloaded.variables[name], value), name


def test_lenet_predicts_a_sample_alone_as_inside_a_batch(trained):
    model = graphdef.load(trained["lenet.yaml"][1] / "model.yaml")
    assert model.state and not all(np.allclose(v, 0) or np.allclose(v, 1) for v in model.state.values())
    x = BUILTIN["digits"]()["x"][:6]
    together = model.forward({"x": x}, outputs=["probs"])["probs"]
    for i in range(6):
        close(model.forward({"x": x[i]}, outputs=["probs"])["probs"], together[i], f"sample {i}")


def test_examples_through_the_command_line(trained, cli, tmp_path):
    run = trained["sentiment.yaml"][1]
    code, out, _ = cli("eval", run / "model.yaml", "--json")
    assert code == 0 and json.loads(out)["samples"] == 400
    data = BUILTIN["sentiment"]()
    np.savez(tmp_path / "reviews.npz", x=data["x"][:5])  # the model maps its input tokens to the column x
    code, out, err = cli("predict", run / "model.yaml", "--data", tmp_path / "reviews.npz")
    assert code == 0 and len(out.strip().splitlines()) == 6, err
    code, out, _ = cli("show", MODELS / "lenet.yaml")
    assert code == 0 and "4 state arrays" in out and "c1/W" in out


def test_integer_inputs_refuse_fractional_data(cli, tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.full((3, 12), 0.5))
    code, _, err = cli("predict", MODELS / "sentiment.yaml", "--data", tmp_path / "bad.npz")
    assert code == 1 and "holds int64 values" in err and "Traceback" not in err
