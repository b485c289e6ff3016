"""Comparisons, logic, and where the largest or smallest entry is: ops giving booleans or indices.

None has a gradient: a result that holds booleans or integers has none to pass back (and is
piecewise constant in a float input anyway). Comparisons take two inputs of one kind, floats
or int64, and broadcast; logical ops take booleans; as in ONNX. The tests draw small integers
for them, so that ties (x = y, equal entries) occur.
"""
import numpy as np

from .batching import along_axis, elementwise
from .elementwise import BINARY, NUMBERS, UNARY, giving, onnx_node
from .registry import CONDITION, DTypeError, Integers, ex, register_op
from .tensor import _reduce_shape

SMALL = Integers(-2, 3)


def BOOLS(*dtypes, **attrs) -> str:
    """The dtype rule of logical ops: booleans in, a boolean out."""
    for i, d in enumerate(dtypes):
        if d != "bool":
            raise DTypeError(f"input {i + 1} holds {d} values; logical ops take booleans: make them with a "
                             "comparison, or declare `dtype: bool`")
    return "bool"


def _comparison(name: str, operator: str, onnx: str):
    """x <operator> y, elementwise: the same expression in numpy and PyTorch."""
    register_op(name, f"x, y: x {operator} y", None, batch=elementwise, dtype=giving("bool", NUMBERS),
                doc=f"whether x {operator} y, broadcasting (a bool)", examples=BINARY, domain=[SMALL, SMALL],
                onnx=onnx_node(onnx), torch=f"x, y: x {operator} y")


_comparison("equal", "==", "Equal")
_comparison("less", "<", "Less")
_comparison("less_equal", "<=", "LessOrEqual")
_comparison("greater", ">", "Greater")
_comparison("greater_equal", ">=", "GreaterOrEqual")


def _logical(name: str, args: str, onnx: str, doc: str):
    """numpy's and PyTorch's function of the same name, on booleans."""
    unary = args == "x"
    register_op(name, f"{args}: np.{name}({args})", None, batch=elementwise, dtype=BOOLS, doc=doc,
                examples=UNARY if unary else BINARY, domain=[CONDITION] * (1 if unary else 2), onnx=onnx_node(onnx),
                torch=f"{args}: torch.{name}({args})")


_logical("logical_not", "x", "Not", "not x, for booleans")
_logical("logical_and", "x, y", "And", "x and y, for booleans, broadcasting")
_logical("logical_or", "x, y", "Or", "x or y, for booleans, broadcasting")
_logical("logical_xor", "x, y", "Xor", "x or y but not both, for booleans, broadcasting")


# -- argmax, argmin ---------------------------------------------------------------------------

def _position(pick, x, axis: int, keepdims: bool, last: bool):
    """pick (np.argmax or np.argmin) along axis; the last index among ties when `last`, read in the flipped x."""
    if last:
        return np.shape(x)[axis] - 1 - pick(np.flip(x, axis), axis=axis, keepdims=keepdims)
    return pick(x, axis=axis, keepdims=keepdims)


def _position_op(name: str, onnx: str, which: str):
    """argmax or argmin, as ONNX ArgMax and ArgMin."""
    register_op(name, f"x, *, axis=0, keepdims=True, select_last_index=False: "
                      f"_position(np.{name}, x, axis, keepdims, select_last_index)", None,
                shape=lambda x, *, axis, keepdims, select_last_index: _reduce_shape(x, axis=axis, keepdims=keepdims),
                batch=along_axis, dtype=giving("int64", NUMBERS), domain=[Integers(0, 3)],
                doc=f"the index (int64) of the {which} entry along axis, the first among ties or, with "
                    "select_last_index, the last (ONNX's attributes and defaults)",
                examples=[ex((4,)), ex((2, 3), axis=1), ex((2, 3), axis=-1, keepdims=False),
                          ex((3, 4), select_last_index=True),
                          ex((2, 3, 2), axis=1, keepdims=False, select_last_index=True)],
                onnx=lambda e, i, o, a: e.node(onnx, i, o, axis=a["axis"], keepdims=int(a["keepdims"]),
                                               select_last_index=int(a["select_last_index"])),
                torch=f"x: x.shape[axis] - 1 - torch.{name}(x.flip(axis), axis, keepdims) if select_last_index "
                      f"else torch.{name}(x, axis, keepdims)")


_position_op("argmax", "ArgMax", "largest")
_position_op("argmin", "ArgMin", "smallest")
