"""`graphdef serve MODEL`: the lecture in the browser, a local page for teaching backpropagation on a model.

The server is the standard library's http.server (ThreadingHTTPServer), not a web framework: it runs
on the teacher's own machine for one user, answers one JSON endpoint and three static files that ship
in the package (graphdef/tools/page: no CDN, so it works offline in a lecture hall), and a new
dependency would buy nothing here. It listens on 127.0.0.1 unless told otherwise.

Everything the page shows is computed here by graphdef's own engine, in `page_state(model, query)`, a
pure function of the model and the page's URL query (so a test needs no server and a URL is a view a
teacher can link to): values and ∂of/∂vertex from Model.trace, local derivatives from
engine.paths.edge_derivatives, paths from engine.paths.all_paths, the three methods' counts from
explain.cost, and the drawing from draw.to_dot, rendered to SVG by Graphviz's `dot`.
"""
from __future__ import annotations

import copy
import json
import math
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import GraphDefError, Problem, did_you_mean
from .explain import cost, format_number, local_partial

DEFAULT_PORT = 8765
MODES = ("values", "step", "paths")
PAGE_SIZE = 20  # paths listed per page: one screen on a projector
LIST_LIMIT = 5_000  # above this many paths the page gives their count, not the list (the lecture's point)
MAX_QUERY = 4_000  # characters of a query string: a page's state is a few dozen values
INFIX = {"add": "+", "sub": "−", "mul": "×", "div": "/"}
STATIC = {"/": ("index.html", "text/html"), "/index.html": ("index.html", "text/html"),
          "/page.js": ("page.js", "text/javascript"), "/page.css": ("page.css", "text/css")}


class BadQuery(ValueError):
    """A query value the page cannot show: answered with HTTP 400 and this message."""


# -- the page's state: a pure function of the model and the query ----------------------------------------

def page_state(model, query, max_nodes: int | None = None, svg: bool = True) -> dict:
    """Everything the page draws for `query` (a URL query string or a dict of name -> value or list of values).

    Raises BadQuery for a value the page cannot use (a word where a number goes, an unknown name), so
    the server answers 400 with a message, never a traceback.
    """
    q = _query(query)
    mode = q.pop("mode", "values")
    if mode not in MODES:
        raise BadQuery(f"mode must be one of {', '.join(MODES)}, not '{mode[:40]}'")
    _whole(q.pop("step", "0"), "step", 0)  # the page's own: checked here so a bad link says so
    page = _whole(q.pop("page", "1"), "page", 1)
    q.pop("big", None)
    wrt = q.pop("wrt", None) or None
    try:
        of, everything = model.resolve(q.pop("of", None) or None, labels=False)
        fields = _fields(model)
        inputs, params = _read(model, fields, q)
        view = _with_parameters(model, params)
        trace = view.trace(inputs, of, None)
    except GraphDefError as e:
        raise BadQuery(str(e)) from None
    scalar = all(np.size(v) == 1 for v in trace.values.values())
    local = _local(model, trace) if scalar else {}
    state = {
        "model": {"name": model.name, "description": model.description},
        "of": of, "mode": mode, "scalar": scalar, "wrt_all": list(everything),
        "fields": [{**f, "text": _field_text(trace.values[f["name"]])} for f in fields],
        "vertices": _vertices(model, trace, scalar),
        "edges": _edges(model, local),
        "steps": _steps(model, trace, local, scalar),
    }
    if mode == "paths":
        state["paths"] = _paths(model, trace, local, scalar, wrt or (everything[0] if everything else None), page)
        if scalar:
            state["cost"] = _cost(model, of, everything)
    if svg:
        state["svg"], state["svg_error"] = _svg(view, inputs, of, max_nodes)
    return state


def _query(query) -> dict:
    """name -> its last value as text."""
    if isinstance(query, str):
        if len(query) > MAX_QUERY:
            raise BadQuery(f"the query is too long ({len(query):,} characters; at most {MAX_QUERY:,})")
        query = parse_qs(query, keep_blank_values=True)
    out = {}
    for name, value in dict(query or {}).items():
        value = value[-1] if isinstance(value, (list, tuple)) else value
        out[str(name)] = str(value).strip()
    return out


def _whole(text: str, name: str, least: int) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < least:  # not '²', which isdigit() accepts
        raise BadQuery(f"{name} must be a whole number of at least {least}, not '{text[:40]}'")
    return int(text)


def _fields(model) -> list[dict]:
    """The values a teacher may edit: every input, and the parameters holding one number."""
    fields = [{"name": n, "kind": "input", "shape": _shape(s), "scalar": s == ()} for n, s in model.inputs.items()]
    fields += [{"name": n, "kind": "parameter", "shape": [], "scalar": True}
               for n, v in model.parameters.items() if np.size(v) == 1 and np.ndim(v) == 0]
    return fields


def _read(model, fields: list, q: dict) -> tuple[dict, dict]:
    """(inputs, parameter overrides) from the query; an input not given starts at a default."""
    known = {f["name"]: f for f in fields}
    unknown = [n for n in q if n not in known]
    if unknown:
        close = did_you_mean(unknown[0], list(known) + ["mode", "wrt", "step", "page", "of", "big"])
        raise BadQuery(f"'{unknown[0][:40]}' is not a value of {model.name}" + (f" ({close})" if close else "")
                       + f"; its values: {', '.join(known) or 'none'}")
    inputs, params = {}, {}
    for name, f in known.items():
        text = q.get(name)
        if f["kind"] == "input":
            inputs[name] = _default(model, name) if text is None else _number(text, name, f["scalar"])
        elif text is not None:
            params[name] = _number(text, name, True)
    return inputs, params


def _number(text: str, name: str, scalar: bool):
    """A finite number, or for a tensor input a JSON list of numbers (checked against its shape by the engine)."""
    try:
        value = float(text) if scalar else json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: lists nested thousands deep
        want = "a number such as 4 or -0.5" if scalar else "a list of numbers such as [1, 0.5]"
        raise BadQuery(f"{name} must be {want}, not '{text[:40]}'") from None
    if scalar and not math.isfinite(value):
        raise BadQuery(f"{name} must be a finite number, not '{text[:40]}'")
    return value


def _default(model, name: str):
    """A starting value for an input the query leaves out: 1 for a number, 0.5 everywhere for a tensor
    (0 for integers), free sizes taken as 1."""
    shape = tuple(1 if n is None else n for n in model.inputs[name])
    whole = name in model.input_dtypes
    if shape == ():
        return 0 if whole else 1.0
    return np.zeros(shape, dtype=model.input_dtypes[name]) if whole else np.full(shape, 0.5)


def _with_parameters(model, params: dict):
    """The model with some parameters replaced, for this request only: a shallow copy sharing the compiled
    plans, so the teacher's edits never change the loaded model (another request may be drawing it)."""
    if not params:
        return model
    view = copy.copy(model)
    view.parameters = {**model.parameters, **{n: np.asarray(v, dtype=model.parameters[n].dtype)
                                               for n, v in params.items()}}
    return view


def _local(model, trace) -> dict:
    """(tail, head, argument position) -> ∂head/∂tail for every edge of a scalar graph."""
    from ..engine.paths import edge_derivatives
    return edge_derivatives(model.steps, trace.values, set(model.graph))


def _vertices(model, trace, scalar: bool) -> list[dict]:
    """One row per vertex: its kind, op, value, and ∂of/∂vertex where the output depends on it."""
    rows = []
    for v in model.graph.vertices.values():
        value, grad = trace.values.get(v.name), trace.grads.get(v.name)
        rows.append({"name": v.name, "kind": v.kind, "op": v.op.name if v.op else None,
                     "inputs": list(v.inputs or ()), "shape": _shape(np.shape(value)),
                     "value": _plain(value) if scalar else None, "text": _shown(value),
                     "grad": _plain(grad) if scalar and grad is not None else None,
                     "grad_text": None if grad is None or v.kind == "literal" else _shown(grad, norm_only=True)})
    return rows


def _edges(model, local: dict) -> list[dict]:
    graph = model.graph.nx
    return [{"id": _edge_id(e), "tail": e[0], "head": e[1], "k": e[2], "partial": local_partial(graph, e),
             "local": _plain(local[e]) if e in local else None, "text": _fmt(local[e]) if e in local else None}
            for e in graph.edges(keys=True)]


def _steps(model, trace, local: dict, scalar: bool) -> list[dict]:
    """The forward sweep vertex by vertex, then the backward sweep edge by edge, as the page steps through them:
    each step names the SVG elements to highlight and says what it computes."""
    values, of, wanted = trace.values, trace.of, trace.wanted
    leaves = [v for v in model.graph.vertices.values() if v.op is None]
    steps = [{"phase": "forward", "ids": [f"v:{v.name}" for v in leaves], "value": [v.name for v in leaves],
              "text": "Start from the given values: "
                      + ", ".join(f"{v.name} = {_shown(values[v.name])}" for v in leaves)}]
    for s in model.steps:
        args = [_label(a, model) for a in s.inputs]
        formula = _formula(s.op.name, args)
        numbers = _formula(s.op.name, [_shown(values[a]) for a in s.inputs]) if scalar else None
        text = f"{s.name} = {formula} = {numbers} = {_shown(values[s.name])}" if scalar else \
            f"{s.name} = {formula}: {_shown(values[s.name])}"
        steps.append({"phase": "forward", "ids": [f"v:{s.name}"], "value": [s.name], "text": text})
    steps.append({"phase": "backward", "ids": [f"v:{of}"], "grad": [of],
                  "text": f"Backward sweep from {of}: ∂{of}/∂{of} = 1"})
    edges = [(a, s.name, k) for s in reversed(trace.steps) for k, a in enumerate(s.inputs)
             if a in wanted and s.op.backward[k] is not None]
    left = {}
    for tail, _, _ in edges:
        left[tail] = left.get(tail, 0) + 1
    total = {}
    for e in edges:
        tail, head, _ = e
        left[tail] -= 1
        term = f"∂{of}/∂{tail} += ∂{of}/∂{head} · {local_partial(model.graph.nx, e)}"
        if scalar:
            product = float(trace.grads[head]) * local[e]
            total[tail] = total.get(tail, 0.0) + product
            term += f" = {_fmt(trace.grads[head])} × {_fmt(local[e])} = {_fmt(product)}"
            term += (f"\n∂{of}/∂{tail} = {_fmt(total[tail])}, complete" if not left[tail]
                     else f"\n∂{of}/∂{tail} so far: {_fmt(total[tail])}")
        else:
            term += " (a vector-Jacobian product)" + (f"\n∂{of}/∂{tail} complete: {_shown(trace.grads[tail])}"
                                                       if not left[tail] else "")
        steps.append({"phase": "backward", "ids": [_edge_id(e), f"v:{tail}"], "grad": [tail] if not left[tail] else [],
                      "text": term})
    return steps


def _paths(model, trace, local: dict, scalar: bool, wrt: str | None, page: int) -> dict:
    """The paths from wrt to of, one page of them, each with its product; their sum is ∂of/∂wrt."""
    from ..engine.paths import all_paths, count_paths
    if not scalar:
        return {"disabled": f"{model.name} has tensor vertices: the sum over paths is the scalar picture of the "
                            "lecture. Step mode shows this model's backward sweep."}
    of = trace.of
    try:
        wrt = model.resolve(of, [wrt])[1][0]
    except GraphDefError as e:
        raise BadQuery(str(e)) from None
    graph = model.graph.nx
    count = count_paths(graph, wrt, of)
    result = {"wrt": wrt, "of": of, "count": count, "page": 1, "pages": 1, "first": 0, "listed": [],
              "gradient": _plain(trace.grads.get(wrt, 0.0)), "gradient_text": _fmt(trace.grads.get(wrt, 0.0))}
    if count > LIST_LIMIT:
        result["too_many"] = (f"{count:,} paths lead from {wrt} to {of}: too many to list (the page lists up to "
                              f"{LIST_LIMIT:,}). The backward sweep gets the same sum with one multiplication "
                              "per edge.")
        return result
    paths = all_paths(graph, wrt, of, LIST_LIMIT)  # [[]] when wrt is of itself: one path, no edge, product 1
    products = [math.prod(local.get(e, 0.0) for e in p) for p in paths]
    pages = max(1, math.ceil(len(paths) / PAGE_SIZE))
    page = min(page, pages)
    first = (page - 1) * PAGE_SIZE
    listed = [{"edges": [_edge_id(e) for e in p], "vertices": [wrt] + [e[1] for e in p],
               "symbols": " · ".join(local_partial(graph, e) for e in p) or f"∂{of}/∂{of}",
               "numbers": " × ".join(_fmt(local.get(e, 0.0)) for e in p) or "1", "product": _plain(x), "text": _fmt(x)}
              for p, x in zip(paths[first:first + PAGE_SIZE], products[first:first + PAGE_SIZE])]
    total = math.fsum(products)
    result.update(page=page, pages=pages, first=first, listed=listed, sum=_plain(total), sum_text=_fmt(total))
    return result


def _cost(model, of: str, wrt) -> dict:
    """Multiplications of the path sum, forward mode and reverse mode for ∂of/∂(every input and parameter)."""
    c = cost(model, of, wrt)
    return {"wrt": list(wrt), "verdict": c.verdict(),
            "rows": [{"method": m, "passes": n, "multiplications": x, "additions": a} for m, n, x, a in c.rows()]}


def _svg(model, inputs: dict, of: str, max_nodes: int | None) -> tuple[str | None, str | None]:
    """(the drawing as inline SVG, None), or (None, why not) when Graphviz's `dot` is missing or fails."""
    import graphviz

    from . import draw
    try:
        data = draw.to_dot(model, inputs, of, max_nodes or draw.MAX_NODES).pipe(format="svg", quiet=True)
    except graphviz.ExecutableNotFound:
        return None, "drawing needs Graphviz's `dot` program (Debian/Ubuntu: apt-get install graphviz)"
    except (graphviz.CalledProcessError, OSError) as e:
        return None, f"Graphviz could not draw this model: {str(e)[:200]}"
    text = data.decode("utf-8")
    return text[text.find("<svg"):], None


# -- formatting ---------------------------------------------------------------------------------------

def _label(name: str, model) -> str:
    """A vertex as written in a formula: a literal by its number (the 1 of b + 1), anything else by name."""
    v = model.graph.vertices[name]
    return _shown(v.value) if v.kind == "literal" else name


def _formula(op: str, args: list) -> str:
    if op in INFIX and len(args) == 2:
        return f"{args[0]} {INFIX[op]} {args[1]}"
    if op == "neg" and len(args) == 1:
        return f"−{args[0]}"
    return f"{op}({', '.join(args)})"


def _edge_id(edge) -> str:
    return f"e:{edge[0]}:{edge[1]}:{edge[2]}"


def _fmt(x) -> str:
    return format_number(x)


def _shown(x, norm_only: bool = False) -> str:
    """A number as people read it; a tensor by its shape and norm (its numbers would not fit a vertex)."""
    if x is None:
        return "—"
    if np.size(x) == 1:
        return _fmt(np.asarray(x).reshape(-1)[0])
    norm = _fmt(np.linalg.norm(np.asarray(x, dtype=float))) if np.size(x) else "0"
    return f"norm {norm}" if norm_only else f"shape {_shape(np.shape(x))}, norm {norm}"


def _field_text(value) -> str:
    """A field's value as the page's input box shows it: short, and exact enough to give the same value back."""
    if np.size(value) == 1 and np.ndim(value) == 0:
        return f"{float(value) + 0.0:.10g}" if np.asarray(value).dtype.kind == "f" else str(value)
    return json.dumps(np.asarray(value).tolist())


def _shape(shape) -> list:
    return [None if n is None else int(n) for n in shape]


def _plain(value):
    """A number for JSON, which has no NaN or infinity: those become null (the text says what they were)."""
    if value is None:
        return None
    x = float(np.asarray(value).reshape(-1)[0])
    return x + 0.0 if math.isfinite(x) else None


# -- the server ----------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    """GET only: the page's three files, and /api/state?QUERY -> page_state as JSON."""

    server_version = "graphdef"
    protocol_version = "HTTP/1.0"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        if url.path == "/api/state":
            return self._state(url.query)
        if url.path == "/favicon.ico":  # browsers ask for one; none is needed
            return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        if url.path in STATIC:
            name, kind = STATIC[url.path]
            return self._send(HTTPStatus.OK, (resources.files(__package__) / "page" / name).read_bytes(),
                              f"{kind}; charset=utf-8")
        self._json(HTTPStatus.NOT_FOUND, {"error": f"nothing at {url.path[:80]}: the page is at /"})

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def _state(self, query: str) -> None:
        try:
            with self.server.lock:  # one computation at a time: plans are compiled and cached on first use
                state = page_state(self.server.model, query, self.server.max_nodes)
        except BadQuery as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except Exception as e:  # a bug: the page says so in one line, the server keeps serving
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR,
                              {"error": f"internal error: {type(e).__name__}: {str(e)[:300]}"})
        self._json(HTTPStatus.OK, state)

    def _json(self, status, value) -> None:
        self._send(status, json.dumps(value, allow_nan=False).encode(), "application/json; charset=utf-8")

    def _send(self, status, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002: quiet; errors reach the page instead
        pass


def make_server(model, host: str = "127.0.0.1", port: int = 0, max_nodes: int | None = None) -> ThreadingHTTPServer:
    """A bound server for `model` (port 0: a free one, see server.server_address); serve_forever() runs it."""
    try:
        server = ThreadingHTTPServer((host, port), _Handler)
    except (OSError, OverflowError) as e:  # in use, not an address of this machine; a port past 65535
        raise GraphDefError(Problem(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}",
                                    hint="try another --port, or --port 0 for a free one")) from None
    server.daemon_threads = True  # Ctrl-C never waits for a browser's open connection
    server.model, server.max_nodes, server.lock = model, max_nodes, threading.Lock()
    return server


def url_of(server) -> str:
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://{shown}:{port}/"


def run(model, host: str = "127.0.0.1", port: int = DEFAULT_PORT, open_browser: bool = False,
        max_nodes: int | None = None, out=None, err=None) -> int:
    """Serve until Ctrl-C, which stops cleanly (exit 0, no traceback)."""
    import sys
    out, err = out or sys.stdout, err or sys.stderr
    server = make_server(model, host, port, max_nodes)
    url = url_of(server)
    print(f"serving {model.name} at {url}  (Ctrl-C stops)", file=out)
    out.flush()
    if open_browser:
        import webbrowser
        if not webbrowser.open(url):
            print(f"graphdef: no browser found to open; open {url} yourself", file=err)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=err)
    finally:
        server.server_close()
    return 0
