"""The effective training settings: the model's `training:` block, defaults, then overrides."""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import jsonschema
import numpy as np

from ..errors import GraphDefError, Problem, did_you_mean
from ..format.schema import schema
from .optimizers import DEFAULTS

OVERRIDABLE = ("data", "epochs", "lr", "optimizer", "batch_size", "seed", "validation_split", "schedule",
               "clip_norm", "metrics", "early_stopping", "loss", "keep_checkpoints")


@dataclass
class TrainConfig:
    loss: str | None  # None only when resolved for prediction (need_loss=False)
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


def resolve(model, overrides: dict, *, need_loss: bool = True) -> TrainConfig:
    """Merge the model's training block with keyword overrides (None means: not given).

    need_loss=False is for prediction, which runs the outputs only: a model without a loss
    then resolves (with loss None) instead of being refused.
    """
    given = check_overrides(overrides)
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
    if loss not in model.graph and (need_loss or loss is not None):
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


def check_overrides(overrides: dict) -> dict:
    """The settings given (None: not given), each checked against the bounds the model format sets
    for the same setting in a `training:` block, so `--epochs 0` fails like `epochs: 0` does."""
    unknown = set(overrides) - set(OVERRIDABLE)
    if unknown:
        raise TypeError(f"unknown training settings: {', '.join(sorted(unknown))}")
    given = {k: v.item() if isinstance(v, np.generic) else v for k, v in overrides.items() if v is not None}
    checked = {k: v for k, v in given.items() if k != "data" and not (k == "optimizer" and isinstance(v, str))}
    problems = [p for k, v in checked.items() for p in _check_setting(k, v)]  # an optimizer name: see resolve
    if problems:
        raise GraphDefError(problems)
    return given


@functools.cache
def _setting_schemas() -> dict:
    """Setting name -> its JSON Schema, from the schema's training block (lr from the optimizer's)."""
    defs = schema()["$defs"]
    settings = dict(defs["training"]["properties"])
    optimizer = next(b for b in defs["optimizer"]["anyOf"] if b.get("type") == "object")
    settings["lr"] = optimizer["properties"]["lr"]
    return settings


def _check_setting(name: str, value) -> list[Problem]:
    """Problems of one setting, worded from its schema ('an integer, at least 1') where it is numeric."""
    sub = _setting_schemas()[name]
    wanted = _requirement(sub)
    validator = jsonschema.Draft202012Validator({"$defs": schema()["$defs"], **sub})
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    nonfinite = wanted is not None and isinstance(value, float) and not math.isfinite(value)
    if error is None and not nonfinite:
        return []
    return [Problem(f"training setting {name} = {value!r} is not allowed: "
                    f"{f'it must be {wanted}' if wanted else error.message}",
                    hint="a model file's training block has the same bounds")]


def _requirement(sub: dict) -> str | None:
    """'an integer, at least 1' from a numeric schema; None for other kinds of schema."""
    kind = {"integer": "an integer", "number": "a finite number"}.get(sub.get("type"))
    if kind is None:
        return None
    bounds = {"minimum": "at least", "exclusiveMinimum": "greater than",
              "maximum": "at most", "exclusiveMaximum": "less than"}
    return ", ".join([kind] + [f"{text} {sub[key]}" for key, text in bounds.items() if key in sub])


def _targets(model, predictions) -> list:
    """Inputs that reach the loss but no prediction: the ones that hold what should be predicted."""
    feeding = set().union(*(model.graph.ancestors([p]) - {p} for p in predictions)) if predictions else set()
    return [name for name in model.inputs if name not in feeding]
