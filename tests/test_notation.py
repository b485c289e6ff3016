"""The lecture's notation in what graphdef prints and draws: local derivatives (∂ₗy/∂x, on edges) apart
from totals (∂out/∂v, through every path), no `-0`, literal edges labelled, labels' gradients shown only
when asked, drawings of a readable shape, and training curves that say which epoch was best."""
import csv
import math
import os
import re
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import graphdef
from conftest import MODELS
from graphdef.tools.draw import to_dot
from graphdef.tools.explain import LOCAL, explain_paths, explain_sweep, format_number

needs_dot = pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"),
                               reason="Graphviz `dot` is not installed")
needs_matplotlib = pytest.mark.skipif(not graphdef.plot.available() and not os.environ.get("CI"),
                                      reason="matplotlib is not installed")
NETWORK_AT = {"x1": 1, "x2": 0.5, "y1": 1, "y2": 0}
MINUS_ZERO = re.compile(r"-0(?![.\d])|-0\.0*(?![\d])")  # -0, -0.0; not -0.5 or 1e-05


def scalar_models() -> list:
    """Every model in models/ whose inputs are all scalars: the ones explained and drawn number by number."""
    models = [graphdef.load(p) for p in sorted(MODELS.glob("*.yaml"))]
    return [m for m in models if all(m.graph.vertices[n].shape == () for n in m.inputs)]


SCALAR = scalar_models()
# zeros, signed zeros and values that make zeros downstream (a ReLU cut, a product with 0) come up often
VALUE = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5]), st.floats(-3, 3, allow_nan=False))


def test_there_are_scalar_models_to_check():
    assert {m.name for m in SCALAR} >= {"lecture", "chain", "diamond10", "lecture_network"}


@pytest.mark.parametrize("model", SCALAR, ids=lambda m: m.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_minus_zero_in_explanations_or_drawings(model, data):
    inputs = {n: data.draw(VALUE, label=n) for n in model.inputs}
    of = model.loss or model.outputs[0]
    texts = [explain_sweep(model, inputs), explain_paths(model, inputs), to_dot(model, inputs, of).source,
             to_dot(model, inputs, of, wrt=list(model.inputs)).source]
    for text in texts:
        assert not MINUS_ZERO.search(text), MINUS_ZERO.search(text).string[:200]


@given(st.floats(allow_nan=False, allow_infinity=False))
@example(-0.0)
@example(-1e-300)
def test_format_number_never_writes_minus_zero(x):
    text = format_number(x)
    assert text != "-0" and float(text) == pytest.approx(x, rel=1e-5, abs=1e-300)


def test_the_network_at_the_lecture_point_has_signed_zeros_to_hide():
    """ReLU cuts h2, so 0 × (negative weight) = -0.0 in floating point: the case the issue met."""
    grads = graphdef.load(MODELS / "lecture_network.yaml").gradients(NETWORK_AT)
    assert any(np.signbit(g) and g == 0 for g in grads.values())
    assert "-0" not in explain_sweep(graphdef.load(MODELS / "lecture_network.yaml"), NETWORK_AT).replace("-0.", "")


def test_sweep_writes_totals_and_locals_with_distinct_symbols():
    out = explain_sweep(graphdef.load(MODELS / "lecture.yaml"), {"a": 3, "b": 5})
    assert "∂e/∂b = ∂e/∂c·∂ₗc/∂b + ∂e/∂d·∂ₗd/∂b = 6×1 + 8×1 = 14" in out
    assert "∂e/∂d = ∂e/∂e·∂ₗe/∂d = 1×8 = 8" in out  # local vs total: no longer alike
    assert "notation:" in out.splitlines()[1] and LOCAL in out.splitlines()[2]  # the legend, once, at the top
    assert out.count("notation:") == 1


@pytest.mark.parametrize("model", SCALAR, ids=lambda m: m.name)
def test_every_sweep_line_adds_up_to_the_gradient(model):
    """Each step: the left side a total, each term total·local, and the numbers multiply and add to it."""
    rng = np.random.default_rng(0)
    inputs = {n: float(rng.normal()) for n in model.inputs}
    of = model.loss or model.outputs[0]
    grads = model.gradients(inputs)
    for line in explain_sweep(model, inputs).splitlines():
        parts = line.split(" = ")
        if len(parts) != 4:
            continue
        lhs, symbols, numbers, result = parts
        assert lhs.startswith(f"∂{of}/∂") and LOCAL not in lhs
        for term in symbols.split(" + "):
            total, local = term.split("·")
            assert total.startswith(f"∂{of}/∂") and local.startswith(LOCAL)
        value = sum(math.prod(float(f) for f in term.split("×")) for term in numbers.split(" + "))
        assert value == pytest.approx(float(result), rel=1e-4, abs=1e-6)
        name = lhs.split("/∂", 1)[1]
        if name in grads:
            assert float(result) == pytest.approx(float(grads[name]), rel=1e-4, abs=1e-6)


def test_path_sums_write_every_factor_as_a_local():
    out = explain_paths(graphdef.load(MODELS / "lecture.yaml"), {"a": 3, "b": 5})
    assert "∂e/∂b = ∂ₗe/∂c·∂ₗc/∂b + ∂ₗe/∂d·∂ₗd/∂b = 6×1 + 8×1 = 14" in out


def test_literal_edges_are_labelled():
    model = graphdef.load(MODELS / "lecture.yaml")
    with_values = to_dot(model, {"a": 3, "b": 5}, "e").source
    assert re.search(r'^\t"d\[1\]" -> d \[label=1 .*style=dashed', with_values, flags=re.M)
    assert re.search(r'^\t"d\[1\]" -> d \[label=constant ', to_dot(model).source, flags=re.M)
    assert "dashed: from a constant" in with_values and f"{LOCAL}y/∂x" in with_values  # the legend


def test_labels_gradients_are_hidden_unless_asked(cli):
    model = graphdef.load(MODELS / "lecture_network.yaml")
    assert set(model.labels) == {"y1", "y2"}
    assert "∂E/∂y1" not in explain_sweep(model, NETWORK_AT)
    assert "∂E/∂y1" not in to_dot(model, NETWORK_AT, "E").source
    assert "∂E/∂w1 = " in to_dot(model, NETWORK_AT, "E").source
    assert "∂E/∂y1 = 1.11226" in to_dot(model, NETWORK_AT, "E", wrt=["y1", "w1"]).source
    at = [a for n, v in NETWORK_AT.items() for a in ("--at", f"{n}={v}")]
    code, out, _ = cli("grad", MODELS / "lecture_network.yaml", *at, "--explain")
    assert code == 0 and "∂E/∂y1" not in out and "∂E/∂y2" not in out
    code, out, _ = cli("grad", MODELS / "lecture_network.yaml", *at, "--explain", "--wrt", "y1")
    assert code == 0 and "∂E/∂y1 = ∂E/∂c1·∂ₗc1/∂y1 = 1×1.11226 = 1.11226" in out


def svg_size(svg: str) -> tuple[float, float]:
    match = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    return float(match.group(1)), float(match.group(2))


@needs_dot
@pytest.mark.parametrize("at, of", [(None, None), (NETWORK_AT, None), (NETWORK_AT, "E")])
def test_lecture_network_drawing_has_a_readable_shape(at, of):
    """Not the 4353×631 strip it was: at most 4:1 either way, and no wider than two README widths."""
    width, height = svg_size(to_dot(graphdef.load(MODELS / "lecture_network.yaml"), at, of).pipe(
        format="svg").decode())
    assert 1 / 4 < width / height < 4 and width < 1000


def test_direction_follows_the_graph_shape():
    deep = to_dot(graphdef.load(MODELS / "lecture_network.yaml"), NETWORK_AT, "E").source
    thin = to_dot(graphdef.load(MODELS / "diamond.yaml"), {"x0": 0.5}, "x10").source
    assert "rankdir=TB" in deep and "rankdir=TB" in thin
    assert 'id="v:E"' in deep and 'id="e:c1:E:0"' in deep  # ids unchanged


def write_run(run, losses, val_losses, name="spirals"):
    run.mkdir()
    (run / "model.yaml").write_text(f"graphdef: 1\nname: {name}\n")
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "loss", "accuracy", "val_loss", "val_accuracy"])
        for i, (loss, val) in enumerate(zip(losses, val_losses), 1):
            w.writerow([i, loss, 0.5, val, 0.5])


@needs_matplotlib
def test_curves_name_the_model_mark_the_best_epoch_and_go_log_over_decades(tmp_path):
    from graphdef.training.plot import figure
    write_run(tmp_path / "run-2024-01-01", [1.0, 0.1, 0.01, 0.001], [1.0, 0.2, 0.05, 0.08])
    fig, curves = figure(tmp_path / "run-2024-01-01")
    assert curves.title == "spirals" and fig._suptitle.get_text() == "spirals"
    assert curves.best == (3, "val_loss", 0.05) and curves.log
    loss_axes = fig.axes[0]
    assert loss_axes.get_yscale() == "log"
    labels = [line.get_label() for line in loss_axes.get_lines()]
    assert "best epoch 3 (lowest validation loss 0.05)" in labels
    assert any(list(line.get_xdata()) == [3] and list(line.get_ydata()) == [0.05] for line in loss_axes.get_lines())
    assert figure(tmp_path / "run-2024-01-01", log=False)[0].axes[0].get_yscale() == "linear"


@needs_matplotlib
def test_curves_stay_linear_over_a_small_range_and_plot_takes_log(cli, tmp_path):
    from graphdef.training.plot import figure
    write_run(tmp_path / "run", [1.0, 0.6, 0.5], [1.1, 0.7, 0.65], name="xor net")
    fig, curves = figure(tmp_path / "run")
    assert not curves.log and fig.axes[0].get_yscale() == "linear" and curves.title == "xor net"
    code, _, err = cli("plot", tmp_path / "run", "--log")
    assert code == 0 and (tmp_path / "run" / "curves.png").read_bytes().startswith(b"\x89PNG")
