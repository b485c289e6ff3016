"""Hostile and careless model files: each gets a clear, located GraphDefError (or the right result),
within a bounded time and memory; nothing outside the model's folder is read, or echoed.

Every case runs under a short alarm: a hang is a failure, not a stuck test run.
"""
import io
import os
import random
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graphdef
from conftest import MODELS, time_limit
from graphdef import GraphDefError, Limits
from graphdef.format import schema
from graphdef.format.initializers import initialize
from graphdef.format.loader import from_document

HEAD = "graphdef: 1\nname: hostile\n"
X = "inputs:\n  x: {shape: [3]}\n"





def refused(load, *expected, seconds=5, line=None):
    """The GraphDefError `load()` raises within `seconds`, checked to say each of `expected` on one screen."""
    with time_limit(seconds, AssertionError), pytest.raises(GraphDefError) as info:
        load()
    text = str(info.value)
    assert all(e in text for e in expected), text
    assert len(text.splitlines()) <= 21 and all(len(line) < 1200 for line in text.splitlines()), text[:2000]
    if line is not None:
        assert line in [p.line for p in info.value.errors], text
    return info.value


def write(folder: Path, name: str, text) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


LIBRARY = HEAD.replace("name: hostile\n", "") + "functions:\n  twice:\n    inputs: [x]\n    nodes:\n" \
    "      y: {op: add, inputs: [x, x]}\n    outputs: [y]\n"


def including(name: str) -> str:
    return HEAD + f"include: [{name!r}]\n" + X + "nodes:\n  y: {op: twice, inputs: [x]}\noutputs: [y]\n"


# -- 1. confinement --------------------------------------------------------------------

@pytest.mark.parametrize("reference", ["../../../../../../../../etc/passwd", "/etc/passwd", "link.yaml",
                                       "sub/../../outside.yaml", "sub/chained.yaml"])
def test_includes_are_confined_to_the_model_folder(tmp_path, reference):
    write(tmp_path, "outside.yaml", LIBRARY)
    (tmp_path / "run").mkdir()
    os.symlink("/etc/passwd", tmp_path / "run" / "link.yaml")
    write(tmp_path, "run/sub/chained.yaml", HEAD.replace("name: hostile\n", "")
          + "include: [../../outside.yaml]\nfunctions: {}\n")
    model = write(tmp_path, "run/model.yaml", including(reference))
    error = refused(lambda: graphdef.load(model), "is outside the model's folder", "allow_outside", line=3)
    assert "root:" not in str(error)


def test_allow_outside_reads_includes_and_weights_outside(tmp_path):
    write(tmp_path, "lib/outside.yaml", LIBRARY)
    model = write(tmp_path, "run/model.yaml", including("../lib/outside.yaml"))
    assert graphdef.load(model, allow_outside=True).forward({"x": [1, 2, 3]})["y"].tolist() == [2, 4, 6]
    saved = graphdef.load(MODELS / "logistic.yaml").save(tmp_path / "trained")
    name = weights_file(saved).name
    os.replace(weights_file(saved), tmp_path / name)
    saved.write_text(saved.read_text().replace(f"file: {name}", f"file: ../{name}"))
    refused(lambda: graphdef.load(saved), "weights file", "is outside the model's folder")
    assert graphdef.load(saved, allow_outside=True).parameters
    assert graphdef.load(saved, allow_outside_weights=True).parameters  # the former name still works


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\n", "secret: hunter2\n", "- a\n- b\n", "42\n"],
                         ids=["passwd", "mapping", "list", "number"])
def test_an_included_file_that_is_not_graphdef_is_never_echoed(tmp_path, content):
    write(tmp_path, "private.yaml", content)
    model = write(tmp_path, "model.yaml", including("private.yaml"))
    error = refused(lambda: graphdef.load(model), "not a graphdef file of functions")
    shown = str(error).replace(str(tmp_path), "")  # the folder's name may hold 42 (pytest-of-root/pytest-423)
    assert not any(word in shown for word in ("root:", "hunter2", "secret", "42"))


def test_a_model_file_that_is_not_graphdef_is_not_echoed(tmp_path):
    path = write(tmp_path, "notes.yaml", "password: hunter2\nuser: root\n")
    error = refused(lambda: graphdef.load(path), "not a graphdef model", "graphdef: 1")
    assert "hunter2" not in str(error)


# -- 2. only regular files, read within the limit --------------------------------------

def fifo(folder: Path, name: str) -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def weights_model(tmp_path, file: str) -> Path:
    return write(tmp_path, "model.yaml", HEAD + f"weights: {{file: {file}}}\nparameters:\n"
                 "  w: {shape: [2], weights: w}\noutputs: [w]\n")


@pytest.mark.parametrize("case", ["fifo model", "fifo include", "fifo weights", "directory model",
                                  "directory include", "directory weights", "zero model", "zero include"])
def test_only_regular_files_are_read(tmp_path, case):
    what, role = case.split()
    special = {"fifo": lambda: fifo(tmp_path, "special.yaml"), "directory": lambda: (tmp_path / "special.yaml").mkdir(),
               "zero": lambda: None}[what]()
    name = "/dev/zero" if what == "zero" else "special.yaml"
    expected = "is a directory" if what == "directory" else "is not a regular file"
    if role == "model":
        refused(lambda: graphdef.load(name if what == "zero" else tmp_path / name), expected)
    elif role == "include":
        model = write(tmp_path, "model.yaml", including(name))
        refused(lambda: graphdef.load(model, allow_outside=True), expected, line=3)
    else:
        refused(lambda: graphdef.load(weights_model(tmp_path, name)), expected)
    assert special is None or Path(tmp_path / "special.yaml").exists()


def test_a_file_whose_size_lies_is_read_only_up_to_the_limit():
    status = Path("/proc/self/status")
    if not status.exists() or status.stat().st_size != 0:
        pytest.skip("needs a procfs file whose size reads 0")
    refused(lambda: graphdef.load(status, limits=Limits(max_file_bytes=10)), "file is larger than 10 bytes")
    refused(lambda: graphdef.load(status), "not a graphdef model")


def test_an_unusable_file_name(tmp_path):
    refused(lambda: graphdef.load(str(tmp_path / "a\0b.yaml")), "not a usable file name")
    refused(lambda: graphdef.loads(including("x" * 5000), file=str(tmp_path / "m.yaml")), "cannot include")


# -- 3. limits, checked before the work they bound ---------------------------------------

def aliases(levels: int, width: int = 10) -> str:
    """A constant of width**levels numbers written in a few hundred bytes."""
    text = HEAD + "outputs: [c]\nconstants:\n  z0: &l0 [" + ", ".join(["1"] * width) + "]\n"
    text += "".join(f"  z{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]\n" for i in range(1, levels))
    return text + f"  c: *l{levels - 1}\n"


def test_a_million_aliased_numbers_load_without_a_slow_schema_pass():
    text = aliases(6)  # 1,000,000 numbers twice over, in 400 bytes
    with time_limit(30, AssertionError):
        start = time.perf_counter()
        model = graphdef.loads(text)
        elapsed = time.perf_counter() - start
    assert model.constants["c"].shape == (10,) * 6 and elapsed < 20  # it took 58 s in schema validation


def test_schema_validation_never_sees_an_over_limit_document(monkeypatch):
    monkeypatch.setattr(schema, "located", lambda *a: pytest.fail("validated an over-limit document"))
    refused(lambda: graphdef.loads(aliases(6), limits=Limits(max_values=100_000)), "more than 100,000 values")
    plain = HEAD + "outputs: [c]\nconstants:\n  c: [" + "1, " * 2000 + "1]\n"  # no alias: counted all the same
    refused(lambda: graphdef.loads(plain, limits=Limits(max_values=1000)), "more than 1,000 values")
    many = HEAD + X + "nodes:\n" + "".join(f"  n{i}: {{op: exp, inputs: [x]}}\n" for i in range(60)) + "outputs: [n0]\n"
    refused(lambda: graphdef.loads(many, limits=Limits(max_vertices=50)), "the model has 61 vertices, more than 50")
    refused(lambda: from_document({"graphdef": 1, "nodes": dict.fromkeys(map(str, range(60)), {})},
                                  limits=Limits(max_vertices=50)), "more than 50")


def nested_calls(levels: int, width: int = 10, by_attribute: bool = False) -> str:
    """Functions calling the previous one `width` times: width**levels vertices from 3 KB."""
    text = HEAD + X + "functions:\n  f0:\n    inputs: [x]\n    nodes:\n      y: {op: exp, inputs: [x]}\n" \
        "    outputs: [y]\n"
    for k in range(1, levels + 1):
        op = "inner" if by_attribute else f"f{k - 1}"
        attributes = f"    attributes: {{inner: {{type: string, default: f{k - 1}}}}}\n" if by_attribute else ""
        nodes = "".join(f"      n{j}: {{op: {op}, inputs: [x]}}\n" for j in range(width))
        text += f"  f{k}:\n{attributes}    inputs: [x]\n    nodes:\n{nodes}    outputs: [n0]\n"
    return text + f"nodes:\n  out: {{op: f{levels}, inputs: [x]}}\noutputs: [out]\n"


def test_nested_calls_are_refused_before_they_expand():
    refused(lambda: graphdef.loads(nested_calls(9)), "function calls expand the model to at least 1,000,000,001 "
            "vertices, more than 1,000,000", "max_vertices", seconds=3)


def test_expansion_stops_at_the_vertex_limit():
    """Ops named by attributes escape the count before expansion: the expansion itself counts and stops."""
    refused(lambda: graphdef.loads(nested_calls(9, by_attribute=True), limits=Limits(max_vertices=2000)),
            "function calls expand the model to more than 2,000 vertices", seconds=10)
    assert len(graphdef.loads(nested_calls(2, by_attribute=True)).graph) > 100


def test_a_parameter_costs_its_own_memory_only():
    tracemalloc.start()
    try:
        value = initialize("glorot_uniform", (2048, 2048), np.random.default_rng(0), np.float32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert value.dtype == np.float32 and peak < 1.5 * value.nbytes  # drawing in float64 first peaked at 3x
    whole = np.random.default_rng(0).uniform(-1, 1, (2048, 2048)) * np.sqrt(6 / 4096)
    np.testing.assert_array_equal(value, whole.astype(np.float32))  # the same values as one float64 draw


@pytest.mark.parametrize("text, expected", [
    (HEAD + "inputs:\n  a: {shape: [60000, 1]}\n  b: {shape: [1, 60000]}\nnodes:\n  c: {op: add, inputs: [a, b]}\n"
     "outputs: [c]\n", "'c' would hold 3,600,000,000 values ([60000, 60000]), more than 268,435,456"),
    (HEAD + "inputs:\n  a: {shape: [100000, 100000, null]}\noutputs: [a]\n", "'a' would hold 10,000,000,000 values"),
    (HEAD + "inputs:\n  a: {shape: [" + ", ".join(["1"] * 70) + "]}\noutputs: [a]\n",
     "a shape has at most 32 dimensions, this one has 70"),
    (HEAD + "parameters:\n  w: {shape: [" + ", ".join(["1"] * 33) + "], init: zeros}\noutputs: [w]\n",
     "a shape has at most 32 dimensions, this one has 33"),
    (HEAD + X + "nodes:\n  r: {op: reshape, inputs: [x], shape: [" + ", ".join(["1"] * 39) + ", 3]}\noutputs: [r]\n",
     "'r' has 40 dimensions, more than 32"),
], ids=['broadcast', 'input', 'input-rank', 'parameter-rank', 'reshape-rank'])
def test_static_shapes_are_bounded(text, expected):
    refused(lambda: graphdef.loads(text, file="m.yaml"), expected, "m.yaml:")


def test_the_tensor_limit_can_be_raised():
    text = HEAD + "inputs:\n  a: {shape: [60000, 1]}\n  b: {shape: [1, 60000]}\nnodes:\n" \
        "  c: {op: add, inputs: [a, b]}\noutputs: [c]\n"
    refused(lambda: graphdef.loads(text), "--limit max_tensor_values=N")
    assert graphdef.loads(text, limits=Limits(max_tensor_values=4 * 10**9)).graph.vertices["c"].shape == (60000, 60000)


# -- 4. names ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ['"c\\n"', '"c "', '" c"', '"c\\td"', '"c\\x07"', '"c\\u2028"', '"\\x00"', "''"],
                         ids=["newline", "trailing-space", "leading-space", "tab", "bell", "line-separator", "nul",
                              "empty"])
def test_vertex_names_are_identifiers(name):
    text = HEAD + X + f"nodes:\n  {name}: {{op: exp, inputs: [x]}}\n  d: {{op: exp, inputs: [x]}}\noutputs: [d]\n"
    error = refused(lambda: graphdef.loads(text, file="m.yaml"), "is not a valid name", line=6)
    assert "\n" not in str(error).strip() and "\x07" not in str(error) and "\x00" not in str(error)


def test_an_input_reference_with_a_newline_is_refused():
    text = HEAD + X + 'nodes:\n  d: {op: exp, inputs: ["x\\n"]}\noutputs: [d]\n'
    refused(lambda: graphdef.loads(text, file="m.yaml"), "nodes.d.inputs[0]: invalid value", line=6)


@pytest.mark.parametrize("where", ["op", "name", "reference", "attribute", "key"])
def test_huge_user_strings_are_echoed_short(where):
    """A value of 5 MB, or a key of 1000 characters (YAML's limit for a key): cut short in the message."""
    huge = "e" * (1000 if where in ("name", "attribute", "key") else 5_000_000)
    node = {"op": f"{{op: {huge}, inputs: [x]}}", "reference": f"{{op: exp, inputs: [{huge}]}}",
            "attribute": f"{{op: exp, inputs: [x], {huge}: 1}}", "name": "{op: exp, inputs: [x]}",
            "key": "{op: exp, inputs: [x]}"}[where]
    name = "1" + huge if where == "name" else "d"
    extra = f"{huge}: 1\n" if where == "key" else ""
    error = refused(lambda: graphdef.loads(HEAD + X + extra + f"nodes:\n  {name}: {node}\noutputs: [x]\n",
                                           file="m.yaml"), "\u2026", seconds=20)
    assert len(str(error)) < 2000


# -- 5. functions ------------------------------------------------------------------------

SCALE = HEAD + """functions:
  scale:
    attributes: {w: {type: any, default: {a: 1}}}
    inputs: [x]
    nodes:
      y: {op: mul, inputs: [x, w]}
    outputs: [y]
  apply:
    attributes: {kind: {type: any, default: {type: exp}}}
    inputs: [x]
    nodes:
      y: {op: kind, inputs: [x]}
    outputs: [y]
inputs:
  a: {shape: []}
"""


@pytest.mark.parametrize("call, expected", [
    ("{op: apply, inputs: [a], kind: [exp, log]}",
     "op ['exp', 'log'] is not a name (it is the value of attribute 'kind')"),
    ("{op: apply, inputs: [a], kind: {type: exp}}", "nodes.p.kind: expected a number, a string"),
    ("{op: apply, inputs: [a]}", "op {'type': 'exp'} is not a name"),
    ("{op: apply, inputs: [a], kind: 3}", "is not a name"),
    ("{op: scale, inputs: [a]}", "input {'a': 1} is neither a name nor numbers"),
    ("{op: scale, inputs: [a], w: [1, x]}", "is neither a name nor numbers"),
    ("{op: scale, inputs: [a], w: true}", "is neither a name nor numbers"),
    ("{op: scale, inputs: [a], w: [[1, 2], [3]]}", "not a rectangular array"),
    ("{op: scale, inputs: [a], w: [1, .nan]}", "the value contains NaN"),
], ids=['list-op', 'dict-op-given', 'dict-op-default', 'number-op', 'dict-input', 'mixed-input', 'bool-input', 'ragged-input', 'nan-input'])
def test_substituted_attributes_must_fit_where_they_go(call, expected):
    text = SCALE + f"nodes:\n  p: {call}\n  q: {{op: exp, inputs: [a]}}\noutputs: [p, q]\n"
    refused(lambda: graphdef.loads(text, file="m.yaml"), expected, "m.yaml:")


@pytest.mark.parametrize("w", [[1, 2, 3], [[1, 2], [3, 4]], 2.5])
def test_a_literal_input_has_its_own_shape_and_right_gradients(w):
    text = SCALE + f"nodes:\n  p: {{op: scale, inputs: [a], w: {w}}}\n  s: {{op: sum, inputs: [p]}}\n" \
        "outputs: [s]\nloss: s\n"
    model = graphdef.loads(text)
    vertices = model.graph.vertices
    assert vertices["p[1]"].shape == np.shape(w) and vertices["p"].shape == np.shape(w)
    exact = model.gradients({"a": 0.5}, of="s")["a"]
    numeric = model.gradients({"a": 0.5}, of="s", method="numeric")["a"]
    assert exact == pytest.approx(np.sum(w)) and numeric == pytest.approx(np.sum(w), rel=1e-6)


# -- 6. values ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("{shape: [3], init: {type: uniform, low: 1, high: 0}}", "low (1) is greater than high (0)"),
    ("{shape: [3], init: {type: normal, std: .nan}}", "setting std must be a finite number, got nan"),
    ("{shape: [3], init: {type: normal, mean: .inf}}", "setting mean must be a finite number, got inf"),
    ("{shape: [3], init: {type: constant, value: .nan}}", "setting value must be a finite number"),
    ("{shape: [3], init: {type: normal, std: 1.0e+308}}", "too large for float32"),
    ("{shape: [3], init: {type: constant, value: 1.0e+39}}", "too large for float32"),
    ("{shape: [3], init: {type: normal, low: 0}}", "normal takes no setting low"),
    ("{value: .nan}", "the value contains NaN"),
    ("{value: [1, .inf]}", "the value contains infinity"),
    ("{value: 1.0e+39}", "too large for float32"),
], ids=['reversed-uniform', 'nan-std', 'inf-mean', 'nan-constant', 'overflowing-std', 'overflowing-constant', 'unknown-setting', 'nan-value', 'inf-value', 'overflowing-value'])
def test_parameter_values_are_finite(spec, expected):
    text = HEAD + f"dtype: float32\nparameters:\n  w: {spec}\noutputs: [w]\n"
    refused(lambda: graphdef.loads(text, file="m.yaml"), expected, line=5)


@pytest.mark.parametrize("value", ["[1, .inf]", "-.inf", "[[1, 2], [3, .nan]]", "1.0e+999"])
def test_constants_and_literals_are_finite(value):
    refused(lambda: graphdef.loads(HEAD + f"constants:\n  k: {value}\noutputs: [k]\n", file="m.yaml"),
            "the value contains", line=4)
    text = HEAD + X + f"nodes:\n  d: {{op: add, inputs: [x, {value}]}}\noutputs: [d]\n"
    scalar = not value.startswith("[")  # a list is no input in a model's own nodes (the schema says so)
    refused(lambda: graphdef.loads(text, file="m.yaml"), "the value contains" if scalar else "expected a string or a "
            "number", line=6)


@pytest.fixture
def trained(tmp_path):
    return graphdef.load(MODELS / "logistic.yaml").save(tmp_path / "run")


def weights_file(model: Path) -> Path:
    """The weights file a saved model names."""
    line = next(line for line in model.read_text().splitlines() if line.startswith("weights:"))
    return model.parent / line.split("file: ")[1].split(",")[0].strip(" }")


def rewrite_weights(trained: Path, arrays: dict | None = None, blob: bytes | None = None) -> Path:
    """Replace the weights file (unhashed, as a hand-made one would be)."""
    if blob is None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        blob = buffer.getvalue()
    weights_file(trained).write_bytes(blob)
    text = "\n".join(line.split(", sha256")[0] + "}" if line.startswith("weights:") and "sha256" in line else line
                     for line in trained.read_text().splitlines())
    trained.write_text(text + "\n")
    return trained


def stored(trained: Path) -> dict:
    return dict(np.load(weights_file(trained)))


@pytest.mark.parametrize("change, expected", [
    (lambda w: np.full_like(w, np.nan), "contains NaN or infinity"),
    (lambda w: np.full_like(w, np.inf), "contains NaN or infinity"),
    (lambda w: w.astype(np.int64), "dtype int64"),
    (lambda w: np.array([None] * w.size, dtype=object).reshape(w.shape), "holds Python objects"),
    (lambda w: w.astype("S8"), "dtype |S8"),
    (lambda w: np.zeros((w.size + 1,)), "stored array has shape"),
], ids=['nan', 'inf', 'int', 'object', 'bytes', 'shape'])
def test_stored_weights_are_finite_floats(trained, change, expected):
    arrays = stored(trained)
    name = next(iter(arrays))
    rewrite_weights(trained, {**arrays, name: change(arrays[name])})
    refused(lambda: graphdef.load(trained), expected, str(trained))


def forged_sizes(blob: bytes, member: str, size: int) -> bytes:
    """The zip with `member`'s uncompressed size in its headers claimed to be `size`."""
    data, name = bytearray(blob), member.encode()
    for signature, offset, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while at >= 0:
            if data[at + name_at:at + name_at + len(name)] == name:
                data[at + offset:at + offset + 4] = size.to_bytes(4, "little")
            at = data.find(signature, at + 4)
    return bytes(data)


def test_unused_members_are_never_decompressed_and_used_ones_are_bounded(trained):
    arrays = stored(trained)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, value)
        archive.writestr("unused.npy", b"\0" * 2**20)
    blob = forged_sizes(buffer.getvalue(), "unused.npy", 3 * 2**30)  # claims 3 GiB
    with time_limit(5, AssertionError):
        assert graphdef.load(rewrite_weights(trained, blob=blob)).parameters
    first = next(iter(arrays))
    rewrite_weights(trained, blob=forged_sizes(buffer.getvalue(), f"{first}.npy", 3 * 2**30))
    refused(lambda: graphdef.load(trained), f"stored array '{first}' is larger (3,221,225,472 bytes)")


def test_a_header_asking_for_a_huge_array_allocates_nothing(trained):
    arrays = stored(trained)
    first = next(iter(arrays))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in arrays.items():
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                          "shape": (10**6, 10**6) if name == first else value.shape})
            archive.writestr(f"{name}.npy", header.getvalue() + (b"" if name == first else value.tobytes()))
    rewrite_weights(trained, blob=buffer.getvalue())
    refused(lambda: graphdef.load(trained), "stored array has shape [1000000, 1000000]")


# -- 7. YAML mistakes in plain words -------------------------------------------------------

@pytest.mark.parametrize("text, line", [
    (HEAD + "nodes:\n\ty: {op: exp}\n", 4),
    (HEAD + "nodes:\n  y:\n\t  op: exp\n", 5),
    ("graphdef: 1\n\tname: a\n", 2),
], ids=['tab-key', 'tab-nested', 'tab-top'])
def test_tabs_for_indentation(text, line):
    refused(lambda: graphdef.loads(text, file="m.yaml"), "tabs are not allowed for indentation in YAML: use spaces",
            line=line)


@pytest.mark.parametrize("text, expected", [
    (HEAD + X + "nodes:\ny: {op: exp, inputs: [x]}\noutputs: [y]\n", "section 'nodes' is empty or wrongly indented"),
    (HEAD + "inputs:\nx: {shape: [3]}\noutputs: [x]\n", "section 'inputs' is empty or wrongly indented"),
    (HEAD + X + "nodes:\n  y:\n  op: exp\noutputs: [y]\n", "'y' is empty or wrongly indented"),
], ids=['nodes', 'inputs', 'node'])
def test_empty_or_misindented_sections(text, expected):
    error = refused(lambda: graphdef.loads(text, file="m.yaml"), expected, "m.yaml:")
    assert "None" not in str(error)


@pytest.mark.parametrize("data, expected", [
    ((HEAD + "description: café\n").encode("utf-16"),
     "the file is not UTF-8 (it starts with a UTF-16 byte-order mark)"),
    ((HEAD + "description: café\n").encode("utf-16-be"), "the file is not UTF-8 (it holds NUL bytes"),
    ((HEAD + "description: café\n").encode("latin-1"), "byte 0xE9 is not UTF-8: Latin-1 or Windows text?"),
], ids=['utf16-bom', 'utf16-no-bom', 'latin1'])
def test_files_that_are_not_utf8(tmp_path, data, expected):
    path = write(tmp_path, "m.yaml", data)
    refused(lambda: graphdef.load(path), expected, "save it as UTF-8", f"{path}")


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = write(tmp_path, "m.yaml", b"\xef\xbb\xbf" + (HEAD + X + "outputs: [x]\n").encode())
    assert graphdef.load(path).inputs == {"x": (3,)}


def test_control_characters_are_named_at_their_place():
    refused(lambda: graphdef.loads(HEAD + "description: a\x07b\n", file="m.yaml"), "character #x0007", line=3)


# -- 8. all of a file's independent errors in one round -----------------------------------------

def test_independent_errors_arrive_together():
    text = HEAD + "inputs:\n  x: {shape: [3]}\n  y: {shape: [4]}\nnodes:\n" \
        "  a: {op: mull, inputs: [x, x]}\n" \
        "  b: {op: log, inputs: [x], bass: 2}\n" \
        "  c: {op: add, inputs: [x, y]}\n" \
        "  d: {op: exp, inputs: [x], note: {a: 1}}\n" \
        "  e: {op: exp, inputs: [a]}\n" \
        "  f: {op: exp, inputs: [x, x]}\n" \
        "constants:\n  k: [1, two]\n" \
        "parameters:\n  w: {shape: [2], init: {type: uniform, low: 1, high: 0}}\n" \
        "outputs: [a, b, c, d, e, f, k, w]\n"
    error = refused(lambda: graphdef.loads(text, file="m.yaml"), "unknown op 'mull'", "no attribute 'bass'",
                    "do not broadcast", "nodes.d.note", "takes 1 input", "constants.k[1]: invalid value",
                    "low (1) is greater than high (0)")
    assert sorted(p.line for p in error.errors) == [7, 8, 9, 10, 12, 14, 16]


def test_errors_of_calls_arrive_with_the_others():
    text = SCALE + "nodes:\n  p: {op: apply, inputs: [a], kind: [exp]}\n  q: {op: mull, inputs: [a, a]}\n" \
        "  r: {op: scale, inputs: [a], w: [1, 2], extra: 1}\n  s: {op: exp, inputs: [p]}\noutputs: [p, q, r, s]\n"
    error = refused(lambda: graphdef.loads(text, file="m.yaml"), "is not a name", "unknown op 'mull'",
                    "has no attribute 'extra'")
    assert len(error.errors) == 3


# -- fuzz: random mutations of every model -------------------------------------------------------

TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(MODELS.glob("*.yaml"))}
NOISE = ["\x00", "\x07", "\t", "\r", "\u2028", "\ufeff", "é", ":", "- ", "[", "{", "&a", "*a", "<<: *a", "'", '"',
         "\\", "!!python/name:os.system"]
VALUES = ["1e308", "-1e308", "1e999", ".nan", ".inf", "99999999999999999999999", "-1", "0", "[]", "{}", "~", "''",
          "[[1, 2], [3]]", "x" * 300, "true", "[1, [2]]", "{type: uniform, low: 1, high: 0}"]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        kind = rng.choice(["delete", "duplicate", "garble", "swap type", "huge number", "control", "indent"])
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
        elif kind == "garble":
            at = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:at] + "".join(rng.choices("{}[]:,-#&*!|>'\" \t0123abcxyz", k=rng.randint(1, 5))) \
                + lines[i][at + rng.randint(0, 4):]
        elif kind in ("swap type", "huge number"):
            head, sep, tail = lines[i].rpartition(": ")
            pool = VALUES[:7] if kind == "huge number" else VALUES
            lines[i] = f"{head}{sep or ': '}{rng.choice(pool)}\n" if head or sep else rng.choice(pool) + "\n"
        elif kind == "control":
            at = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:at] + rng.choice(NOISE) + lines[i][at:]
        else:
            lines[i] = rng.choice(["", "  ", "\t", "    "]) + lines[i].lstrip(" ")
        lines = lines or ["\n"]
    return "".join(lines)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_random_mutations_load_or_are_refused(name):
    rng = random.Random(f"hostile-{name}")
    for _ in range(int(os.environ.get("GRAPHDEF_HOSTILE_EXAMPLES", "25"))):
        text = mutate(TEXTS[name], rng)
        with time_limit(5, AssertionError):
            try:
                model = graphdef.loads(text, file=str(MODELS / name))
            except GraphDefError as e:
                assert e.errors and all(str(p) and len(str(p)) < 1200 for p in e.errors), text
                assert "\n" not in "".join(str(p) for p in e.errors), text
                continue
        assert model.graph is not None


# -- the vocabulary of real models: small files that ask for too much, or name things twice --------------

ONE_INPUT = "graphdef: 1\nname: m\ninputs: {x: {shape: [4]}}\n"
CELL = "functions:\n  f:\n    inputs: [v]\n    nodes: {y: {op: relu, inputs: [v]}}\n    outputs: [y]\n"


@pytest.mark.parametrize("text, message", [
    (ONE_INPUT + "state:\n  s: {shape: [30000, 30000], init: normal}\nnodes: {y: {op: relu, inputs: [x]}}\noutputs: [y]\n",
     "the parameters and state hold 900,000,000 values"),
    (ONE_INPUT + "nodes:\n  y: {op: split, inputs: [x], sections: 100000000}\noutputs: [y]\n",
     "split into 100,000,000 outputs: more vertices than"),
    (ONE_INPUT + CELL + "nodes:\n  a: {op: repeat, function: f, times: 1000000000000, inputs: [x]}\noutputs: [a]\n",
     "function calls expand the model to at least 1,000,000,000,001 vertices"),
    (ONE_INPUT + "functions:\n  f:\n    attributes: {n: {type: int}}\n    inputs: [v]\n    constants: {c: '[[0.0] * n] * n'}\n"
     "    nodes: {y: {op: add, inputs: [v, c]}}\n    outputs: [y]\nnodes:\n  a: {op: f, inputs: [x], n: 30000}\n"
     "outputs: [a]\n", "a list of 900,000,000 numbers is too long"),
    (ONE_INPUT + "nodes:\n  y: {op: slice, inputs: [x], starts: [0], ends: [99999999999999999999999]}\noutputs: [y]\n",
     "attribute 'ends' of op 'slice' must be ints"),
])
def test_a_small_file_cannot_ask_for_too_much(text, message):
    with time_limit(10):
        with pytest.raises(graphdef.GraphDefError, match=message):
            graphdef.loads(text)


@pytest.mark.parametrize("nodes, message", [
    ("  d: {op: dense, inputs: [x], in: 4, out: 4}\n  d/xw: {op: neg, inputs: [x]}\n", "'d/xw' is defined twice"),
    ("  layer1: {op: neg, inputs: [x]}\n  layer: {op: repeat, function: dense, times: 2, inputs: [x], in: 4, out: 4}\n",
     "'layer1' is defined twice"),
    ("  p: {op: split, inputs: [x], sections: 2}\n  p/1: {op: neg, inputs: [x]}\n", "'p/1' is defined twice"),
])
def test_a_made_name_never_silently_replaces_a_vertex(nodes, message):
    with pytest.raises(graphdef.GraphDefError, match=message):
        graphdef.loads(ONE_INPUT + "nodes:\n" + nodes + "outputs: [x]\n")
