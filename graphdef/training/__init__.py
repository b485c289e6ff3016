"""Training: data feeding, optimizers, the loop, checkpoints, evaluation and prediction."""
from .. import _lazy_attributes

__getattr__, __dir__ = _lazy_attributes(__name__, {
    "History": ".loop:History", "evaluate": ".loop:evaluate", "predict": ".loop:predict", "split": ".loop:split",
    "train": ".loop:train", "prediction_columns": ".tables:prediction_columns"})
__all__ = ["History", "evaluate", "predict", "prediction_columns", "split", "train"]
