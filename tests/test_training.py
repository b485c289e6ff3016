"""Training end to end: accuracy targets, saving and reloading, bit-exact resume, crashes, bad data."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import graphdef
from conftest import MODELS, ROOT
from graphdef.training import checkpoint


def quiet_train(*args, **kwargs):
    import io
    return graphdef.train(*args, out=io.StringIO(), **kwargs)


def test_digits_reaches_96_percent_on_the_held_out_split(tmp_path):
    history = quiet_train(MODELS / "digits.yaml", run_dir=tmp_path / "run")
    result = graphdef.evaluate(graphdef.load(tmp_path / "run" / "model.yaml"))
    assert result["accuracy"] >= 0.96 and result["samples"] == 359
    assert result["accuracy"] == pytest.approx(history[-1]["val_accuracy"])


@pytest.mark.parametrize("name, target", [("lecture_network.yaml", 1.0), ("spirals.yaml", 0.95)])
def test_examples_reach_their_accuracy(tmp_path, name, target):
    quiet_train(MODELS / name, run_dir=tmp_path / "run")
    assert graphdef.evaluate(graphdef.load(tmp_path / "run" / "model.yaml"))["accuracy"] >= target


def test_saved_model_reloads_with_identical_predictions(tmp_path):
    history = quiet_train(MODELS / "digits.yaml", run_dir=tmp_path / "run", epochs=2)
    reloaded = graphdef.load(tmp_path / "run" / "model.yaml")
    for name, value in history.model.parameters.items():
        assert np.array_equal(reloaded.parameters[name], value)
    before, after = graphdef.predict(history.model, "digits"), graphdef.predict(reloaded, "digits")
    assert np.array_equal(before["probs"], after["probs"])
    again = graphdef.load(reloaded.save(tmp_path / "copy"))
    assert np.array_equal(graphdef.predict(again, "digits")["probs"], after["probs"])


def stop_at(epoch, batch):
    return lambda run: run.epoch == epoch and run.batch == batch


@pytest.mark.parametrize("epoch, batch", [(1, 5), (0, 45), (0, 1)])
def test_interrupted_then_resumed_equals_uninterrupted_bit_for_bit(tmp_path, epoch, batch):
    settings = dict(epochs=3, seed=7)
    straight = quiet_train(MODELS / "digits.yaml", run_dir=tmp_path / "a", **settings)
    stopped = quiet_train(MODELS / "digits.yaml", run_dir=tmp_path / "b", callback=stop_at(epoch, batch), **settings)
    assert stopped.status == "interrupted"
    resumed = quiet_train(resume=tmp_path / "b")
    assert resumed.status == "finished"
    for name, value in straight.model.parameters.items():
        assert np.array_equal(resumed.model.parameters[name], value), name
    untimed = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]  # noqa: E731
    assert untimed(resumed) == untimed(straight)


def test_resume_with_more_epochs_continues(tmp_path):
    quiet_train(MODELS / "lecture_network.yaml", run_dir=tmp_path / "r", epochs=2)
    history = quiet_train(resume=tmp_path / "r", epochs=4)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]


def saved_weights(run):
    """The bytes of the weights file a run's model.yaml names (weights-<sha256 prefix>.npz)."""
    return (run / graphdef.load(run / "model.yaml").doc["weights"]["file"]).read_bytes()


def test_run_directory_is_never_overwritten_without_force(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", MODELS / "lecture_network.yaml", "--epochs", "1", "-o", run)[0] == 0
    weights = saved_weights(run)
    code, _, err = cli("train", MODELS / "lecture_network.yaml", "--epochs", "1", "-o", run, "--seed", "3")
    assert code == 1 and "already exists" in err and saved_weights(run) == weights
    assert cli("train", MODELS / "lecture_network.yaml", "--epochs", "1", "-o", run, "--force", "--seed", "3")[0] == 0
    assert saved_weights(run) != weights


def test_cli_train_eval_predict(tmp_path, cli):
    run = tmp_path / "run"
    code, out, err = cli("train", MODELS / "mlp.yaml", "--epochs", "3", "--lr", "0.1", "--optimizer", "momentum",
                         "--batch-size", "8", "--seed", "1", "-o", run, "--json")
    assert code == 0 and f"model to {run / 'model.yaml'}" in err
    result = json.loads(out)
    assert result["status"] == "finished" and len(result["history"]) == 3
    assert set(result["history"][0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,loss,accuracy,val_loss")
    code, out, _ = cli("eval", run / "model.yaml", "--json")
    assert code == 0 and json.loads(out)["samples"] == 80
    code, out, _ = cli("eval", run / "model.yaml", "--data", "xor", "--json")
    assert json.loads(out)["samples"] == 400
    code, _, err = cli("predict", run / "model.yaml", "--data", "xor", "-o", tmp_path / "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert code == 0 and lines[0] == "probs[0],probs[1],class" and len(lines) == 401
    code, out, err = cli("grad", run / "model.yaml", "--at", "x=[1, 0]", "--at", "y=[0, 1]", "--wrt", "W1")
    assert code == 0 and "∂E/∂W1" in out


def test_csv_data_with_column_patterns(tmp_path, cli, write):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    label = (x.sum(axis=1) > 0).astype(int)
    lines = ["f1,f2,f3,label"] + [f"{a},{b},{c},{k}" for (a, b, c), k in zip(x, label)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    model = write("""
graphdef: 1
name: logistic
inputs: {features: {shape: [3]}, target: {shape: [2]}}
parameters: {W: {shape: [3, 2], init: zeros}, b: {shape: [2], init: zeros}}
nodes:
  z: {op: matmul, inputs: [features, W]}
  logits: {op: add, inputs: [z, b]}
  p: {op: softmax, inputs: [logits]}
  loss: {op: softmax_cross_entropy, inputs: [logits, target]}
outputs: [p]
loss: loss
training:
  data: {source: data.csv, inputs: {features: ["f*"], target: label}}
  optimizer: {name: sgd, lr: 0.5}
  epochs: 20
""")
    code, _, err = cli("train", model, "-o", tmp_path / "run")
    assert code == 0, err
    assert graphdef.evaluate(graphdef.load(tmp_path / "run" / "model.yaml"))["accuracy"] >= 0.9


BAD_DATA = [
    ("unknown column", "a,b,label\n1,2,0\n", {"x": ["a", "c"], "y": "label"}, "no array or column named 'c'"),
    ("wrong shape", "a,b,c,label\n1,2,3,0\n", {"x": ["a", "b", "c"], "y": "label"}, "samples have shape [3]"),
    ("nan", "a,b,label\n1,2,0\nnan,2,1\n", {"x": ["a", "b"], "y": "label"}, "column 'a' is nan"),
    ("text", "a,b,label\n1,two,0\n", {"x": ["a", "b"], "y": "label"}, "'two' is not a number"),
    ("label range", "a,b,label\n1,2,0\n1,2,5\n", {"x": ["a", "b"], "y": "label"}, "one_hot needs class indices 0..1"),
    ("ragged", "a,b,label\n1,2\n", {"x": ["a", "b"], "y": "label"}, "2 fields, the header has 3"),
    ("header only", "a,b,label\n", {"x": ["a", "b"], "y": "label"}, "the data has no samples"),
    ("empty file", "", {"x": ["a", "b"], "y": "label"}, "empty CSV file"),
]


@pytest.mark.parametrize("csv_text, mapping, expected", [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_a_clear_error_before_training(tmp_path, cli, csv_text, mapping, expected):
    (tmp_path / "d.csv").write_text(csv_text)
    text = (MODELS / "mlp.yaml").read_text().split("training:")[0]
    text += f"training:\n  data: {{source: d.csv, inputs: {json.dumps(mapping)}}}\n"
    (tmp_path / "m.yaml").write_text(text)
    code, _, err = cli("train", tmp_path / "m.yaml", "-o", tmp_path / "run")
    assert code == 1 and expected in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_nan_in_npz_and_unknown_source(tmp_path, cli):
    np.savez(tmp_path / "d.npz", x=np.array([[1.0, np.nan], [0.0, 1.0]]), y=np.array([0, 1]))
    code, _, err = cli("train", MODELS / "mlp.yaml", "--data", tmp_path / "d.npz", "-o", tmp_path / "r")
    assert code == 1 and "data for input 'x': NaN or infinity in sample 0" in err
    code, _, err = cli("train", MODELS / "mlp.yaml", "--data", "spiral", "-o", tmp_path / "r2")
    assert code == 1 and "unknown data source 'spiral' (did you mean 'spirals'?)" in err
    code, _, err = cli("train", MODELS / "mlp.yaml", "--data", tmp_path / "missing.csv", "-o", tmp_path / "r3")
    assert code == 1 and "missing.csv: file not found" in err


def test_nan_loss_names_the_vertex_that_produced_it(tmp_path, cli, write):
    np.savez(tmp_path / "d.npz", x=np.array([1.0, 2.0, -1.0, 3.0]))
    model = write("""
graphdef: 1
name: nanny
inputs: {x: {shape: []}}
parameters: {w: {value: 1.0}}
nodes:
  wx: {op: mul, inputs: [w, x]}
  l: {op: log, inputs: [wx]}
  loss: {op: square, inputs: [l]}
outputs: [loss]
loss: loss
training: {data: {source: d.npz}, batch_size: 4, validation_split: 0, epochs: 2}
""")
    code, _, err = cli("train", model, "-o", tmp_path / "run")
    assert code == 1 and f"{model}:8:" in err and "node 'l' (log) produced NaN from wx in [-1, 3]" in err and "log of zero" in err


def test_early_stopping_restores_the_best_weights(tmp_path):
    history = quiet_train(MODELS / "mlp.yaml", run_dir=tmp_path / "r", epochs=200, lr=0.05,
                          early_stopping={"monitor": "val_loss", "patience": 3, "min_delta": 0.01})
    assert history.status == "early stopped" and history.best_epoch == len(history) - 3
    best = history[history.best_epoch - 1]["val_loss"]
    assert graphdef.evaluate(graphdef.load(tmp_path / "r" / "model.yaml"))["loss"] == pytest.approx(best, rel=1e-12)


def run_training_process(run_dir, *extra):
    code = "import sys; from graphdef.tools.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "train", str(MODELS / "spirals.yaml"), "-o", str(run_dir),
                             "--epochs", "400", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_checkpoint(run_dir, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((run_dir / "checkpoints").glob("*.npz")) if (run_dir / "checkpoints").is_dir() else []:
            return
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("delay", [0.0, 0.13, 0.37])
def test_sigkill_leaves_a_loadable_checkpoint_that_resumes(tmp_path, delay):
    run = tmp_path / "run"
    process = run_training_process(run)
    wait_for_checkpoint(run)
    time.sleep(delay)
    process.kill()
    process.wait()
    arrays, meta, _ = checkpoint.latest(run)
    assert meta["epoch"] >= 1 and all(f"param/{p}" in arrays for p in ("W1", "b1", "W2", "b2", "W3", "b3"))
    history = quiet_train(resume=run, epochs=meta["epoch"] + 1)
    assert history.status == "finished" and len(history) == meta["epoch"] + 1
    graphdef.load(run / "model.yaml")


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    process = run_training_process(run)
    wait_for_checkpoint(run)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and f"Resume with: graphdef train --resume {run}" in err
    assert "Traceback" not in err
    _, meta, _ = checkpoint.latest(run)
    graphdef.load(run / "model.yaml")
    assert quiet_train(resume=run, epochs=meta["epoch"] + 1).status == "finished"


def test_checkpoints_are_pruned_to_keep(tmp_path):
    quiet_train(MODELS / "lecture_network.yaml", run_dir=tmp_path / "r", epochs=6, keep_checkpoints=2)
    assert len(os.listdir(tmp_path / "r" / "checkpoints")) == 2
