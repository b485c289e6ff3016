"""Training curves: loss and metrics per epoch, train and validation, from a run's metrics.csv,
titled with the model's name, the best epoch marked, the loss on a log scale when it spans decades.

Needs matplotlib (the `plot` extra); training skips the picture quietly without it.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import GraphDefError, Problem
from ..format.serialize import atomic_write

CURVES = "curves.png"
LOG_DECADES = 2  # the loss drawn on a log scale when its largest value is over 10**LOG_DECADES its smallest


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_run(run_dir, log: bool | None = None) -> Path:
    """Draw RUN_DIR/curves.png from RUN_DIR/metrics.csv; returns its path. `log`: the loss on a log
    scale (None: when it spans more than LOG_DECADES decades, where a linear axis flattens the end)."""
    import matplotlib.pyplot as plt
    run_dir = Path(run_dir)
    fig, _ = figure(run_dir, log)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(run_dir / CURVES, buffer.getvalue())
    return run_dir / CURVES


@dataclass(frozen=True)
class Curves:
    """What the picture shows, for callers and tests that would rather not read pixels."""
    title: str
    log: bool
    best: tuple | None  # (epoch, key, value): the epoch marked, by report.best_epoch


def figure(run_dir, log: bool | None = None):
    """(matplotlib figure, Curves): one panel per metric, train and validation, the best epoch marked
    (lowest validation loss, else lowest training loss: the epoch worth keeping), titled with the model's
    name (the run folder's name is often a date or `spirals-3`, which says less)."""
    if not available():
        raise GraphDefError(Problem("plotting needs matplotlib", hint="pip install 'graphdef[plot]'"))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .report import best_epoch

    run_dir = Path(run_dir)
    rows = _rows(run_dir / "metrics.csv")
    history = [{k: int(v) if k == "epoch" else _number(v) for k, v in r.items()} for r in rows]
    best = best_epoch(history)
    log = _spans_decades(history) if log is None else log
    metrics = [m for m in ("loss", "accuracy") if m in rows[0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    epochs = [int(r["epoch"]) for r in rows]
    for ax, metric in zip(axes[0], metrics):
        for prefix, style in (("", "-"), ("val_", "--")):
            if rows[0].get(prefix + metric, "") != "":
                ax.plot(epochs, [float(r[prefix + metric]) for r in rows], style,
                        label=("validation " if prefix else "train ") + metric)
        if best is not None:
            _mark(ax, best, metric, history)
        if metric == "loss" and log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(metric + (" (log scale)" if metric == "loss" and log else ""))
        ax.grid(alpha=0.3)
        ax.legend()
    title = model_name(run_dir)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, Curves(title, bool(log), best)


def model_name(run_dir: Path) -> str:
    """The `name:` of the run's model.yaml, else the folder's name (a run still being written)."""
    import yaml
    try:
        name = yaml.safe_load((run_dir / "model.yaml").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        name = None
    return str(name) if name else run_dir.name


def _mark(ax, best: tuple, metric: str, history: list) -> None:
    """A dotted line at the best epoch on every panel, and a dot on the curve it was chosen by."""
    epoch, key, value = best
    which = "lowest validation loss" if key == "val_loss" else "lowest training loss" if key == "loss" else key
    ax.axvline(epoch, color="#2f9e44", linestyle=":", linewidth=1.2,
               label=f"best epoch {epoch} ({which} {value:.4g})")
    if key.removeprefix("val_") == metric:
        ax.plot([epoch], [value], "o", color="#2f9e44")


def _spans_decades(history: list) -> bool:
    """Whether the positive losses span more than LOG_DECADES decades."""
    losses = [r[k] for r in history for k in ("loss", "val_loss") if isinstance(r.get(k), float) and r[k] > 0]
    return bool(losses) and math.log10(max(losses) / min(losses)) > LOG_DECADES


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise GraphDefError(Problem("no metrics.csv here", str(path.parent),
                                    hint="give the run directory that `graphdef train` wrote"))
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise GraphDefError(Problem("metrics.csv has no epochs yet", str(path)))
    return rows
