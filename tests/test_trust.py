"""Trust: hostile files are refused quickly, saved models are checked, numerical faults are named."""
import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import graphdef
from conftest import MODELS, ROOT
from graphdef import GraphDefError, Limits
from graphdef.training import checkpoint

LOL = "graphdef: 1\nname: lol\noutputs: [x]\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))


def refused_quickly(cli, path, expected, *extra):
    start = time.perf_counter()
    code, out, err = cli("validate", path, *extra)
    assert time.perf_counter() - start < 1.0
    assert code == 1 and expected in err and "Traceback" not in err
    return err


def test_billion_laughs_is_refused_without_expanding(cli, write):
    refused_quickly(cli, write(LOL), "document expands to more than 5,000,000 values")


def test_python_object_tags_are_refused(cli, write):
    path = write("graphdef: 1\nname: x\noutputs: [a]\nnodes: !!python/object/apply:os.system [touch pwned]\n")
    refused_quickly(cli, path, "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed")
    assert not os.path.exists("pwned")


@pytest.mark.parametrize("text, expected", [
    ("a: " + "[" * 100_000 + "]" * 100_000, "nests deeper than 100 levels"),
    ("a: &a [*a]", "a YAML alias refers to itself"),
    ("a:\n" + "".join(" " * (i + 1) + f"b{i}:\n" for i in range(150)) + " " * 151 + "x", "nests deeper than 100"),
])
def test_deep_and_recursive_documents(cli, write, text, expected):
    refused_quickly(cli, write(text), expected)


def test_limits_can_be_raised(cli, write, tmp_path):
    path = write((MODELS / "lecture.yaml").read_text())
    err = refused_quickly(cli, path, "file is larger than 10 bytes", "--limit", "max_file_bytes=10")
    assert "--limit max_file_bytes=N" in err
    refused_quickly(cli, path, "the model has 5 vertices, more than 2", "--limit", "max_vertices=2")
    assert cli("validate", path, "--limit", "max_vertices=5")[0] == 0
    with pytest.raises(GraphDefError, match="5 vertices, more than 4"):
        graphdef.load(path, limits=Limits(max_vertices=4))
    assert cli("validate", path, "--limit", "max_nodes=3")[0] == 2


@pytest.fixture
def trained(tmp_path):
    """A saved model: tmp/run/model.yaml + weights.npz (named so, as `graphdef import --weights` does;
    a save names its weights weights-<sha256 prefix>.npz by default)."""
    from graphdef.format import serialize
    return serialize.save(graphdef.load(MODELS / "mlp.yaml"), tmp_path / "run", weights="weights.npz")


def weights_case(trained, change):
    text = trained.read_text()
    weights = dict(np.load(trained.parent / "weights.npz"))
    text, weights, blob = change(text, weights)
    trained.write_text(text)
    if blob is None:
        np.savez(trained.parent / "weights.npz", **weights)
    else:
        (trained.parent / "weights.npz").write_bytes(blob)
    return trained


def unhash(text):
    return "\n".join(line.split(", sha256")[0] + "}" if line.startswith("weights:") else line
                     for line in text.splitlines()) + "\n"


WEIGHT_CASES = {
    "changed": (lambda t, w: (t, {**w, "W1": w["W1"] + 1}, None), "does not match its SHA-256", "weights.sha256"),
    "truncated": (lambda t, w: (unhash(t), w, b"PK\x03\x04 truncated"), "is unreadable", "weights.file"),
    "missing array": (lambda t, w: (unhash(t), {k: v for k, v in w.items() if k != "b2"}, None),
                      "array 'b2' is missing from weights.npz", "parameters.b2.weights"),
    "wrong shape": (lambda t, w: (unhash(t), {**w, "W2": np.ones((3, 2))}, None),
                    "stored array has shape [3, 2]", "parameters.W2"),
    "wrong dtype": (lambda t, w: (unhash(t), {**w, "b1": np.array([1, 2])}, None), "dtype int64", "parameters.b1"),
    "object array": (lambda t, w: (unhash(t), {**w, "b1": np.array([{}, {}], dtype=object)}, None),
                     "is unreadable", "weights.file"),
}


@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_damaged_weights_are_named(cli, trained, case):
    change, expected, path = WEIGHT_CASES[case]
    if case == "object array":
        weights = dict(np.load(trained.parent / "weights.npz"))
        np.savez(trained.parent / "weights.npz", **{**weights, "b1": np.array([{}, {}], dtype=object)})
        trained.write_text(unhash(trained.read_text()))
    else:
        weights_case(trained, change)
    code, _, err = cli("run", trained, "--at", "x=[1, 2]", "--at", "y=[0, 1]")
    assert code == 1 and expected in err and f"{trained}:" in err and path in err and "Traceback" not in err


def test_weights_outside_the_model_folder_are_refused_unless_allowed(cli, trained, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.replace(trained.parent / "weights.npz", tmp_path / "elsewhere" / "weights.npz")
    for reference in ("../elsewhere/weights.npz", str(tmp_path / "elsewhere" / "weights.npz")):
        trained.write_text(trained.read_text().replace("file: weights.npz", f"file: {reference}")
                           .replace("file: ../elsewhere/weights.npz", f"file: {reference}"))
        err = refused_quickly(cli, trained, "is outside the model's folder")
        assert "allow" in err
        assert cli("validate", trained, "--allow-outside-weights")[0] == 0


def test_missing_weights_file(cli, trained):
    (trained.parent / "weights.npz").unlink()
    code, _, err = cli("validate", trained)
    assert code == 1 and "cannot read weights file" in err and "No such file" in err


def test_grad_checks_numerics_by_default(cli, write):
    path = write("graphdef: 1\nname: n\ninputs:\n  x: {shape: [2]}\nnodes:\n  l: {op: log, inputs: [x]}\n"
                 "  s: {op: sum, inputs: [l]}\noutputs: [s]\n")
    code, _, err = cli("grad", path, "--at", "x=[0, 1]")
    assert code == 1 and f"{path}:6:" in err and "node 'l' (log) produced infinity from x in [0, 1]" in err
    assert "log of zero" in err
    code, out, _ = cli("grad", path, "--at", "x=[0, 1]", "--no-check-numerics")
    assert code == 0 and "-inf" in out
    assert cli("run", path, "--at", "x=[0, 1]")[0] == 0
    code, _, err = cli("run", path, "--at", "x=[-1, 1]", "--check-numerics")
    assert code == 1 and "produced NaN" in err


def test_overflow_in_exp_is_reported(cli, write):
    path = write("graphdef: 1\nname: n\ninputs:\n  x: {shape: []}\nnodes:\n  e: {op: exp, inputs: [x]}\noutputs: [e]\n")
    code, _, err = cli("grad", path, "--at", "x=1000")
    assert code == 1 and "node 'e' (exp) produced infinity from x in [1000, 1000]" in err and "overflows" in err
    code, _, err = cli("grad", path, "--at", "x=100", "--dtype", "float32")
    assert code == 1 and "~88 (float32)" in err
    assert cli("grad", path, "--at", "x=100")[0] == 0


def test_dtype_flag(cli):
    code, out, _ = cli("run", MODELS / "mlp.yaml", "--at", "x=[1, 2]", "--at", "y=[0, 1]", "--dtype", "float32",
                       "--json")
    assert code == 0 and graphdef.load(MODELS / "mlp.yaml", dtype="float32").forward(
        {"x": [1, 2], "y": [0, 1]})["E"].dtype == np.float32


def test_a_second_training_into_the_same_run_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    code = "import sys; from graphdef.tools.cli import main; sys.exit(main(sys.argv[1:]))"
    first = subprocess.Popen([sys.executable, "-c", code, "train", str(MODELS / "spirals.yaml"), "-o", str(run),
                              "--epochs", "500"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(GraphDefError, match=r"another training \(process \d+\) is writing"):
            graphdef.train(resume=run, out=open(os.devnull, "w"))
    finally:
        first.kill()
        first.wait()


def test_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("999999999")
    history = graphdef.train(MODELS / "lecture_network.yaml", run_dir=run, epochs=1, out=open(os.devnull, "w"),
                             force=True)
    assert history.status == "finished" and not (run / ".lock").exists()


def test_disk_full_keeps_the_previous_checkpoint(cli, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real_fsync, writes = os.fsync, []

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if "epoch-0002" in target:
            raise OSError(errno.ENOSPC, "No space left on device")
        writes.append(target)
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    code, _, err = cli("train", MODELS / "lecture_network.yaml", "--epochs", "3", "-o", run)
    monkeypatch.undo()
    assert code == 1 and "cannot write: No space left on device" in err and "Traceback" not in err
    assert "untouched" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.npz"]
    arrays, meta, _ = checkpoint.latest(run)
    assert meta["epoch"] == 1 and not (run / ".lock").exists()
    assert graphdef.train(resume=run, out=open(os.devnull, "w")).status == "finished"


def test_weights_are_never_unpickled(trained):
    weights = dict(np.load(trained.parent / "weights.npz"))
    np.savez(trained.parent / "weights.npz", **{**weights, "W1": np.array([object()], dtype=object)})
    trained.write_text(unhash(trained.read_text()))
    with pytest.raises(GraphDefError, match="unreadable"):
        graphdef.load(trained)


def test_saved_files_carry_their_hash(trained):
    text = trained.read_text()
    import hashlib
    digest = hashlib.sha256((trained.parent / "weights.npz").read_bytes()).hexdigest()
    assert f"sha256: {digest}" in text
    assert json.loads(json.dumps(graphdef.load(trained).doc["weights"]))["sha256"] == digest
