"""The effective training settings: the model's `training:` block, defaults, then overrides."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import networkx as nx

from ..errors import GraphDefError, Problem, did_you_mean
from .optimizers import DEFAULTS

OVERRIDABLE = ("data", "epochs", "lr", "optimizer", "batch_size", "seed", "validation_split", "schedule",
               "clip_norm", "metrics", "early_stopping", "loss", "keep_checkpoints")


@dataclass
class TrainConfig:
    loss: str
    data: dict | None
    optimizer: dict
    schedule: dict = field(default_factory=lambda: {"name": "constant"})
    clip_norm: float | None = None
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    validation_split: float = 0.2
    metrics: list | None = None  # None: accuracy when the targets look like classes
    predictions: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    early_stopping: dict | None = None
    keep_checkpoints: int = 3

    def block(self) -> dict:
        """The settings as a `training:` block, for the saved model and checkpoints."""
        block = {k: v for k, v in asdict(self).items() if v is not None and k != "targets"}
        if self.data is not None:
            block["data"] = {**self.data, "targets": self.targets}
        return block


def resolve(model, overrides: dict) -> TrainConfig:
    """Merge the model's training block with keyword overrides (None means: not given)."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"unknown training settings: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    block = {**(model.doc.get("training") or {}), **{k: v for k, v in given.items() if k not in ("lr", "data")}}
    optimizer = block.get("optimizer", "adam")
    optimizer = {"name": optimizer} if isinstance(optimizer, str) else dict(optimizer)
    if optimizer["name"] not in DEFAULTS:
        raise GraphDefError(Problem(f"unknown optimizer '{optimizer['name']}'",
                                    hint=did_you_mean(optimizer["name"], DEFAULTS) or f"use one of: {', '.join(DEFAULTS)}"))
    if "lr" in given:
        optimizer["lr"] = float(given["lr"])
    schedule = block.get("schedule", "constant")
    data = block.get("data")
    if "data" in given:
        data = {**(data or {}), "source": given["data"]}
    loss = block.get("loss") or model.loss
    if loss is None or loss not in model.graph:
        raise GraphDefError(model.locate(("training",), f"no loss vertex '{loss}'" if loss else "the model has no loss",
                                         "set `loss: NODE` in the model (or `training.loss`)"))
    predictions = list(block.get("predictions") or [o for o in model.outputs if o != loss])
    targets = list((data or {}).get("targets") or _targets(model, predictions))
    return TrainConfig(
        loss=loss, data=data, optimizer=optimizer,
        schedule={"name": schedule} if isinstance(schedule, str) else dict(schedule),
        clip_norm=block.get("clip_norm"), epochs=int(block.get("epochs", 10)),
        batch_size=int(block.get("batch_size", 32)), seed=int(block.get("seed", 0)),
        validation_split=float(block.get("validation_split", 0.2)), metrics=block.get("metrics"),
        predictions=predictions, targets=targets, early_stopping=block.get("early_stopping"),
        keep_checkpoints=int(block.get("keep_checkpoints", 3)))


def _targets(model, predictions) -> list:
    """Inputs that reach the loss but no prediction: the ones that hold what should be predicted."""
    feeding = set().union(*(nx.ancestors(model.graph, p) for p in predictions)) if predictions else set()
    return [name for name in model.inputs if name not in feeding]
