"""The text lines training prints: what is about to run, each epoch, how it ended; and the live bar.

Kept apart from the loop so that every line is a plain function of its data, tested without
training anything: the summary at the start says everything that decides the run (a user
comparing two runs compares these lines), the epoch line every reported value, the end line
which epoch was best and where the model is.
"""
from __future__ import annotations

import math

import numpy as np

from .metrics import lower_is_better
from .optimizers import DEFAULTS

HIDDEN = ("epoch", "lr", "seconds")  # in the history row, not in the epoch line
MAX_LISTED = 6  # parameters named in the summary
MAX_CLASSES = 20  # a larger confusion matrix is left to --json


def number(value) -> str:
    """4 decimals (as the epoch line always had), significant digits for tiny values, so a
    loss of 2e-7 does not print as 0.0000; NaN and infinity spelled out."""
    value = float(value)
    if not math.isfinite(value) or value == 0 or abs(value) >= 1e-3:
        return f"{value:.4f}"
    return f"{value:.3g}"


def loss_terms(model, loss: str) -> list[str]:
    """The nodes whose sum is the loss (the inputs of the chain of `add` nodes ending at the loss,
    left to right), so a multi-output model's epoch line shows each term; [] for fewer than two."""
    vertices, terms = model.graph.vertices, []

    def walk(name):
        v = vertices[name]
        if v.kind == "node" and v.op.name == "add":
            for arg in v.inputs:
                walk(arg)
        elif v.kind == "node":
            terms.append(name)

    walk(loss)
    return list(dict.fromkeys(terms)) if len(terms) > 1 else []


def parameter_count(model) -> tuple[int, int]:
    """(parameter arrays, values in them)."""
    return len(model.parameters), int(sum(np.size(p) for p in model.parameters.values()))


def summary(model, config, n_train: int, n_val: int, metrics=(), terms=()) -> list[str]:
    """The lines printed before the first epoch: model, parameters, optimizer, schedule, sizes, metrics
    (the names a Tracker reports; its loss terms are said with the loss)."""
    arrays, values = parameter_count(model)
    metrics = [m for m in metrics if not m.startswith("loss/")]
    listed = ", ".join(f"{k} {list(np.shape(v))}" for k, v in list(model.parameters.items())[:MAX_LISTED])
    more = f", ... ({arrays - MAX_LISTED} more)" if arrays > MAX_LISTED else ""
    lines = [f"training {model.name}: {arrays} parameter arrays, {values:,} values"
             + (f" ({listed}{more})" if arrays else ""),
             f"  optimizer {_optimizer(config.optimizer)}; schedule {_settings(config.schedule)}"
             + (f"; clip_norm {config.clip_norm:g}" if config.clip_norm else ""),
             f"  {config.epochs} epoch{'s' * (config.epochs != 1)}, batch size {config.batch_size}; "
             f"{n_train:,} training samples, {n_val:,} validation ({n_val / max(n_train + n_val, 1):.0%})",
             f"  loss {config.loss}" + (f" = {' + '.join(terms)}" if terms else "")
             + f"; metrics: {', '.join(metrics) or 'none'}"]
    if model.state:
        lines.append(f"  {len(model.state)} state arrays (running statistics: updated by training steps, used "
                     "in inference)")
    if config.early_stopping:
        lines.append(f"  early stopping: {_settings({'name': 'on', **config.early_stopping})}")
    return lines


def _optimizer(optimizer: dict) -> str:
    """name: lr X, then every setting (defaults included: they decide the run as much)."""
    settings = {**DEFAULTS.get(optimizer["name"], {}), **optimizer}
    return _settings(settings)


def _settings(settings: dict) -> str:
    """`name (k v, ...)` of a settings dict."""
    rest = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items() if k != "name")
    return f"{settings.get('name')}" + (f" ({rest})" if rest else "")


def epoch_line(row: dict, epochs: int) -> str:
    """`epoch 3/30  loss 0.3403  accuracy 0.9284  val_loss 0.2581 ...  (0.4s)`: every value of the
    history row but its epoch, learning rate and time, in the row's order."""
    shown = "  ".join(f"{k} {number(v)}" for k, v in row.items() if k not in HIDDEN and _scalar(v))
    return f"epoch {row['epoch']}/{epochs}  {shown}  ({row.get('seconds', 0.0):.1f}s)"


def _scalar(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def best_epoch(history, monitor: str | None = None) -> tuple[int, str, float] | None:
    """(epoch, key, value) of the best epoch: by `monitor` (early stopping's), else by validation
    loss, else by training loss; the earliest of equals; None when no epoch has a finite value."""
    key = monitor or ("val_loss" if any("val_loss" in r for r in history) else "loss")
    rows = [r for r in history if _scalar(r.get(key)) and math.isfinite(r[key])]
    if not rows:
        return None
    pick = min if lower_is_better(key) else max
    row = pick(rows, key=lambda r: r[key])
    return row["epoch"], key, row[key]


def end_line(history, saved, monitor: str | None = None, kept: int | None = None) -> str:
    """`best epoch 27 of 30 (val_loss 0.0712); saved the last epoch's model to PATH`; `kept`, the epoch
    whose weights early stopping restored, is said when it is the one saved."""
    best = best_epoch(history, monitor)
    if best is None:
        return f"saved trained model to {saved}"
    epoch, key, value = best
    which = f"epoch {kept}'s" if kept else "the last epoch's"
    return f"best epoch {epoch} of {len(history)} ({key} {number(value)}); saved {which} model to {saved}"


def confusion_lines(matrix, title: str = "confusion") -> list[str]:
    """A confusion matrix as aligned text (rows: true class, columns: predicted)."""
    m = np.asarray(matrix)
    if len(m) > MAX_CLASSES:
        return [f"{title}: {len(m)}×{len(m)} (too wide to print; graphdef eval --json has it)"]
    width = max(len(str(int(m.max()))) if m.size else 1, len(str(len(m) - 1)), 2)
    head = " " * (width + 2) + " ".join(f"{j:>{width}}" for j in range(len(m)))
    rows = [f"{i:>{width}}  " + " ".join(f"{int(c):>{width}}" for c in row) for i, row in enumerate(m)]
    return [f"{title} (rows: true class, columns: predicted)", head, *rows]


class Progress:
    """A tqdm bar of the epoch's batches with the running loss, on terminals only (a log file
    gets the epoch lines alone).

    Why the bar used to show no loss at default settings: tqdm redraws at most every
    `mininterval` (0.1 s), `set_postfix(refresh=False)` only stores the text, and the bar
    (leave=False) is erased when the epoch ends. A digits epoch takes ~50 ms, so the only
    drawing was tqdm's first one, at 0/45 before any loss, then erased. Here the first batch
    always redraws: every epoch shows its loss, however fast; later ones as tqdm's interval allows.
    """

    def __init__(self, out, total: int, label: str):
        self.bar = None
        if getattr(out, "isatty", lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=label, file=out, leave=False, dynamic_ncols=True)

    def __enter__(self):
        return self

    def __call__(self, loss: float) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix(loss=number(loss), refresh=False)
        self.bar.update()
        if self.bar.n == 1:
            self.bar.refresh()

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
