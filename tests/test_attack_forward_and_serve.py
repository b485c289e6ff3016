"""An outside tester's attack on forward mode (gradients(method="forward"), jvp, grad --method forward),
`graphdef serve`'s page state and server, and `graphdef cost` / `grad --explain`.

Each bug it found is fixed and kept here as a test: reverse mode with an `of` no wrt reaches, cost and
explanations of such an `of`, unicode digits and deep nesting in the page's query, the drawing of collapsed
groups that feed each other, jvp's outputs, the numeric method's random draws in training mode.
"""
import http.client
import json
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphdef
from graphdef.engine.gradients import FORWARD_LIMIT
from graphdef.tools.explain import cost, explain_forward
from graphdef.tools.serve import BadQuery, make_server, page_state

from conftest import MODELS, run_cli, time_limit

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
LECTURE_AT = {"a": 3.0, "b": 5.0}


def load(name, **kw):
    return graphdef.load(MODELS / name, **kw)


def sample(model, batch=None, seed=0):
    """Random inputs for every input of the model (integers 0/1 for integer inputs), optionally batched."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in model.inputs.items():
        shape = tuple(1 if n is None else n for n in shape)
        shape = ((batch,) if batch else ()) + shape
        if name in model.input_dtypes:
            out[name] = rng.integers(0, 2, size=shape).astype(model.input_dtypes[name])
        else:
            out[name] = rng.normal(size=shape).astype(model.dtype)
    return out


def close(a, b, dtype):
    tol = dict(rtol=2e-3, atol=2e-4) if np.dtype(dtype) == np.float32 else dict(rtol=1e-7, atol=1e-9)
    return np.allclose(a, b, **tol)


# == forward mode ==========================================================================================

UNARY = ["tanh", "sin", "sigmoid", "square", "neg", "softplus", "cos", "atan"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]
SHAPES = {"x": [3], "y": [2, 3], "z": []}


@st.composite
def random_graphs(draw):
    """A random graph of elementwise ops over inputs of broadcastable shapes, summed at the end."""
    names, lines = ["x", "y", "z"], []
    for k in range(draw(st.integers(1, 7))):
        if draw(st.booleans()):
            op, args = draw(st.sampled_from(UNARY)), [draw(st.sampled_from(names))]
        else:
            op, args = draw(st.sampled_from(BINARY)), [draw(st.sampled_from(names)), draw(st.sampled_from(names))]
        lines.append(f"  n{k}: {{op: {op}, inputs: [{', '.join(args)}]}}")
        names.append(f"n{k}")
    lines.append(f"  out: {{op: sum, inputs: [{names[-1]}]}}")
    text = ("graphdef: 1\nname: random\ninputs:\n" + "".join(f"  {n}: {{shape: {s}}}\n" for n, s in SHAPES.items())
            + "nodes:\n" + "\n".join(lines) + "\noutputs: [out]\n")
    return text, draw(st.sampled_from(["float32", "float64"])), draw(st.sampled_from([None, "x", "y", "xyz"]))


@SETTINGS
@given(random_graphs(), st.integers(0, 2**16))
def test_forward_equals_reverse_on_random_broadcasting_graphs(case, seed):
    text, dtype, batched = case
    model = graphdef.loads(text, dtype=dtype)
    rng = np.random.default_rng(seed)
    inputs = {n: rng.normal(size=((2,) if batched and n in batched else ()) + tuple(s)).astype(dtype)
              for n, s in SHAPES.items()}
    reverse = model.gradients(inputs)
    forward = model.gradients(inputs, method="forward")
    assert set(forward) == set(reverse)
    for name in reverse:
        assert forward[name].shape == reverse[name].shape and forward[name].dtype == reverse[name].dtype
        assert close(forward[name], reverse[name], dtype), name


FAST_MODELS = ["chain", "diamond", "digits", "lecture", "lecture_network", "lenet", "logistic", "mlp",
               "mlp_layers", "sentiment", "spirals"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", FAST_MODELS)
def test_forward_equals_reverse_on_models_batched_and_in_both_dtypes(name, dtype):
    model = load(f"{name}.yaml", dtype=dtype)
    of, wrt = model.resolve()
    wrt = [w for w in wrt if np.size(model.parameters.get(w, 1)) <= 300]  # keep the passes few
    for batch in (None, 2):
        inputs = sample(model, batch)
        reverse = model.gradients(inputs, wrt=wrt)
        forward = model.gradients(inputs, wrt=wrt, method="forward")
        for w in wrt:
            assert forward[w].dtype == reverse[w].dtype == np.dtype(dtype), w
            assert close(forward[w], reverse[w], dtype), (w, batch)


DROPOUT_AND_NORM = """graphdef: 1
name: modes
inputs:
  x: {shape: [2]}
state:
  rm: {value: [0.0, 0.0]}
  rv: {value: [1.0, 1.0]}
parameters:
  w: {value: [0.5, -1.5]}
  g: {value: [1.0, 2.0]}
  b: {value: [0.1, 0.0]}
nodes:
  h: {op: mul, inputs: [x, w]}
  n: {op: batch_norm, inputs: [h, g, b, rm, rv]}
  d: {op: dropout, inputs: [n], p: 0.4}
  t: {op: tanh, inputs: [d]}
  s: {op: sum, inputs: [t]}
outputs: [s]
"""


def test_forward_equals_reverse_in_training_mode_with_dropout_and_batch_norm():
    model = graphdef.loads(DROPOUT_AND_NORM)
    model.training = True
    inputs = {"x": np.random.default_rng(1).normal(size=(5, 2))}
    for seed in range(3):
        model.reseed(seed)
        reverse = model.gradients(inputs)
        model.reseed(seed)
        forward = model.gradients(inputs, method="forward")
        for w in reverse:
            assert np.allclose(forward[w], reverse[w], atol=1e-10), (seed, w)
    lenet = load("lenet.yaml")
    lenet.training = True
    batch = sample(lenet, 3)
    lenet.reseed(3)
    reverse = lenet.gradients(batch, wrt=["x"])
    lenet.reseed(3)
    assert np.allclose(lenet.gradients(batch, wrt=["x"], method="forward")["x"], reverse["x"], atol=1e-10)


def test_numeric_agrees_with_reverse_in_training_mode_with_dropout():
    model = graphdef.loads("""graphdef: 1
name: drop
inputs:
  x: {shape: [4]}
parameters:
  w: {value: [0.5, -1.0, 2.0, 0.3]}
nodes:
  h: {op: mul, inputs: [x, w]}
  d: {op: dropout, inputs: [h], p: 0.5}
  s: {op: sum, inputs: [d]}
outputs: [s]
""")
    model.training = True
    inputs = {"x": np.array([1.0, 2.0, 3.0, 4.0])}
    for seed in range(4):
        model.reseed(seed)
        reverse = model.gradients(inputs, wrt=["w"])
        model.reseed(seed)
        forward = model.gradients(inputs, wrt=["w"], method="forward")
        model.reseed(seed)
        numeric = model.gradients(inputs, wrt=["w"], method="numeric")
        assert np.allclose(forward["w"], reverse["w"])
        assert np.allclose(numeric["w"], reverse["w"], atol=1e-6), (seed, numeric["w"], reverse["w"])


def test_forward_mode_with_split_outputs_integer_inputs_constants_and_stdlib_functions():
    model = graphdef.loads("""graphdef: 1
name: parts
inputs:
  qkv: {shape: [2, 6]}
  idx: {shape: [2], dtype: int64}
  x: {shape: [4]}
constants:
  k: [1.0, 2.0, 3.0, 4.0]
nodes:
  parts: {op: split, inputs: [qkv], sections: 3, axis: -1}
  p: {op: mul, inputs: [parts/1, parts/2]}
  q: {op: add, inputs: [p, parts]}
  g: {op: gather, inputs: [x, idx], axis: 0}
  kx: {op: mul, inputs: [x, k]}
  cell: {op: lstm_cell, inputs: [kx, kx, x], input: 4, hidden: 4}
  s1: {op: sum, inputs: [q]}
  s2: {op: sum, inputs: [g]}
  s3: {op: sum, inputs: [cell/c_next]}
  tot: {op: add, inputs: [s1, s2]}
  out: {op: add, inputs: [tot, s3]}
outputs: [out]
""")
    rng = np.random.default_rng(0)
    single = {"qkv": rng.normal(size=(2, 6)), "idx": np.array([0, 3]), "x": rng.normal(size=4)}
    batch = {"qkv": rng.normal(size=(3, 2, 6)), "idx": np.array([[0, 3]] * 3), "x": rng.normal(size=(3, 4))}
    for inputs in (single, batch):
        reverse, forward = model.gradients(inputs), model.gradients(inputs, method="forward")
        assert "idx" not in forward and set(forward) == set(reverse)
        for w in reverse:
            assert np.allclose(forward[w], reverse[w], atol=1e-12), w
    for of in ("parts/1", "parts/2", "cell/c_next", "g"):
        reverse = model.gradients(single, of=of, wrt=["qkv", "x", "k"])
        forward = model.gradients(single, of=of, wrt=["qkv", "x", "k"], method="forward")
        assert all(np.allclose(forward[w], reverse[w], atol=1e-12) for w in reverse), of
    with pytest.raises(graphdef.GraphDefError, match="idx"):
        model.gradients(single, wrt=["idx"], method="forward")


@pytest.mark.parametrize("of", ["x", "k", "am", "gt"])
def test_reverse_equals_forward_when_of_is_not_reached_by_wrt(of):
    model = graphdef.loads("""graphdef: 1
name: unreached
inputs:
  x: {shape: [3]}
constants:
  k: [1.0, 2.0, 3.0]
nodes:
  t: {op: mul, inputs: [x, k]}
  am: {op: argmax, inputs: [t]}
  gt: {op: greater, inputs: [t, 0.0]}
  s: {op: sum, inputs: [t]}
outputs: [s, am, gt]
""")
    inputs = {"x": np.array([0.1, -0.2, 0.3])}
    forward = model.gradients(inputs, of=of, wrt=["x", "k"], method="forward")
    reverse = model.gradients(inputs, of=of, wrt=["x", "k"])
    for w in forward:
        assert np.array_equal(forward[w], reverse[w]), w


@SETTINGS
@given(st.floats(-3, 3), st.integers(0, 2**16), st.sampled_from(["mlp", "logistic", "lecture_network", "sentiment"]))
def test_jvp_is_linear_and_is_the_reverse_gradient_along_the_tangent(a, seed, name):
    model = load(f"{name}.yaml")
    inputs = sample(model, seed=seed)
    rng = np.random.default_rng(seed + 1)
    names = [n for n in model.resolve()[1]][:3]  # tangents for some inputs/parameters only
    t1 = {n: rng.normal(size=np.shape(model.parameters.get(n, inputs.get(n)))) for n in names}
    t2 = {n: rng.normal(size=np.shape(model.parameters.get(n, inputs.get(n)))) for n in names[:1]}
    combined = {n: a * t1[n] + t2.get(n, 0) for n in names}
    values, j1 = model.jvp(inputs, t1)
    _, j2 = model.jvp(inputs, t2)
    _, jc = model.jvp(inputs, combined)
    for out in j1:
        assert np.allclose(jc[out], a * j1[out] + j2[out], atol=1e-9), out
    of = model.loss or model.outputs[0]
    grads = model.gradients(inputs, of=of, wrt=names)
    assert np.isclose(np.sum(j1[of]), sum(np.sum(grads[n] * t1[n]) for n in names), atol=1e-9)


@pytest.mark.parametrize("tangents, words", [
    ({"a": np.nan}, "finite"), ({"a": np.inf}, "finite"), ({"a": "1"}, "finite"), ({"a": None}, "finite"),
    ({"a": [1.0, 2.0]}, "shape"), ({"a": 1 + 2j}, "finite"), ({"a": object()}, "finite"), ({"a": 10**400}, "finite"),
    ({"zz": 1.0}, "zz"), ({"c": 1.0}, "'c'"), ({"e": 1.0}, "'e'"), ({"d[1]": 1.0}, "d[1]"), ({1: 1.0}, "1"),
    (None, "mapping"), ([("a", 1.0)], "mapping"), ("a", "mapping"),
])
def test_jvp_refuses_hostile_tangents_with_a_graphdef_error(tangents, words):
    model = load("lecture.yaml")
    with pytest.raises(graphdef.GraphDefError, match=None) as caught:
        model.jvp(LECTURE_AT, tangents)
    assert words in str(caught.value)


def test_jvp_refuses_tangents_of_integer_inputs_and_state():
    with pytest.raises(graphdef.GraphDefError, match="tokens"):
        load("sentiment.yaml").jvp(sample(load("sentiment.yaml")), {"tokens": np.ones(12)})
    lenet = load("lenet.yaml")
    with pytest.raises(graphdef.GraphDefError, match="running_mean"):
        lenet.jvp(sample(lenet), {"n1/running_mean": np.ones(16)})


def test_jvp_of_a_batch_wants_batched_tangents_for_batched_inputs_only():
    model = load("lecture.yaml")
    inputs = {"a": np.array([1.0, 2.0, 3.0]), "b": 5.0}
    assert np.array_equal(model.jvp(inputs, {"a": np.ones(3)})[1]["e"], [6, 6, 6])
    assert np.array_equal(model.jvp(inputs, {"b": 1.0})[1]["e"], [12, 13, 14])
    for bad in ({"a": 1.0}, {"b": np.ones(3)}):
        with pytest.raises(graphdef.GraphDefError, match="shape"):
            model.jvp(inputs, bad)


def test_float32_models_keep_float32_values_tangents_and_gradients():
    model = load("mlp.yaml", dtype="float32")
    inputs = sample(model)
    for tangents in ({"x": np.array([1.0, 0.0])}, {"W1": np.ones((2, 2))}, {}):
        values, pushed = model.jvp(inputs, tangents)
        assert all(v.dtype == np.float32 for v in values.values()), tangents
        assert all(t.dtype == np.float32 for t in pushed.values()), tangents
    assert all(g.dtype == np.float32 for g in model.gradients(inputs, method="forward").values())


def test_forward_mode_refuses_above_the_limit_with_advice(write):
    path = write("graphdef: 1\nname: big\ninputs:\n  x: {shape: [400]}\nparameters:\n"
                 "  W: {shape: [400, 300], init: zeros}\nnodes:\n  h: {op: matmul, inputs: [x, W]}\n"
                 "  s: {op: sum, inputs: [h]}\noutputs: [s]\n")
    model = graphdef.load(path)
    with pytest.raises(graphdef.GraphDefError) as caught:
        model.gradients({"x": np.ones(400)}, method="forward")
    text = str(caught.value)
    assert "120,400 passes" in text and f"{FORWARD_LIMIT:,}" in text and "reverse" in text
    assert model.gradients({"x": np.ones(400)}, wrt=["x"], method="forward")["x"].shape == (400,)
    code, out, err = run_cli("grad", path, "--at", "x=" + json.dumps([0.1] * 400), "--method", "forward")
    assert code == 1 and "Traceback" not in err and "limit" in err


def test_jvp_accepts_a_single_output_name():
    model = load("mlp.yaml")
    inputs = sample(model)
    values, tangents = model.jvp(inputs, {"x": np.array([1.0, 0.0])}, outputs="probs")
    assert set(values) == set(tangents) == {"probs"}


def test_jvp_refuses_an_unknown_output_name():
    with pytest.raises(graphdef.GraphDefError, match="zz"):
        load("lecture.yaml").jvp(LECTURE_AT, {"a": 1.0}, outputs=["zz"])


def test_jvp_of_the_predictions_needs_no_label():
    model = load("mlp.yaml")
    values, tangents = model.jvp({"x": [1.0, 0.5]}, {"x": [1.0, 0.0]}, outputs=["probs"])
    assert set(tangents) == {"probs"}


# == graphdef serve: page_state ============================================================================

def answer(model, query, svg=False):
    """'ok' or '400' for a page_state call; anything else (a 500 over HTTP) propagates."""
    try:
        state = page_state(model, query, svg=svg)
    except BadQuery as e:
        assert str(e) and "Traceback" not in str(e)
        return "400"
    json.dumps(state, allow_nan=False)  # what the server sends
    return "ok"


HOSTILE_SCALAR = [
    "a=1e308&b=1e308", "a=1e308&b=1e308&mode=paths", "a=-1e308&b=1e308&mode=step", "a=%ff", "a=1&a=2&a=3",
    "a=nan", "a=-inf", "a=", "a=%E2%80%AE1", "a=١٢", "step=-1", "step=" + "9" * 3000, "page=0", "page=-3",
    "page=" + "9" * 3000 + "&mode=paths", "mode=paths&wrt=zz", "mode=paths&wrt=c", "mode=paths&wrt=d[1]",
    "mode=paths&of=c&wrt=b", "of=zz", "of=d[1]", "of=c&mode=step", "of=a&mode=step", "mode=PATHS", "mode=",
    "%00=1", "a" * 3999, "a=1&" * 999, "big=1&big=2", "wrt=&of=&mode=paths",
]


@pytest.mark.parametrize("query", HOSTILE_SCALAR)
def test_hostile_queries_on_the_lecture_are_200_or_400(query):
    assert answer(load("lecture.yaml"), query) in ("ok", "400")


HOSTILE_TENSOR = [
    ("mlp", "x=[1,2,3]"), ("mlp", "x=[[1,2],[3,4]]"), ("mlp", "x=[[1,2],[3,4]]&y=[[1,0]]"), ("mlp", "x=NaN"),
    ("mlp", "x=[1e999,1]"), ("mlp", 'x="ab"'), ("mlp", 'x={"a":1}'), ("mlp", "x=[1,null]"), ("mlp", "x=[]"),
    ("mlp", "x=[1e308,1e308]&mode=step"), ("mlp", "W1=1"), ("mlp", "of=x"), ("mlp", "of=W1&mode=step"),
    ("sentiment", "tokens=" + json.dumps([0.5] * 12)), ("sentiment", "tokens=" + json.dumps([10**30] * 12)),
    ("sentiment", "tokens=" + json.dumps([49] * 12)), ("sentiment", "tokens=" + json.dumps([-1] * 12)),
    ("sentiment", "tokens=" + json.dumps([[1] * 12] * 3)), ("sentiment", "mode=paths&wrt=tokens"),
    ("sentiment", "of=tokens&mode=step"), ("lenet", "of=n1/running_mean&mode=step"), ("lenet", "of=y"),
    ("lenet", "x=" + json.dumps([[0.5] * 64] * 2)), ("lecture_network", "mode=paths&wrt=y1"),
    ("lecture_network", "w1=1e308&mode=paths"), ("lecture_network", "of=y2&mode=step"),
    ("digits", "mode=paths&wrt=x"),
]


@pytest.mark.parametrize("name, query", HOSTILE_TENSOR)
def test_hostile_queries_on_tensor_models_are_200_or_400(name, query):
    assert answer(load(f"{name}.yaml"), query) in ("ok", "400")


ALL_MODELS = sorted(p.stem for p in MODELS.glob("*.yaml"))


@pytest.mark.parametrize("name", ALL_MODELS)  # digit_sum's collapsed groups feed each other: the drawing failed
def test_every_model_in_every_mode_with_its_drawing_is_200(name):
    model = load(f"{name}.yaml")
    with time_limit(30):
        for mode in ("values", "step", "paths"):
            assert answer(model, f"mode={mode}", svg=True) == "ok", mode


@pytest.mark.parametrize("query", ["step=²", "page=²&mode=paths", "step=①"])
def test_unicode_digits_in_step_or_page_are_a_400(query):
    assert answer(load("lecture.yaml"), query) in ("ok", "400")


@pytest.mark.parametrize("query", ["of=y2&mode=paths", "of=y2&mode=paths&wrt=y2"])
def test_paths_mode_of_a_label_is_200_or_400(query):
    assert answer(load("lecture_network.yaml"), query) in ("ok", "400")


def test_deeply_nested_tensor_value_is_a_400():
    assert answer(load("mlp.yaml"), "x=" + "[" * 1990 + "]" * 1990) == "400"


def test_paths_of_an_input_by_itself_sum_to_the_gradient():
    paths = page_state(load("lecture.yaml"), "mode=paths&of=a&wrt=a", svg=False)["paths"]
    assert paths["count"] == 1 and paths["gradient"] == 1
    assert paths["sum"] == paths["gradient"] and len(paths["listed"]) == 1


def test_paths_page_numbers_are_clamped_and_sum_to_the_gradient():
    diamond = load("diamond.yaml")
    for page in (1, 7, 10**40):
        paths = page_state(diamond, f"mode=paths&page={page}", svg=False)["paths"]
        assert 1 <= paths["page"] <= paths["pages"] == 52 and len(paths["listed"]) <= 20
        assert np.isclose(paths["sum"], paths["gradient"])


# == graphdef serve: the server ============================================================================

@pytest.fixture(scope="module")
def served():
    """Servers for the lecture and mlp on ports they picked, on 127.0.0.1; stopped at the end."""
    servers, threads = [], []
    for name in ("lecture", "mlp"):
        server = make_server(load(f"{name}.yaml"), "127.0.0.1", 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
    yield {name: s.server_address[1] for name, s in zip(("lecture", "mlp"), servers)}
    for server, thread in zip(servers, threads):
        server.shutdown()
        server.server_close()
        thread.join(10)


def request(port, method, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/../pyproject.toml", "/%2e%2e/pyproject.toml", "/%2e%2e%2fpyproject.toml",
                                  "/page/../../serve.py", "//etc/passwd", "/api/state/", "/API/STATE",
                                  "/page/index.html", "/..%5c..%5cpyproject.toml"])
def test_paths_outside_the_page_are_404(served, path):
    status, kind, body = request(served["lecture"], "GET", path)
    assert status == 404 and kind.startswith("application/json") and b"[project]" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_refused_not_500(served, method):
    status, _, _ = request(served["lecture"], method, "/api/state?a=1")
    assert status in (405, 501)


def test_head_answers_without_a_body(served):
    status, kind, body = request(served["lecture"], "HEAD", "/api/state?a=4&b=5")
    assert status == 200 and kind.startswith("application/json") and body == b""


@pytest.mark.parametrize("query", ["a=4&b=5", "a=four", "a=" + "1" * 3990, "a=1&" * 2000, "x=" + "[" * 1500,
                                   "%00=1", "a=%ff%fe", "mode=paths&wrt=b&page=2"])
def test_hostile_queries_over_http_are_200_or_400(served, query):
    status, kind, body = request(served["lecture"], "GET", "/api/state?" + query)
    assert status in (200, 400) and kind.startswith("application/json")
    assert "Traceback" not in json.loads(body).get("error", "")


@pytest.mark.parametrize("port_of, query", [("lecture", "step=%C2%B2"), ("mlp", "x=" + "[" * 1990 + "]" * 1990)])
def test_unicode_step_and_deep_nesting_over_http_are_400(served, port_of, query):
    status, _, _ = request(served[port_of], "GET", "/api/state?" + query)
    assert status == 400


def test_parallel_requests_all_answer_and_agree(served):
    results = {}

    def ask(i):
        status, _, body = request(served["lecture"], "GET", f"/api/state?a={i}&b=5&mode=paths&wrt=b")
        results[i] = (status, json.loads(body))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert time.monotonic() - start < 30 and len(results) == 6
    for i, (status, state) in results.items():
        rows = {r["name"]: r for r in state["vertices"]}
        assert status == 200 and rows["e"]["value"] == (i + 5) * 6 and rows["b"]["grad"] == i + 5 + 6


# == graphdef cost and grad --explain ======================================================================

SCALAR = {"lecture": LECTURE_AT, "chain": {"a": 1.0, "b": 2.0}, "diamond": {"x0": 0.3},
          "lecture_network": {"x1": 1.0, "x2": 0.5, "y1": 1.0, "y2": 0.0}}


@pytest.mark.parametrize("name", sorted(SCALAR))
def test_cost_forward_mode_counts_the_edges_of_each_cone_and_the_explanation_agrees(name):
    import networkx as nx
    model = load(f"{name}.yaml")
    of, wrt = model.resolve(labels=False)
    c = cost(model, of, wrt)
    _, wanted = model.backward_plan(of, tuple(wrt))
    sub = model.graph.nx.subgraph(wanted)
    assert c.forward_multiplications == sum(sub.subgraph(nx.descendants(sub, w) | {w}).number_of_edges()
                                            for w in wrt if w in sub)
    assert c.sweep_multiplications == sub.number_of_edges() and c.forward_passes == len(wrt)
    text = explain_forward(model, SCALAR[name])
    terms = [line.split(" = ")[2] for line in text.splitlines() if line.startswith("  ∂") and " = 0 (" not in line]
    assert sum(t.count("×") for t in terms) == c.forward_multiplications
    assert sum(t.count(" + ") for t in terms) == c.forward_additions
    forward = model.gradients(SCALAR[name], wrt=wrt, method="forward")
    for w in wrt:  # the explanation's last line of each pass is the gradient
        assert f"∂{of}/∂{w} = " in text and np.isfinite(forward[w])


def cli_at(name):
    """--at arguments for a model of SCALAR, mlp or logistic."""
    at = {"mlp": {"x": "[1, 0.5]", "y": "[1, 0]"}, "logistic": {"x": "[1, 0.5]", "y": "1"}}.get(name) \
        or {k: str(v) for k, v in SCALAR[name].items()}
    return [a for k, v in at.items() for a in ("--at", f"{k}={v}")]


@pytest.mark.parametrize("name", [*sorted(SCALAR), "mlp", "logistic"])
@pytest.mark.parametrize("method", ["reverse", "forward", "paths"])
@pytest.mark.parametrize("extra", [(), ("--of", "zz"), ("--wrt", "zz"), ("--of", "d[1]"), ("--wrt", "y1")])
def test_grad_explain_never_crashes(name, method, extra):
    code, out, err = run_cli("grad", MODELS / f"{name}.yaml", *cli_at(name), "--method", method, "--explain", *extra)
    assert code in (0, 1, 2) and "Traceback" not in err and "internal error" not in err, err


@pytest.mark.parametrize("name", ALL_MODELS)
def test_cost_on_every_model(name):
    code, out, err = run_cli("cost", MODELS / f"{name}.yaml")
    assert code == 0 and "Traceback" not in err and ("multiplies less" in out or "tie" in out)
    assert not any(cell.startswith("-") for line in out.splitlines() for cell in line.split())


@pytest.mark.parametrize("name, of", [("lecture", "a"), ("lecture_network", "x1")])
def test_cost_multiplications_are_never_negative(name, of):
    code, out, err = run_cli("cost", MODELS / f"{name}.yaml", "--of", of)
    assert code == 0
    assert not any(cell.startswith("-") for line in out.splitlines() for cell in line.split()), out


@pytest.mark.parametrize("argv", [
    ("cost", "lecture_network", "--of", "y2"), ("cost", "sentiment", "--of", "tokens"),
    ("cost", "lenet", "--of", "n1/running_mean"),
    ("grad", "lecture_network", *cli_at("lecture_network"), "--of", "y2", "--explain", "--method", "forward"),
    ("grad", "lecture_network", *cli_at("lecture_network"), "--of", "y2", "--explain", "--method", "paths"),
    ("grad", "lecture_network", *cli_at("lecture_network"), "--of", "y2", "--explain"),
])
def test_cost_and_explain_of_an_unreached_vertex_are_not_internal_errors(argv):
    command, name, *rest = argv
    code, out, err = run_cli(command, MODELS / f"{name}.yaml", *rest)
    assert code in (0, 1, 2) and "internal error" not in err, err


def test_grad_forward_agrees_with_reverse_on_the_command_line_in_float32():
    for name in ("lecture", "chain", "mlp"):
        at = cli_at(name)
        answers = [json.loads(run_cli("grad", MODELS / f"{name}.yaml", *at, "--json", "--dtype", "float32",
                                      "--method", method)[1]) for method in ("reverse", "forward")]
        assert answers[0]["value"] == answers[1]["value"]
        for w, g in answers[0]["gradients"].items():
            assert np.allclose(answers[1]["gradients"][w], g, rtol=1e-5, atol=1e-6), (name, w)


def test_refusing_a_literal_does_not_suggest_the_same_name():
    code, _, err = run_cli("cost", MODELS / "lecture.yaml", "--of", "d[1]")
    assert code == 1 and "did you mean 'd[1]'" not in err
