"""Training: data feeding, optimizers, the loop, checkpoints, evaluation and prediction."""
from .loop import History, evaluate, predict, split, train
from .tables import prediction_columns

__all__ = ["History", "evaluate", "predict", "prediction_columns", "split", "train"]
