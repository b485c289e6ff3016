"""`graphdef serve`: the page's state as a pure function (graphdef's own numbers), and the HTTP server around it
(started on a free port of 127.0.0.1 in a thread, asked with urllib, stopped)."""
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import graphdef
from graphdef.tools.cli import main
from graphdef.tools.serve import BadQuery, make_server, page_state, url_of

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
TIMEOUT = 30


def load(name):
    return graphdef.load(MODELS / name)


def by_name(state, key="vertices"):
    return {row["name"]: row for row in state[key]}


def test_lecture_values_and_gradients_by_hand():
    """e = (a + b)(b + 1) at a=4, b=5: e = 9 × 6 = 54, ∂e/∂a = b + 1 = 6, ∂e/∂b = (b + 1) + (a + b) = 15."""
    state = page_state(load("lecture.yaml"), "a=4&b=5", svg=False)
    rows = by_name(state)
    assert state["of"] == "e" and state["scalar"]
    assert (rows["e"]["value"], rows["a"]["grad"], rows["b"]["grad"]) == (54, 6, 15)
    assert (rows["c"]["value"], rows["d"]["value"], rows["c"]["grad"], rows["d"]["grad"]) == (9, 6, 6, 9)
    local = {e["id"]: e["local"] for e in state["edges"]}
    assert local == {"e:a:c:0": 1, "e:b:c:1": 1, "e:b:d:0": 1, "e:d[1]:d:1": 1, "e:c:e:0": 6, "e:d:e:1": 9}
    assert {f["name"]: f["text"] for f in state["fields"]} == {"a": "4", "b": "5"}


def test_steps_forward_vertex_by_vertex_then_backward_edge_by_edge():
    steps = page_state(load("lecture.yaml"), {"a": "4", "b": "5", "mode": "step"}, svg=False)["steps"]
    texts = [s["text"] for s in steps]
    assert "e = c × d = 9 × 6 = 54" in texts and "d = b + 1 = 5 + 1 = 6" in texts
    assert [s["phase"] for s in steps] == ["forward"] * 4 + ["backward"] * 6
    backward = [s for s in steps if s["ids"][0].startswith("e:")]
    assert [s["ids"][0] for s in backward] == ["e:c:e:0", "e:d:e:1", "e:b:d:0", "e:a:c:0", "e:b:c:1"]
    assert backward[2]["text"].startswith("∂e/∂b += ∂e/∂d · ∂ₗd/∂b = 9 × 1 = 9")
    assert backward[-1]["text"].endswith("∂e/∂b = 15, complete") and backward[-1]["grad"] == ["b"]


def test_paths_of_b_sum_to_the_gradient_and_costs_come_from_cost():
    state = page_state(load("lecture.yaml"), "a=4&b=5&mode=paths&wrt=b", svg=False)
    paths = state["paths"]
    assert paths["count"] == 2 and paths["sum"] == paths["gradient"] == 15
    assert sorted(p["product"] for p in paths["listed"]) == [6, 9]
    assert {p["symbols"] for p in paths["listed"]} == {"∂ₗc/∂b · ∂ₗe/∂c", "∂ₗd/∂b · ∂ₗe/∂d"}
    rows = {r["method"]: r["multiplications"] for r in state["cost"]["rows"]}
    assert rows == {"path sum": 3, "forward mode": 6, "reverse mode": 5}


def test_diamond_paths_are_paginated_and_summed():
    state = page_state(load("diamond.yaml"), "x0=0.5&mode=paths&page=3", svg=False)
    paths = state["paths"]
    assert (paths["count"], paths["page"], len(paths["listed"]), paths["first"]) == (1024, 3, 20, 40)
    assert paths["pages"] == 52 and paths["sum"] == pytest.approx(paths["gradient"], rel=1e-9)
    assert page_state(load("diamond.yaml"), "mode=paths&page=999", svg=False)["paths"]["page"] == 52


def test_edited_parameters_change_this_state_only():
    model = load("lecture_network.yaml")
    query = "x1=1&x2=0.5&y1=1&y2=0&mode=paths&wrt=w1"
    before = page_state(model, query, svg=False)["paths"]
    edited = page_state(model, query + "&w1=0.9", svg=False)["paths"]
    assert edited["sum"] == pytest.approx(edited["gradient"]) and edited["sum"] != before["sum"]
    assert float(model.parameters["w1"]) == 0.8
    assert page_state(model, query, svg=False)["paths"]["sum"] == before["sum"]


def test_tensor_model_shows_shapes_and_no_paths():
    state = page_state(load("mlp.yaml"), "mode=paths", svg=False)
    rows = by_name(state)
    assert not state["scalar"] and "disabled" in state["paths"]
    assert rows["W1"]["text"].startswith("shape [2, 2], norm") and rows["W1"]["grad_text"].startswith("norm")
    assert {f["name"]: f["scalar"] for f in state["fields"]} == {"x": False, "y": False}
    assert page_state(load("mlp.yaml"), "x=[1, 0.5]&y=[1, 0]", svg=False)["fields"][0]["text"] == "[1.0, 0.5]"


@pytest.mark.parametrize("query, words", [
    ("a=x", "a must be a number"), ("a=nan", "finite"), ("a=", "a must be a number"),
    ("zz=1", "'zz' is not a value of lecture"), ("mode=sweep", "mode must be one of"),
    ("step=-1", "step must be a whole number"), ("page=0", "page must be a whole number"),
    ("mode=paths&wrt=q", "cannot differentiate with respect to 'q'"), ("of=nope", "no vertex named 'nope'"),
    ("a=" + "1" * 5000, "too long"),
])
def test_bad_query_values_say_what_is_wrong(query, words):
    with pytest.raises(BadQuery, match=words):
        page_state(load("lecture.yaml"), query, svg=False)


def test_a_tensor_value_of_the_wrong_shape_is_a_bad_query():
    with pytest.raises(BadQuery, match="shape"):
        page_state(load("mlp.yaml"), "x=[1, 2, 3]", svg=False)


def test_svg_carries_the_ids_the_page_highlights():
    svg = page_state(load("lecture.yaml"), "a=4&b=5", svg=True)["svg"]
    assert svg.startswith("<svg") and 'id="v:b"' in svg and 'id="e:b:c:1"' in svg


# -- the server ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    srv = make_server(load("lecture.yaml"), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield url_of(srv)
    srv.shutdown()
    srv.server_close()
    thread.join(TIMEOUT)


def get(url):
    """(status, content type, body) of a GET, errors included."""
    assert url.startswith("http://127.0.0.1:")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_state_endpoint(server):
    status, kind, body = get(server + "api/state?a=4&b=5&mode=step&wrt=b")
    state = json.loads(body)
    rows = by_name(state)
    assert status == 200 and kind.startswith("application/json")
    assert (rows["e"]["value"], rows["a"]["grad"], rows["b"]["grad"]) == (54, 6, 15)
    assert state["svg"].startswith("<svg") and 'id="v:e"' in state["svg"]


@pytest.mark.parametrize("query", ["a=four&b=5", "a=4&b=5&mode=nope", "c=1", "a=inf"])
def test_bad_query_is_a_400_with_a_message(server, query):
    status, kind, body = get(server + "api/state?" + query)
    answer = json.loads(body)
    assert status == 400 and kind.startswith("application/json")
    assert set(answer) == {"error"} and answer["error"] and "Traceback" not in answer["error"]


@pytest.mark.parametrize("path, kind, marker", [
    ("", "text/html", b'<script src="page.js">'), ("page.js", "text/javascript", b"/api/state"),
    ("page.css", "text/css", b".hl"),
])
def test_static_assets_are_served_from_the_package(server, path, kind, marker):
    status, content_type, body = get(server + path)
    assert status == 200 and content_type.startswith(kind) and marker in body
    assert b"http://" not in body and b"https://" not in body  # nothing from a CDN: works offline


@pytest.mark.parametrize("path", ["nothing", "api/nothing", "../pyproject.toml", "page/index.html"])
def test_unknown_path_is_404(server, path):
    status, _, body = get(server + path)
    assert status == 404 and "error" in json.loads(body)


def test_serve_command_bad_model_is_the_usual_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("graphdef: 1\nname: bad\nnodes: {c: {op: nope, inputs: [a]}}\noutputs: [c]\n")
    assert main(["serve", str(bad), "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "Traceback" not in err


def test_serve_command_busy_port_is_a_one_line_error(capsys):
    srv = make_server(load("lecture.yaml"), "127.0.0.1", 0)
    try:
        port = srv.server_address[1]
        assert main(["serve", str(MODELS / "lecture.yaml"), "--port", str(port)]) == 1
    finally:
        srv.server_close()
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_serve_command_prints_the_url_and_stops_cleanly_on_ctrl_c(monkeypatch, capsys):
    """serve_forever interrupted by Ctrl-C (KeyboardInterrupt): exit 0, a word on stderr, no traceback."""
    from http.server import ThreadingHTTPServer

    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt

    monkeypatch.setattr(ThreadingHTTPServer, "serve_forever", interrupted)
    assert main(["serve", str(MODELS / "lecture.yaml"), "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("serving lecture at http://127.0.0.1:") and "stopped" in err and "Traceback" not in err


@pytest.mark.parametrize("options, words", [(["--port", "-1"], "port must be 0-65535"),
                                            (["--port", "x"], "invalid int value"),
                                            (["--max-nodes", "0"], "must be at least 1"),
                                            (["--host", "no.such.host.invalid", "--port", "0"], "cannot listen")])
def test_serve_command_hostile_options_are_one_line_errors(options, words, capsys):
    from graphdef.tools.cli import main
    code = main(["serve", "models/lecture.yaml", *options])
    err = capsys.readouterr().err
    assert code in (1, 2) and words in err and "Traceback" not in err
