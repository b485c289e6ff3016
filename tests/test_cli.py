"""The command line: each command is a thin layer over the API."""
import json

import numpy as np
import pytest

from conftest import MODELS

LECTURE = MODELS / "lecture.yaml"


def test_grad_shows_value_48_and_gradient_6_14(cli):
    code, out, err = cli("grad", LECTURE, "--at", "a=3", "--at", "b=5")
    assert code == 0, err
    assert out.splitlines() == ["e = 48", "∂e/∂a = 6", "∂e/∂b = 14"]


@pytest.mark.parametrize("method", ["reverse", "paths", "numeric"])
def test_grad_json_by_every_method(cli, method):
    code, out, _ = cli("grad", LECTURE, "--at", "a=3", "--at", "b=5", "--method", method, "--json")
    result = json.loads(out)
    assert code == 0 and result["value"] == 48 and result["of"] == "e"
    assert result["gradients"] == pytest.approx({"a": 6, "b": 14}, rel=1e-7)


def test_grad_of_and_wrt(cli):
    code, out, _ = cli("grad", LECTURE, "--at", "a=3", "--at", "b=5", "--of", "d", "--wrt", "b", "--json")
    assert code == 0 and json.loads(out) == {"of": "d", "method": "reverse", "value": 6.0, "gradients": {"b": 1.0}}


def test_run_prints_outputs(cli):
    code, out, _ = cli("run", LECTURE, "--at", "a=3", "--at", "b=5")
    assert code == 0 and out == "e = 48\n"
    code, out, _ = cli("run", MODELS / "mlp.yaml", "--at", "x=[[1, 0.5], [0, 1]]", "--at", "y=[[1, 0], [0, 1]]",
                       "--json")
    outputs = json.loads(out)["outputs"]
    assert np.array(outputs["probs"]).shape == (2, 2) and np.array(outputs["E"]).shape == (2,)  # a loss per sample


def test_inputs_from_npz_and_json_with_at_overriding(cli, tmp_path):
    np.savez(tmp_path / "in.npz", a=np.array(3.0), b=np.array(1.0))
    (tmp_path / "in.json").write_text(json.dumps({"a": 3, "b": 5}))
    assert cli("run", LECTURE, "--inputs", tmp_path / "in.json")[1] == "e = 48\n"
    assert cli("run", LECTURE, "--inputs", tmp_path / "in.npz", "--at", "b=5")[1] == "e = 48\n"


def test_validate_reports_each_file(cli, write):
    bad = write("graphdef: 1\nname: b\noutputs: [x]\n")
    code, out, err = cli("validate", LECTURE, MODELS / "mlp.yaml", bad)
    assert code == 1
    assert "ok: " in out and out.count("ok: ") == 2
    assert f"{bad}:3:" in err and "undefined output 'x'" in err


def test_every_model_validates(cli):
    code, out, err = cli("validate", *sorted(MODELS.glob("*.yaml")))
    assert code == 0, err


def test_ops_lists_every_op_with_signature_and_doc(cli):
    from graphdef import OPS
    code, out, _ = cli("ops")
    assert code == 0
    for op in OPS.values():
        assert op.signature() in out and op.doc in out


def test_schema_prints_the_json_schema(cli):
    code, out, _ = cli("schema")
    assert code == 0 and json.loads(out)["$schema"].endswith("2020-12/schema")


def test_help_exits_0(cli):
    code, out, _ = cli("--help")
    assert code == 0 and "validate" in out and "grad" in out


def test_plan_prints_the_steps_and_the_generated_code(cli):
    code, out, _ = cli("plan", MODELS / "chain.yaml", "--code")
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["0", "c", "mul", "a,"]
    assert "4 forward steps; backward visits 4 of them for ∂f/∂(a, b)" in out
    assert "def backprop(env):" in out and "# ∂f/∂d += ∂e/∂d·∂f/∂e" in out


def test_generated_code_inlines_lambda_rules_and_reports_the_failing_step(cli, write):
    import graphdef
    model = graphdef.load(MODELS / "lecture.yaml")
    source = model.compiled_backprop("e", ["a", "b"]).source
    assert "(v0 + v1)  # c" in source and "(v3 * v4)  # e" in source  # add and mul inlined, no calls
    path = write("graphdef: 1\nname: r\ninputs:\n  x: {}\n  y: {}\nnodes:\n  z: {op: add, inputs: [x, y]}\n"
                 "outputs: [z]\n")
    code, _, err = cli("grad", path, "--at", "x=[1, 2]", "--at", "y=[1, 2, 3]")
    assert code == 1 and f"{path}:7:" in err and "node 'z' (add) failed" in err


def test_summary_counts_and_vertex_rows_of_the_lecture_model(cli):
    import graphdef
    from graphdef.tools.summary import VERTEX_COLUMNS, summary
    s = summary(graphdef.load(LECTURE))
    assert (s.name, s.vertices, s.steps, s.nodes, s.inputs, s.parameters, s.literals, s.parameter_values) == \
        ("lecture", 6, 3, 3, 2, 0, 1, 0)
    assert s.rows == (("a", "input", "", "[]", ""), ("b", "input", "", "[]", ""), ("c", "node", "add", "[]", ""),
                      ("d", "node", "add", "[]", ""), ("e", "node", "mul", "[]", ""), ("d[1]", "literal", "", "[]", ""))
    code, out, _ = cli("show", LECTURE)  # show prints exactly these rows, then the counts
    assert code == 0 and out.splitlines()[0].split() == list(VERTEX_COLUMNS)
    assert [line.split() for line in out.splitlines()[1:-1]] == [[c for c in row if c] for row in s.rows]
    assert out.splitlines()[-1] == "lecture: 6 vertices, 3 steps, 0 parameter values in 0 arrays"
    assert cli("validate", LECTURE)[1] == f"ok: {LECTURE}: 3 nodes, 2 inputs, 0 parameters\n"


def test_step_table_marks_the_steps_on_the_backward_path():
    import graphdef
    from graphdef.tools.summary import step_table
    plan = step_table(graphdef.load(LECTURE), of="d", wrt=["b"])
    assert (plan.of, plan.wrt, plan.backward) == ("d", ("b",), 1)
    assert plan.header[-1] == "on the backward path of d"
    assert [(r[1], r[2], r[3], r[5]) for r in plan.rows] == [("c", "add", "a, b", ""), ("d", "add", "b, d[1]", "yes"),
                                                             ("e", "mul", "c, d", "")]


def test_prediction_columns_per_element_and_the_class_of_a_2d_output(cli, tmp_path):
    from graphdef.training import prediction_columns
    from graphdef.training.tables import to_csv
    scores = np.array([[0.2, 0.8], [0.9, 0.1], [0.3, 0.7]])
    columns = prediction_columns({"probs": scores})
    assert list(columns) == ["probs[0]", "probs[1]", "class"]
    assert columns["probs[1]"].tolist() == [0.8, 0.1, 0.7] and columns["class"].tolist() == [1, 0, 1]
    assert to_csv(columns).splitlines()[:2] == ["probs[0],probs[1],class", "0.2,0.8,1"]
    columns = prediction_columns({"p": np.array([1.0, 2.0]), "q": np.zeros((2, 2, 2))})  # no class: two outputs
    assert list(columns) == ["p", "q[0]", "q[1]", "q[2]", "q[3]"]
    code, _, err = cli("predict", MODELS / "mlp.yaml", "--data", "xor", "-o", tmp_path / "p.csv")
    assert code == 0, err
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "probs[0],probs[1],class"
