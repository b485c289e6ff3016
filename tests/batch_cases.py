"""Shared by test_batching.py and test_reference.py: cases generated from the op registry and
models/, one-op models, batched feeds, and the per-sample oracle of the batching semantics.

The semantics under test: declared shapes describe one sample. A batch gives some inputs
one extra leading axis; the value of every vertex is then the stack of its per-sample
values, the gradient of sum(of) w.r.t. a batched input is the stack of the per-sample
gradients, and w.r.t. anything shared (an unbatched input, a parameter) their sum.
"""
from __future__ import annotations

import itertools
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

import graphdef
from graphdef.ops import OPS
from graphdef.ops.registry import REAL, Integers

MODELS = Path(__file__).resolve().parent.parent / "models"
MODEL_FILES = sorted(p.name for p in MODELS.glob("*.yaml"))
B = 3  # samples in a batch


def seed_of(*parts) -> int:
    """A seed stable across processes (hash() of a str is salted per run)."""
    return zlib.crc32(repr(parts).encode())


def builtin_ops() -> dict:
    return {name: op for name, op in OPS.items() if not name.endswith("_test")}


def batchings(arity: int) -> list[tuple[int, ...]]:
    """Which inputs carry the batch axis: every non-empty subset for up to two inputs; else each
    input alone, each pair and all of them."""
    if arity <= 2:
        sizes = range(1, arity + 1)
    else:
        sizes = [1, 2, arity]
    return [c for r in sizes for c in itertools.combinations(range(arity), r)]


def example_cases(batched: bool):
    """pytest params (op name, example index, batched input positions) for every built-in op example.

    Batched, training-mode examples are left out: there a batch is not a stack of samples by design
    (dropout draws one mask per call, batch norm takes statistics over the batch); test_modes.py
    checks those against PyTorch on whole batches."""
    cases = []
    for name, op in builtin_ops().items():
        for i, (_, attrs) in enumerate(op.examples):
            if batched and mode(attrs)[1]:
                continue
            for which in batchings(op.arity) if batched else [()]:
                tag = "-b" + "".join(map(str, which)) if batched else ""
                cases.append(pytest.param(name, i, which, id=f"{name}-{i}{tag}"))
    return cases


def domains(op, n: int) -> list:
    """The test domain of each of n inputs: (low, high) for floats, an Integers for integers."""
    return list(op.domain) + [REAL] * (n - len(op.domain))


def draw(domain, shape, rng) -> np.ndarray:
    """Random values from a test domain: uniform floats, or integers in [low, high) of its dtype."""
    if isinstance(domain, Integers):
        return rng.integers(domain.low, domain.high, size=shape).astype(domain.dtype)
    return rng.uniform(*domain, size=shape)


def mode(attrs: dict) -> tuple[dict, bool]:
    """An example's attributes without `training` (which the tests give as the model's mode), and the mode."""
    attrs = dict(attrs)
    return attrs, bool(attrs.pop("training", False))


def one_op_model(name: str, shapes, attrs: dict, reference: bool = False, constants=None) -> graphdef.Model:
    """Inputs x0..xn with the example's per-sample shapes (and dtypes), one node `out` applying the op;
    those named in `constants` (name -> array) are constants instead."""
    attrs, training = mode(attrs)
    constants = constants or {}
    inputs = {f"x{i}": {"shape": list(s), **({"dtype": d.dtype} if isinstance(d, Integers) else {})}
              for i, (s, d) in enumerate(zip(shapes, domains(OPS[name], len(shapes)))) if f"x{i}" not in constants}
    node = {"op": name, "inputs": [f"x{i}" for i in range(len(shapes))], **attrs}
    doc = {"graphdef": 1, "name": "one", "inputs": inputs, "nodes": {"out": node}, "outputs": ["out"],
           "constants": {k: {"value": v.tolist(), "dtype": "float" if v.dtype.kind == "f" else v.dtype.name}
                         for k, v in constants.items()}}
    model = graphdef.loads(json.dumps(doc))  # JSON is YAML
    model = with_reference(model) if reference else model
    model.training = training
    return model


def with_reference(model: graphdef.Model) -> graphdef.Model:
    """The same model (same graph and parameter arrays, same mode) on the reference interpreter."""
    reference = graphdef.Model(model.graph, model.doc, model.source, reference=True)
    reference.training = model.training
    return reference


def sample_inputs(op, shapes, which, rng, n=B) -> dict:
    """Feeds x0..xn from the op's domain; inputs in `which` get a leading batch axis of n samples."""
    return {f"x{i}": draw(domain, ((n,) if i in which else ()) + tuple(shape), rng)
            for i, (shape, domain) in enumerate(zip(shapes, domains(op, len(shapes))))}


def sample_of(feeds: dict, batched, i: int) -> dict:
    """Sample i of a batched feed: batched inputs indexed, the others as they are."""
    return {k: v[i] if k in batched else v for k, v in feeds.items()}


def model_feeds(model: graphdef.Model, rng, n: int | None = B, batched=None) -> dict:
    """Sensible random inputs for a model of models/: inputs named y... are one-hot targets
    (a vector one-hot over its last axis; several scalar y inputs one-hot together), the others
    standard normal (features, pixels: any real works, and both signs keep ReLUs alive).
    `n`: batch size (None: one sample); `batched`: which inputs carry it (default all)."""
    batched = set(model.inputs) if batched is None else set(batched)
    feeds = {}
    scalar_targets = [k for k, s in model.inputs.items() if k.startswith("y") and s == ()]
    classes = rng.integers(max(len(scalar_targets), 2), size=n or 1)  # per sample: which y is hot (a lone y: 0 or 1)
    for name, shape in model.inputs.items():
        lead = (n,) if n is not None and name in batched else ()
        if name in model.input_dtypes:  # token ids, digits: 0 and 1 are in every vocabulary
            feeds[name] = rng.integers(0, 2, size=lead + tuple(shape)).astype(model.input_dtypes[name])
        elif name in scalar_targets:
            feeds[name] = (classes if lead else classes[0]) == scalar_targets.index(name)
            feeds[name] = np.asarray(feeds[name], dtype=float)
        elif name.startswith("y"):
            feeds[name] = np.eye(shape[-1])[rng.integers(shape[-1], size=lead + tuple(shape[:-1]))]
        else:
            feeds[name] = rng.normal(size=lead + tuple(shape))
    return feeds


def load_model(file: str, reference: bool = False) -> graphdef.Model:
    model = graphdef.load(MODELS / file, seed=0)
    return with_reference(model) if reference else model


def close(actual, expected, what: str, rtol=1e-10, atol=1e-12) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def check_batch_equivalence(model: graphdef.Model, feeds: dict, batched, n: int = B, of: str | None = None) -> dict:
    """The batched model against n per-sample calls of it: values stack (a node that no batched
    input reaches is shared: equal to every sample's value); gradients of sum(of) stack for batched
    inputs and sum for everything shared (unbatched inputs and parameters). Returns the per-sample
    gradients."""
    batched = set(batched)
    wrt = model.resolve(of)[1]  # the inputs holding floats, and the parameters
    values, grads = model.value_and_gradients(feeds, of=of, wrt=wrt)
    per = [model.value_and_gradients(sample_of(feeds, batched, i), of=of, wrt=wrt) for i in range(n)]
    reached = model.graph.reachable(batched)
    for name in [s.name for s in model.steps]:
        if name in reached:
            close(values[name], np.stack([v[name] for v, _ in per]), f"value of '{name}'")
        else:
            for v, _ in per:
                close(values[name], v[name], f"value of shared '{name}'")
    for name in wrt:
        parts = [g[name] for _, g in per]
        expected = np.stack(parts) if name in batched else np.sum(parts, axis=0)
        close(grads[name], expected, f"gradient w.r.t. {'batched' if name in batched else 'shared'} '{name}'")
    return {name: [g[name] for _, g in per] for name in wrt}


def random_feeds(model: graphdef.Model, batch: int = 4, seed: int = 0) -> dict:
    """A batch for any model: floats in [0.1, 1) (free sizes 3); integer inputs (token ids) 0 or 1, which
    every vocabulary has."""
    rng = np.random.default_rng(seed)
    shape = lambda s: [batch] + [d or 3 for d in (s or [])]  # noqa: E731
    return {k: rng.integers(0, 2, shape(s)).astype(model.input_dtypes[k]) if k in model.input_dtypes
            else rng.uniform(0.1, 1.0, shape(s)).astype(model.dtype) for k, s in model.inputs.items()}


def run_onnxruntime(proto, feeds) -> dict:
    """The outputs onnxruntime computes for an exported model (name -> array)."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # no warnings about constant nodes it cannot fold
    session = onnxruntime.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
