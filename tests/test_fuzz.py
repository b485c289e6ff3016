"""Property-based tests: random documents, mutations of every file in models/, random valid graphs.

The loader's only outcomes are a Model or a GraphDefError (never another exception, never
a hang); on random valid graphs forward and backward never crash and agree with finite
differences. CI runs a bounded number of examples; for a longer local run:

    GRAPHDEF_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py -q
"""
import os

import numpy as np
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import graphdef
from conftest import MODELS, time_limit
from graphdef import GraphDefError

EXAMPLES = int(os.environ.get("GRAPHDEF_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
MODEL_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(MODELS.glob("*.yaml"))}





def load_or_refuse(text):
    with time_limit(5, AssertionError):
        try:
            model = graphdef.loads(text, file="fuzz.yaml")
        except GraphDefError as e:
            assert e.errors and all(str(p) for p in e.errors)
            return None
    return model


scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True),
                    st.text("abcxyz_/[]{}:-#&*!|> \n'\"", max_size=8),
                    st.sampled_from(["add", "mul", "matmul", "relu", "x", "a", "b", "inputs", "nodes", "shape"]))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["graphdef", "name", "inputs", "parameters", "constants", "nodes", "outputs", "loss", "op", "shape", "value",
         "init", "axis", "functions", "include", "training", "weights", "a", "b", "c"]), inner, max_size=5)),
    max_leaves=25)


@FUZZ
@given(documents)
def test_random_documents_load_or_are_refused(doc):
    load_or_refuse(yaml.safe_dump(doc))


@FUZZ
@given(st.sampled_from(sorted(MODEL_TEXTS)), st.data())
def test_text_mutations_of_every_model_load_or_are_refused(name, data):
    text = MODEL_TEXTS[name]
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace", "duplicate line", "swap lines"]))
        lines = text.splitlines(keepends=True)
        if kind == "delete":
            text = text[:at] + text[at + data.draw(st.integers(1, 20)):]
        elif kind == "insert":
            text = text[:at] + data.draw(st.text("[]{}:,-#&*!'\"\n 0123abc", min_size=1, max_size=6)) + text[at:]
        elif kind == "replace":
            text = text[:at] + data.draw(st.sampled_from(["9", "-1", "[]", "{}", "null", "x", "~", "1e999"])) + text[at + 1:]
        elif lines:
            i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    load_or_refuse(text)


def mutate_tree(node, data, depth=0):
    """Replace a random value somewhere in a parsed document by a random one."""
    if isinstance(node, dict) and node and depth < 6 and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node, key=str)))
        return {**node, key: mutate_tree(node[key], data, depth + 1)}
    if isinstance(node, list) and node and depth < 6 and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(node) - 1))
        return node[:i] + [mutate_tree(node[i], data, depth + 1)] + node[i + 1:]
    return data.draw(documents)


@FUZZ
@given(st.sampled_from(sorted(MODEL_TEXTS)), st.data())
def test_structural_mutations_of_every_model_load_or_are_refused(name, data):
    doc = yaml.safe_load(MODEL_TEXTS[name])
    for _ in range(data.draw(st.integers(1, 3))):
        doc = mutate_tree(doc, data)
    model = load_or_refuse(yaml.safe_dump(doc))
    if model is not None and model.inputs and all(s is not None and None not in s for s in model.inputs.values()):
        feeds = {k: np.full(s, 0.5) for k, s in model.inputs.items()}
        with time_limit(5, AssertionError):
            try:
                model.forward(feeds)
            except GraphDefError:
                pass


UNARY = ["exp", "neg", "tanh", "sigmoid", "square", "identity", "relu", "abs"]
BINARY = ["add", "sub", "mul"]
POSITIVE = ["log", "sqrt", "reciprocal"]


@st.composite
def valid_graphs(draw):
    names, lines = ["x", "y"], []
    for i in range(draw(st.integers(1, 10))):
        op = draw(st.sampled_from(UNARY + BINARY + POSITIVE + ["div", "softmax", "sum"]))
        pick = lambda: draw(st.sampled_from(names))  # noqa: E731
        if op in BINARY:
            args = [pick(), pick()]
        elif op == "div":
            args = [pick(), "pos"]
        elif op in POSITIVE:
            args = ["pos"]
        else:
            args = [pick()]
        extra = ", keepdims: true, axis: -1" if op == "sum" else ""
        lines.append(f"  n{i}: {{op: {op}, inputs: [{', '.join(args)}]{extra}}}")
        names.append(f"n{i}")
    return ("graphdef: 1\nname: random\ninputs:\n  x: {shape: [3]}\n  y: {shape: [3]}\nparameters:\n"
            "  w: {value: [0.3, -0.2, 0.5]}\nnodes:\n  pos0: {op: mul, inputs: [x, x]}\n"
            "  pos: {op: add, inputs: [pos0, 1]}\n" + "\n".join(lines)
            + f"\n  wl: {{op: mul, inputs: [{names[-1]}, w]}}\n  total: {{op: sum, inputs: [wl]}}\n"
            "outputs: [total]\nloss: total\n")


@FUZZ
@given(valid_graphs(), st.lists(st.floats(-1.5, 1.5), min_size=6, max_size=6))
def test_random_valid_graphs_agree_with_finite_differences_and_forward_mode(text, xs):
    model = graphdef.loads(text)
    feeds = {"x": np.array(xs[:3]), "y": np.array(xs[3:])}
    values = model.forward(feeds)
    assume(np.isfinite(values["total"]) and abs(float(values["total"])) < 1e6)
    kinks = [values[s.inputs[0]] for s in model.steps if s.op.name in ("relu", "abs")]
    assume(all(np.all(np.abs(v) > 1e-3) for v in kinks))  # finite differences straddle a kink at 0
    reverse = model.gradients(feeds)
    numeric = model.gradients(feeds, method="numeric")
    forward = model.gradients(feeds, method="forward")
    for k in reverse:
        np.testing.assert_allclose(reverse[k], numeric[k], rtol=1e-4, atol=1e-5, err_msg=f"{k}\n{text}")
        np.testing.assert_allclose(forward[k], reverse[k], rtol=1e-9, atol=1e-12, err_msg=f"forward mode {k}\n{text}")


node_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=3), scalars,
                                                                               max_size=2))
nodes = st.one_of(node_values, st.dictionaries(
    st.sampled_from(["op", "inputs", "description", "parameters", "axis", "base", 1]),
    st.one_of(node_values, st.lists(st.one_of(st.floats(), st.integers(), st.booleans(),
                                              st.text("ab_1./-[] ", max_size=4)), max_size=3)), max_size=5))


@FUZZ
@given(st.text("ab_1./- ", max_size=4), nodes)
def test_the_fast_node_check_never_accepts_what_the_schema_refuses(name, node):
    from graphdef.format.schema import _validator, plain_node
    if plain_node(name, node):
        doc = {"graphdef": 1, "name": "x", "nodes": {name: node}, "outputs": ["x"]}
        assert not list(_validator(None).iter_errors(doc))


near_plain = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(["add", "relu"]), st.integers(), st.none()),
     "inputs": st.lists(st.one_of(st.sampled_from(["a", "b/c", "x.1", "1x", "a b", ""]), st.integers(), st.floats(),
                                  st.booleans(), st.none()), max_size=3)},
    optional={"description": st.one_of(st.text(max_size=3), st.integers()),
              "axis": st.one_of(scalars, st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2),
                                                                                            st.integers())),
              "parameters": st.dictionaries(st.text("ab", max_size=2), st.text("ab", max_size=2))})


@FUZZ
@given(st.sampled_from(["h1", "net/layer1", "1bad", "a b"]), near_plain)
def test_the_fast_node_check_agrees_with_the_schema_near_its_boundary(name, node):
    from graphdef.format.schema import _validator, plain_node
    doc = {"graphdef": 1, "name": "x", "nodes": {name: node}, "outputs": ["x"]}
    valid = not list(_validator(None).iter_errors(doc))
    assert not plain_node(name, node) or valid  # the fast check may send valid nodes on to jsonschema, never invalid ones
    if valid and "parameters" not in node:
        assert plain_node(name, node), node  # and it does recognise the ordinary ones
