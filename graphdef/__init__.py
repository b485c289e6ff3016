"""graphdef: declarative computation graphs in YAML, run forward and differentiated backward.

    import graphdef
    model = graphdef.load("models/lecture.yaml")
    model.forward({"a": 3, "b": 5})["e"]            # 48
    model.gradients({"a": 3, "b": 5}, of="e")       # {'a': 6, 'b': 14}
"""
from .errors import GraphDefError, Problem
from .format.loader import load, loads
from .engine.model import Model
from .ops import OPS, register_op
from .format.source import Limits
from .training import plot
from .training import evaluate, predict, train

__all__ = ["GraphDefError", "Limits", "Model", "OPS", "Problem", "evaluate", "load", "loads", "predict",
           "register_op", "train"]
__version__ = "0.1.0"
