"""The bad-input catalogue: each mistake gives a short located error, exit code 1, no traceback."""
import pytest

from graphdef import GraphDefError, loads

HEAD = "graphdef: 1\nname: bad\ninputs:\n  a: {shape: []}\n  b: {shape: []}\n"
GOOD_NODES = "nodes:\n  c: {op: add, inputs: [a, b]}\noutputs: [c]\n"

# (id, file text, extra CLI arguments, expected text, expected line)
CATALOGUE = [
    ("yaml-syntax", HEAD + "nodes:\n  c: {op: add, inputs: [a, b]\noutputs: [c]\n", [], "invalid YAML", 8),
    ("duplicate-key", HEAD + "nodes:\n  c: {op: add, inputs: [a, b]}\n  c: {op: mul, inputs: [a, b]}\noutputs: [c]\n",
     [], "duplicate key 'c' (first defined on line 7)", 8),
    ("unknown-op", HEAD + "nodes:\n  c: {op: mull, inputs: [a, b]}\noutputs: [c]\n", [], "did you mean 'mul'", 7),
    ("undefined-reference", HEAD + "nodes:\n  c: {op: add, inputs: [a, bb]}\noutputs: [c]\n", [],
     "nodes.c.inputs[1]: undefined reference 'bb' (did you mean 'b'?)", 7),
    ("cycle", HEAD + "nodes:\n  c: {op: add, inputs: [a, d]}\n  d: {op: mul, inputs: [c, b]}\noutputs: [d]\n",
     [], "cycle: c -> d -> c", 7),
    ("self-loop", HEAD + "nodes:\n  c: {op: add, inputs: [c, b]}\noutputs: [c]\n", [], "cycle: c -> c", 7),
    ("arity", HEAD + "nodes:\n  c: {op: add, inputs: [a]}\noutputs: [c]\n", [], "takes 2 inputs (x, y), got 1", 7),
    ("unknown-attribute", HEAD + "nodes:\n  c: {op: log, inputs: [a], bas: 2}\noutputs: [c]\n", [],
     "has no attribute 'bas' (did you mean 'base'?)", 7),
    ("mistyped-attribute", HEAD + "nodes:\n  c: {op: softmax, inputs: [a], axis: last}\noutputs: [c]\n", [],
     "attribute 'axis' of op 'softmax' must be int", 7),
    ("missing-attribute", HEAD + "nodes:\n  c: {op: reshape, inputs: [a]}\noutputs: [c]\n", [],
     "needs attribute 'shape'", 7),
    ("bad-attribute-value", HEAD + "nodes:\n  c: {op: log, inputs: [a], base: 1}\noutputs: [c]\n", [],
     "base must be positive and not 1", 7),
    ("shape-mismatch", "graphdef: 1\nname: bad\ninputs:\n  x: {shape: [2, 3]}\nparameters:\n"
     "  W: {value: [[1, 2], [3, 4]]}\nnodes:\n  h: {op: matmul, inputs: [x, W]}\noutputs: [h]\n", [],
     "matmul inner sizes differ", 8),
    ("broadcast-mismatch", "graphdef: 1\nname: bad\ninputs:\n  x: {shape: [3]}\n  y: {shape: [4]}\n"
     "nodes:\n  z: {op: add, inputs: [x, y]}\noutputs: [z]\n", [], "do not broadcast", 7),
    ("missing-outputs", HEAD + GOOD_NODES.replace("outputs: [c]\n", ""), [], "missing required key 'outputs'", 1),
    ("unknown-top-key", HEAD + GOOD_NODES.replace("nodes:", "nodez:"), [],
     "unknown key 'nodez' (did you mean 'nodes'?)", 6),
    ("unknown-input-key", HEAD.replace("a: {shape: []}", "a: {shpe: []}") + GOOD_NODES, [],
     "unknown key 'shpe' (did you mean 'shape'?)", 4),
    ("wrong-version", HEAD.replace("graphdef: 1", "graphdef: 2") + GOOD_NODES, [], "expected 1, got 2", 1),
    ("bad-name", HEAD + "nodes:\n  2c: {op: add, inputs: [a, b]}\noutputs: [2c]\n", [], "'2c' is not a valid name", 7),
    ("undefined-output", HEAD + GOOD_NODES.replace("outputs: [c]", "outputs: [cc]"), [],
     "undefined output 'cc'", 8),
    ("undefined-loss", HEAD + GOOD_NODES + "loss: E\n", [], "undefined loss 'E'", 9),
    ("defined-twice", HEAD + "nodes:\n  a: {op: add, inputs: [a, b]}\noutputs: [a]\n", [],
     "'a' is already defined as input (line 4)", 7),
    ("ragged-constant", HEAD + "constants:\n  k: [[1, 2], [3]]\n" + GOOD_NODES, [],
     "not a rectangular array", 7),
    ("parameter-shape", HEAD + "parameters:\n  w: {shape: [3], value: [1, 2]}\n" + GOOD_NODES, [],
     "value has shape [2] but shape says [3]", 7),
    ("parameter-without-init", HEAD + "parameters:\n  w: {shape: [3]}\n" + GOOD_NODES, [],
     "parameters.w: invalid value", 7),
    ("unknown-initializer", HEAD + "parameters:\n  w: {shape: [3], init: gloria}\n" + GOOD_NODES, [],
     "parameters.w.init: invalid value", 7),
    ("non-scalar-loss", "graphdef: 1\nname: bad\ninputs:\n  x: {shape: [3]}\nnodes:\n"
     "  y: {op: exp, inputs: [x]}\noutputs: [y]\nloss: y\n", [], "loss 'y' must be a scalar", 8),
    ("unsafe-tag", HEAD + "description: !!python/object/apply:os.system [echo hi]\n" + GOOD_NODES, [],
     "invalid YAML", 6),
    ("nan-constant", HEAD + "constants:\n  k: [1, .nan]\n" + GOOD_NODES, [], "the value contains NaN", 7),
    ("nan-literal", HEAD + "nodes:\n  c: {op: add, inputs: [a, .nan]}\noutputs: [c]\n", [], "the value contains NaN", 7),
    ("infinite-parameter", HEAD + "parameters:\n  w: {value: [1, .inf]}\n" + GOOD_NODES, [],
     "the value contains infinity", 7),
    ("integer-to-float-op", "graphdef: 1\nname: bad\ninputs:\n  ids: {shape: [3], dtype: int64}\nnodes:\n"
     "  y: {op: exp, inputs: [ids]}\noutputs: [y]\n", [], "op 'exp': input 1 holds int64 values", 6),
    ("fractional-integer-input", "graphdef: 1\nname: bad\ninputs:\n  ids: {shape: [2], dtype: int64}\nnodes:\n"
     "  y: {op: reshape, inputs: [ids], shape: [2, 1]}\noutputs: [y]\n", ["--at", "ids=[1.5, 2]"],
     "input 'ids' holds int64 values: give whole numbers", 4),
    ("statistics-as-parameters", "graphdef: 1\nname: bad\ninputs:\n  x: {shape: [2, 3]}\nparameters:\n"
     "  w: {value: [1.0, 1.0]}\n  m: {value: [0.0, 0.0]}\nnodes:\n  n: {op: batch_norm, inputs: [x, w, w, m, w]}\n"
     "outputs: [n]\n", [], "'m' is a parameter, but input 'running_mean' of batch_norm is state", 9),
    ("bad-expression", HEAD + "functions:\n  f:\n    attributes: {n: {type: int}}\n    inputs: [v]\n    nodes:\n"
     "      y: {op: reshape, inputs: [v], shape: ['n // 0']}\n    outputs: [y]\n"
     "nodes:\n  c: {op: f, inputs: [a], n: 1}\noutputs: [c]\n", [], "cannot compute 'n // 0'", 11),
    ("name-made-twice", "graphdef: 1\nname: bad\ninputs:\n  a: {shape: [1]}\nnodes:\n  d: {op: dense, inputs: [a], in: 1, "
     "out: 1}\n  d/xw: {op: neg, inputs: [a]}\noutputs: [d]\n", [], "'d/xw' is defined twice", 7),
    ("missing-input", HEAD + GOOD_NODES, ["--at", "a=1"], "missing input 'b'", 5),
    ("wrong-input-shape", HEAD + GOOD_NODES, ["--at", "a=1", "--at", "b=[[1, 2], [3, 4]]"],
     "input 'b' has shape [2, 2], expected []", 5),
    ("non-numeric-input", HEAD + GOOD_NODES, ["--at", "a=1", "--at", "b=hello"], "input 'b' is not numeric", 5),
    ("nan-input", HEAD + GOOD_NODES, ["--at", "a=1", "--at", "b=.nan"], "input 'b' contains NaN", 5),
]


@pytest.mark.parametrize("text, extra, expected, line", [c[1:] for c in CATALOGUE], ids=[c[0] for c in CATALOGUE])
def test_catalogue(cli, write, text, extra, expected, line):
    path = write(text)
    code, out, err = cli("run", path, *extra)
    assert code == 1, err
    assert "Traceback" not in err + out
    assert expected in err
    assert f"{path}:{line}:" in err
    assert len(err.splitlines()) <= 20


def test_all_errors_of_a_file_are_reported_together():
    text = HEAD + "nodes:\n  c: {op: mull, inputs: [a, bb]}\n  d: {op: exp, inputs: [c, a]}\noutputs: [d, e]\n"
    with pytest.raises(GraphDefError) as info:
        loads(text, file="m.yaml")
    messages = [str(p) for p in info.value.errors]
    assert len(messages) == 4, messages
    assert [p.line for p in info.value.errors] == [7, 7, 8, 9]
    assert info.value.errors[1].path == "nodes.c.inputs[1]"


@pytest.mark.parametrize("text, expected", [
    ("", "the file is empty"),
    ("graphdef: 1\nname: x\nparameters: {w: {shape: [100000, 100000, 100000], init: zeros}}\noutputs: [w]\n",
     "the parameters and state hold 1,000,000,000,000,000 values, more than 268,435,456"),
    (b"\xff\xfe\x00garbage", "the file is not UTF-8"),
])
def test_unlocated_file_errors(cli, tmp_path, text, expected):
    path = tmp_path / "m.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = cli("validate", path)
    assert code == 1 and f"{path}: " in err and expected in err and "Traceback" not in err


def test_missing_file(cli, tmp_path):
    code, _, err = cli("validate", tmp_path / "nope.yaml")
    assert code == 1 and "nope.yaml: file not found" in err


def test_unknown_input_name_suggests(cli):
    code, _, err = cli("run", "models/lecture.yaml", "--at", "a=1", "--at", "b=2", "--at", "bb=3")
    assert code == 1 and "unknown input 'bb' (did you mean 'b'?)" in err


@pytest.mark.parametrize("argv", [["run"], ["frobnicate"], ["run", "models/lecture.yaml", "--at", "a3"],
                                  ["grad", "models/lecture.yaml", "--method", "magic"]])
def test_usage_errors_exit_2(cli, argv):
    code, out, err = cli(*argv)
    assert code == 2 and "usage" in err and "Traceback" not in err


def test_runtime_failure_names_the_node(cli, write):
    path = write("graphdef: 1\nname: r\ninputs:\n  x: {}\n  y: {}\nnodes:\n  z: {op: matmul, inputs: [x, y]}\n"
                 "outputs: [z]\n")
    code, _, err = cli("run", path, "--at", "x=[1, 2]", "--at", "y=[1, 2, 3]")
    assert code == 1 and f"{path}:7:" in err and "node 'z' (matmul) failed" in err


def test_input_files_errors(cli, tmp_path):
    bad = tmp_path / "in.json"
    bad.write_text("{\"a\": 1,\n oops}")
    code, _, err = cli("run", "models/lecture.yaml", "--inputs", bad)
    assert code == 1 and f"{bad}:2:" in err and "invalid JSON" in err
    code, _, err = cli("run", "models/lecture.yaml", "--inputs", tmp_path / "none.npz")
    assert code == 1 and "file not found" in err
