"""Import rules of ONNX's recurrent layers, GRU, LSTM and RNN: per direction, one `repeat` of the
standard library's step function over the sequence.

ONNX packs a layer's weights per direction, W [dirs, gates·hidden, input], R [dirs, gates·hidden,
hidden] and B [dirs, 2·gates·hidden] (W's biases, then R's), its gates in its own order. The step
functions (gru_step, lstm_step, rnn_step, which gru_cell and lstm_cell call too) take PyTorch's
layout (x @ W: [input, gates·hidden]) and gate order. Each direction's weights are rearranged
once, by graphdef ops (select the direction, reorder the gates, transpose), so that gradients
reach W, R and B as the file stores them: they are the imported model's parameters.

The repeat carries the states, reads the sequence item by item (`over`), hands every step the
same rearranged weights (`given`) and stacks the hidden states (`sequence`): ONNX's Y.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .importer import Value, known, rule
from .proto import Malformed, Unsupported

DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}  # reversed, per direction
UNARY = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "softsign": "softsign", "softplus": "softplus"}


@dataclass(frozen=True)
class Cell:
    """What sets GRU, LSTM and RNN apart on import; the rest of the conversion they share."""

    step: str  # the standard library's step function: step(*states, x, *weights, **attributes)
    order: tuple  # ONNX's gate blocks in the order the step function wants them
    states: tuple  # the step's outputs, the states it carries (h first)
    activations: tuple  # ONNX's default activations (one direction's)
    separate_biases: bool  # W's and R's biases go in apart (GRU's reset gate needs R's alone), or summed
    activation: bool = False  # the step takes ONNX's single activation as its `activation` attribute


GRU = Cell("gru_step", (1, 0, 2), ("h_next",), ("Sigmoid", "Tanh"), separate_biases=True)  # z r h -> r z n
LSTM = Cell("lstm_step", (0, 2, 3, 1), ("h_next", "c_next"), ("Sigmoid", "Tanh", "Tanh"),  # i o f c -> i f g o
            separate_biases=False)
RNN = Cell("rnn_step", (0,), ("h_next",), ("Tanh",), separate_biases=False, activation=True)


@rule("GRU")
def gru(imp, x, w, r, b=None, sequence_lens=None, initial_h=None, *, activations=None, direction, hidden_size=None,
        layout=0, linear_before_reset):
    return recurrent(imp, GRU, x, (w, r, b), sequence_lens, (initial_h,), activations, direction, hidden_size,
                     layout, {"linear_before_reset": bool(linear_before_reset)})


@rule("LSTM")
def lstm(imp, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *, activations=None,
         direction, hidden_size=None, layout=0):
    if p is not None and not (p.numeric and not p.known.any()):
        raise Unsupported("peephole weights (input P)")
    return recurrent(imp, LSTM, x, (w, r, b), sequence_lens, (initial_h, initial_c), activations, direction,
                     hidden_size, layout, {})


@rule("RNN")
def rnn(imp, x, w, r, b=None, sequence_lens=None, initial_h=None, *, activations=None, direction, hidden_size=None,
        layout=0):
    return recurrent(imp, RNN, x, (w, r, b), sequence_lens, (initial_h,), activations, direction, hidden_size,
                     layout, {})


def recurrent(imp, cell: Cell, x, packed: tuple, lengths, initial: tuple, activations, direction: str,
              hidden_size, layout: int, attrs: dict) -> tuple:
    """(Y, Y_h[, Y_c]) of a recurrent node: each direction's steps, from its own weights and initial states."""
    if direction not in DIRECTIONS:
        raise Malformed(f"direction {direction!r} is none of {', '.join(DIRECTIONS)}")
    hidden = _hidden(packed[1], hidden_size)
    _check_weights(cell, packed, x, len(DIRECTIONS[direction]), hidden)
    steps = _steps(x, layout)
    _check_lengths(lengths, steps)
    xs = imp.op("transpose", x, axes=[1, 0, 2]) if layout else x  # [sequence, batch, input]
    runs = []
    for d, (backward, extra) in enumerate(zip(DIRECTIONS[direction],
                                              _activations(cell, activations, len(DIRECTIONS[direction])))):
        weights = _weights(imp, cell, packed, d, hidden)
        states = [_initial(imp, s, d, layout, hidden) for s in initial]
        runs.append(_run(imp, cell, _reversed(imp, xs) if backward else xs, steps, weights, states, backward,
                         hidden, {**attrs, **extra}))
    return _outputs(imp, runs, layout, len(cell.states))


def _reversed(imp, sequence: Value) -> Value:
    return imp.op("slice", sequence, starts=[-1], ends=[-2**62], axes=[0], steps=[-1])


def _outputs(imp, runs: list, layout: int, states: int) -> tuple:
    """The outputs the node names: Y [seq, dirs, batch, hidden] and each last state [dirs, batch, hidden];
    with layout 1, batch first: [batch, seq, dirs, hidden] and [batch, dirs, hidden]."""
    wanted = [bool(name) for name in imp.node.output] + [False] * states
    y = _joined(imp, [imp.op("unsqueeze", hs, axis=1) for hs, _ in runs], 1) if wanted[0] else None
    last = [_joined(imp, [imp.op("unsqueeze", final[k], axis=0) for _, final in runs], 0)
            if wanted[k + 1] else None for k in range(states)]
    if layout:
        y = y and imp.op("transpose", y, axes=[2, 0, 1, 3])
        last = [v and imp.op("transpose", v, axes=[1, 0, 2]) for v in last]
    return (y, *last)


def _hidden(r: Value, hidden_size) -> int:
    size = r.shape[-1] if r.shape is not None and len(r.shape) == 3 else None
    if isinstance(size, int) and hidden_size is not None and size != hidden_size:
        raise Malformed(f"hidden_size is {hidden_size} but R holds {size} columns")
    if not isinstance(size, int) and hidden_size is None:
        raise Unsupported("a hidden size known only at run time")
    hidden = size if isinstance(size, int) else hidden_size
    if hidden < 1:
        raise Malformed(f"hidden size {hidden}: a recurrent layer needs at least one unit")
    return hidden


def _steps(x: Value, layout: int) -> int:
    """The sequence's length, which import must know: each step is a call of its own."""
    if x.rank not in (None, 3):
        raise Malformed(f"X has rank {x.rank}; it must be [sequence, batch, input] (or batch first)")
    steps = None if x.shape is None else x.shape[layout]
    if not isinstance(steps, int):
        raise Unsupported("a sequence whose length is known only at run time")
    if steps < 1:
        raise Malformed("X holds a sequence of length 0")
    return steps


def _check_weights(cell: Cell, packed: tuple, x: Value, directions: int, hidden: int) -> None:
    """W [dirs, gates·hidden, input], R [dirs, gates·hidden, hidden], B [dirs, 2·gates·hidden], as the node says."""
    gates = len(cell.order) * hidden
    width = None if x.shape is None else x.shape[-1]
    wanted = {"W": (directions, gates, width), "R": (directions, gates, hidden), "B": (directions, 2 * gates)}
    for (name, shape), value in zip(wanted.items(), packed):
        if value is not None and value.shape is not None and (len(value.shape) != len(shape) or any(
                isinstance(d, int) and isinstance(w, int) and d != w for d, w in zip(value.shape, shape))):
            raise Malformed(f"{name} has shape {list(value.shape)}; this node needs "
                            f"{[d if isinstance(d, int) else '?' for d in shape]}",
                            "[directions, gates × hidden_size, ...] as ONNX packs a recurrent layer's weights")


def _check_lengths(lengths: Value | None, steps: int) -> None:
    """sequence_lens: only the full length for every sample, which is what no sequence_lens means."""
    if lengths is None:
        return
    if not lengths.numeric:
        raise Unsupported("sequence_lens known only at run time")
    if np.any(lengths.known != steps):
        raise Unsupported(f"sequence_lens {lengths.known.tolist()} shorter than the sequence ({steps})")


def _activations(cell: Cell, given, directions: int) -> list:
    """Each direction's step attributes from ONNX's activations: its defaults, or an RNN's unary op."""
    if given is None:
        return [{}] * directions
    names = [(n.decode() if isinstance(n, bytes) else n).lower() for n in given]
    width = len(cell.activations)
    if len(names) < width * directions:  # RNN's default lists two, for one direction or two
        raise Malformed(f"has {len(names)} activations; {directions} direction(s) take {width * directions}")
    default = [a.lower() for a in cell.activations]
    chosen = [names[d * width:(d + 1) * width] for d in range(directions)]
    if cell.activation and all(n[0] in UNARY for n in chosen):
        return [{"activation": UNARY[n[0]]} for n in chosen]
    if any(n != default for n in chosen):
        raise Unsupported(f"activations {', '.join(names)} (graphdef imports {', '.join(cell.activations)})")
    return [{}] * directions


def _weights(imp, cell: Cell, packed: tuple, direction: int, hidden: int) -> list:
    """One direction's W, U (PyTorch's layout and gate order) and biases: b and c, or their sum."""
    w, r, b = packed
    order = _constant(imp, np.concatenate([np.arange(k * hidden, (k + 1) * hidden) for k in cell.order]))
    gates = len(cell.order) * hidden

    def reordered(x: Value) -> Value:
        return imp.op("gather", x, order, axis=0)

    matrices = [imp.op("transpose", reordered(imp.op("select", m, axis=0, index=direction))) for m in (w, r)]
    if b is None:
        zeros = _constant(imp, np.zeros(gates, np.float32))
        return matrices + ([zeros, zeros] if cell.separate_biases else [zeros])
    biases = imp.op("split", imp.op("select", b, axis=0, index=direction), outputs=2, sections=2, axis=0)
    if cell.separate_biases:
        return matrices + [reordered(v) for v in biases]
    return matrices + [reordered(imp.op("add", *biases))]


def _initial(imp, state: Value | None, direction: int, layout: int, hidden: int) -> Value:
    """A direction's initial state [batch, hidden]; a constant one (absent: zeros) as a vector the batch
    broadcasts against, since its batch size is known only at run time."""
    if state is None or state.fill is not None:
        fill = 0.0 if state is None else state.fill
        return _constant(imp, np.full(hidden, fill, np.float32 if np.float32(fill) == fill else np.float64))
    return imp.op("select", state, axis=layout, index=direction)


def _run(imp, cell: Cell, xs: Value, steps: int, weights: list, states: list, backward: bool, hidden: int,
         attrs: dict) -> tuple:
    """One direction: a repeat of the step function over the sequence (reversed when `backward`);
    (the hidden states [sequence, batch, hidden] in the sequence's order, the last states)."""
    batch = None if xs.shape is None else xs.shape[1]
    *last, hs = imp.op("repeat", *states, function=cell.step, times=steps, over=[imp.vertex(xs)],
                       given=[imp.vertex(w) for w in weights], sequence=True, outputs=(*cell.states, "sequence"),
                       out_shape=(batch, hidden), **attrs)
    hs = replace(hs, shape=(steps, batch, hidden))
    return (_reversed(imp, hs) if backward else hs), last


def _constant(imp, value: np.ndarray) -> Value:
    """A known value made a vertex once, so that every step reads the same constant (float32: the model's
    dtype follows the file's)."""
    v = known(value)
    return replace(v, vertex=imp.vertex(v))


def _joined(imp, parts: list, axis: int) -> Value:
    """Parts concatenated along an axis, halves first: each value is copied log2(n) times, not n."""
    if len(parts) == 1:
        return parts[0]
    half = len(parts) // 2
    return imp.op("concat", _joined(imp, parts[:half], axis), _joined(imp, parts[half:], axis), axis=axis)
