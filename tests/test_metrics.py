"""Metrics and training report lines: formulas against scikit-learn (when installed) and hand-computed
cases, streaming equal to the whole set, multi-output pairs, edge cases that must not give NaN."""
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphdef
from conftest import MODELS
from graphdef.errors import GraphDefError
from graphdef.training import metrics as M, report as R
from graphdef.training.config import resolve
from graphdef.training.feed import read_source

try:
    import sklearn.metrics as sk
except ImportError:  # the cross-checks need it; the hand-computed cases below do not
    sk = None
needs_sklearn = pytest.mark.skipif(sk is None, reason="scikit-learn is not installed (pip install scikit-learn)")

TWO_HEADS = """\
graphdef: 1
name: two_heads
inputs:
  x: {shape: [4]}
  y: {shape: [3]}
  v: {shape: [1]}
nodes:
  logits: {op: dense, inputs: [x], in: 4, out: 3}
  probs: {op: softmax, inputs: [logits]}
  value: {op: dense, inputs: [x], in: 4, out: 1}
  ce: {op: softmax_cross_entropy, inputs: [logits, y]}
  err: {op: mse, inputs: [value, v]}
  both: {op: add, inputs: [ce, err]}
  loss: {op: add, inputs: [both, 0.5]}
outputs: [probs, value]
loss: loss
"""


def scores(rng, n, k):
    return rng.dirichlet(np.ones(k), size=n)


def all_finite(result: dict) -> bool:
    return all(math.isfinite(v) for k, v in result.items() if k != "confusion")


# -- classification ------------------------------------------------------------------------------

def test_hand_computed_three_classes():
    """Confusion [[2,1,0],[0,1,1],[0,0,1]]: precision (1, .5, .5), recall (2/3, .5, 1)."""
    pred = np.eye(3)[[0, 0, 1, 1, 2, 2]] * 0.9 + 0.05
    target = np.array([0, 0, 0, 1, 1, 2])
    r = M.classification(pred, target)
    assert r["confusion"].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["precision"] == pytest.approx((1 + .5 + .5) / 3)
    assert r["recall"] == pytest.approx((2 / 3 + .5 + 1) / 3)
    assert r["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert "f1_pos" not in r


def test_sigmoid_column_against_labels_is_per_sample_not_broadcast():
    """A [B, 1] probability against [B] labels: 3 of 4 right (compared as they were, [B, B]: 8 of 16)."""
    pred, labels = np.array([[0.9], [0.2], [0.7], [0.4]]), np.array([1, 0, 0, 0])
    for p in (pred, pred[:, 0]):  # [B, 1] and [B] predictions
        r = M.classification(p, labels)
        assert r["accuracy"] == 0.75 and r["confusion"].tolist() == [[2, 1], [0, 1]]
        assert (r["precision_pos"], r["recall_pos"], r["f1_pos"]) == (0.5, 1.0, pytest.approx(2 / 3))


@needs_sklearn
@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("target_form", ["one_hot", "int", "float"])
@pytest.mark.parametrize("seed", range(3))
def test_classification_matches_sklearn(k, target_form, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    pred, labels = scores(rng, n, k), rng.integers(0, k, n)
    target = {"one_hot": np.eye(k)[labels], "int": labels, "float": labels.astype(float)}[target_form]
    r, predicted = M.classification(pred, target), pred.argmax(1)
    assert r["accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted))
    for name, f in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
        assert r[name] == pytest.approx(f(labels, predicted, average="macro", zero_division=0)), name
        if k == 2:
            assert r[f"{name}_pos"] == pytest.approx(f(labels, predicted, average="binary", zero_division=0))
    assert r["confusion"].tolist() == sk.confusion_matrix(labels, predicted, labels=range(k)).tolist()


@needs_sklearn
@pytest.mark.parametrize("seed", range(4))
def test_binary_sigmoid_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    prob, labels = rng.random((n, 1)), rng.integers(0, 2, n)
    predicted = (prob[:, 0] > 0.5).astype(int)
    r = M.classification(prob, labels)
    assert r["f1"] == pytest.approx(sk.f1_score(labels, predicted, average="macro", zero_division=0))
    assert r["f1_pos"] == pytest.approx(sk.f1_score(labels, predicted, zero_division=0))
    assert r["confusion"].tolist() == sk.confusion_matrix(labels, predicted, labels=[0, 1]).tolist()


def test_one_class_present_averages_over_present_classes_without_nan():
    r = M.classification(np.array([[0.1], [0.3]]), np.array([0, 0]))  # all negative, all right
    assert (r["accuracy"], r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0, 1.0)
    assert (r["precision_pos"], r["recall_pos"], r["f1_pos"]) == (0.0, 0.0, 0.0)  # sklearn's zero_division
    r = M.classification(np.eye(3)[[0, 0]], np.array([1, 1]))  # never right, class 2 absent
    assert r["accuracy"] == 0 and r["precision"] == 0 and all_finite(r)


def test_labels_that_are_not_classes_are_a_clear_error():
    with pytest.raises(GraphDefError, match="not a class index 0..2"):
        M.classification(np.eye(3)[[0, 1]], np.array([0, 3]))
    with pytest.raises(GraphDefError, match="4 values per sample"):
        M.classification(np.ones((2, 4)), np.eye(3)[[0, 1]], classes=3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_prediction_is_an_error_naming_it_never_a_silent_nan(bad):
    pred = np.array([[0.2, 0.8], [bad, 0.1]])
    with pytest.raises(GraphDefError, match="'probs' is NaN or infinite for 1 of 2 samples"):
        M.Confusion(2).update(pred, np.array([1, 0]), "probs")
    with pytest.raises(GraphDefError, match="NaN or infinite"):
        M.regression(pred, np.ones((2, 2)))


# -- regression ----------------------------------------------------------------------------------

def test_regression_hand_computed_and_shape_aligned():
    r = M.regression(np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.0, 4.0]))  # [B,1] against [B]
    assert r == pytest.approx({"mse": 1 / 3, "mae": 1 / 3, "r2": 1 - 1 / (14 / 3)})


@needs_sklearn
@pytest.mark.parametrize("cols", [1, 3])
@pytest.mark.parametrize("seed", range(3))
def test_regression_matches_sklearn(cols, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 50))
    target = rng.normal(3, 2, (n, cols))
    pred = target + rng.normal(0, 1, (n, cols))
    r = M.regression(pred, target)
    assert r["mse"] == pytest.approx(sk.mean_squared_error(target, pred))
    assert r["mae"] == pytest.approx(sk.mean_absolute_error(target, pred))
    assert r["r2"] == pytest.approx(sk.r2_score(target, pred))


def test_r2_of_constant_targets_is_finite():
    """sklearn's force_finite: 1 for an exact fit, 0 otherwise (never 0/0)."""
    assert M.regression(np.full(4, 2.0), np.full(4, 2.0))["r2"] == 1.0
    assert M.regression(np.array([1.0, 2, 3, 4]), np.full(4, 2.0))["r2"] == 0.0
    assert M.regression(np.array([5.0]), np.array([2.0]))["r2"] == 0.0  # one sample
    if sk is not None:
        assert sk.r2_score(np.full(4, 2.0), [1.0, 2, 3, 4]) == 0.0


def test_regression_refuses_different_widths():
    with pytest.raises(GraphDefError, match="3 values per sample, its target 1"):
        M.regression(np.ones((2, 3)), np.ones(2))


# -- streaming -----------------------------------------------------------------------------------

def chunks(n, cuts):
    edges = sorted({0, n, *[c % (n + 1) for c in cuts]})
    return [slice(a, b) for a, b in zip(edges, edges[1:])] + [slice(n, n)]  # an empty chunk too


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.lists(st.integers(0, 200), max_size=6))
def test_chunks_give_the_metrics_of_the_whole_set(seed, cuts):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 120))
    values = {"probs": scores(rng, n, 4), "y": rng.integers(0, 4, n).astype(float),
              "value": rng.normal(0, 1, (n, 2)) * 100 + 1e4, "v": rng.normal(0, 1, (n, 2)) * 100 + 1e4}
    pairs = M.plan(list(M.NAMES), {k: values[k] for k in ("probs", "value")}, {k: values[k] for k in ("y", "v")})
    whole, streamed = M.Tracker(pairs), M.Tracker(pairs)
    whole.update(values, n)
    for part in chunks(n, cuts):
        streamed.update({k: a[part] for k, a in values.items()}, part.stop - part.start)
    a, b = whole.result(), streamed.result()
    assert set(a) == set(b) and all(math.isfinite(v) for v in b.values())
    for k in a:
        assert b[k] == (a[k] if "probs/" in k else pytest.approx(a[k], rel=1e-9, abs=1e-12)), k
    assert np.array_equal(whole.confusions()["probs/confusion"], streamed.confusions()["probs/confusion"])


@pytest.mark.parametrize("names", [list(M.NAMES), ["f1", "accuracy", "r2"], ["recall"], None])
def test_keys_announce_what_result_gives(names):
    """What early stopping may monitor, known before training: the keys result() then gives, in order."""
    rng = np.random.default_rng(0)
    values = {"p": rng.random((9, 1)), "y": rng.integers(0, 2, 9), "q": rng.random((9, 3)), "t": rng.random((9, 3))}
    tracker = M.Tracker(M.plan(names, {"p": values["p"], "q": values["q"]}, {"y": values["y"], "t": values["t"]}))
    assert tracker.keys() and tracker.result() == {}
    tracker.update(values, 9)
    assert list(tracker.result()) == tracker.keys()


def test_no_samples_no_metrics():
    tracker = M.Tracker(M.plan(["accuracy", "mse"], {"p": np.zeros((1, 3)), "q": np.zeros((1, 1))},
                               {"y": np.array([0, 2]), "t": np.array([0.5, 1.5])}))
    tracker.update({"p": np.zeros((0, 3)), "y": np.zeros(0), "q": np.zeros((0, 1)), "t": np.zeros(0)}, 0)
    assert tracker.result() == {}
    assert M.Confusion(2).result() == {} and M.Errors().result() == {}


def test_state_survives_json_so_a_resumed_epoch_is_bit_exact():
    rng = np.random.default_rng(1)
    values = {"probs": scores(rng, 50, 3), "y": rng.integers(0, 3, 50), "value": rng.normal(size=(50, 1)),
              "v": rng.normal(size=50), "ce": rng.random(50), "l2": np.float64(0.25)}
    pairs = M.plan(["f1", "r2", "confusion"], {"probs": values["probs"], "value": values["value"]},
                   {"y": values["y"], "v": values["v"]})
    one, resumed = M.Tracker(pairs, ["ce", "l2"]), M.Tracker(pairs, ["ce", "l2"])
    for part in (slice(0, 20), slice(20, 50)):
        one.update({k: (a[part] if np.ndim(a) else a) for k, a in values.items()}, part.stop - part.start)
    resumed.update({k: (a[:20] if np.ndim(a) else a) for k, a in values.items()}, 20)
    saved = json.loads(json.dumps(resumed.state()))
    resumed = M.Tracker(pairs, ["ce", "l2"])
    resumed.load(saved)
    resumed.update({k: (a[20:] if np.ndim(a) else a) for k, a in values.items()}, 30)
    assert resumed.result() == one.result()
    assert list(one.result()) == one.keys() == ["probs/f1", "value/r2", "loss/ce", "loss/l2"]
    assert one.result()["loss/l2"] == 0.25 and one.result()["loss/ce"] == pytest.approx(values["ce"].mean())


@pytest.mark.parametrize("path, value", [
    (("sums", 0, "matrix"), [[1, 2], [3, 4]]),            # a 2x2 matrix for 3 classes
    (("sums", 0, "matrix"), [[-1, 0, 0]] * 3),             # a negative count
    (("sums", 0, "matrix"), "many"),
    (("sums", 1, "sse"), [1.0, 2.0]),                      # sizes disagree
    (("sums", 1, "m2"), [float("nan")]),
    (("sums", 1, "n"), -3),
    (("sums", 1), {}),
    (("terms", "ce"), "x"),
    (("count",), None),
    (("sums",), []),                                       # fewer accumulators than pairs
])
def test_a_damaged_state_is_a_clear_error_and_changes_nothing(path, value):
    rng = np.random.default_rng(2)
    values = {"probs": scores(rng, 6, 3), "y": rng.integers(0, 3, 6), "value": rng.normal(size=(6, 1)),
              "v": rng.normal(size=6), "ce": rng.random(6)}
    pairs = M.plan(["accuracy", "mse"], {"probs": values["probs"], "value": values["value"]},
                   {"y": values["y"], "v": values["v"]})
    tracker = M.Tracker(pairs, ["ce"])
    tracker.update(values, 6)
    before, state = tracker.result(), tracker.state()
    bad = json.loads(json.dumps(state))
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(GraphDefError, match="the saved metrics do not fit"):
        tracker.load(bad)
    assert tracker.result() == before
    tracker.load(state)
    assert tracker.result() == before


# -- choosing and pairing ------------------------------------------------------------------------

@pytest.mark.parametrize("pred, target, expected", [
    (np.zeros((2, 10)), np.eye(10)[[1, 2, 3]], ["accuracy"]),              # one-hot rows
    (np.zeros((2, 10)), np.array([0, 9, 4]), ["accuracy"]),                 # integer class indices
    (np.zeros((2, 3)), np.array([0.0, 2.0, 1.0]), ["accuracy"]),            # float class indices
    (np.zeros((2, 1)), np.array([0, 1, 1]), ["accuracy"]),                  # one sigmoid column, 0/1 labels
    (np.zeros(2), np.array([[0], [1]]), ["accuracy"]),                      # [] prediction, [1] labels
    (np.zeros((2, 1)), np.array([0.3, 1.7]), ["mae", "r2"]),                # real-valued target
    (np.zeros((2, 1)), np.array([0, 3, 5]), ["mae", "r2"]),                 # counts, one output: regression
    (np.zeros((2, 3)), np.random.default_rng(0).random((4, 3)), ["mae", "r2"]),  # not one-hot rows
    (np.zeros((2, 3)), np.array([0, 7]), []),                               # labels beyond the columns
    (np.zeros((2, 3)), np.ones((4, 2)), []),                                # nothing comparable
])
def test_default_metrics_follow_the_data(pred, target, expected):
    assert M.default_metrics({"p": pred}, {"t": target}) == expected


def test_multi_output_pairs_each_prediction_with_its_target_whatever_the_order():
    """A [3] class output and a [1] regression output: metrics per pair, no np.stack of [3] and [1]."""
    rng = np.random.default_rng(0)
    preds = {"probs": scores(rng, 8, 3), "value": rng.normal(size=(8, 1))}
    for targets in ({"y": np.eye(3)[rng.integers(0, 3, 8)], "v": rng.normal(size=(8, 1))},
                    {"v": rng.normal(size=8), "y": rng.integers(0, 3, 8)}):  # input order swapped
        pairs = M.plan(None, preds, targets)
        assert [(p.prefix, p.targets, p.kind) for p in pairs] == [
            ("probs/", ("y",), "classification"), ("value/", ("v",), "regression")]
        tracker = M.Tracker(pairs)
        tracker.update({**preds, **targets}, 8)
        assert list(tracker.result()) == tracker.keys() == ["probs/accuracy", "value/mae", "value/r2"]


def test_stacked_predictions_against_one_target_as_training_predictions_says():
    preds = {"a": np.array([0.9, 0.1]), "b": np.array([0.1, 0.9])}
    pairs = M.plan(None, preds, {"y": np.eye(2)[[0, 0]]})
    tracker = M.Tracker(pairs)
    tracker.update({**preds, "y": np.eye(2)[[0, 0]]}, 2)
    assert pairs[0].predictions == ("a", "b") and tracker.result() == {"accuracy": 0.5}


def test_metric_names_are_checked():
    with pytest.raises(GraphDefError, match="unknown metric 'acuracy'.*did you mean 'accuracy'"):
        M.plan(["acuracy"], {"p": np.zeros((1, 3))}, {"y": np.array([0, 1])})
    with pytest.raises(GraphDefError, match="metric 'accuracy' needs class targets.*p vs y: regression"):
        M.plan(["accuracy"], {"p": np.zeros((1, 1))}, {"y": np.array([0.5, 3.2])})
    with pytest.raises(GraphDefError, match="no prediction has a target"):
        M.plan(["mse"], {}, {})
    assert M.plan([], {"p": np.zeros((1, 1))}, {"y": np.array([0.5])})[0].names == ()


def test_names_and_monitor_directions():
    assert M.NAMES == ("accuracy", "precision", "recall", "f1", "confusion", "mse", "mae", "r2")
    assert [M.lower_is_better(k) for k in ("loss", "val_loss", "loss/ce", "val_loss/ce", "val_value/mae",
                                           "mse", "accuracy", "val_probs/f1", "r2")] == [True] * 6 + [False] * 3


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(0, 6), st.integers(1, 5), st.sampled_from(["one_hot", "int", "float"]))
def test_fuzz_results_are_finite_or_a_clear_error(seed, n, k, form):
    rng = np.random.default_rng(seed)
    pred = rng.choice([0.0, 0.5, 1.0, rng.random()], size=(n, k))
    labels = rng.integers(0, max(k, 2), n)
    target = {"one_hot": np.eye(max(k, 2))[labels][:, :k] if k > 1 else labels, "int": labels,
              "float": rng.choice([0.0, 1.0, 2.5], size=n)}[form]
    pairs = M.plan(list(M.NAMES[:4]) if M.kind(pred, target)[0] == "classification" else None,
                   {"p": pred}, {"t": target})
    tracker = M.Tracker(pairs)
    try:
        tracker.update({"p": pred, "t": target}, n)
    except GraphDefError as e:
        assert "per sample" in str(e) or "class index" in str(e)
        return
    assert all(math.isfinite(v) for v in tracker.result().values())


def test_a_real_logistic_model_sigmoid_output_against_scalar_labels():
    """models/logistic.yaml predicts [B, 1] for [B] labels: accuracy per sample, as hand-computed."""
    model = graphdef.load(MODELS / "logistic.yaml", seed=0)
    data = read_source("moons")
    values = model.predict_batch({"x": data["x"], "y": data["y"].astype(float)}, ["p"])
    pairs = M.plan(None, {"p": values["p"][:2]}, {"y": data["y"]})
    tracker = M.Tracker(pairs)
    tracker.update(values, len(data["y"]))
    assert values["p"].shape == (len(data["y"]), 1) and pairs[0].classes == 2
    assert tracker.result()["accuracy"] == np.mean((values["p"][:, 0] > 0.5) == data["y"])


# -- report lines ----------------------------------------------------------------------------------

def test_loss_terms_are_the_nodes_of_the_final_add_chain(write):
    model = graphdef.load(write(TWO_HEADS), seed=0)
    assert R.loss_terms(model, "loss") == ["ce", "err"]  # the literal 0.5 is no term
    assert R.loss_terms(graphdef.load(MODELS / "digits.yaml"), "loss") == []


def test_loss_terms_tracked_per_vertex_on_a_two_headed_model(write):
    model = graphdef.load(write(TWO_HEADS), seed=0)
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(6, 4)), "y": np.eye(3)[rng.integers(0, 3, 6)], "v": rng.normal(size=(6, 1))}
    values = model.predict_batch(batch, ["loss", "probs", "value", "ce", "err"])
    pairs = M.plan(None, {k: values[k] for k in ("probs", "value")}, {k: batch[k] for k in ("y", "v")})
    tracker = M.Tracker(pairs, R.loss_terms(model, "loss"))
    tracker.update(values, 6)
    result = tracker.result()
    assert result["loss/ce"] + result["loss/err"] + 0.5 == pytest.approx(values["loss"].mean())
    assert {"probs/accuracy", "value/mae", "value/r2"} <= set(result)


def test_summary_names_everything_that_decides_the_run():
    model = graphdef.load(MODELS / "digits.yaml")
    config = resolve(model, {"data": "digits"})
    lines = R.summary(model, config, 1438, 359, ["accuracy"])
    text = "\n".join(lines)
    values = sum(p.size for p in model.parameters.values())
    for part in ("training digits", f"{len(model.parameters)} parameter arrays", f"{values:,} values",
                 "optimizer adam (lr 0.002, beta1 0.9, beta2 0.999, eps 1e-08, weight_decay 0)",
                 "schedule constant", "30 epochs", "batch size 32", "1,438 training samples",
                 "359 validation (20%)", "loss loss; metrics: accuracy"):
        assert part in text, part
    config = resolve(model, {"data": "digits", "schedule": {"name": "cosine", "min_lr": 1e-4}, "epochs": 1,
                             "early_stopping": {"patience": 3}})
    text = "\n".join(R.summary(model, config, 10, 0, ["loss/ce", "loss/err"], ["ce", "err"]))
    assert "schedule cosine (min_lr 0.0001)" in text and "early stopping: on (patience 3)" in text
    assert "loss loss = ce + err; metrics: none" in text and "1 epoch, batch size" in text
    assert "0 validation (0%)" in text


def test_epoch_line_keeps_its_format_and_shows_every_value():
    row = {"epoch": 3, "loss": 0.34031, "accuracy": 0.92843, "loss/ce": 2e-7, "val_loss": 0.25812,
           "val_probs/f1": 1.0, "lr": 0.002, "seconds": 0.41}
    assert R.epoch_line(row, 30) == ("epoch 3/30  loss 0.3403  accuracy 0.9284  loss/ce 2e-07  "
                                     "val_loss 0.2581  val_probs/f1 1.0000  (0.4s)")
    assert R.number(float("nan")) == "nan" and R.number(0) == "0.0000"


def test_best_epoch_and_end_line():
    history = [{"epoch": 1, "loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.5},
               {"epoch": 2, "loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.7},
               {"epoch": 3, "loss": 0.2, "val_loss": 0.6, "val_accuracy": 0.9},
               {"epoch": 4, "loss": float("nan"), "val_loss": float("nan")}]
    assert R.best_epoch(history) == (2, "val_loss", 0.4)
    assert R.best_epoch(history, "val_accuracy") == (3, "val_accuracy", 0.9)
    assert R.best_epoch([{"epoch": 1, "loss": 0.3}]) == (1, "loss", 0.3)
    assert R.best_epoch([]) is None
    assert R.end_line(history, "runs/d/model.yaml") == \
        "best epoch 2 of 4 (val_loss 0.4000); saved the last epoch's model to runs/d/model.yaml"
    assert R.end_line(history, "m.yaml", "val_accuracy", kept=3) == \
        "best epoch 3 of 4 (val_accuracy 0.9000); saved epoch 3's model to m.yaml"
    assert "; saved epoch 1's model to" in R.end_line(history, "m.yaml", kept=1)
    assert R.end_line([], "m.yaml") == "saved trained model to m.yaml"


def test_confusion_lines():
    assert R.confusion_lines(np.array([[50, 2], [3, 45]])) == [
        "confusion (rows: true class, columns: predicted)", "     0  1", " 0  50  2", " 1   3 45"]
    assert "too wide" in R.confusion_lines(np.zeros((30, 30), int))[0]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_the_loss_even_when_an_epoch_is_faster_than_tqdm_redraws():
    """A digits epoch (~45 batches in ~50 ms) used to draw only `0/45`, never the loss."""
    out = FakeTerminal()
    with R.Progress(out, 45, "epoch 1/30") as bar:
        for b in range(45):
            bar(1.0 / (b + 1))
    assert "loss=1.0000" in out.getvalue()
    quiet = io.StringIO()
    with R.Progress(quiet, 3, "epoch 1/1") as bar:
        bar(0.5)
    assert quiet.getvalue() == ""
