"""Metrics from predictions and targets, per (prediction, target) pair, over a stream of batches.

Classification: accuracy, precision, recall, F1 (macro-averaged over the classes present in the
targets or the predictions, as scikit-learn does; with two classes also `precision_pos`,
`recall_pos`, `f1_pos` of class 1) and the confusion matrix (rows true, columns predicted).
Regression: MSE, MAE, R² (averaged over output columns, as scikit-learn's default).

Every metric comes from sums that each batch adds to (a confusion matrix of counts; squared
and absolute errors; the targets' count, mean and squared deviations, merged exactly), never
from an average of per-batch averages: metrics over chunks equal metrics over the whole set.
Undefined ratios follow scikit-learn's defaults rather than giving NaN (a precision with
nothing predicted is 0; R² of constant targets is 1 for a perfect fit, else 0); a NaN or
infinite prediction is an error naming the vertex, and no samples give no metrics.

    pairs = plan(None, {"probs": probs[:1]}, {"y": y})   # default metrics, chosen from the data
    tracker = Tracker(pairs)
    for chunk in chunks: tracker.update(values_of(chunk), len(chunk))
    tracker.result()                                       # {"accuracy": 0.98}
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import GraphDefError, Problem, did_you_mean

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "confusion")
REGRESSION = ("mse", "mae", "r2")
NAMES = CLASSIFICATION + REGRESSION  # what `training.metrics` accepts
DEFAULTS = {"classification": ("accuracy",), "regression": ("mae", "r2")}
POSITIVE = ("precision", "recall", "f1")  # with two classes also reported for class 1, as NAME_pos
LOWER_IS_BETTER = ("loss", "mse", "mae")
HINT = "lower the learning rate (--lr), set training.clip_norm, or check the data"


class Pair(NamedTuple):
    """Predictions compared with targets (several names: stacked on the last axis); metrics are
    named `prefix + metric`, the prefix empty when the model has one pair, else `PREDICTION/`."""

    prefix: str
    predictions: tuple
    targets: tuple
    kind: str | None  # "classification", "regression", or None: nothing comparable
    classes: int = 0  # classification: K (2 for a single sigmoid column)
    names: tuple = ()


# -- choosing --------------------------------------------------------------------------------

def columns(a) -> np.ndarray:
    """One row per sample, its values flattened, in float64: a [B] label and a [B, 1] prediction
    line up as [B, 1] each (compared as they are, [B, 1] against [B] broadcast to [B, B])."""
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), math.prod(a.shape[1:])) if a.ndim else a.reshape(1, 1)


def kind(prediction, target) -> tuple[str | None, int]:
    """(kind, classes) of a pair from a sample of predictions and the targets' values: classification
    when targets are one-hot rows for K > 1 prediction columns, or class indices 0..K-1 (0/1 for one
    sigmoid column); regression when the widths agree otherwise; None when they cannot be compared."""
    width, t = columns(prediction).shape[1], columns(target)
    if len(t) and width > 1 and t.shape[1] == width and _one_hot(t):
        return "classification", width
    if len(t) and t.shape[1] == 1 and _labels_below(t, max(width, 2)) and (width > 1 or _binary(t)):
        return "classification", max(width, 2)
    return ("regression", 0) if t.shape[1] == width else (None, 0)


def _one_hot(t: np.ndarray) -> bool:
    return bool(np.all((t == 0) | (t == 1)) and np.all(t.sum(1) == 1))


def _labels_below(t: np.ndarray, classes: int) -> bool:
    return bool(np.all(t == np.round(t)) and t.min() >= 0 and t.max() < classes)


def _binary(t: np.ndarray) -> bool:
    return bool(np.all((t == 0) | (t == 1)))


def default_metrics(predictions: dict, targets: dict) -> list[str]:
    """The metrics reported when the training block names none: accuracy for class predictions,
    MAE and R² for the others, per pair (see plan), without repeats."""
    names = [n for p in plan(None, predictions, targets) for n in p.names]
    return list(dict.fromkeys(names))


def pair_up(predictions: dict, targets: dict) -> list[tuple[tuple, tuple]]:
    """Which predictions go with which targets: position by position (a target that cannot be
    compared with its prediction is swapped for the first comparable one left); several names on
    one side and one on the other are stacked on the last axis, as training.predictions says."""
    p, t = list(predictions), list(targets)
    if len(p) == len(t) > 1 and _stackable(predictions) and _stackable(targets) \
            and np.ndim(predictions[p[0]]) == 1:  # one scalar per class on each side (the lecture's network)
        if kind(stacked(predictions, tuple(p)), stacked(targets, tuple(t)))[0] == "classification":
            return [(tuple(p), tuple(t))]
    if len(p) != len(t) and 1 in (len(p), len(t)) and _stackable(predictions if len(t) == 1 else targets):
        if kind(stacked(predictions, tuple(p)), stacked(targets, tuple(t)))[0]:
            return [(tuple(p), tuple(t))]
    left, pairs = list(t), []
    for i, name in enumerate(p):
        same = [t[i]] if i < len(t) and t[i] in left else []
        comparable = [c for c in same + left if kind(predictions[name], targets[c])[0]]
        chosen = (comparable or same or [None])[0]
        if chosen is not None:
            left.remove(chosen)
            pairs.append(((name,), (chosen,)))
    return pairs


def _stackable(arrays: dict) -> bool:
    return len({np.shape(a) for a in arrays.values()}) == 1


def stacked(values: dict, names: tuple) -> np.ndarray:
    """The value of one name, or several names' values stacked on the last axis."""
    return values[names[0]] if len(names) == 1 else np.stack([values[n] for n in names], axis=-1)


def plan(names, predictions: dict, targets: dict) -> list[Pair]:
    """The pairs and what to report for each: `names` (the training block's list) or, when None,
    the defaults for each pair's kind. predictions: name -> an array of a few rows (for shapes);
    targets: name -> every target value (class labels are told from the data).
    A name that no pair can report is an error saying why."""
    check_names(names)
    found = []
    for preds, targs in pair_up(predictions, targets):
        k, classes = kind(stacked(predictions, preds), stacked(targets, targs))
        wanted = DEFAULTS.get(k, ()) if names is None else [n for n in names if n in _family(k)]
        found.append(Pair("", preds, targs, k, classes, tuple(dict.fromkeys(wanted))))
    if len(found) > 1:
        found = [p._replace(prefix="+".join(p.predictions) + "/") for p in found]
    _check_used(names, found)
    return found


def _family(kind_: str | None) -> tuple:
    return {"classification": CLASSIFICATION, "regression": REGRESSION}.get(kind_, ())


def check_names(names) -> None:
    """Refuse a metric name the training block does not accept, with the closest one."""
    for name in names or ():
        if name not in NAMES:
            raise GraphDefError(Problem(f"unknown metric '{name}'",
                                        hint=did_you_mean(name, NAMES) or f"use some of: {', '.join(NAMES)}"))


def _check_used(names, pairs: list[Pair]) -> None:
    for name in names or ():
        if not any(name in p.names for p in pairs):
            seen = "; ".join(f"{'+'.join(p.predictions)} vs {'+'.join(p.targets)}: {p.kind or 'not comparable'}"
                             for p in pairs) or "no prediction has a target"
            raise GraphDefError(Problem(
                f"metric '{name}' needs {'class' if name in CLASSIFICATION else 'numeric'} targets "
                f"for a prediction ({seen})",
                hint="class targets are one-hot rows or indices 0..K-1 for K prediction columns "
                     "(0/1 for one sigmoid column); or choose other metrics in training.metrics"))


def lower_is_better(key: str) -> bool:
    """Whether a history key (`val_probs/mae`, `loss/ce`) improves by going down."""
    base = key.removeprefix("val_")
    return base.startswith("loss/") or base.split("/")[-1] in LOWER_IS_BETTER


# -- accumulating ----------------------------------------------------------------------------

class Confusion:
    """Counts of (true class, predicted class): every classification metric derives from them."""

    def __init__(self, classes: int):
        self.matrix = np.zeros((classes, classes), dtype=np.int64)

    def update(self, prediction, target, name: str = "prediction") -> None:
        (p, t), k = _aligned(name, prediction, target), len(self.matrix)
        if p.shape[1] not in (1, k) or t.shape[1] not in (1, k):
            raise GraphDefError(Problem(f"'{name}' has {p.shape[1]} values per sample and its target "
                                        f"{t.shape[1]}: neither is 1 or one per class ({k})"))
        if not len(p):
            return
        predicted = p.argmax(1) if p.shape[1] > 1 else (p[:, 0] > 0.5).astype(np.int64)
        actual = t.argmax(1) if t.shape[1] > 1 else _class_indices(t[:, 0], k, name)
        self.matrix += np.bincount(actual * k + predicted, minlength=k * k).reshape(k, k)

    def result(self) -> dict:
        """accuracy, macro precision/recall/f1 and, for two classes, those of class 1; {} with no samples."""
        m = self.matrix
        n, tp, predicted, true = m.sum(), np.diag(m), m.sum(0), m.sum(1)
        if n == 0:
            return {}
        scores = {"precision": _ratio(tp, predicted), "recall": _ratio(tp, true),
                  "f1": _ratio(2 * tp, predicted + true)}
        present = (predicted + true) > 0
        out = {"accuracy": float(tp.sum() / n), **{k: float(v[present].mean()) for k, v in scores.items()}}
        if len(m) == 2:
            out |= {f"{k}_pos": float(v[1]) for k, v in scores.items()}
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division default), never NaN."""
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def _class_indices(labels: np.ndarray, classes: int, name: str) -> np.ndarray:
    if not (np.all(labels == np.round(labels)) and labels.min() >= 0 and labels.max() < classes):
        bad = labels[(labels != np.round(labels)) | (labels < 0) | (labels >= classes)][0]
        raise GraphDefError(Problem(f"the target of '{name}' holds {bad:g}, not a class index 0..{classes - 1}",
                                    hint="give class indices, one-hot rows, or 0/1 labels for one sigmoid output"))
    return labels.astype(np.int64)


def _aligned(name: str, prediction, target) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and target as finite [B, width] arrays of the same number of samples."""
    p, t = _finite(f"'{name}'", prediction), _finite(f"the target of '{name}'", target)
    if len(p) != len(t):
        raise GraphDefError(Problem(f"'{name}' has {len(p)} samples, its target {len(t)}"))
    return p, t


def _finite(who: str, a) -> np.ndarray:
    """`a` as columns, or an error saying which samples are NaN or infinite (never a NaN metric)."""
    a = columns(a)
    if np.isfinite(a).all():  # the common case, in one pass
        return a
    bad = ~np.isfinite(a).all(1)
    raise GraphDefError(Problem(f"{who} is NaN or infinite for {int(bad.sum())} of {len(a)} samples "
                                f"(the first: sample {int(np.argmax(bad))} of the batch); its metrics "
                                f"would be meaningless", hint=HINT))


class Errors:
    """Sums of squared and absolute errors, and the targets' count, mean and squared deviations
    per column (merged with Chan's exact formula, so chunks add up to the whole set)."""

    def __init__(self):
        self.n = 0
        self.sse = self.sae = self.mean = self.m2 = np.zeros(0)

    def update(self, prediction, target, name: str = "prediction") -> None:
        p, t = _aligned(name, prediction, target)
        if p.shape != t.shape or self.n and p.shape[1] != len(self.sse):
            raise GraphDefError(Problem(f"'{name}' has {p.shape[1]} values per sample, its target {t.shape[1]}",
                                        hint="compare a prediction with a target of the same size"))
        if not len(p):
            return
        if self.n == 0:
            self.sse = self.sae = self.mean = self.m2 = np.zeros(p.shape[1])
        mean, n = t.mean(0), len(t)
        delta, total = mean - self.mean, self.n + n
        self.m2 = self.m2 + ((t - mean) ** 2).sum(0) + delta ** 2 * self.n * n / total
        self.mean = self.mean + delta * n / total
        self.sse, self.sae = self.sse + ((p - t) ** 2).sum(0), self.sae + np.abs(p - t).sum(0)
        self.n = total

    def result(self) -> dict:
        """mse, mae, r2 (1 - SSE/SST per column, then averaged; a constant column scores 1 when
        fitted exactly, else 0, as scikit-learn's force_finite); {} with no samples."""
        if self.n == 0:
            return {}
        r2 = np.where(self.m2 > 0, 1 - self.sse / np.where(self.m2 > 0, self.m2, 1), (self.sse == 0) * 1.0)
        return {"mse": float(self.sse.mean() / self.n), "mae": float(self.sae.mean() / self.n), "r2": float(r2.mean())}


def classification(prediction, target, classes: int | None = None) -> dict:
    """Every classification metric of one pair at once, the confusion matrix included."""
    counts = Confusion(classes or max(columns(prediction).shape[1], 2))
    counts.update(prediction, target)
    return {**counts.result(), "confusion": counts.matrix}


def regression(prediction, target) -> dict:
    """mse, mae and r2 of one pair at once."""
    errors = Errors()
    errors.update(prediction, target)
    return errors.result()


def _restored(like, saved: dict):
    """A new accumulator like `like`, holding `saved` (checked: shapes, signs, finite sums)."""
    if isinstance(like, Confusion):
        matrix = np.array(saved["matrix"], dtype=np.int64)
        if matrix.shape != like.matrix.shape or (matrix < 0).any():
            raise ValueError(f"a confusion matrix of shape {list(matrix.shape)}, not {list(like.matrix.shape)}")
        restored = Confusion(len(matrix))
        restored.matrix = matrix
        return restored
    restored, arrays = Errors(), [np.array(saved[k], dtype=np.float64) for k in ("sse", "sae", "mean", "m2")]
    restored.n = int(saved["n"])
    if restored.n < 0 or len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1 or \
            not all(np.isfinite(a).all() for a in arrays) or (restored.n == 0) != (arrays[0].size == 0):
        raise ValueError("error sums of different sizes, a negative count, or non-finite sums")
    restored.sse, restored.sae, restored.mean, restored.m2 = arrays
    return restored


class Tracker:
    """The running metrics of a training epoch or an evaluation: one accumulator per pair, and the
    mean of each loss term (`loss/VERTEX`); `state()` is JSON for checkpoints, so a resumed epoch
    goes on with the same sums."""

    def __init__(self, pairs: list[Pair], terms=()):
        self.pairs, self.terms = [p for p in pairs if p.names], tuple(terms)
        self.reset()

    def reset(self) -> None:
        self.sums = [Confusion(p.classes) if p.kind == "classification" else Errors() for p in self.pairs]
        self.term_sums, self.count = {t: 0.0 for t in self.terms}, 0

    def update(self, values: dict, n: int) -> None:
        """Add a batch: values holds every prediction, target and loss term of n samples."""
        for pair, sums in zip(self.pairs, self.sums):
            sums.update(stacked(values, pair.predictions), stacked(values, pair.targets), "+".join(pair.predictions))
        for term in self.terms:
            self.term_sums[term] += float(np.mean(values[term])) * n
        self.count += n

    def result(self) -> dict:
        """The scalar metrics asked for, named `prefix + metric` (`_pos` ones with their metric)."""
        out = {}
        for pair, sums in zip(self.pairs, self.sums):
            scores = sums.result()
            out |= {pair.prefix + k: v for k, v in scores.items() if k.removesuffix("_pos") in pair.names}
        if self.count:
            out |= {f"loss/{t}": s / self.count for t, s in self.term_sums.items()}
        return out

    def keys(self) -> list[str]:
        """The names result() gives once it has samples (what early stopping may monitor), in its order."""
        out = []
        for pair in self.pairs:
            scalars = [n for n in CLASSIFICATION[:4] + REGRESSION if n in pair.names]
            out += [pair.prefix + n for n in scalars]
            if pair.classes == 2:
                out += [pair.prefix + n + "_pos" for n in POSITIVE if n in pair.names]
        return out + [f"loss/{t}" for t in self.terms]

    def confusions(self) -> dict:
        """`prefix + "confusion"` -> the matrix, for the pairs that asked for it."""
        return {p.prefix + "confusion": s.matrix.copy()
                for p, s in zip(self.pairs, self.sums) if "confusion" in p.names}

    def state(self) -> dict:
        sums = [{"matrix": s.matrix.tolist()} if isinstance(s, Confusion) else
                {"n": s.n, **{k: getattr(s, k).tolist() for k in ("sse", "sae", "mean", "m2")}} for s in self.sums]
        return {"sums": sums, "terms": dict(self.term_sums), "count": self.count}

    def load(self, state: dict) -> None:
        """Continue from `state()` (JSON floats read back exactly: a resumed run stays bit for bit).
        A state that does not fit these metrics (a checkpoint edited, or of another model) is an
        error, and leaves the tracker as it was."""
        try:
            sums = [_restored(s, saved) for s, saved in zip(self.sums, state["sums"], strict=True)]
            terms = {t: float(state["terms"][t]) for t in self.terms}
            count = int(state["count"])
            if count < 0 or not all(map(math.isfinite, terms.values())):
                raise ValueError("a negative count or a non-finite sum")
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise GraphDefError(Problem(f"the saved metrics do not fit this model's metrics ({e})",
                                        hint="resume from another checkpoint, or train again")) from None
        self.sums, self.term_sums, self.count = sums, terms, count
