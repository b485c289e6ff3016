"""Attacks on the per-call short paths (feed()'s checks, Model.resolve's cache) and on
compile.probed_shapes, which decides at plan time which gradients are summed back for free (null) sizes.

Property tests generate small random YAML models with free sizes and compare the compiled plan's
gradients (values, shapes, dtypes) with the reference interpreter's, for several feeds of every
model: free sizes 1 to 4 (1 is where broadcasting changes the axes summed), independent free
sizes per input, free sizes in non-leading axes, batched feeds (an extra leading axis on the inputs
whose declared shape does not start with null), float32 models.

The named cases reproduce bugs an attack found in the first version of these paths (probes whose
sizes were multiples of each other or smaller than a slice's bounds, a float32 overflow on the
short path, warnings from the finiteness check, a generator read twice, values out of range).
For a longer run of the property test:

    GRAPHDEF_FUZZ_EXAMPLES=3000 python -m pytest tests/test_attack_engine.py -q -k fuzz
"""
import itertools
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphdef
from graphdef import GraphDefError

EXAMPLES = int(os.environ.get("GRAPHDEF_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)


# -- a generator of random models with free sizes ----------------------------------------------


UNARY = ["tanh", "sin", "sigmoid", "square", "neg", "identity", "softsign"]
BINARY = ["add", "sub", "mul", "maximum", "minimum", "div"]
KINDS = ["unary", "binary", "binary", "binary", "where", "reshape", "transpose", "concat", "matmul", "reduce",
         "slice", "tile", "expand", "unsqueeze", "squeeze", "flatten", "stack", "along"]


def _bshape(a, b):
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


class ModelGen:
    """A random model built along the concrete shapes of a first feed, each dimension also tracked
    symbolically: an int (literal size), ("s", i) free size i of the inputs (each null its own),
    ("u", i) a broadcast of two free sizes (unknown to the plan: checked when it runs), ("o", i) a size
    derived from free sizes by concat, tile, reshape, slice or flatten. With `safe`, an ("o") size never
    meets a different size in a broadcasting op: that is where the known probe bugs are (below)."""
    def __init__(self, r, dtype="float64", max_nodes=8, safe=True, kinds=KINDS):
        self.r, self.dtype, self.max_nodes, self.safe, self.kinds = r, dtype, max_nodes, safe, kinds
        self.inputs, self.params, self.nodes = {}, {}, {}
        self.shape, self.sym = {}, {}  # vertex -> concrete shape (first feed), symbolic dims
        self.free = {}  # input -> per dim: symbol id or None
        self.size = {}  # symbol id -> size in the first feed
        self.fresh = itertools.count()
        self.bools = set()  # comparisons: only a where's condition

    # -- symbolic dims ---------------------------------------------------------------------
    def opaque(self):
        return ("o", next(self.fresh))

    def literal(self, dims):
        return all(isinstance(d, int) for d in dims)

    def meet(self, a, b):
        """Symbolic broadcast of two dims, or False when `safe` forbids them to meet."""
        if a == b:
            return a
        for x, y in ((a, b), (b, a)):
            if isinstance(x, tuple) and x[0] == "o" and self.safe:
                return False
        if a == 1:
            return b
        if b == 1:
            return a
        if isinstance(a, int) and isinstance(b, int):
            return False
        if isinstance(a, int):
            return a
        if isinstance(b, int):
            return b
        return ("u", next(self.fresh))

    def bsym(self, a, b):
        n = max(len(a), len(b))
        a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
        out = tuple(self.meet(x, y) for x, y in zip(a, b))
        return None if False in out else out

    def compatible(self, u, v):
        return _bshape(self.shape[u], self.shape[v]) is not None and self.bsym(self.sym[u], self.sym[v]) is not None

    # -- building ---------------------------------------------------------------------------
    def make_inputs(self):
        r = self.r
        for i in range(r.randint(1, 3)):
            decl, free, conc, sym = [], [], [], []
            for _ in range(r.randint(1, 3)):
                if r.random() < 0.55:
                    s = len(self.size)
                    self.size[s] = r.choice([1, 1, 2, 3])
                    decl.append(None), free.append(s), conc.append(self.size[s]), sym.append(("s", s))
                else:
                    v = r.choice([1, 2, 3])
                    decl.append(v), free.append(None), conc.append(v), sym.append(v)
            name = f"x{i}"
            self.inputs[name], self.free[name] = decl, free
            self.shape[name], self.sym[name] = tuple(conc), tuple(sym)
        for i in range(r.randint(0, 2)):  # parameters shaped to broadcast against some vertex (literal sizes)
            base = self.shape[r.choice(list(self.shape))]
            shape = tuple(d if r.random() < 0.5 else 1 for d in base)[r.randint(0, len(base)):]
            self.params[f"p{i}"] = self.shape[f"p{i}"] = self.sym[f"p{i}"] = shape

    def node(self, op, inputs, concrete, sym, **attrs):
        name = f"n{len(self.nodes) + 1}"
        self.nodes[name] = {"op": op, "inputs": list(inputs), **attrs}
        self.shape[name], self.sym[name] = tuple(concrete), tuple(sym)
        assert len(concrete) == len(sym), (op, concrete, sym)
        return name

    def pick(self, pred=lambda v: True):
        found = [v for v in self.shape if v not in self.bools and pred(v)]
        return self.r.choice(found) if found else None

    def step(self):
        r = self.r
        kind = r.choice(self.kinds)
        a = self.pick()
        sa, ya = self.shape[a], self.sym[a]
        if kind == "unary":
            self.node(r.choice(UNARY), [a], sa, ya)
        elif kind == "binary":
            b = self.pick(lambda v: self.compatible(a, v))
            if b is None:
                return
            op = r.choice(BINARY)
            out, sym = _bshape(sa, self.shape[b]), self.bsym(ya, self.sym[b])
            if op == "div":
                b = self.node("sigmoid", [b], self.shape[b], self.sym[b])
            self.node(op, [a, b] if r.random() < 0.5 else [b, a], out, sym)
        elif kind == "where":
            b = self.pick(lambda v: self.compatible(a, v))
            if b is None:
                return
            out, sym = _bshape(sa, self.shape[b]), self.bsym(ya, self.sym[b])
            c = self.pick(lambda v: _bshape(out, self.shape[v]) is not None and self.bsym(sym, self.sym[v]) is not None)
            if c is None:
                return
            cond = self.node("greater", [c, a], _bshape(self.shape[c], sa), self.bsym(self.sym[c], ya))
            self.bools.add(cond)
            self.node("where", [cond, a, b], _bshape(self.shape[cond], out), self.bsym(self.bsym(self.sym[cond], ya),
                                                                                        self.sym[b]))
        elif kind == "reshape":
            size = int(np.prod(sa))
            options = [[-1], [1, -1], [-1, 1]] + [o for k in (2, 3) if size % k == 0 for o in ([k, -1], [-1, k])]
            target = r.choice(options)
            shape = np.empty(sa).reshape(target).shape
            if self.literal(ya):
                sym = shape
            elif target == [-1] and len(ya) == 1:
                sym = ya
            else:
                sym = tuple(t if t != -1 else self.opaque() for t in target)
            self.node("reshape", [a], shape, sym, shape=target)
        elif kind == "transpose":
            perm = list(range(len(sa)))
            r.shuffle(perm)
            self.node("transpose", [a], [sa[p] for p in perm], [ya[p] for p in perm], axes=perm)
        elif kind in ("concat", "stack"):
            if not sa:
                return
            axis = r.randrange(len(sa))
            if kind == "stack":
                b = self.pick(lambda v: self.shape[v] == sa and self.sym[v] == ya)
                self.node("stack", [a, b], sa[:axis] + (2,) + sa[axis:], ya[:axis] + (2,) + ya[axis:], axis=axis)
                return
            b = self.pick(lambda v: len(self.shape[v]) == len(sa) and all(
                x == y for i, (x, y) in enumerate(zip(self.shape[v], sa)) if i != axis) and all(
                x == y for i, (x, y) in enumerate(zip(self.sym[v], ya)) if i != axis))
            yb = self.sym[b]
            joined = ya[axis] + yb[axis] if isinstance(ya[axis], int) and isinstance(yb[axis], int) else self.opaque()
            self.node("concat", [a, b], [d + self.shape[b][axis] if i == axis else d for i, d in enumerate(sa)],
                      [joined if i == axis else d for i, d in enumerate(ya)], axis=axis)
        elif kind == "matmul":
            if not sa:
                return
            k = r.choice([1, 2, 3])
            w = f"w{len(self.params)}"
            if not isinstance(ya[-1], int):  # a weight fixes a free size: later feeds keep it or fail
                return
            self.params[w] = self.shape[w] = self.sym[w] = (sa[-1], k) if len(sa) < 2 or r.random() < 0.7 else (sa[-1],)
            out = np.matmul(np.ones(sa), np.ones(self.params[w])).shape
            self.node("matmul", [a, w], out, ya[:-1] + ((k,) if len(self.params[w]) == 2 else ()))
        elif kind == "reduce":
            op = r.choice(["sum", "mean", "max", "logsumexp"])
            keep = r.random() < 0.6
            if sa and r.random() < 0.7:
                axis = r.randrange(len(sa))
                sym = tuple(1 if i == axis else d for i, d in enumerate(ya)) if keep else ya[:axis] + ya[axis + 1:]
                self.node(op, [a], np.ones(sa).sum(axis=axis, keepdims=keep).shape, sym, axis=axis, keepdims=keep)
            else:
                self.node(op, [a], (1,) * len(sa) if keep else (), (1,) * len(sa) if keep else (), keepdims=keep)
        elif kind == "slice":
            if not sa:
                return
            axis = r.randrange(len(sa))
            start, end, stride = r.choice([0, 1, -1, -2]), r.choice([1, 2, 5, 100, -1]), r.choice([1, 1, 2])
            shape = np.empty(sa)[(slice(None),) * axis + (slice(start, end, stride),)].shape
            if 0 in shape:
                return
            d = shape[axis] if isinstance(ya[axis], int) else self.opaque()
            self.node("slice", [a], shape, ya[:axis] + (d,) + ya[axis + 1:], starts=[start], ends=[end], axes=[axis],
                      steps=[stride])
        elif kind == "tile":
            reps = [r.choice([1, 2]) for _ in sa]
            sym = tuple(d if k == 1 else d * k if isinstance(d, int) else self.opaque() for d, k in zip(ya, reps))
            self.node("tile", [a], [d * k for d, k in zip(sa, reps)], sym, repeats=reps)
        elif kind == "expand":
            if 1 not in ya:
                return
            target = [r.choice([2, 3]) if d == 1 and r.random() < 0.7 else -1 for d in ya]
            self.node("expand", [a], [d if t == -1 else t for d, t in zip(sa, target)],
                      [d if t == -1 else t for d, t in zip(ya, target)], shape=target)
        elif kind == "unsqueeze":
            axis = r.randint(0, len(sa))
            self.node("unsqueeze", [a], sa[:axis] + (1,) + sa[axis:], ya[:axis] + (1,) + ya[axis:], axis=axis)
        elif kind == "squeeze":
            ones = [i for i, d in enumerate(sa) if d == 1]
            if not ones:
                return
            axis = r.choice(ones)
            self.node("squeeze", [a], sa[:axis] + sa[axis + 1:], ya[:axis] + ya[axis + 1:], axis=axis)
        elif kind == "flatten":
            if len(sa) < 2:
                return
            rest = [d for d in ya if d != 1]
            sym = (int(np.prod(sa)),) if self.literal(ya) else (rest[0],) if len(rest) == 1 else (self.opaque(),)
            self.node("flatten", [a], (int(np.prod(sa)),), sym)
        elif kind == "along":
            if sa:
                self.node(r.choice(["softmax", "cumsum", "log_softmax"]), [a], sa, ya, axis=r.randrange(len(sa)))

    def build(self) -> str:
        self.make_inputs()
        for _ in range(self.r.randint(1, self.max_nodes)):
            self.step()
        used = {i for spec in self.nodes.values() for i in spec["inputs"]}
        total = None
        for sink in [n for n in self.nodes if n not in used] or list(self.inputs):
            s = self.node("sum", [sink], (), ())
            total = s if total is None else self.node("add", [total, s], (), ())
        self.of = total
        return self.yaml()

    def yaml(self) -> str:
        lines = ["graphdef: 1", "name: fuzz", f"dtype: {self.dtype}", "inputs:"]
        lines += [f"  {n}: {{shape: {json.dumps(d)}}}" for n, d in self.inputs.items()]
        if self.params:
            rng = np.random.default_rng(len(self.params))
            lines += ["parameters:"] + [f"  {n}: {{value: {json.dumps(np.round(rng.uniform(-1, 1, s), 3).tolist())}}}"
                                        for n, s in self.params.items()]
        lines += ["nodes:"] + [f"  {n}: {json.dumps(spec)}" for n, spec in self.nodes.items()]
        lines += [f"outputs: [{self.of}]", f"loss: {self.of}"]
        return "\n".join(lines) + "\n"

    def feed(self, sizes: dict, rng, batch=None, batched=()) -> dict:
        out = {}
        for name, decl in self.inputs.items():
            shape = tuple(sizes[s] if s is not None else d for s, d in zip(self.free[name], decl))
            if batch is not None and name in batched:
                shape = (batch, *shape)
            out[name] = rng.uniform(-1, 1, size=shape).astype(self.dtype)
        return out


def _same_gradients(planned: dict, reference: dict, dtype: str, context=""):
    assert planned.keys() == reference.keys(), context
    tol = 2e-4 if dtype == "float32" else 1e-9
    for k in reference:
        assert planned[k].shape == reference[k].shape, f"{k}: {planned[k].shape} != {reference[k].shape}\n{context}"
        assert planned[k].dtype == reference[k].dtype, f"{k}: {planned[k].dtype} != {reference[k].dtype}\n{context}"
        np.testing.assert_allclose(planned[k], reference[k], rtol=tol, atol=tol, err_msg=f"{k}\n{context}")


def _plan_and_reference(text: str, feed: dict, **kw):
    """(compiled gradients, reference gradients) on one model, the plan made first."""
    model = graphdef.loads(text)
    planned = model.gradients(feed, **kw)
    model.reference = True
    return planned, model.gradients(feed, **kw)


# -- compiled plans against the reference interpreter, on random models ---------------------------

@FUZZ
@given(st.randoms(use_true_random=False), st.sampled_from(["float64", "float64", "float32"]))
def test_fuzz_plans_equal_the_reference_for_every_free_size(r, dtype):
    """One model, one plan per batching, several feeds: every gradient equal to the reference's, and
    where the reference refuses a feed (sizes that do not broadcast) the plan refuses it too."""
    gen = ModelGen(r, dtype)
    text = gen.build()
    model = graphdef.loads(text)
    rng = np.random.default_rng(r.randrange(2 ** 32))
    batchable = [n for n, d in gen.inputs.items() if not (d and d[0] is None)]
    compared = 0
    for sizes in [dict(gen.size)] + [{s: r.choice([1, 1, 2, 3, 4]) for s in gen.size} for _ in range(3)]:
        feeds = [gen.feed(sizes, rng)]
        if batchable:
            feeds.append(gen.feed(sizes, rng, batch=r.choice([1, 2, 3]),
                                  batched=[n for n in batchable if r.random() < 0.7] or batchable[:1]))
        for feed in feeds:
            context = f"{text}\nfeed shapes: { {k: v.shape for k, v in feed.items()} }"
            model.reference = True
            try:
                reference = model.gradients(feed)
            except GraphDefError:
                model.reference = False
                with pytest.raises(GraphDefError):
                    model.gradients(feed)
                continue
            model.reference = False
            _same_gradients(model.gradients(feed), reference, dtype, context)
            compared += 1
    assert compared  # the first feed, the one the model was built along, always runs


# -- compiled plans against the reference interpreter, chosen models -------------------------------

FREE_ZOO = """
graphdef: 1
name: zoo
dtype: {dtype}
inputs:
  x: {{shape: [null, 3]}}
  y: {{shape: [null, 1]}}
  z: {{shape: [2, null]}}
parameters:
  W: {{value: [[0.3, -0.2, 0.5], [0.1, 0.4, -0.6], [-0.7, 0.2, 0.9]]}}
  c: {{value: [[0.1, -0.1, 0.2]]}}
nodes:
  t: {{op: transpose, inputs: [x], axes: [1, 0]}}
  tt: {{op: transpose, inputs: [t], axes: [1, 0]}}
  m: {{op: matmul, inputs: [x, W]}}
  k: {{op: sum, inputs: [m], axis: 1, keepdims: true}}
  sk: {{op: sigmoid, inputs: [k]}}
  d: {{op: div, inputs: [m, sk]}}
  e: {{op: maximum, inputs: [d, tt]}}
  cc: {{op: concat, inputs: [e, x], axis: 1}}
  r: {{op: reshape, inputs: [cc], shape: [-1, 3]}}
  rm: {{op: mean, inputs: [r], axis: 0, keepdims: true}}
  q: {{op: mul, inputs: [x, y]}}
  g: {{op: greater, inputs: [x, c]}}
  w: {{op: where, inputs: [g, q, y]}}
  u: {{op: sub, inputs: [w, rm]}}
  zs: {{op: sum, inputs: [z], axis: 0, keepdims: true}}
  zz: {{op: sub, inputs: [z, zs]}}
  zm: {{op: mean, inputs: [zz]}}
  um: {{op: sum, inputs: [u]}}
  zt: {{op: mul, inputs: [zm, zz]}}
  zq: {{op: sum, inputs: [zt]}}
  a1: {{op: add, inputs: [um, zq]}}
  loss: {{op: add, inputs: [a1, zm]}}
outputs: [loss]
loss: loss
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n, m", [(1, 1), (2, 1), (5, 1), (2, 2), (5, 5)])
@pytest.mark.parametrize("p", [1, 3])
@pytest.mark.parametrize("batch", [None, 1, 3])
def test_free_sizes_through_shape_ops_equal_the_reference(dtype, n, m, p, batch):
    """x's free size flows through transpose, matmul, sum(keepdims), concat and reshape into broadcast ops;
    y's free size is its own (1 where x's is not); z's free size is in a non-leading axis, and z (its
    declared shape starts with 2) may carry a batch axis."""
    rng = np.random.default_rng(n * 100 + m * 10 + p)
    feed = {"x": rng.normal(size=(n, 3)), "y": rng.normal(size=(m, 1)),
            "z": rng.normal(size=(2, p) if batch is None else (batch, 2, p))}
    feed = {k: v.astype(dtype) for k, v in feed.items()}
    text = FREE_ZOO.format(dtype=dtype)
    planned, reference = _plan_and_reference(text, feed)
    _same_gradients(planned, reference, dtype)
    assert planned["y"].shape == (m, 1) and planned["z"].shape == feed["z"].shape


def test_one_plan_serves_every_free_size():
    """The plan is made once (per batching) and reused: a size of 1 after a size of 5 and back."""
    model = graphdef.loads(FREE_ZOO.format(dtype="float64"))
    rng = np.random.default_rng(0)
    for n, m, p in [(5, 5, 3), (1, 1, 1), (5, 1, 3), (1, 1, 3), (3, 3, 1), (4, 1, 2)]:
        feed = {"x": rng.normal(size=(n, 3)), "y": rng.normal(size=(m, 1)), "z": rng.normal(size=(2, p))}
        model.reference = False
        planned = model.gradients(feed)
        model.reference = True
        _same_gradients(planned, model.gradients(feed), "float64", str((n, m, p)))
    assert len(model._plans) == 1


# -- cases that fooled the first probes: sizes in fixed ratios, clamping slices, parity ---------------

def _two_free(nodes: str, x="[null]", y="[null]") -> str:
    return f"graphdef: 1\nname: probe\ninputs:\n  x: {{shape: {x}}}\n  y: {{shape: {y}}}\nnodes:\n{nodes}" \
           "  l: {op: sum, inputs: [s]}\noutputs: [l]\nloss: l\n"


FOOLING_CASES = {
    # the k-th free size is probed as k * base in both probes: 2 * (x's size) "equals" y's size
    "concat_doubles_x_like_y": (_two_free("  c: {op: concat, inputs: [x, x], axis: 0}\n"
                                          "  s: {op: add, inputs: [c, y]}\n"),
                                {"x": np.ones(3), "y": np.ones(1)}),
    "reshape_doubles_x_like_y": (_two_free("  r: {op: reshape, inputs: [x], shape: [-1, 2]}\n"
                                           "  s: {op: add, inputs: [r, y]}\n", x="[null, 4]", y="[null, 2]"),
                                 {"x": np.ones((3, 4)), "y": np.ones((1, 2))}),
    # a slice's size clamps: 5 at both made-up sizes, 1 for a real one
    "slice_clamps_against_literal": (_two_free("  c: {op: slice, inputs: [x], starts: [0], ends: [5]}\n"
                                               "  s: {op: mul, inputs: [c, y]}\n", y="[5]"),
                                     {"x": np.ones(1), "y": np.arange(5.0)}),
    "slices_of_two_inputs": (_two_free("  a: {op: slice, inputs: [x], starts: [0], ends: [4]}\n"
                                       "  b: {op: slice, inputs: [y], starts: [0], ends: [4]}\n"
                                       "  s: {op: mul, inputs: [a, b]}\n"),
                             {"x": np.arange(1.0, 6.0), "y": np.array([2.0])}),
    # y's probed sizes (2 * base) are both even: its even and odd halves "have one size"
    "strided_halves_of_y": (_two_free("  e: {op: slice, inputs: [y], starts: [0], ends: [1000000], steps: [2]}\n"
                                      "  o: {op: slice, inputs: [y], starts: [1], ends: [1000000], steps: [2]}\n"
                                      "  s: {op: mul, inputs: [e, o]}\n"),
                            {"x": np.ones(2), "y": np.arange(3.0)}),
    # x[-1:100] is empty at the made-up sizes: the sum back targets the literal shape (0,)
    "negative_start_slice": (_two_free("  c: {op: slice, inputs: [y], starts: [-1], ends: [100]}\n"
                                       "  s: {op: add, inputs: [x, c]}\n"),
                             {"x": np.ones(3), "y": np.ones(1)}),
}


@pytest.mark.parametrize("case", sorted(FOOLING_CASES))
def test_cases_that_fooled_the_first_probes_equal_the_reference(case):
    text, feed = FOOLING_CASES[case]
    model = graphdef.loads(text)
    model.reference = True
    reference = model.gradients(feed)
    model.reference = False
    _same_gradients(model.gradients(feed), reference, "float64", text)


def test_ten_free_sizes_in_one_input_still_run():
    text = ("graphdef: 1\nname: wide\ninputs:\n  x: {shape: [" + ", ".join(["null"] * 10) + "]}\n"
            "nodes:\n  l: {op: sum, inputs: [x]}\noutputs: [l]\nloss: l\n")
    model = graphdef.loads(text)
    assert model.forward({"x": np.ones((1,) * 10)})["l"] == 1.0


def test_nine_free_sizes_in_one_input_run():
    text = ("graphdef: 1\nname: wide\ninputs:\n  x: {shape: [" + ", ".join(["null"] * 9) + "]}\n  y: {shape: []}\n"
            "nodes:\n  s: {op: mul, inputs: [x, y]}\n  l: {op: sum, inputs: [s]}\noutputs: [l]\nloss: l\n")
    planned, reference = _plan_and_reference(text, {"x": np.ones((1, 2) * 4 + (1,)), "y": 2.0})
    _same_gradients(planned, reference, "float64")


# -- feed: every value checked, whatever path it takes ---------------------------------------------

FEED_MODEL = """
graphdef: 1
name: feed
dtype: {dtype}
inputs:
  s: {{shape: []}}
  v: {{shape: [3]}}
  f: {{shape: [null, 2]}}
  i: {{shape: [], dtype: int64}}
  b: {{shape: [2], dtype: bool}}
nodes:
  a: {{op: mul, inputs: [s, v]}}
  c: {{op: sum, inputs: [f]}}
  d: {{op: add, inputs: [a, c]}}
  l: {{op: sum, inputs: [d]}}
outputs: [l, i, b]
loss: l
"""
GOOD = {"s": 1.5, "v": [1.0, 2.0, 3.0], "f": np.ones((2, 2)), "i": 1, "b": [True, False]}
CALLS = {"forward": lambda m, feed: m.forward(feed),
         "gradients": lambda m, feed: m.gradients(feed),
         "value_and_gradients": lambda m, feed: m.value_and_gradients(feed)}
_models = {}


def feed_model(dtype="float64"):
    if dtype not in _models:
        _models[dtype] = graphdef.loads(FEED_MODEL.format(dtype=dtype))
    return _models[dtype]


def refused(dtype, call, name, value, words):
    """The call refuses the feed with GOOD's `name` replaced: one GraphDefError naming the input."""
    with pytest.raises(GraphDefError) as e:
        CALLS[call](feed_model(dtype), {**GOOD, name: value})
    text = str(e.value)
    assert f"'{name}'" in text and words in text and "Traceback" not in text, text


def _with(a, i, x):
    a = np.array(a, copy=True)
    a.flat[i] = x
    return a


NOT_FINITE = {
    "python nan": ("s", float("nan")), "python inf": ("s", float("inf")), "python -inf": ("s", -float("inf")),
    "numpy scalar nan": ("s", np.float64("nan")), "float32 scalar inf": ("s", np.float32("inf")),
    "0-d nan": ("s", np.array(np.nan)), "0-d float32 inf": ("s", np.array(np.inf, np.float32)),
    "batch of scalars, nan last": ("s", np.array([1.0, 2.0, np.nan])),
    "list nan middle": ("v", [1.0, float("nan"), 3.0]), "nan first": ("v", np.array([np.nan, 1.0, 2.0])),
    "inf last": ("v", np.array([1.0, 2.0, np.inf])), "inf and -inf": ("v", np.array([np.inf, -np.inf, 1.0])),
    "float32 array nan": ("v", np.array([1, 2, np.nan], np.float32)),
    "strided nan": ("v", np.array([1.0, 0.0, 2.0, 0.0, np.nan, 0.0])[::2]),
    "fortran batch nan": ("f", np.asfortranarray(_with(np.ones((3, 2)), 5, np.nan))),
    "batch nan deep": ("v", _with(np.ones((4, 3)), 11, -np.inf)),
    "free size nan": ("f", _with(np.ones((7, 2)), 6, np.nan)),
    "nan with huge values": ("v", np.array([1e308, 1e308, np.nan])),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(NOT_FINITE))
def test_nan_or_infinity_anywhere_is_refused(case, dtype, call):
    name, value = NOT_FINITE[case]
    refused(dtype, call, name, value, "NaN or infinity")


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("value", [1e39, -1e300, 3.5e38], ids=str)
def test_float32_model_refuses_a_python_float_beyond_float32_everywhere_but_the_scalar(call, value):
    """Arrays, lists, numpy scalars and ints whose values overflow float32 are refused..."""
    model = feed_model("float32")
    for name, spelled in [("v", [value, 1.0, 1.0]), ("v", np.array([value, 1.0, 1.0])), ("s", np.float64(value)),
                        ("s", np.array(value)), ("s", int(value)), ("f", [[value, 1.0]])]:
        with pytest.raises(GraphDefError, match="NaN or infinity"):
            CALLS[call](model, {**GOOD, name: spelled})


@pytest.mark.parametrize("call", sorted(CALLS))
def test_float32_model_refuses_a_python_float_beyond_float32_on_a_scalar_input(call):
    refused("float32", call, "s", 1e300, "NaN or infinity")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the model's own sum overflows
@pytest.mark.parametrize("dtype, big", [("float64", 1e308), ("float32", 3e38)])
def test_huge_finite_values_whose_sum_overflows_are_accepted(dtype, big):
    """The one-sum check falls back to looking at every value: finite data is never refused."""
    model = feed_model(dtype)
    v = np.array([big, big, big], dtype)
    out = model.forward({**GOOD, "v": v, "f": np.full((2, 2), big, dtype)})
    assert out["v"].dtype == np.dtype(dtype) and np.array_equal(out["v"], v)
    assert np.isinf(out["c"])  # computed, not refused (the overflow is the model's, reported by check_numerics)


SAME_VALUE = {  # each a spelling of GOOD's value for that input; all must give the same results
    "s": [1.5, np.float64(1.5), np.float32(1.5), np.array(1.5), np.array(1.5, np.float32), [1.5][0]],
    "v": [[1.0, 2.0, 3.0], [1, 2, 3], np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0], np.float32),
          np.array([1.0, 0, 2.0, 0, 3.0])[::2], (1.0, 2, 3.0), np.array([True, True, True]) * np.array([1, 2, 3])],
    "f": [np.ones((2, 2)), [[1, 1], [1, 1]], np.ones((2, 2), np.float32), np.ones((2, 2), int),
          np.asfortranarray(np.ones((2, 2)))],
    "i": [1, 1.0, True, np.int64(1), np.float64(1.0), np.array(1), np.array(1.0)],
    "b": [[True, False], [1, 0], [1.0, 0.0], np.array([True, False]), np.array([1, 0])],
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(SAME_VALUE))
def test_every_spelling_of_a_value_gives_the_same_results(name, dtype):
    model = feed_model(dtype)
    expected_values, expected_grads = model.value_and_gradients(GOOD)
    for spelled in SAME_VALUE[name]:
        values, grads = model.value_and_gradients({**GOOD, name: spelled})
        for k, v in expected_values.items():
            assert values[k].shape == v.shape and values[k].dtype == v.dtype, (name, spelled, k)
            np.testing.assert_array_equal(values[k], v)
        for k, g in expected_grads.items():
            assert grads[k].shape == g.shape and grads[k].dtype == g.dtype, (name, spelled, k)
            np.testing.assert_array_equal(grads[k], g)
        assert values[name].dtype == model.input_dtypes.get(name, model.dtype)


@pytest.mark.parametrize("dtype, big", [("float64", 1e308), ("float32", 3e38)])
def test_checking_a_feed_warns_of_nothing(dtype, big):
    import warnings
    model = feed_model(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.forward({**GOOD, "s": 0.5, "v": np.array([big, big, 1.0], dtype)}, outputs=["a"])
        with pytest.raises(GraphDefError, match="NaN or infinity"):
            model.forward({**GOOD, "v": np.array([np.inf, -np.inf, 1.0], dtype)}, outputs=["a"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_scalar_input_keeps_float_math_exact(dtype):
    """The short path and the long path give bit-identical gradients (float64 and float32 alike)."""
    model = feed_model(dtype)
    for x in [0.1, 1 / 3, -2.5e-7, 123456.789, 0.0, -0.0, 5e-324]:
        short = model.gradients({**GOOD, "s": x})
        long = model.gradients({**GOOD, "s": np.array([x])[0]})
        for k in short:
            assert short[k].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(short[k], long[k])


WRONG = {
    "s": [([[1.0, 2.0]], "shape"), ("x", "not numeric"),
          (None, ""), ([1.0, [2.0]], "not numeric"), (object(), "not numeric"), ("nan", "NaN")],
    "v": [([1.0, 2.0], "shape"), (np.ones(4), "shape"), (np.ones((2, 2, 3)), "shape"), (np.ones((2, 4)), "shape"),
          (1.0, "shape"), (np.array(1.0), "shape"), ([[1, 2, 3], [1, 2]], "not numeric"),
          (np.array(["a", "b", "c"]), "not numeric"), ([1, None, 3], "")],
    "f": [(np.ones((2, 3)), "shape"), (np.ones(2), "shape"), (np.ones((2, 2, 2)), "shape"), (2.0, "shape")],
    "i": [(1.5, "whole numbers"), (float("nan"), "whole numbers"), (np.inf, "whole numbers"), ("a", "whole numbers"),
          ([1, 2.5], "whole numbers"), (1e20, "whole numbers"), (None, "whole numbers")],
    "b": [([2, 0], "booleans"), ([0.5, 1], "booleans"), ([np.nan, 1], "booleans"), (["a", "b"], "booleans"),
          ([True, False, True], "shape")],
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_values_are_refused_naming_the_input(name, dtype, call):
    for value, words in WRONG[name]:
        refused(dtype, call, name, value, words)


@pytest.mark.parametrize("call", sorted(CALLS))
def test_unknown_missing_and_batch_problems(call):
    model = feed_model()
    run = CALLS[call]
    for feed, words in [({**GOOD, "zz": 1.0}, "unknown input 'zz'"), ({**GOOD, "S": 1.0}, "unknown input 'S'"),
                        ({**GOOD, 3: 1.0}, "unknown input '3'"),
                        ({k: v for k, v in GOOD.items() if k != "v"}, "missing input 'v'"),
                        ({}, "missing input 's'"),
                        ({**GOOD, "s": [1.0, 2.0], "v": np.ones((3, 3))}, "disagree on the batch size"),
                        ({**GOOD, "s": np.ones(2), "i": [1, 2, 3]}, "disagree on the batch size")]:
        with pytest.raises(GraphDefError, match=words):
            run(model, feed)
    with pytest.raises(GraphDefError) as e:  # every problem in one error
        run(model, {"zz": 1.0, "s": float("nan"), "v": [1.0]})
    text = str(e.value)
    assert all(w in text for w in ["unknown input 'zz'", "'s' contains NaN", "'v' has shape", "missing input 'f'"])
    for bad in [None, [("s", 1.0)], "s"]:
        with pytest.raises(GraphDefError, match="mapping"):
            run(model, bad)


def test_batches_and_the_values_fed_are_left_alone():
    model = feed_model()
    v = np.arange(6.0).reshape(2, 3)
    keep = v.copy()
    grads = model.gradients({**GOOD, "s": np.array([1.0, 2.0]), "v": v, "i": [1, 2]})
    assert grads["s"].shape == (2,) and grads["v"].shape == (2, 3)
    np.testing.assert_array_equal(grads["v"], [[1.0] * 3, [2.0] * 3])
    np.testing.assert_array_equal(v, keep)
    grads["v"][...] = 99  # a gradient returned is the caller's: the next call does not see it
    assert model.gradients({**GOOD, "s": np.array([1.0, 2.0]), "v": v, "i": [1, 2]})["v"][0, 0] == 1.0


def test_forward_with_a_partial_feed_still_checks_what_is_given():
    model = feed_model()
    out = model.forward({"s": 2.0, "v": [1.0, 2.0, 3.0]}, outputs=["a"])
    np.testing.assert_array_equal(out["a"], [2.0, 4.0, 6.0])
    with pytest.raises(GraphDefError, match="'i' holds int64"):
        model.forward({"s": 2.0, "v": [1.0, 2.0, 3.0], "i": 1.5}, outputs=["a"])
    with pytest.raises(GraphDefError, match="unknown input 'q'"):
        model.forward({"s": 2.0, "v": [1.0, 2.0, 3.0], "q": 1.0}, outputs=["a"])
    with pytest.raises(GraphDefError, match="'s' contains NaN"):
        model.forward({"s": float("nan"), "v": [1.0, 2.0, 3.0]}, outputs=["a"])


def test_int64_input_refuses_values_out_of_range():
    with pytest.raises(GraphDefError):
        feed_model().forward({**GOOD, "i": 2 ** 63})


def test_complex_values_are_refused():
    with pytest.raises(GraphDefError):
        feed_model().forward({**GOOD, "v": np.array([1 + 1j, 2, 3])})


# -- Model.resolve: remembered, still checked ---------------------------------------------------------

SMALL = """
graphdef: 1
name: small
inputs:
  a: {shape: []}
  b: {shape: [2]}
parameters:
  p: {value: [0.5, -1.0]}
nodes:
  c: {op: mul, inputs: [a, b]}
  d: {op: add, inputs: [c, p]}
  e: {op: sum, inputs: [d]}
outputs: [e]
"""
SMALL_FEED = {"a": 2.0, "b": [1.0, 3.0]}


def _resolved(model, of, wrt):
    """resolve's answer with wrt as a tuple (it was a list before the cache, a tuple since)."""
    of, wrt = model.resolve(of, wrt)
    return of, tuple(wrt)


def test_wrong_names_raise_every_time():
    model = graphdef.loads(SMALL)
    for _ in range(3):
        for of, wrt, words in [("zz", None, "no vertex named 'zz'"), (None, ["zz"], "'zz'"), (None, "zz", "'zz'"),
                               ("e", ("a", "zz"), "'zz'"), (None, ["c"], "'c'"), ("e", ["e"], "'e'")]:
            with pytest.raises(GraphDefError, match=words):
                model.resolve(of, wrt)
            with pytest.raises(GraphDefError, match=words):
                model.gradients(SMALL_FEED, of=of, wrt=wrt)
        assert _resolved(model, "e", ["a"]) == ("e", ("a",))  # a good request in between changes nothing


def test_wrt_as_list_tuple_str_or_keys_gives_the_same_gradients():
    model = graphdef.loads(SMALL)
    expected = model.gradients(SMALL_FEED, wrt=["a", "p"])
    for wrt in [("a", "p"), ["a", "p"], dict.fromkeys(["a", "p"]), dict.fromkeys(["a", "p"]).keys(),
                np.array(["a", "p"]), ["a", "p"]]:
        got = model.gradients(SMALL_FEED, wrt=wrt)
        assert list(got) == ["a", "p"]
        for k in expected:
            np.testing.assert_array_equal(got[k], expected[k])
    assert list(model.gradients(SMALL_FEED, wrt="b")) == ["b"]
    assert list(model.gradients(SMALL_FEED)) == ["a", "b", "p"]


@pytest.mark.parametrize("method", ["gradients", "value_and_gradients", "resolve"])
def test_wrt_as_a_generator(method):
    model = graphdef.loads(SMALL)
    wrt = (w for w in ["a", "p"])
    if method == "resolve":
        assert _resolved(model, None, wrt) == ("e", ("a", "p"))
    else:
        got = model.gradients(SMALL_FEED, wrt=wrt) if method == "gradients" else \
            model.value_and_gradients(SMALL_FEED, wrt=wrt)[1]
        assert list(got) == ["a", "p"]


def test_a_generator_does_not_poison_later_requests():
    model = graphdef.loads(SMALL)
    try:
        model.gradients(SMALL_FEED, wrt=iter(["a", "p"]))
    except GraphDefError:
        pass
    assert list(model.gradients(SMALL_FEED, wrt=("a", "p"))) == ["a", "p"]


@pytest.mark.parametrize("of, wrt", [(None, [["a"]]), (["e"], None), ({}, None), (None, [{"a": 1}]), (None, 3)],
                         ids=["wrt list of lists", "of list", "of dict", "wrt list of dicts", "wrt int"])
def test_unhashable_names_give_a_clear_error(of, wrt):
    model = graphdef.loads(SMALL)
    with pytest.raises(GraphDefError):
        model.gradients(SMALL_FEED, of=of, wrt=wrt)


def test_results_are_not_shared_between_calls():
    model = graphdef.loads(SMALL)
    asked = ["a"]
    of, wrt = model.resolve(None, asked)
    try:
        wrt.append("p")  # a tuple today; if a list is ever returned, changing it must not leak
    except AttributeError:
        pass
    asked.append("b")  # the caller's list, changed after the call
    assert _resolved(model, None, ["a"]) == ("e", ("a",))
    assert _resolved(model, None, asked) == ("e", ("a", "b"))
    first = model.gradients(SMALL_FEED, wrt=["a", "b"])
    first["a"] = np.array(99.0)
    first["zz"] = 1
    first["b"][...] = -1
    again = model.gradients(SMALL_FEED, wrt=["a", "b"])
    assert list(again) == ["a", "b"] and again["a"] == 4.0 and list(again["b"]) == [2.0, 2.0]
    trace = model.trace(SMALL_FEED, wrt=["a"])
    assert list(trace.wrt) == ["a"]


def test_more_distinct_requests_than_the_cache_holds():
    model = graphdef.loads(SMALL)
    names = ["a", "b", "p"]
    requests = [tuple(names[(i >> (2 * k)) % 3] for k in range(1 + i % 4)) for i in range(1200)]
    for wrt in requests + requests[:50]:
        assert _resolved(model, "e", list(wrt)) == ("e", wrt)
    for of, wrt in [("zz", ["a"]), ("e", ["zz"])]:
        with pytest.raises(GraphDefError):
            model.resolve(of, wrt)
