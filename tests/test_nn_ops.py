"""Normalization layers and losses end to end: what the registry-generated tests cannot reach.

softmax_cross_entropy on int64 class labels (the registry's examples feed it probabilities, since a
test domain is per op): against PyTorch and finite differences, on a batch, exported. nll_loss with
PyTorch's default ignore_index, binary cross-entropy at extreme logits, a model using the ops
through graphdef.loads against PyTorch written out by hand, float32, and the errors a user sees.
"""
import io
import json
import math

import numpy as np
import pytest

import graphdef
from batch_cases import B, MODELS, close, run_onnxruntime, seed_of, with_reference
from graphdef.engine.lift import PER_SAMPLE, batched_vertices, lift_of
from graphdef.ops import OPS
from graphdef.ops.nn import CLASSES, LABEL_EXAMPLES
from test_op_gradients import numeric_vjp

torch = pytest.importorskip("torch")
F = torch.nn.functional

LABEL_CASES = [pytest.param(shapes, attrs, id=f"labels-{i}") for i, (shapes, attrs) in enumerate(LABEL_EXAMPLES)] + [
    pytest.param(((2, 3), (2,)), {"base": 2, "weight": [1.0, 0.5, 2.0]}, id="labels-base2")]


def logits_and_labels(shapes, rng, lead=()):
    return rng.uniform(-2, 2, size=lead + shapes[0]), rng.integers(0, CLASSES, size=lead + shapes[1])


def label_model(shapes, attrs: dict, reference: bool = False) -> graphdef.Model:
    """z (floats) and t (int64 labels) into one softmax_cross_entropy node, `loss`."""
    doc = {"graphdef": 1, "name": "labels",
           "inputs": {"z": {"shape": list(shapes[0])}, "t": {"shape": list(shapes[1]), "dtype": "int64"}},
           "nodes": {"loss": {"op": "softmax_cross_entropy", "inputs": ["z", "t"], **attrs}}, "outputs": ["loss"]}
    model = graphdef.loads(json.dumps(doc))
    return with_reference(model) if reference else model


def model(inputs: str, nodes: str, outputs: str = "[out]", extra: str = "") -> graphdef.Model:
    return graphdef.loads(f"graphdef: 1\nname: t\ninputs: {inputs}\n{extra}nodes:\n{nodes}\noutputs: {outputs}\n")


# -- softmax_cross_entropy on class labels ------------------------------------------------------

@pytest.mark.parametrize("shapes, attrs", LABEL_CASES)
def test_softmax_cross_entropy_on_labels_matches_torch_and_finite_differences(shapes, attrs):
    op = OPS["softmax_cross_entropy"]
    attrs = op.bind(attrs)
    rng = np.random.default_rng(seed_of("labels", shapes, sorted(attrs.items())))
    z, t = logits_and_labels(shapes, rng)
    out = op.forward(z, t, **attrs)
    assert np.shape(out) == op.shape(*shapes, **attrs)
    loss, saved = op.save(z, t, **attrs)
    close(loss, out, "the saving forward")
    zt = torch.tensor(z, requires_grad=True)
    theirs = op.torch_function()(zt, torch.tensor(t), **attrs)  # F.cross_entropy, classes moved to axis 1
    close(out, theirs.detach().numpy(), "value", rtol=1e-12)
    g = rng.normal(size=np.shape(out))
    (theirs * torch.tensor(g)).sum().backward()
    ours = op.backward[0](g, saved, z, t, **attrs)
    close(ours, zt.grad.numpy(), "∂/∂z, PyTorch's", rtol=1e-10)
    close(ours, numeric_vjp(op, [z, t], attrs, g, 0), "∂/∂z, finite differences", rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("batched, reference", [(("z",), False), (("t",), False), (("z", "t"), False),
                                                 (("z", "t"), True)], ids=["z", "t", "zt", "zt-reference"])
@pytest.mark.parametrize("shapes, attrs", LABEL_CASES)
def test_softmax_cross_entropy_on_labels_batches(shapes, attrs, batched, reference):
    """Lifted by the labels' own rule: values stack per sample, ∂/∂z stacks (sums when z is shared), as torch.vmap."""
    m = label_model(shapes, attrs, reference)
    (step,) = m.steps
    assert lift_of(m.graph, step, batched_vertices(m.graph, set(batched))) is not PER_SAMPLE
    rng = np.random.default_rng(seed_of("labels batch", shapes, batched))
    z, t = logits_and_labels(shapes, rng)
    zs, ts = logits_and_labels(shapes, rng, (B,))
    feeds = {"z": zs if "z" in batched else z, "t": ts if "t" in batched else t}
    values, grads = m.value_and_gradients(feeds, of="loss", wrt=["z"])
    per = [m.value_and_gradients({k: v[i] if k in batched else v for k, v in feeds.items()}, of="loss", wrt=["z"])
           for i in range(B)]
    close(values["loss"], np.stack([v["loss"] for v, _ in per]), "values")
    parts = [g["z"] for _, g in per]
    close(grads["z"], np.stack(parts) if "z" in batched else np.sum(parts, axis=0), "∂/∂z")
    zt = torch.tensor(feeds["z"], requires_grad=True)
    op, bound = OPS["softmax_cross_entropy"], step.attrs
    theirs = torch.vmap(lambda z, t: op.torch_function()(z, t, **bound),
                        in_dims=tuple(0 if k in batched else None for k in ("z", "t")))(zt, torch.tensor(feeds["t"]))
    close(values["loss"], theirs.detach().numpy(), "torch.vmap's values")
    theirs.sum().backward()
    close(grads["z"], zt.grad.numpy(), "torch.vmap's ∂/∂z", rtol=1e-10)


@pytest.mark.parametrize("shapes, attrs", LABEL_CASES)
def test_softmax_cross_entropy_on_labels_exports(shapes, attrs):
    """SoftmaxCrossEntropyLoss, classes moved to axis 1, reduced per sample: onnxruntime on a batch of 3."""
    gx = pytest.importorskip("graphdef.onnx")
    m = label_model(shapes, attrs)
    z, t = logits_and_labels(shapes, np.random.default_rng(seed_of("labels onnx", shapes)), (B,))
    feeds = {"z": z, "t": t}
    close(m.forward(feeds)["loss"], run_onnxruntime(gx.export(m), feeds)["loss"], "onnxruntime", rtol=1e-10)


def test_a_label_loss_on_one_vector_exports():
    """Nothing batched reaches the loss: ONNX's loss ops want a batch axis, so [C] gets one of size 1."""
    gx = pytest.importorskip("graphdef.onnx")
    m = model("{x: {shape: [2]}}", "  loss: {op: softmax_cross_entropy, inputs: [z, t], weight: [1.0, 2.0, 3.0]}\n"
              "  s: {op: sum, inputs: [x]}", "[loss, s]",
              "parameters: {z: {value: [0.5, -1.0, 2.0]}}\nconstants: {t: {value: 1, dtype: int64}}\n")
    theirs = run_onnxruntime(gx.export(m), {"x": np.ones((B, 2))})["loss"]
    close(theirs, -math.log(math.exp(-1.0) / (math.exp(0.5) + math.exp(-1.0) + math.exp(2.0))), "loss", rtol=1e-12)


# -- nll_loss: PyTorch's reductions, directly ---------------------------------------------------

def test_nll_loss_skips_the_default_ignore_index_and_averages_over_the_weights():
    op = OPS["nll_loss"]
    logp = np.log(np.random.default_rng(3).dirichlet(np.ones(3), size=5))
    t, weight = np.array([0, -100, 2, 1, -100]), [0.2, 1.0, 3.0]
    for reduction in ("mean", "sum", "none"):
        ours = op.forward(logp, t, **op.bind({"weight": weight, "reduction": reduction}))
        theirs = F.nll_loss(torch.tensor(logp), torch.tensor(t), weight=torch.tensor(weight, dtype=torch.float64),
                            reduction=reduction)
        close(ours, theirs.numpy(), reduction, rtol=1e-13)
    expected = -(0.2 * logp[0, 0] + 3.0 * logp[2, 2] + 1.0 * logp[3, 1]) / (0.2 + 3.0 + 1.0)
    close(op.forward(logp, t, **op.bind({"weight": weight})), expected, "Σ w·(−log p) / Σ w", rtol=1e-13)
    all_ignored = np.full(5, -100)
    assert np.isnan(op.forward(logp, all_ignored, **op.bind({}))) and F.nll_loss(
        torch.tensor(logp), torch.tensor(all_ignored)).isnan(), "0/0 as PyTorch's"


# -- binary cross-entropy with logits --------------------------------------------------------------

def test_binary_cross_entropy_is_finite_at_extreme_logits():
    op = OPS["binary_cross_entropy_with_logits"]
    z, t = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]), np.array([0.0, 1.0, 0.5, 0.0, 1.0])
    for pos_weight in (None, 3.0):
        attrs = op.bind({"reduction": "none", "pos_weight": pos_weight})
        out = op.forward(z, t, **attrs)
        theirs = F.binary_cross_entropy_with_logits(torch.tensor(z), torch.tensor(t), reduction="none",
                                                    pos_weight=None if pos_weight is None else torch.tensor(pos_weight))
        close(out, theirs.numpy(), f"pos_weight {pos_weight}", rtol=1e-12, atol=1e-300)
        close(out[[0, 4]], [0.0, 0.0], "a confident right answer costs nothing", atol=1e-300)
        grads = [rule(np.ones(5), out, z, t, **attrs) for rule in op.backward]
        assert all(np.isfinite(g).all() for g in grads)
    close(op.forward(z[2:3], t[2:3], **op.bind({})), math.log(2), "log 2 at z = 0", rtol=1e-15)


# -- a model using the ops, against PyTorch written out -------------------------------------------

SEGMENTER = """
graphdef: 1
name: segmenter
inputs:
  x: {shape: [4, 3, 3]}
  y: {shape: [3, 3], dtype: int64}
parameters:
  gw: {value: [1.5, 0.5, -1.0, 2.0]}
  gb: {value: [0.1, 0.2, 0.3, -0.4]}
  lw: {value: [1.0, -0.5, 2.0, 0.7]}
  lb: {value: [0.0, 0.1, -0.2, 0.3]}
  W: {shape: [4, 3], init: normal}
nodes:
  n: {op: group_norm, inputs: [x, gw, gb], num_groups: 2}
  p: {op: transpose, inputs: [n], axes: [1, 2, 0]}
  h: {op: layer_norm, inputs: [p, lw, lb], eps: 0.001}
  z: {op: matmul, inputs: [h, W]}
  loss: {op: softmax_cross_entropy, inputs: [z, y], weight: [0.5, 1.0, 2.0], ignore_index: 0}
outputs: [z]
loss: loss
"""


def test_a_model_of_norms_and_labels_matches_pytorch():
    """Per sample: group norm over [C, H, W], layer norm over the features of each pixel, and a class per pixel
    (0 ignored); PyTorch's own batched layers give the same losses and gradients."""
    m = graphdef.loads(SEGMENTER, seed=1)
    rng = np.random.default_rng(5)
    feeds = {"x": rng.normal(size=(B, 4, 3, 3)), "y": rng.integers(0, 3, size=(B, 3, 3))}
    values, grads = m.value_and_gradients(feeds, wrt=["x", *m.parameters])
    p = {k: torch.tensor(v, requires_grad=True) for k, v in m.parameters.items()}
    x = torch.tensor(feeds["x"], requires_grad=True)
    h = F.layer_norm(F.group_norm(x, 2, p["gw"], p["gb"]).permute(0, 2, 3, 1), (4,), p["lw"], p["lb"], 1e-3)
    z, y = h @ p["W"], torch.tensor(feeds["y"])
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    losses = torch.stack([F.cross_entropy(z[i].reshape(-1, 3), y[i].reshape(-1), weight=weight, ignore_index=0)
                          for i in range(B)])
    close(values["loss"], losses.detach().numpy(), "per-sample losses")
    losses.sum().backward()
    for name, tensor in {"x": x, **p}.items():
        close(grads[name], tensor.grad.numpy(), f"∂loss/∂{name}", rtol=1e-9)


def test_a_classifier_trains_on_integer_labels(tmp_path):
    """models/spirals.yaml with its one-hot target replaced by an int64 label: the same op learns from it."""
    text = (MODELS / "spirals.yaml").read_text()
    assert "y: {shape: [3], description: one-hot arm}" in text
    m = graphdef.loads(text.replace("y: {shape: [3], description: one-hot arm}", "y: {shape: [], dtype: int64}"),
                       seed=0)
    history = graphdef.train(m, "spirals", epochs=8, out=io.StringIO(), run_dir=tmp_path / "run")
    assert history[-1]["loss"] < 0.75 * history[0]["loss"] and history[-1]["val_accuracy"] >= 0.6  # chance: 1/3


def test_float32_stays_float32():
    m = graphdef.loads(SEGMENTER.replace("name: segmenter", "name: segmenter\ndtype: float32") + "\n", seed=1)
    rng = np.random.default_rng(6)
    values, grads = m.value_and_gradients({"x": rng.normal(size=(B, 4, 3, 3)), "y": rng.integers(0, 3, size=(B, 3, 3))})
    assert {values[k].dtype for k in ("n", "h", "z", "loss")} == {np.dtype(np.float32)}
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    bce = model("{z: {shape: [3]}, t: {shape: [3]}}",
                "  out: {op: binary_cross_entropy_with_logits, inputs: [z, t], pos_weight: [1.0, 2.0, 0.5]}",
                extra="dtype: float32\n")
    assert bce.forward({"z": np.ones((B, 3)), "t": np.zeros((B, 3))})["out"].dtype == np.float32


# -- what a user sees --------------------------------------------------------------------------

@pytest.mark.parametrize("inputs, attrs, feeds, message", [
    ("{z: {shape: [3]}, t: {shape: []}}", "", {"z": np.zeros(3), "t": 1.0},
     "one axis fewer than z, so it holds class labels: declare it `dtype: int64`"),
    ("{z: {shape: [3]}, t: {shape: [], dtype: int64}}", "", {"z": np.zeros(3), "t": 5},
     r"class label 5 is out of range for 3 classes \(0 to 2, or ignore_index, -100\)"),
    ("{z: {shape: [3]}, t: {shape: [3]}}", ", weight: [1.0, 2.0, 3.0]", {"z": np.zeros(3), "t": np.ones(3) / 3},
     "weight weighs class labels; for probability targets, multiply t by the class weights"),
    ("{z: {shape: [2, 3]}, t: {shape: [2, 3], dtype: int64}}", "", {"z": np.zeros((2, 3)), "t": np.ones((2, 3))},
     r"class labels \(int64\) must have z's shape without its class axis: got \[2, 3\] for z \[2, 3\]"),
])
def test_a_target_of_the_wrong_form_is_refused_at_its_node(inputs, attrs, feeds, message):
    m = model(inputs, f"  out: {{op: softmax_cross_entropy, inputs: [z, t]{attrs}}}")
    with pytest.raises(graphdef.GraphDefError, match=r"node 'out' \(softmax_cross_entropy\) failed: .*" + message):
        m.forward(feeds)


@pytest.mark.parametrize("inputs, node, message", [
    ("{x: {shape: [6, 2]}, w: {shape: [6]}}", "group_norm, inputs: [x, w, w], num_groups: 4",
     "6 channels do not split into 4 groups"),
    ("{x: {shape: [6, 2]}, w: {shape: [3]}}", "group_norm, inputs: [x, w, w], num_groups: 3",
     r"weight must be \[6\], got \[3\]"),
    ("{x: {shape: [2, 3]}, w: {shape: [3]}, b: {shape: [2]}}", "layer_norm, inputs: [x, w, b]",
     r"bias must be \[3\], got \[2\]"),
    ("{x: {shape: [3]}, w: {shape: [3]}}", "layer_norm, inputs: [x, w, w], normalized_ndim: 2",
     "layer_norm normalizes the last 2 axes, but x has rank 1"),
    ("{z: {shape: [4, 3]}, t: {shape: [3], dtype: int64}}", "nll_loss, inputs: [z, t]",
     r"class labels \(z's shape without its class axis 1\) must be \[4\], got \[3\]"),
    ("{z: {shape: [4, 3]}, t: {shape: [4], dtype: int64}}", "nll_loss, inputs: [z, t], weight: [1.0, 2.0]",
     "weight has 2 values for 3 classes"),
    ("{z: {shape: [4, 3]}, t: {shape: [4]}}", "nll_loss, inputs: [z, t]", r"must hold integers \(int64\)"),
    ("{z: {shape: [2, 3]}, t: {shape: [2, 3]}}", "binary_cross_entropy_with_logits, inputs: [z, t], pos_weight: [1.0]",
     r"pos_weight needs one value per class, along the last axis of \[2, 3\]; got 1"),
])
def test_mismatched_shapes_and_dtypes_are_refused_at_load(inputs, node, message):
    with pytest.raises(graphdef.GraphDefError, match=message):
        model(inputs, f"  out: {{op: {node}}}")
