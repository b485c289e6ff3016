"""Saves that round-trip and never tear; run directories that stay where they belong.

A saved model is self-contained (its functions, included ones too) and loads with the same
vertices and values; model.yaml and its weights are replaced as one unit; a run directory
holds a loadable model from its first checkpoint; a damaged checkpoint is named and
skipped; writes go to regular files only; a NaN stops training naming the vertex; and a
training killed at any save point resumes to the same weights, bit for bit.
"""
import errno
import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import stat
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graphdef
from batch_cases import random_feeds
from conftest import MODELS, run_cli, time_limit as bounded
from graphdef import GraphDefError
from graphdef.format import serialize
from graphdef.tools.cli import main
from graphdef.training import checkpoint, plot

TINY = """graphdef: 1
name: tiny
inputs: {x: {shape: [2]}, y: {shape: [2]}}
parameters: {W: {shape: [2, 4], init: glorot_uniform}, b: {shape: [4], init: zeros}}
nodes:
  z: {op: matmul, inputs: [x, W]}
  h: {op: add, inputs: [z, b]}
  logits: {op: dense, inputs: [h], in: 4, out: 2}
  probs: {op: softmax, inputs: [logits]}
  loss: {op: softmax_cross_entropy, inputs: [logits, y]}
outputs: [probs]
loss: loss
training: {data: {source: xor}, optimizer: {name: adam, lr: 0.05}, epochs: 3, batch_size: 32, keep_checkpoints: 2}
"""


def quiet(*args, **kwargs):
    return graphdef.train(*args, out=open(os.devnull, "w"), **kwargs)


def params_of(path) -> dict:
    return graphdef.load(path).parameters


def assert_same_params(a: dict, b: dict):
    assert list(a) == list(b)
    for name in a:
        assert np.array_equal(a[name], b[name]) and a[name].dtype == b[name].dtype, name





@pytest.fixture(autouse=True)
def no_curves(monkeypatch):
    """No curves.png in this process (matplotlib takes seconds here; plots are not what these test)."""
    monkeypatch.setattr(plot, "available", lambda: False)


@pytest.fixture
def short(tmp_path, monkeypatch) -> Path:
    """tmp_path as a short relative path (the working folder moved there): messages clip long paths."""
    monkeypatch.chdir(tmp_path)
    return Path(".")


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


# -- 1. everything in a model document survives save -> load ---------------------------------

def assert_round_trip(model, source_path, saved_path):
    """Same `show` output, same forward values (every vertex), same description, dtype, training."""
    reloaded = graphdef.load(saved_path)
    assert run_cli("show", saved_path)[1:] == run_cli("show", source_path)[1:]
    inputs = random_feeds(model, batch=2)
    before, after = model.forward(inputs), reloaded.forward(inputs)
    assert list(before) == list(after)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    for key in ("name", "description", "dtype", "outputs", "loss", "inputs", "nodes", "constants"):
        assert reloaded.doc.get(key) == model.doc.get(key), key
    assert_same_params(reloaded.variables, model.variables)
    return reloaded


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.yaml")))
def test_every_model_round_trips(tmp_path, name):
    model = graphdef.load(MODELS / name)
    saved = serialize.save(model, tmp_path / "a")
    reloaded = assert_round_trip(model, MODELS / name, saved)
    assert reloaded.doc.get("training") == model.doc.get("training")  # built-in data: nothing to rebase
    again = serialize.save(reloaded, tmp_path / "b")
    assert again.read_text() == saved.read_text()  # a saved model saves to the same text


LIBRARY = """graphdef: 1
include: [more.yaml]
functions:
  soft_sign:
    inputs: [v]
    nodes:
      a: {op: abs, inputs: [v]}
      d: {op: add, inputs: [a, 1.0]}
      y: {op: div, inputs: [v, d]}
    outputs: [y]
"""
MORE = """graphdef: 1
functions:
  scaled:
    attributes: {k: {type: float, default: 2.0}}
    inputs: [v]
    parameters: {s: {shape: [], init: ones}}
    nodes:
      m: {op: mul, inputs: [v, k]}
      y: {op: mul, inputs: [m, s]}
    outputs: [y]
"""
OWN = """graphdef: 1
name: composed
description: its own function, an included one and one included by that
dtype: float32
include: [lib/act.yaml]
functions:
  twice:
    inputs: [v]
    nodes:
      y: {op: add, inputs: [v, v]}
    outputs: [y]
inputs: {x: {shape: [2], description: features}, y: {shape: [2]}}
parameters: {bias: {shape: [2], init: zeros, description: a declared parameter}}
constants: {half: 0.5}
nodes:
  h: {op: dense, inputs: [x], in: 2, out: 2, activation: relu}
  t: {op: twice, inputs: [h]}
  s: {op: soft_sign, inputs: [t]}
  c: {op: scaled, inputs: [s], k: 3.0}
  cb: {op: add, inputs: [c, bias]}
  ch: {op: mul, inputs: [cb, half]}
  logits: {op: dense, inputs: [ch], in: 2, out: 2}
  probs: {op: softmax, inputs: [logits]}
  loss: {op: softmax_cross_entropy, inputs: [logits, y]}
outputs: [probs]
loss: loss
training: {data: {source: data.csv, inputs: {x: [a, b], y: label}}, epochs: 2, batch_size: 16, seed: 3}
"""


@pytest.fixture
def composed(tmp_path) -> Path:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "act.yaml").write_text(LIBRARY)
    (tmp_path / "lib" / "more.yaml").write_text(MORE)
    rng = np.random.default_rng(0)
    rows = [f"{a},{b},{int(a > b)}" for a, b in rng.uniform(size=(60, 2))]
    (tmp_path / "data.csv").write_text("a,b,label\n" + "\n".join(rows) + "\n")
    path = tmp_path / "composed.yaml"
    path.write_text(OWN)
    return path


def test_functions_includes_and_settings_survive_a_save_and_a_move(tmp_path, composed, monkeypatch):
    model = graphdef.load(composed)
    saved = serialize.save(model, tmp_path / "saved")
    reloaded = assert_round_trip(model, composed, saved)
    assert set(reloaded.doc["functions"]) == {"twice", "soft_sign", "scaled"} and "include" not in reloaded.doc
    assert reloaded.dtype == np.float32 and reloaded.doc["parameters"]["bias"]["description"] == "a declared parameter"
    assert reloaded.doc["training"]["data"]["source"] == "../data.csv"  # still finds the data, from the new place
    shutil.rmtree(tmp_path / "lib")  # self-contained: the include files are no longer needed
    moved = shutil.copytree(tmp_path / "saved", tmp_path / "elsewhere" / "deeper")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert_same_params(graphdef.load(moved / "model.yaml").parameters, model.parameters)


def test_a_trained_model_with_its_own_functions_evaluates(tmp_path, composed, cli):
    code, out, err = cli("train", composed, "-o", tmp_path / "run")
    assert code == 0, err
    code, out, err = cli("eval", tmp_path / "run" / "model.yaml", "--json")
    assert code == 0 and json.loads(out)["samples"] == 12, err  # was: unknown op 'twice'
    assert cli("show", tmp_path / "run" / "model.yaml")[1] == cli("show", composed)[1]


# -- 2. model.yaml and its weights are replaced as one unit ---------------------------------------

class Killed(BaseException):
    """Stands for a SIGKILL at one moment of a save (raised through everything, like a kill)."""


@pytest.mark.parametrize("moment", range(1, 5))
def test_a_save_stopped_at_any_moment_leaves_a_matching_pair(tmp_path, tiny, monkeypatch, moment):
    model, directory = graphdef.load(tiny), tmp_path / "m"
    old = {k: v.copy() for k, v in model.parameters.items()}
    serialize.save(model, directory)
    for value in model.parameters.values():
        value += 1.0
    new = {k: v.copy() for k, v in model.parameters.items()}
    points = iter(range(1, 100))
    real_replace = os.replace

    def replace(src, dst):  # moments: before/after the weights' rename, before/after model.yaml's
        if next(points) == moment:
            raise Killed
        real_replace(src, dst)
        if next(points) == moment:
            raise Killed
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        serialize.save(model, directory)
    monkeypatch.undo()
    loaded = params_of(directory / "model.yaml")  # never a hash mismatch or a missing file
    assert_same_params(loaded, new if moment == 4 else old)
    serialize.save(model, directory)
    assert_same_params(params_of(directory / "model.yaml"), new)
    assert len(serialize.weights_files(directory)) <= 2 and not list(directory.glob(".*.tmp"))


def test_weights_are_content_addressed_and_old_ones_removed(tmp_path, tiny):
    model, directory = graphdef.load(tiny), tmp_path / "m"
    names = []
    for step in range(4):
        serialize.save(model, directory)
        names.append(graphdef.load(directory / "model.yaml").doc["weights"]["file"])
        for value in model.parameters.values():
            value += 1.0
    assert len(set(names)) == 4 and all(n.startswith("weights-") and n.endswith(".npz") for n in names)
    assert serialize.weights_files(directory) == sorted(names[-2:])  # the one before is kept for one save
    other = serialize.save(model, directory, name="other.yaml")  # a second model in the folder keeps its own
    assert graphdef.load(other).doc["weights"]["file"].startswith("other.weights-")
    assert (directory / names[-1]).exists()


def test_an_older_run_directory_with_weights_npz_still_loads(tmp_path, tiny):
    model = graphdef.load(tiny)
    saved = serialize.save(model, tmp_path / "old", weights=serialize.WEIGHTS_FILE)
    assert "file: weights.npz" in saved.read_text()
    assert_same_params(params_of(saved), model.parameters)
    serialize.save(model, tmp_path / "old")  # saving over it switches to a content-addressed name
    assert_same_params(params_of(saved), model.parameters)


# -- 3. a run directory holds a loadable model from its first checkpoint ------------------------------

def test_model_yaml_exists_with_the_first_checkpoint_and_checkpoints_are_named_by_epoch(tmp_path, tiny):
    run, seen = tmp_path / "run", []

    def look(progress):
        names = sorted(p.name for p in (run / "checkpoints").glob("*.npz")) if progress.batch == 1 else []
        if names:
            seen.append((progress.epoch, names[-1], graphdef.evaluate(graphdef.load(run / "model.yaml"))["samples"]))
        return progress.epoch == 2 and progress.batch == 5
    stopped = quiet(tiny, run_dir=run, keep_checkpoints=5, callback=look)
    assert stopped.status == "interrupted" and seen[0] == (1, "epoch-0001.npz", 80)
    assert seen[-1][:2] == (2, "epoch-0002.npz")
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["epoch-0001.npz", "epoch-0002.npz", "epoch-0003-batch-00005.npz"]  # as printed: epoch 3, batch 5
    resumed = quiet(resume=run, keep_checkpoints=5)
    assert [row["epoch"] for row in resumed] == [1, 2, 3]
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "epoch-0003.npz"


def test_a_checkpoint_loads_evaluates_and_exports(tmp_path, tiny):
    quiet(tiny, run_dir=tmp_path / "run", keep_checkpoints=5)
    first = tmp_path / "run" / "checkpoints" / "epoch-0001.npz"
    model = checkpoint.load_model(first)
    arrays, meta = checkpoint.read(first)
    assert model.untrained == [] and meta["epoch"] == 1
    for name, value in model.parameters.items():
        assert np.array_equal(value, arrays[f"param/{name}"])
    assert graphdef.evaluate(model)["samples"] == 80
    last = checkpoint.load_model(tmp_path / "run" / "checkpoints" / "epoch-0003.npz")
    assert_same_params(last.parameters, params_of(tmp_path / "run" / "model.yaml"))
    pytest.importorskip("onnx")
    from graphdef.tools import onnx
    onnx.export(model, tmp_path / "epoch1.onnx")
    assert (tmp_path / "epoch1.onnx").stat().st_size > 0


def test_graphdef_eval_of_a_checkpoint(tmp_path, tiny, cli):
    quiet(tiny, run_dir=tmp_path / "run")
    code, out, err = cli("eval", tmp_path / "run" / "checkpoints" / "epoch-0003.npz", "--json")
    assert code == 0 and json.loads(out)["samples"] == 80, err


def test_early_stopping_resumes_alike_from_an_epoch_checkpoint(tmp_path):
    stopping = {"monitor": "val_loss", "patience": 2, "min_delta": 0.05}
    straight = quiet(MODELS / "mlp.yaml", run_dir=tmp_path / "a", epochs=40, lr=0.05, early_stopping=stopping)
    assert straight.status == "early stopped"
    for cut in (straight.best_epoch, straight.best_epoch + 1, len(straight)):  # the checkpoint after epoch `cut`
        run = tmp_path / f"b{cut}"
        quiet(MODELS / "mlp.yaml", run_dir=run, epochs=cut, lr=0.05, early_stopping=stopping)
        resumed = quiet(resume=run, epochs=40)
        assert (resumed.status, len(resumed), resumed.best_epoch) == (straight.status, len(straight),
                                                                        straight.best_epoch), cut
        assert_same_params(params_of(run / "model.yaml"), params_of(tmp_path / "a" / "model.yaml"))


# -- 4. damaged checkpoints are named; resume falls back to an intact one ------------------------------

def rewrite(path, change):
    """Change a checkpoint's arrays and meta as a hand edit would, keeping the file readable."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(str(arrays.pop("meta")))
    arrays, meta = change(arrays, meta)
    np.savez(path, **arrays, **({} if meta is None else {"meta": np.array(json.dumps(meta))}))


def huge_header(path):
    """An entry declaring 10**12 float64 values but holding a few bytes (was: MemoryError)."""
    with zipfile.ZipFile(path, "a") as archive:
        header = {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)}
        with archive.open("huge.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(b"\0" * 16)


def bad_array(key, value):
    return lambda path: rewrite(path, lambda a, m: ({**a, key: value}, m))


def bad_meta(change):
    return lambda path: rewrite(path, lambda a, m: (a, change(m)))


DAMAGE = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2]), "unreadable"),
    "garbage": (lambda p: p.write_bytes(os.urandom(3000)), "unreadable"),
    "empty": (lambda p: p.write_bytes(b""), "unreadable"),
    "foreign npz": (lambda p: np.savez(p, weights=np.ones(3)), "it has no meta"),
    "no meta doc": (bad_meta(lambda m: {k: v for k, v in m.items() if k != "doc"}), "meta 'doc' is missing"),
    "meta not json": (lambda p: rewrite(p, lambda a, m: ({**a, "meta": np.array("{epoch: 3")}, None)),
                      "meta is not a JSON object"),
    "meta numbers": (lambda p: rewrite(p, lambda a, m: ({**a, "meta": np.arange(3)}, None)), "meta is not a JSON"),
    "epoch as text": (bad_meta(lambda m: {**m, "epoch": "3"}), "meta 'epoch' is not a count"),
    "history cut": (bad_meta(lambda m: {**m, "history": m["history"][:1]}), "meta 'history' has 1 rows for"),
    "bad document": (bad_meta(lambda m: {**m, "doc": {**m["doc"], "outputs": "probs"}}),
                     'its model: outputs: expected a list, got "probs"'),
    "parameter missing": (lambda p: rewrite(p, lambda a, m: ({k: v for k, v in a.items() if k != "param/W"}, m)),
                          "no array param/W"),
    "parameter shape": (bad_array("param/W", np.ones((3, 4))), "param/W has shape [3, 4]"),
    "parameter NaN": (bad_array("param/b", np.full(4, np.nan)), "param/b holds NaN"),
    "parameter ints": (bad_array("param/b", np.arange(4)), "dtype int64"),
    "optimizer slot": (bad_array("opt/W/m", np.ones(2)), "opt/W/m has shape [2]"),
    "optimizer step": (bad_array("opt/step", np.array(-1)), "opt/step is not a count"),
    "unexpected array": (bad_array("param/extra", np.ones(2)), "unexpected array param/extra"),
    "huge header": (huge_header, "declares shape [1000000000000]"),
    "pickled objects": (lambda p: np.savez(p, meta=np.array([{}], dtype=object)), "holds Python objects"),
    "a directory": (lambda p: (p.unlink(), p.mkdir()), "not a regular file"),
    "a FIFO": (lambda p: (p.unlink(), os.mkfifo(p)), "not a regular file"),
}


@pytest.fixture(scope="module")
def straight_tiny(tmp_path_factory):
    """An uninterrupted 3-epoch run of TINY: (model file, its final parameters)."""
    folder = tmp_path_factory.mktemp("straight")
    (folder / "tiny.yaml").write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plot, "available", lambda: False)
        quiet(folder / "tiny.yaml", run_dir=folder / "run", keep_checkpoints=5)
    return folder / "tiny.yaml", params_of(folder / "run" / "model.yaml")


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoint_is_named_and_resume_falls_back(short, straight_tiny, cli, case):
    damage, expected = DAMAGE[case]
    model_file, final = straight_tiny
    run = short / "run"
    quiet(model_file, run_dir=run, epochs=3, keep_checkpoints=5, callback=lambda r: r.epoch == 2 and r.batch == 3)
    newest = run / "checkpoints" / "epoch-0003-batch-00003.npz"
    damage(newest)
    with bounded(20):
        code, _, err = cli("train", "--resume", run)
    assert code == 0 and f"skipping {newest}: damaged checkpoint: " in err and expected in err, err
    assert "from epoch-0002.npz, the newest intact checkpoint" in err and "Traceback" not in err
    assert_same_params(params_of(run / "model.yaml"), final)  # the fallback resumes bit for bit
    for kept in (run / "checkpoints").glob("epoch-000[12].npz"):
        kept.unlink()
    damage(run / "checkpoints" / "epoch-0003.npz")
    with bounded(20):
        code, _, err = cli("train", "--resume", run)
    assert code == 1 and f"{run / 'checkpoints' / 'epoch-0003.npz'}: damaged checkpoint: " in err and expected in err
    assert "no readable checkpoint to resume from" in err and "Traceback" not in err


def test_an_older_versions_checkpoints_still_resume(tmp_path, straight_tiny, cli):
    """Older names (epoch-0002-batch-00000.npz after epoch 2) and documents (the model's own, parameters
    drawn by their init, no placeholders) resume to the same weights."""
    model_file, final = straight_tiny
    run = tmp_path / "run"
    quiet(model_file, run_dir=run, epochs=2)
    (run / "checkpoints" / "epoch-0001.npz").unlink()
    old = run / "checkpoints" / "epoch-0002-batch-00000.npz"
    os.replace(run / "checkpoints" / "epoch-0002.npz", old)
    own = graphdef.load(model_file).doc
    rewrite(old, lambda a, m: (a, {**m, "doc": {**own, "training": m["doc"]["training"]}}))
    code, _, err = cli("train", "--resume", run, "--epochs", "3")
    assert code == 0 and "from epoch-0002-batch-00000.npz (epoch 3, batch 1)" in err, err
    assert_same_params(params_of(run / "model.yaml"), final)
    assert sorted(p.name for p in (run / "checkpoints").iterdir())[-1] == "epoch-0003.npz"


def test_resume_of_a_missing_run_directory_creates_nothing(tmp_path, cli):
    code, _, err = cli("train", "--resume", tmp_path / "nowhere")
    assert code == 1 and "no run directory to resume here" in err and not (tmp_path / "nowhere").exists()


# -- 5. writes go to regular files or new paths only; run names stay inside runs/ ----------------------

def special_files(tmp_path) -> dict:
    """A device node (made here when allowed, else /dev/null, which then cannot be replaced), a FIFO,
    a directory and a regular file, by kind."""
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        device = Path("/dev/null")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("keep me\n")
    return {"device": device, "FIFO (named pipe)": tmp_path / "fifo", "directory": tmp_path / "folder",
            "regular file": tmp_path / "file"}


def kind_of(path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


@pytest.mark.parametrize("kind", ["device", "FIFO (named pipe)", "directory"])
def test_atomic_write_refuses_anything_but_a_regular_file(short, kind):
    target = special_files(short)[kind]
    before = kind_of(target)
    with bounded(10), pytest.raises(GraphDefError, match=f"it is a {kind.split()[0]}.*not a regular file"):
        serialize.atomic_write(target, b"data")
    assert kind_of(target) == before and not list(target.parent.glob(f".{target.name}.*.tmp"))


@pytest.mark.parametrize("kind", ["device", "FIFO (named pipe)", "directory"])
def test_predict_output_onto_a_special_file_is_refused(short, cli, kind):
    target = special_files(short)[kind]
    before = kind_of(target)
    with bounded(20):
        code, _, err = cli("predict", MODELS / "mlp.yaml", "--data", "xor", "-o", target)
    assert code == 1 and f"{target}: cannot write: it is a {kind.split()[0]}" in err and "Traceback" not in err
    assert kind_of(target) == before


@pytest.mark.parametrize("kind", ["device", "FIFO (named pipe)", "regular file"])
def test_train_output_onto_a_file_is_refused(short, cli, kind):
    target = special_files(short)[kind]
    before = kind_of(target)
    with bounded(20):
        code, _, err = cli("train", MODELS / "lecture_network.yaml", "--epochs", "1", "-o", target)
    assert code == 1 and f"{target}: cannot use it as a folder: it is a {kind.split()[0]}" in err, err
    assert "Traceback" not in err and kind_of(target) == before
    if kind == "regular file":
        assert target.read_text() == "keep me\n"


@pytest.fixture
def read_only(short, monkeypatch):
    """A folder nothing can be written into: by its mode, or (for root, whom modes do not stop) by
    failing every temporary file and lock made in it, as a read-only mount does."""
    folder = short / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    real_mkstemp, real_open = tempfile.mkstemp, os.open

    def refuse(path):
        if Path(path).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: refuse(dir) or real_mkstemp(*a, dir=dir, **k))
    monkeypatch.setattr(os, "open", lambda path, *a, **k: refuse(path) or real_open(path, *a, **k))
    yield folder


def test_a_read_only_output_folder_is_a_clear_error(read_only, cli):
    code, _, err = cli("predict", MODELS / "mlp.yaml", "--data", "xor", "-o", read_only / "p.csv")
    assert code == 1 and "cannot write" in err and "read-only" in err and "Traceback" not in err
    code, _, err = cli("train", MODELS / "lecture_network.yaml", "--epochs", "1", "-o", read_only / "run")
    assert code == 1 and "Traceback" not in err and str(read_only / "run") in err, err


@pytest.mark.parametrize("name", ["a/../../../x", "_/../../../../etc/x", "a/..", "x/./y", "a//b", "_..", "a.b-c_d"])
def test_run_names_are_sanitised_into_runs(tmp_path, monkeypatch, name):
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    text = (MODELS / "lecture_network.yaml").read_text().replace("name: lecture_network", f"name: {name}")
    (tmp_path / "m.yaml").write_text(text)
    history = quiet(tmp_path / "m.yaml", epochs=1)
    run = history.run_dir.resolve()
    assert run.parent == work / "runs" and run.name[0] != "." and set(run.name) <= set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir() and "runs" not in p.parts) == ["deep", "work"]


# -- 6. NaN during training: the vertex is named, nothing saved holds NaN -------------------------------

NANNY = """graphdef: 1
name: nanny
inputs: {x: {shape: []}}
parameters: {w: {value: 1.0}}
nodes:
  wx: {op: mul, inputs: [w, x]}
  fault: {op: OP, inputs: [w]}
  gate: {op: mul, inputs: [fault, 0.0]}
  nll: {op: add, inputs: [wx, gate]}
outputs: [nll]
loss: nll
training: {data: {source: d.npz}, batch_size: 2, validation_split: 0, epochs: 6, optimizer: {name: sgd, lr: LR}}
"""
NAN_CASES = {  # op, lr -> where training stops, the message (w falls by lr each step: 1, 1 - lr, ...)
    "log goes NaN in epoch 3": ("log", 0.1, "epoch 3, batch 4",
                                "node 'fault' (log) produced NaN from w in [-0.1, -0.1]"),
    "log of zero in epoch 1": ("log", 0.5, "epoch 1, batch 3", "node 'fault' (log) produced infinity from w in [0, 0]"),
    "sqrt's gradient only": ("sqrt", 0.5, "epoch 1, batch 3", "the gradient ∂nll/∂w is NaN"),
}


@pytest.mark.parametrize("check", [False, True], ids=["plain", "check-numerics"])
@pytest.mark.parametrize("case", list(NAN_CASES))
def test_nan_during_training_names_the_vertex_and_keeps_what_was_saved(short, cli, case, check):
    fault, lr, where, message = NAN_CASES[case]
    np.savez(short / "d.npz", x=np.ones(8))
    model = short / "nanny.yaml"
    model.write_text(NANNY.replace("OP", fault).replace("LR", str(lr)))
    code, _, err = cli("train", model, "-o", short / "run", *(["--check-numerics"] if check else []))
    assert code == 1 and f"training stopped at {where}" in err and message in err, err
    assert "Traceback" not in err and "KeyError" not in err
    saved = sorted((short / "run" / "checkpoints").glob("*.npz"))
    assert len(saved) == int(where.split()[1].rstrip(",")) - 1  # every finished epoch's checkpoint is kept
    if saved:
        assert f"the checkpoints are kept in {short / 'run' / 'checkpoints'}" in err
        assert np.isfinite(params_of(short / "run" / "model.yaml")["w"]).all()
        assert all(np.isfinite(checkpoint.load_model(p).parameters["w"]).all() for p in saved)
    else:
        assert "nothing was saved" in err


# -- 7. SIGKILL at random save points: the run directory always loads, resume is bit-identical ----------

KILLS = 24
PARALLEL = 4


def count_write_points(model_file, run, monkeypatch) -> int:
    """Train once in this process, counting the write points GRAPHDEF_PAUSE_AT numbers."""
    monkeypatch.setenv(serialize.PAUSE_AT, f"1000000000:{run}.never")
    monkeypatch.setattr(serialize, "_write_points", 0)
    quiet(model_file, run_dir=run)
    points = serialize._write_points
    monkeypatch.delenv(serialize.PAUSE_AT)
    return points


def train_until(model_file, run, point):
    """A training process (forked from this one, so it starts in milliseconds): `graphdef train`
    that stops itself at write point `point` (GRAPHDEF_PAUSE_AT); its standard error goes to RUN.err."""
    os.environ[serialize.PAUSE_AT] = f"{point}:{run}.paused"
    serialize._write_points = 0
    with open(f"{run}.err", "w", buffering=1) as err:
        os._exit(main(["train", str(model_file), "-o", str(run)], io.StringIO(), err))


def kill_when_paused(process, run, delay):
    """SIGKILL once the process has stopped itself at its point (or `delay` seconds after it went on)."""
    deadline = time.monotonic() + 60
    while not Path(f"{run}.paused").exists() and process.is_alive():
        assert time.monotonic() < deadline, "the training never reached its pause point"
        time.sleep(0.002)
    if delay is not None:
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(delay)
    process.kill()
    process.join(30)
    assert process.exitcode is not None
    assert "Traceback" not in Path(f"{run}.err").read_text()


def check_after_kill(model_file, run, final):
    """The newest complete model loads and evaluates; resuming ends with the uninterrupted weights."""
    saved = list((run / "checkpoints").glob("epoch-*.npz")) if (run / "checkpoints").is_dir() else []
    if saved:
        assert (run / "model.yaml").exists(), "a checkpoint without a model.yaml"
        found = checkpoint.newest(run)
        assert found.skipped == [] and graphdef.evaluate(found.model)["samples"] == 80
    if (run / "model.yaml").exists():
        code, out, err = run_cli("eval", run / "model.yaml", "--json")
        assert code == 0 and json.loads(out)["samples"] == 80, err
    code, _, err = run_cli("train", "--resume", run) if saved else run_cli("train", model_file, "-o", run, "--force")
    assert code == 0, err
    assert_same_params(params_of(run / "model.yaml"), final)
    assert len(serialize.weights_files(run)) <= 2 and not list(run.rglob(".*.tmp"))


def test_sigkill_at_random_save_points_then_resume_is_bit_identical(tmp_path, tiny, monkeypatch):
    started = time.monotonic()
    points = count_write_points(tiny, tmp_path / "reference", monkeypatch)
    final = params_of(tmp_path / "reference" / "model.yaml")
    rng = random.Random(20240607)
    chosen = sorted(set(rng.sample(range(1, points + 1), min(KILLS - 4, points)) + list(range(points - 3, points + 1))))
    plan = [(tmp_path / f"run{i}", point, rng.choice([None, rng.uniform(0, 0.02)])) for i, point in enumerate(chosen)]
    assert len(plan) >= 20 and plan[-1][1] == points  # spread over the run, the final save's points included
    fork = multiprocessing.get_context("fork")
    for group in range(0, len(plan), PARALLEL):
        runs = plan[group:group + PARALLEL]
        processes = [fork.Process(target=train_until, args=(tiny, run, point)) for run, point, _ in runs]
        for process in processes:
            process.start()
        for process, (run, _, delay) in zip(processes, runs):
            kill_when_paused(process, run, delay)
        for run, _, _ in runs:
            check_after_kill(tiny, run, final)
    assert time.monotonic() - started < 60
