"""Op rules. Importing this package registers every built-in op in OPS."""
from . import conv, elementwise, indexing, modes, nn, norms, pooling, shape, tensor  # noqa: F401  (they register ops)
from .batching import Lift
from .registry import OPS, Attr, Expr, Op, ShapeError, broadcast_shape, ex, register_op, unbroadcast

__all__ = ["OPS", "Attr", "Expr", "Lift", "Op", "ShapeError", "broadcast_shape", "ex", "register_op", "unbroadcast"]
