"""Training: data feeding, optimizers, the loop, checkpoints, evaluation and prediction."""
from .loop import History, evaluate, predict, split, train

__all__ = ["History", "evaluate", "predict", "split", "train"]
