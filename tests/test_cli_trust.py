"""The command line never shows a traceback, and helps: every failure is a short message and an exit code.

Most tests run main() in-process; those about the real process (its streams, exit code,
/dev/full, plugins found on PYTHONPATH) run `python -m graphdef` with a timeout.
"""
import errno
import io
import json
import shutil
import os
import random
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import graphdef
from conftest import MODELS, ROOT, time_limit
from graphdef import GraphDefError
from graphdef.tools import cli as cli_module
from graphdef.training.config import _setting_schemas, check_overrides, resolve

LECTURE = MODELS / "lecture.yaml"
SQUARE = "graphdef: 1\nname: sq\ninputs:\n  x: {}\nnodes:\n  y: {op: square, inputs: [x]}\noutputs: [y]\n"
NO_LOSS = ("graphdef: 1\nname: noloss\ninputs:\n  x: {shape: [null, 2]}\n"
           "parameters:\n  w: {value: [[1.0], [2.0]]}\nnodes:\n  p: {op: matmul, inputs: [x, w]}\noutputs: [p]\n")


class Timeout(BaseException):
    """Not an Exception, so main's guard cannot turn a hang into an 'internal error'."""





def clean(code, out, err, expected_code=1):
    """The common assertions: the exit code, and no traceback or internal error anywhere."""
    assert code == expected_code, (code, out, err)
    assert "Traceback" not in out + err and "internal error" not in err, err
    return err


def python_m(*argv, env=None, timeout=60, **kwargs):
    """The real process: `python -m graphdef ARGV`."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "graphdef", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, cwd=kwargs.pop("cwd", ROOT), env=environment, **kwargs)


# -- 1. one guard around every command ------------------------------------------------------------

def test_an_unexpected_exception_is_two_lines_without_a_traceback(cli, monkeypatch):
    monkeypatch.delenv("GRAPHDEF_DEBUG", raising=False)
    monkeypatch.setattr(cli_module, "standard_library", lambda: {}["missing"])
    code, _, err = cli("ops")
    clean_err = err.splitlines()
    assert code == 1 and "Traceback" not in err and len(clean_err) == 2
    assert clean_err[0] == "graphdef: internal error: KeyError: 'missing'"
    assert "report" in clean_err[1] and "graphdef ops" in clean_err[1] and "GRAPHDEF_DEBUG=1" in clean_err[1]


def test_a_long_error_message_is_cut(cli, monkeypatch):
    monkeypatch.delenv("GRAPHDEF_DEBUG", raising=False)

    def fail():
        raise RuntimeError("x" * 100_000)
    monkeypatch.setattr(cli_module, "standard_library", fail)
    code, _, err = cli("ops")
    assert code == 1 and len(err) < 1000 and "RuntimeError: xxx" in err and "..." in err


def test_graphdef_debug_shows_the_traceback(cli, monkeypatch):
    monkeypatch.setenv("GRAPHDEF_DEBUG", "1")
    monkeypatch.setattr(cli_module, "standard_library", lambda: 1 / 0)
    code, _, err = cli("ops")
    assert code == 1 and "Traceback" in err and "graphdef: internal error: ZeroDivisionError" in err


def test_out_of_memory_has_its_own_message(cli, monkeypatch):
    def fail():
        raise MemoryError()
    monkeypatch.setattr(cli_module, "standard_library", fail)
    err = clean(*cli("ops"))
    assert "out of memory" in err


def test_interrupt_exits_130(cli, monkeypatch):
    def interrupt():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_module, "standard_library", interrupt)
    assert cli("ops")[0] == 130


def test_the_real_process_reports_and_debug_shows_the_traceback(tmp_path):
    """A plugin that breaks graphdef stands for a bug: exit 1, a report, a traceback only when asked."""
    (tmp_path / "breaker.py").write_text("import graphdef.tools.cli as c\nc.standard_library = lambda: 1 / 0\n")
    env = {"PYTHONPATH": str(tmp_path), "GRAPHDEF_DEBUG": ""}
    done = python_m("--plugin", "breaker", "ops", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "graphdef: internal error: ZeroDivisionError: division by zero" in done.stderr
    debug = python_m("--plugin", "breaker", "ops", env={**env, "GRAPHDEF_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# -- 2. help and usage errors -----------------------------------------------------------------------

def test_no_arguments_prints_the_full_help(cli):
    code, out, err = cli()
    assert code == 0 and err == ""
    assert all(name in out for name in ("validate", "train", "predict", "--plugin"))


def test_the_real_process_without_arguments_exits_0():
    done = python_m()
    assert done.returncode == 0 and "train" in done.stdout and done.stderr == ""


@pytest.mark.parametrize("argv, expected", [
    (["trian"], "unknown command 'trian' (did you mean 'train'?)"),
    (["evla", "x"], "did you mean 'eval'?"),
    (["train", "models/digits.yaml", "--learning-rate", "0.1"],
     "unknown option '--learning-rate' for 'graphdef train' (did you mean '--lr'?)"),
    (["train", "models/digits.yaml", "--batchsize", "3"], "(did you mean '--batch-size'?)"),
    (["train", "models/digits.yaml", "--learning_rate=0.1"], "(did you mean '--lr'?)"),
    (["run", "models/lecture.yaml", "--inptus", "x.json"], "(did you mean '--inputs'?)"),
    (["grad", "models/lecture.yaml", "--method", "revers"], "unknown choice 'revers' (did you mean 'reverse'?)"),
    (["run", "models/lecture.yaml", "--plugin", "x"], "--plugin is a global option: put it before the command"),
    (["show", "models/lecture.yaml", "extra"], "unexpected argument 'extra'"),
    (["--plugin", "x"], "give a command"),
    (["import", "m.onnx", "-o", "m.yaml", "--nmae", "n"],
     "unknown option '--nmae' for 'graphdef import' (did you mean '--name'?)"),
])
def test_usage_errors_say_what_was_meant(cli, argv, expected):
    err = clean(*cli(*argv), expected_code=2)
    assert expected in err and "usage: graphdef" in err


@pytest.mark.parametrize("argv", [["import", "m.onnx", "-o", ""], ["import", "m.onnx", "-o", "m.yaml", "--weights", ""]])
def test_empty_output_names_are_usage_errors(cli, argv):
    assert "-o and --weights name files" in clean(*cli(*argv), expected_code=2)


def test_a_command_with_a_name_option_is_still_that_command(cli, tmp_path):
    """`import --name` once hid which command was given (the parser kept the command under `name` too)."""
    err = clean(*cli("import", tmp_path / "nope.onnx", "-o", tmp_path / "m.yaml", "--name", "n"))
    assert "nope.onnx: file not found" in err


# -- 3. overrides have the model file's bounds ----------------------------------------------------------

@pytest.mark.parametrize("flag, value, setting", [
    ("--epochs", "0", "epochs"), ("--epochs", "-1", "epochs"), ("--lr", "-1", "lr"), ("--lr", "0", "lr"),
    ("--lr", "nan", "lr"), ("--lr", "inf", "lr"), ("--batch-size", "0", "batch_size"),
    ("--batch-size", "-5", "batch_size"), ("--seed", "-1", "seed"),
])
def test_out_of_range_overrides_are_refused_and_nothing_is_written(cli, tmp_path, flag, value, setting):
    run = tmp_path / "run"
    code, out, err = cli("train", MODELS / "logistic.yaml", flag, value, "-o", run)
    assert code in (1, 2) and "Traceback" not in err
    assert f"training setting {setting} = " in err and "is not allowed" in err
    assert not run.exists()


def numeric_settings():
    """(setting, a value just past its bound, a value just inside) for every bound the schema sets."""
    cases = []
    for name, sub in _setting_schemas().items():
        step = 1 if sub.get("type") == "integer" else 0.25
        for key, outside, inside in (("minimum", -step, 0), ("exclusiveMinimum", 0, step),
                                     ("maximum", step, 0), ("exclusiveMaximum", 0, -step)):
            if key in sub:
                cases.append((name, sub[key] + outside, sub[key] + inside))
    return cases


@pytest.mark.parametrize("name, outside, inside", numeric_settings())
def test_every_bound_comes_from_the_schema(name, outside, inside):
    with pytest.raises(GraphDefError, match=f"training setting {name} = "):
        check_overrides({name: outside})
    assert check_overrides({name: inside}) == {name: inside}


def test_the_api_checks_overrides_like_the_cli(tmp_path):
    model = graphdef.load(MODELS / "logistic.yaml")
    for settings in ({"epochs": 0}, {"lr": -1.0}, {"batch_size": 0}, {"seed": -1}, {"epochs": 2.5}):
        with pytest.raises(GraphDefError, match="is not allowed"):
            graphdef.train(model, run_dir=tmp_path / "run", **settings)
        with pytest.raises(GraphDefError, match="is not allowed"):
            resolve(model, settings)
    assert not (tmp_path / "run").exists()


def test_the_api_checks_the_seed_before_loading_a_path(tmp_path):
    with pytest.raises(GraphDefError, match="training setting seed = -1"):
        graphdef.train(MODELS / "digits.yaml", seed=-1, run_dir=tmp_path / "run")


# -- 4. output ---------------------------------------------------------------------------------------

class FullDisk:
    """A standard output on a full disk."""

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass


def test_a_failed_write_is_one_line(cli):
    err = io.StringIO()
    code = cli_module.main(["ops"], FullDisk(), err)
    assert code == 1 and err.getvalue() == "graphdef: cannot write the output: No space left on device\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_to_a_full_device():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "graphdef", "ops"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and done.stderr == "graphdef: cannot write the output: No space left on device\n"


def test_a_reader_that_leaves_is_not_an_error():
    done = subprocess.run(f"'{sys.executable}' -m graphdef ops | head -1", shell=True, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.stdout == "primitive ops:\n" and "Traceback" not in done.stderr and "Exception" not in done.stderr


def strict_json(text):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))


def test_json_has_null_for_nan_and_infinity(cli, write):
    path = write("graphdef: 1\nname: l\ninputs:\n  x: {shape: [3]}\nnodes:\n  y: {op: log, inputs: [x]}\n"
                 "outputs: [y]\n")
    code, out, err = cli("run", path, "--at", "x=[0, -1, 1]", "--json")
    assert code == 0, err
    assert strict_json(out) == {"outputs": {"y": [None, None, 0.0]}}
    code, out, err = cli("grad", path, "--at", "x=[0, -1, 1]", "--of", "y", "--no-check-numerics", "--json")
    assert code == 0, err
    assert strict_json(out)["gradients"]["x"][0] is None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -0.0, np.float32("nan"),
                                   np.array([1.0, np.nan, -0.0]), {"a": [np.inf, (2, -0.0)]}])
def test_json_values_are_always_strict(value):
    text = cli_module._dumps(value)
    strict_json(text)
    assert "-0" not in text and "NaN" not in text and "Infinity" not in text


def test_minus_zero_prints_as_zero(cli, write):
    path = write(SQUARE)
    code, out, _ = cli("grad", path, "--at", "x=-0.0")
    assert code == 0 and out.splitlines() == ["y = 0", "∂y/∂x = 0"]
    code, out, _ = cli("grad", path, "--at", "x=-0.0", "--json")
    assert code == 0 and "-0" not in out
    vector = write(SQUARE.replace("x: {}", "x: {shape: [2]}"), "vector.yaml")
    code, out, _ = cli("grad", vector, "--at", "x=[-0.0, 1]", "--of", "y", "--wrt", "x")
    assert code == 0 and "-0" not in out


# -- 5. --explain with numeric differences --------------------------------------------------------------

def test_explain_with_numeric_differences_is_a_usage_error(cli):
    err = clean(*cli("grad", LECTURE, "--at", "a=3", "--at", "b=5", "--method", "numeric", "--explain"),
                expected_code=2)
    assert "--explain shows the backward sweep" in err and "--method paths" in err


# -- 6. data files are named as typed, and only regular files are read --------------------------------------

def test_a_missing_data_file_is_named_as_typed_with_where_it_looked(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = clean(*cli("train", MODELS / "logistic.yaml", "--data", "nope.csv", "-o", "run"))
    assert err.startswith("nope.csv: file not found")
    assert str(tmp_path / "nope.csv") in err and str(MODELS / "nope.csv") in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_a_folder_as_data_is_refused(cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.csv").mkdir()
    extra = ["-o", "run"] if command == "train" else []
    err = clean(*cli(command, MODELS / "logistic.yaml", "--data", "folder.csv", *extra))
    assert "folder.csv: is a folder, not a data file" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name, command", [("pipe.csv", "predict"), ("pipe.npz", "eval"), ("pipe.json", "run")])
def test_a_fifo_is_refused_without_blocking(cli, tmp_path, monkeypatch, name, command):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(name)
    argv = (["run", LECTURE, "--inputs", name] if command == "run"
            else [command, MODELS / "logistic.yaml", "--data", name])
    with time_limit(10, Timeout):
        err = clean(*cli(*argv))
    assert f"{name}: is a pipe, socket or device, not a regular file" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_data_file(cli, tmp_path):
    path = tmp_path / "secret.csv"
    path.write_text("x,y\n1,2\n")
    path.chmod(0)
    err = clean(*cli("predict", MODELS / "logistic.yaml", "--data", path))
    assert f"{path}: cannot read file: Permission denied" in err


# -- 7. hostile data files ---------------------------------------------------------------------------------------

def npz_with_object_array(path):
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))


def npz_bytes(path, blob):
    path.write_bytes(blob)


def truncated_npz(path):
    np.savez(path, x=np.ones((10, 2)))
    path.write_bytes(path.read_bytes()[:200])


def npz_with_a_text_member(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.txt", "hello")


BAD_FILES = {
    "deep.json": (lambda p: p.write_text('{"x": ' + "[" * 10_000 + "]" * 10_000 + "}"), "nested too deeply"),
    "deep_arrays.json": (lambda p: p.write_text('{"x": ' + "[" * 500 + "1" + "]" * 500 + "}"),
                         "'x' is not a number or a rectangular array of numbers"),
    "ragged.json": (lambda p: p.write_text('{"x": [[1, 2], [3]]}'), "rectangular array"),
    "strings.json": (lambda p: p.write_text('{"x": ["a", "b"]}'), "rectangular array of numbers"),
    "null.json": (lambda p: p.write_text('{"x": [1, null]}'), "rectangular array of numbers"),
    "huge_int.json": (lambda p: p.write_text('{"x": ' + "9" * 5000 + "}"), "invalid JSON"),
    "empty.json": (lambda p: p.write_text(""), "invalid JSON"),
    "list.json": (lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
    "latin1.json": (lambda p: p.write_bytes(b'{"x": "\xff"}'), "not UTF-8 text"),
    "big_field.csv": (lambda p: p.write_text("x,y\n" + "1" * 200_000 + ",2\n"), "not a readable CSV table"),
    "words.csv": (lambda p: p.write_text("x,y\n1,two\n"), "column 'y': 'two' is not a number"),
    "ragged.csv": (lambda p: p.write_text("x,y\n1,2\n3\n"), "1 fields, the header has 2"),
    "empty.csv": (lambda p: p.write_text(""), "empty CSV file"),
    "blank.csv": (lambda p: p.write_text("\n\n"), "empty CSV file"),
    "missing.csv": (lambda p: p.write_text("x,y\n1,\n"), "column 'y': '' is not a number"),
    "nan.csv": (lambda p: p.write_text("x,y\n1,nan\n"), "column 'y' is nan"),
    "twice.csv": (lambda p: p.write_text("x,x\n1,2\n"), "two columns are named 'x'"),
    "unnamed.csv": (lambda p: p.write_text("x,\n1,2\n"), "column 2 of the header has no name"),
    "nul.csv": (lambda p: p.write_bytes(b"x,y\n1,\x002\n"), "is not a number"),
    "objects.npz": (npz_with_object_array, "array 'x' holds Python objects, which are never unpickled"),
    "text.npz": (lambda p: p.write_text("x,y\n1,2\n"), "not an NPZ archive"),
    "empty.npz": (lambda p: p.write_bytes(b""), "not an NPZ archive"),
    "truncated.npz": (truncated_npz, "cannot read NPZ archive"),
    "member.npz": (npz_with_a_text_member, "member 'x.txt' is not a NumPy array"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_hostile_data_files_are_located_errors(cli, tmp_path, name):
    make, expected = BAD_FILES[name]
    path = tmp_path / name
    make(path)
    argv = ["run", LECTURE, "--inputs", path] if name.endswith(".json") else \
        ["predict", MODELS / "logistic.yaml", "--data", path]
    with time_limit(10, Timeout):
        err = clean(*cli(*argv))
    assert f"{path}" in err and expected in err


# -- 8. plugins ----------------------------------------------------------------------------------------------------

PLUGIN = '''import graphdef

graphdef.register_op("triple_plugin_test", lambda x: 3 * x, lambda g, out, x: 3 * g, doc="3x")
'''


def test_a_plugin_registers_ops_a_model_uses(tmp_path):
    (tmp_path / "myops").mkdir()
    (tmp_path / "myops" / "__init__.py").write_text("")
    (tmp_path / "myops" / "extra.py").write_text(PLUGIN)
    model = tmp_path / "model.yaml"
    model.write_text(SQUARE.replace("op: square", "op: triple_plugin_test"))
    env = {"PYTHONPATH": str(tmp_path)}
    done = python_m("--plugin", "myops.extra", "grad", model, "--at", "x=2", env=env)
    assert done.returncode == 0 and done.stdout.splitlines() == ["y = 6", "∂y/∂x = 3"], done.stderr
    without = python_m("grad", model, "--at", "x=2", env=env)
    assert without.returncode == 1 and "triple_plugin_test" in without.stderr and "Traceback" not in without.stderr


@pytest.mark.parametrize("module, code, expected", [
    ("no_such_plugin_module", 1, "cannot load plugin 'no_such_plugin_module': ModuleNotFoundError"),
    ("broken_plugin_test", 1, "cannot load plugin 'broken_plugin_test': ZeroDivisionError"),
    ("exiting_plugin_test", 1, "cannot load plugin 'exiting_plugin_test': SystemExit"),
    ("plugins/ops.py", 2, "--plugin takes a Python module name"),
])
def test_a_plugin_that_cannot_load_is_named(cli, tmp_path, monkeypatch, module, code, expected):
    (tmp_path / "broken_plugin_test.py").write_text("1 / 0\n")
    (tmp_path / "exiting_plugin_test.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = clean(*cli("--plugin", module, "ops"), expected_code=code)
    assert expected in err


# -- 9. inference without labels ---------------------------------------------------------------------------------

def test_run_without_the_label_prints_the_outputs(cli):
    code, out, err = cli("run", MODELS / "mlp.yaml", "--at", "x=[[1, 0.5], [0, 1]]")
    assert code == 0, err
    assert out.startswith("probs = ") and "E =" not in out
    code, out, err = cli("run", MODELS / "mlp.yaml", "--at", "x=[1, 0.5]", "--json")
    assert code == 0 and list(json.loads(out)["outputs"]) == ["probs"]
    code, out, _ = cli("run", MODELS / "mlp.yaml", "--at", "x=[1, 0.5]", "--at", "y=[1, 0]")
    assert code == 0 and "E = " in out  # with the label, the loss as before


def test_run_of_a_saved_classifier_without_the_label(cli, tmp_path):
    saved = graphdef.load(MODELS / "digits.yaml").save(tmp_path / "run")
    code, out, err = cli("run", saved, "--at", f"x=[{[0.5] * 64}]")
    assert code == 0 and out.startswith("probs = ") and "loss" not in out, err


def test_predict_needs_no_label_column(cli, tmp_path):
    data = tmp_path / "x.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(5, 2)))
    code, out, err = cli("predict", MODELS / "mlp.yaml", "--data", data)
    assert code == 0 and len(out.splitlines()) == 6, err


def test_resolve_for_prediction_accepts_a_model_without_a_loss(write):
    model = graphdef.load(write(NO_LOSS))
    config = resolve(model, {"data": "x.npz"}, need_loss=False)
    assert config.loss is None and config.predictions == ["p"]
    with pytest.raises(GraphDefError, match="the model has no loss"):
        resolve(model, {"data": "x.npz"})  # training still needs one


def test_predict_works_on_a_model_without_a_loss(cli, write, tmp_path):
    path = write(NO_LOSS)
    np.savez(tmp_path / "x.npz", x=np.ones((3, 2)))
    code, out, err = cli("predict", path, "--data", tmp_path / "x.npz")
    assert code == 0 and len(out.splitlines()) == 4, err


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_untrained_weights_are_warned_about(cli, tmp_path, command):
    code, _, err = cli(command, MODELS / "digits.yaml", "--data", "digits")
    assert code == 0 and "warning: " in err and "untrained weights" in err
    assert "train first with `graphdef train" in err
    saved = graphdef.load(MODELS / "digits.yaml").save(tmp_path / "run")  # values written down: as if trained
    code, _, err = cli(command, saved, "--data", "digits")
    assert code == 0 and "warning" not in err, err


# -- fuzz: random command lines from the real names --------------------------------------------------------------

FUZZ_RUNS = int(os.environ.get("GRAPHDEF_CLI_FUZZ_RUNS", "200"))
SLOW_COMMANDS = {"onnx-conformance", "draw", "plot",  # ONNX's test suite, graphviz, matplotlib: seconds each
                 "serve"}  # runs until stopped; tests/test_serve.py gives it hostile options and queries
JUNK = ["0", "-1", "1", "2", "nan", "inf", "-inf", "1e400", "", " ", "x", "a=3", "b=[1,", "[1, 2]", "{", "a=",
        "=3", "-", "--", "ÿ\u202e", "x" * 300, "models", "nope.yaml", "bad.yaml", "folder", "data.csv"]
FILES = ["models/lecture.yaml", "models/mlp.yaml", "models/logistic.yaml", "bad.yaml", "nope.yaml", "folder"]
VALUES = {  # plausible values of each option, by its dest: most runs should get past the parser
    "at": ["a=3", "b=5", "a=-0.0", "b=1e308", "x=[1, 0.5]", "x=[[1, 0.5], [0, 1]]", "y=[1, 0]", "x=[1]", "a=[1,",
           "a", "x=nan", "a=[[1]]"],
    "inputs": ["in.json", "good.npz", "data.csv", "nope.json", "folder", "bad.yaml"],
    "data": ["xor", "moons", "good.npz", "data.csv", "nope.csv", "folder", "spiral", "in.json"],
    "limit": ["max_vertices=1", "max_values=x", "max_depth=2", "max_file_bytes=10", "nope=1"],
    "of": ["e", "c", "E", "probs", "loss", "nope", "a"], "wrt": ["a", "b", "x", "W1", "nope", "e"],
    "epochs": ["0", "1", "-1", "x"], "lr": ["0", "-1", "nan", "0.1", "1e400"], "seed": ["-1", "0", "3"],
    "batch_size": ["0", "1", "-5"], "diamond": ["0", "1", "2", "-1"], "output": ["out.csv", "run", "folder", ""],
    "resume": ["folder", "run", "nope"], "plugin": ["no_such_plugin_module", "bad/name", ""],
}


def random_value(rng, action):
    pool = list(action.choices or []) or VALUES.get(action.dest, [])
    return rng.choice(pool) if pool and rng.random() < 0.8 else rng.choice(JUNK)


def random_argv(rng, parser, commands):
    """A command line from a real command, its real flags, plausible and junk values, and the odd made-up flag."""
    name = rng.choice(commands)
    sub = cli_module._subparsers(parser)[name]
    argv = [name]
    for action in sub._actions:
        if not action.option_strings:  # a positional: a model file mostly, sometimes junk, sometimes none
            count = {None: 1, "?": rng.randint(0, 1), "+": rng.randint(1, 2)}.get(action.nargs, 1)
            argv += [rng.choice(FILES) if rng.random() < 0.85 else rng.choice(JUNK) for _ in range(count)]
    options = [a for a in sub._actions if a.option_strings and "-h" not in a.option_strings]
    for _ in range(rng.randint(0, 4) if options else 0):
        action = rng.choice(options)
        argv.append(rng.choice(action.option_strings))
        if action.nargs != 0:
            argv.append(random_value(rng, action))
    if rng.random() < 0.1:
        argv.insert(rng.randrange(len(argv) + 1), "--" + rng.choice(JUNK))
    if rng.random() < 0.1:
        argv = ["--plugin", random_value(rng, parser._option_string_actions["--plugin"])] + argv
    if name == "train":  # never a real training run: the lecture has no loss, so each is refused at once
        argv = [a for a in argv if not a.endswith(".yaml")] + ["models/lecture.yaml"]
    return argv


def fuzz_folder(folder):
    """The files a fuzzed command line may name, in a folder of its own (a fuzzed -o writes there)."""
    (folder / "models").mkdir()
    for name in ("lecture.yaml", "mlp.yaml", "logistic.yaml"):
        shutil.copy(MODELS / name, folder / "models" / name)
    (folder / "bad.yaml").write_text("graphdef: 1\nnodes: [\n")
    (folder / "folder").mkdir()
    (folder / "data.csv").write_text("x,y\n1,oops\n")
    (folder / "in.json").write_text('{"a": [1, [2]], "b": 2}')
    np.savez(folder / "good.npz", x=np.ones((4, 2)), y=np.eye(2)[[0, 1, 0, 1]])


def test_fuzzed_command_lines_never_show_a_traceback(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fuzz_folder(tmp_path)
    parser = cli_module._build_parser(None)
    commands = sorted(set(cli_module._subparsers(parser)) - SLOW_COMMANDS)
    rng = random.Random(20261129)
    for _ in range(FUZZ_RUNS):
        argv = random_argv(rng, parser, commands)
        with time_limit(10, Timeout):
            code, out, err = cli(*argv)
        assert code in (0, 1, 2) and "Traceback" not in out + err and "internal error" not in err, (argv, err)

