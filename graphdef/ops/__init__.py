"""Op rules. Importing this package registers every built-in op in OPS."""
# importing an op module registers its ops
from . import conv, elementwise, indexing, logic, modes, nn, norms, pooling, shape, tensor, trig  # noqa: F401
from .batching import Lift
from .registry import OPS, Attr, Expr, Op, ShapeError, broadcast_shape, ex, register_op, unbroadcast

__all__ = ["OPS", "Attr", "Expr", "Lift", "Op", "ShapeError", "broadcast_shape", "ex", "register_op", "unbroadcast"]
