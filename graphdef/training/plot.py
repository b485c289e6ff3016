"""Training curves: loss and metrics per epoch, train and validation, from a run's metrics.csv.

Needs matplotlib (the `plot` extra); training skips the picture quietly without it.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import GraphDefError, Problem
from ..format.serialize import atomic_write

CURVES = "curves.png"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_run(run_dir) -> Path:
    """Draw RUN_DIR/curves.png from RUN_DIR/metrics.csv; returns its path."""
    if not available():
        raise GraphDefError(Problem("plotting needs matplotlib", hint="pip install 'graphdef[plot]'"))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = _rows(run_dir / "metrics.csv")
    metrics = [m for m in ("loss", "accuracy") if m in rows[0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    epochs = [int(r["epoch"]) for r in rows]
    for ax, metric in zip(axes[0], metrics):
        for prefix, style in (("", "-"), ("val_", "--")):
            if rows[0].get(prefix + metric, "") != "":
                ax.plot(epochs, [float(r[prefix + metric]) for r in rows], style,
                        label=("validation " if prefix else "train ") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(run_dir / CURVES, buffer.getvalue())
    return run_dir / CURVES


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise GraphDefError(Problem("no metrics.csv here", str(path.parent),
                                    hint="give the run directory that `graphdef train` wrote"))
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise GraphDefError(Problem("metrics.csv has no epochs yet", str(path)))
    return rows
