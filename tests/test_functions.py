"""Composition: functions expanded at load time, the standard library, includes and their errors."""
import re

import numpy as np
import pytest

import graphdef
from conftest import MODELS
from graphdef import GraphDefError

HEAD = "graphdef: 1\nname: f\ninputs:\n  x: {shape: [3]}\n"


def test_mlp_layers_equals_mlp_for_the_same_weights():
    tensor, layered = graphdef.load(MODELS / "mlp.yaml"), graphdef.load(MODELS / "mlp_layers.yaml")
    same = {"h/W": "W1", "h/b": "b1", "logits/W": "W2", "logits/b": "b2"}
    for mine, theirs in same.items():
        layered.parameters[mine][...] = tensor.parameters[theirs]
    at = {"x": [[1.0, 0.5], [-1.0, 2.0]], "y": [[1.0, 0.0], [0.0, 1.0]]}
    v1, g1 = tensor.value_and_gradients(at)
    v2, g2 = layered.value_and_gradients(at)
    np.testing.assert_allclose(v2["E"], v1["E"], rtol=1e-14)  # one loss per sample
    for mine, theirs in same.items():
        np.testing.assert_allclose(g2[mine], g1[theirs], rtol=1e-13)
    np.testing.assert_allclose(g2["x"], g1["x"], rtol=1e-13)


def test_softmax_from_exp_matches_the_softmax_op():
    text = HEAD + ("constants:\n  w: [0.3, -1.2, 2.0]\nnodes:\n  a: {op: softmax_from_exp, inputs: [x]}\n"
                   "  b: {op: softmax, inputs: [x]}\n  wa: {op: mul, inputs: [a, w]}\n  wb: {op: mul, inputs: [b, w]}\n"
                   "  la: {op: sum, inputs: [wa]}\n  lb: {op: sum, inputs: [wb]}\noutputs: [la, lb]\n")
    model = graphdef.loads(text)
    x = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]])
    values = model.forward({"x": x})
    np.testing.assert_allclose(values["a"], values["b"], rtol=1e-14)
    np.testing.assert_allclose(model.gradients({"x": x}, of="la")["x"], model.gradients({"x": x}, of="lb")["x"],
                               rtol=1e-12, atol=1e-15)


def test_each_call_gets_its_own_parameters_unless_shared():
    model = graphdef.loads(HEAD + """parameters:
  shared: {shape: [3, 3], init: normal}
nodes:
  h1: {op: dense, inputs: [x], in: 3, out: 3, activation: tanh}
  h2: {op: dense, inputs: [h1], in: 3, out: 3, activation: tanh}
  h3: {op: dense, inputs: [h2], in: 3, out: 3, parameters: {W: shared}}
  h4: {op: dense, inputs: [h3], in: 3, out: 3, parameters: {W: shared}}
outputs: [h4]
""")
    assert list(model.parameters) == ["shared", "h1/W", "h1/b", "h2/W", "h2/b", "h3/b", "h4/b"]
    assert not np.array_equal(model.parameters["h1/W"], model.parameters["h2/W"])
    assert {u for u, _ in model.graph.nx.out_edges("shared")} == {"shared"} and model.graph.nx.out_degree("shared") == 2
    grads = model.gradients({"x": [0.1, 0.2, 0.3]}, of="h4", method="reverse")
    numeric = model.gradients({"x": [0.1, 0.2, 0.3]}, of="h4", wrt=["shared"], method="numeric")
    np.testing.assert_allclose(grads["shared"], numeric["shared"], rtol=1e-6, atol=1e-9)


def test_nested_calls_and_call_membership():
    model = graphdef.loads(HEAD + "nodes:\n  net: {op: mlp, inputs: [x], sizes: [3, 5, 4, 2]}\noutputs: [net]\n")
    assert list(model.parameters) == [f"net/layer{i}/{p}" for i in (1, 2, 3) for p in "Wb"]
    assert model.graph.nx.nodes["net/layer2/W"]["call"] == "net/layer2"
    assert model.graph.vertices["net"].op.name == "identity" and model.graph.nx.nodes["net"]["call"] == "net/layer3"
    assert model.forward({"x": np.ones((7, 3))})["net"].shape == (7, 2)
    assert {op.name for op in (s.op for s in model.steps)} <= set(graphdef.OPS)


def test_user_functions_with_attribute_defaults_and_substitution():
    model = graphdef.loads(HEAD + """functions:
  scaled_sum:
    attributes:
      factor: {type: float, default: 2.0}
      axis: {type: int, default: -1}
    inputs: [v]
    nodes:
      s: {op: sum, inputs: [v], axis: axis}
      y: {op: mul, inputs: [s, factor]}
    outputs: [y]
nodes:
  a: {op: scaled_sum, inputs: [x]}
  b: {op: scaled_sum, inputs: [x], factor: 10}
outputs: [a, b]
""")
    values = model.forward({"x": [1, 2, 3]})
    assert float(values["a"]) == 12 and float(values["b"]) == 60
    assert model.graph.vertices["a/s"].attrs["axis"] == -1


def error_of(text, file=None):
    with pytest.raises(GraphDefError) as info:
        graphdef.loads(text, file=file)
    return info.value


def test_recursion_names_the_cycle():
    error = error_of(HEAD + """functions:
  f: {inputs: [v], nodes: {y: {op: g, inputs: [v]}}, outputs: [y]}
  g: {inputs: [v], nodes: {y: {op: f, inputs: [v]}}, outputs: [y]}
nodes:
  a: {op: f, inputs: [x]}
outputs: [a]
""")
    assert "recursive function call: f -> g -> f" in str(error)


@pytest.mark.parametrize("call, expected", [
    ("{op: dense, inputs: [x], in: 3}", "function 'dense' needs attribute 'out' (int)"),
    ("{op: dense, inputs: [x], in: 3, out: three}", "attribute 'out' of function 'dense' must be int, got 'three'"),
    ("{op: dense, inputs: [x], in: 3, out: 2, activaton: relu}", "has no attribute 'activaton' (did you mean 'activation'?)"),
    ("{op: dense, inputs: [x, x], in: 3, out: 2}", "function 'dense' takes 1 inputs (x), got 2"),
    ("{op: dense, inputs: [x], in: 3, out: 2, activation: rleu}", "unknown op 'rleu' [in function 'dense', called as 'h'"),
    ("{op: dense, inputs: [x], in: 3, out: 2, init: gloria}", "unknown initializer 'gloria'"),
    ("{op: mlp, inputs: [x], sizes: [3]}", "m.yaml:6:29: nodes.h.sizes: attribute 'sizes' of function 'mlp' must "
         "satisfy len(sizes) >= 2"),
    ("{op: dense, inputs: [x], in: 3, out: 2, parameters: {V: x}}", "function 'dense' has no parameter 'V'"),
])
def test_call_errors(call, expected):
    error = error_of(HEAD + f"nodes:\n  h: {call}\noutputs: [h]\n", file="m.yaml")
    assert expected in str(error)
    assert any(p.file == "m.yaml" and p.line == 6 for p in error.errors) or "stdlib.yaml" in str(error)


def test_errors_inside_a_function_name_both_lines():
    text = HEAD + """functions:
  twice:
    inputs: [v]
    nodes:
      y: {op: add, inputs: [v, w]}
    outputs: [y]
nodes:
  a: {op: twice, inputs: [x]}
outputs: [a]
"""
    error = error_of(text, file="m.yaml")
    (problem,) = error.errors
    assert (problem.file, problem.line) == ("m.yaml", 9) and "undefined reference 'w' in function 'twice'" in str(problem)
    assert "called as 'a' at m.yaml:12:3" in str(problem)


def test_shape_error_inside_a_standard_function_points_at_both():
    error = error_of(HEAD + "nodes:\n  h: {op: dense, inputs: [x], in: 4, out: 2}\noutputs: [h]\n", file="m.yaml")
    (problem,) = error.errors
    assert problem.file.endswith("stdlib.yaml") and "matmul inner sizes differ" in problem.message
    assert "in function 'dense', called as 'h' at m.yaml:6:3" in problem.message


def test_include_resolves_relative_to_the_including_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "act.yaml").write_text("graphdef: 1\ninclude: [more.yaml]\nfunctions:\n"
                                               "  soft_sign: {inputs: [v], nodes: {a: {op: abs, inputs: [v]}, "
                                               "d: {op: add, inputs: [a, 1]}, y: {op: div, inputs: [v, d]}}, outputs: [y]}\n")
    (tmp_path / "lib" / "more.yaml").write_text("graphdef: 1\nfunctions:\n  double: {inputs: [v], nodes: "
                                                "{y: {op: mul, inputs: [v, 2]}}, outputs: [y]}\n")
    model_path = tmp_path / "m.yaml"
    model_path.write_text(HEAD + "include: [lib/act.yaml]\nnodes:\n  s: {op: soft_sign, inputs: [x]}\n"
                                 "  d: {op: double, inputs: [s]}\noutputs: [d]\n")
    values = graphdef.load(model_path).forward({"x": [-1.0, 0.0, 3.0]})
    np.testing.assert_allclose(values["d"], [-1.0, 0.0, 1.5])


def test_include_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("graphdef: 1\ninclude: [b.yaml]\nfunctions: {}\n")
    (tmp_path / "b.yaml").write_text("graphdef: 1\ninclude: [a.yaml]\nfunctions: {}\n")
    (tmp_path / "c.yaml").write_text("graphdef: 1\nfunctions:\n  f: {inputs: [v], nodes: {y: {op: neg, inputs: [v]}}, "
                                     "outputs: [y]}\n")
    (tmp_path / "d.yaml").write_text("graphdef: 1\nfunctions:\n  f: {inputs: [v], nodes: {y: {op: exp, inputs: [v]}}, "
                                     "outputs: [y]}\n")
    (tmp_path / "e.yaml").write_text("graphdef: 1\nname: not-a-library\nfunctions: {}\n")
    body = "nodes:\n  y: {op: neg, inputs: [x]}\noutputs: [y]\n"
    cases = {"[a.yaml]": "include cycle: ", "[missing.yaml]": "file not found", "[c.yaml, d.yaml]":
             "function 'f' is defined twice", "[e.yaml]": "unknown key 'name'"}
    for include, expected in cases.items():
        path = tmp_path / "m.yaml"
        path.write_text(HEAD + f"include: {include}\n" + body)
        error = error_of(path.read_text(), file=str(path))
        assert expected in str(error), include
        assert error.errors[0].file == str(path) and error.errors[0].line == 5


def test_function_named_like_an_op_is_refused():
    error = error_of(HEAD + "functions:\n  relu: {inputs: [v], nodes: {y: {op: neg, inputs: [v]}}, outputs: [y]}\n"
                     "nodes:\n  a: {op: relu, inputs: [x]}\noutputs: [a]\n")
    assert "has the name of a primitive op" in str(error)


def test_ops_lists_functions_and_show_lists_calls(cli):
    code, out, _ = cli("ops")
    assert code == 0 and "dense(x, in: int, out: int" in out and "[function]" in out and "mlp(x, sizes: ints" in out
    code, out, _ = cli("show", MODELS / "digits.yaml")
    assert code == 0 and re.search(r"^logits/layer1/W +parameter +\[64, 128\] +logits/layer1$", out, re.M)
    assert "9,610 parameter values in 4 arrays" in out


def test_trained_model_with_calls_saves_and_reloads(tmp_path):
    model = graphdef.load(MODELS / "mlp_layers.yaml")
    model.parameters["h/W"][...] = [[1.0, 2.0], [3.0, 4.0]]
    again = graphdef.load(model.save(tmp_path))
    assert np.array_equal(again.parameters["h/W"], [[1.0, 2.0], [3.0, 4.0]])


def test_validate_covers_functions(cli, write):
    path = write(HEAD + "functions:\n  f: {inputs: [v], nodes: {y: {op: nope, inputs: [v]}}, outputs: [y]}\n"
                        "nodes:\n  a: {op: f, inputs: [x]}\noutputs: [a]\n")
    code, _, err = cli("validate", path)
    assert code == 1 and f"{path}:6:" in err and "unknown op 'nope'" in err and "called as 'a'" in err
