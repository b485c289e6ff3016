"""The PyTorch backend: a loaded Model lowered to a torch.nn.Module, and trained values brought back.

Each node runs its op's PyTorch expression (`op.torch_function()`, registered beside its numpy
rules), so there is one lowering per op, the one the tests already check against the numpy
rules. Batching is graphdef's, decided as the numpy engine decides it (engine/lift.py): a node
reading a batched value gets its op's Lift (singleton axes inserted, lifted attributes, axes
squeezed), or, without one, torch.vmap over the samples (a loop when vmap cannot run the
expression). The lifts are worked out once per set of batched inputs, mode and outputs, and
kept as a plan: a list of steps the forward runs with no decision left to make.

Parameters are nn.Parameters, state (running statistics) and constants buffers, under keys made
from the graphdef names by `attribute_key` (reversible: `vertex_name`); `module.names` maps one
to the other. Backward is torch autograd. Ops with a state update (batch norm) apply it after
each training-mode forward, as Model.update_state does: their `torch_update` expression on the
device, or else their numpy `update` rule on CPU copies.
"""
from __future__ import annotations

import types

import numpy as np
import torch
from torch import nn

from ..errors import GraphDefError, Problem
from .lift import PER_SAMPLE, attrs_of, batched_vertices, call, lift_of
from .model import Model

DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "bool": torch.bool}
DEVICES = ("cpu", "cuda", "mps")


def device(name: str | None = None, local_rank: int | None = None) -> str:
    """The torch device to compute on: the one named (an error naming it when this machine or this torch build
    has none), else cuda when available, else cpu. Under torchrun, cuda is this process's GPU (LOCAL_RANK)."""
    mps = getattr(torch.backends, "mps", None)
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available()}
    name = name or ("cuda" if available["cuda"] else "cpu")
    if name not in available:
        raise GraphDefError(Problem(f"unknown device '{name}'", hint=f"choose one of {', '.join(DEVICES)}"))
    if not available[name]:
        raise GraphDefError(Problem(f"device '{name}' is not available on this machine (torch {torch.__version__} "
                                    f"finds no {name.upper()} device)",
                                    hint="use --device cpu, or run where that device and a torch built for it are"))
    if name == "cuda" and local_rank is not None:
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return name


# -- names: graphdef's (h1/W, d[1]) as attribute keys and back ------------------------------

def attribute_key(name: str, taken=()) -> str:
    """A module attribute key for a graphdef name, reversibly: ASCII letters and digits kept, `_` doubled,
    any other character `_<hex>_` ("h1/W" -> "h1_2f_W"). A key that would start with a digit or shadow an
    attribute in `taken` (ParameterDict's `keys`, say) has its first character escaped too."""
    key = "".join(c if c.isascii() and c.isalnum() else "__" if c == "_" else f"_{ord(c):x}_" for c in name)
    if key and (key[0].isdigit() or key in taken) and name[0] != "_":
        key = f"_{ord(name[0]):x}_" + key[1:]
    return key


def vertex_name(key: str) -> str:
    """The graphdef name an attribute key was made from (the inverse of attribute_key)."""
    out, i = [], 0
    while i < len(key):
        if key[i] != "_":
            out.append(key[i])
            i += 1
        elif key[i + 1] == "_":
            out.append("_")
            i += 2
        else:
            end = key.index("_", i + 1)
            out.append(chr(int(key[i + 1:end], 16)))
            i = end + 1
    return "".join(out)


class Buffers(nn.Module):
    """A dict of buffers (PyTorch has ParameterDict, no BufferDict): state, saved in the state_dict, or
    constants, which are not (persistent=False: they come from the model file)."""

    def __init__(self, tensors: dict, persistent: bool = True):
        super().__init__()
        for key, tensor in tensors.items():
            self.register_buffer(key, tensor, persistent=persistent)


# -- the module ---------------------------------------------------------------------------

class GraphModule(nn.Module):
    """A graphdef Model as a torch.nn.Module: forward(inputs) -> {name: tensor} of the outputs (and the loss
    when its inputs are given). `names` maps each parameter, state and constant name to its state_dict key."""

    def __init__(self, model: Model, on=None):
        super().__init__()
        on = torch.device(on if isinstance(on, torch.device) or (on and ":" in str(on)) else device(on))
        self.model, self.dtype = model, DTYPES[model.dtype.name]
        taken = set(dir(nn.ParameterDict()))
        keys = {n: attribute_key(n, taken) for n in [*model.parameters, *model.state, *model.constants]}
        tensor = lambda n, v: torch.as_tensor(self._numpy(n, v), device=on)  # noqa: E731
        self.params = nn.ParameterDict({keys[n]: nn.Parameter(tensor(n, v)) for n, v in model.parameters.items()})
        self.state = Buffers({keys[n]: tensor(n, v) for n, v in model.state.items()})
        self.constants = Buffers({keys[n]: tensor(n, v) for n, v in model.constants.items()}, persistent=False)
        self.names = {n: f"{section}.{keys[n]}" for section, values in (("params", model.parameters),
                      ("state", model.state), ("constants", model.constants)) for n in values}
        self._leaves = [(n, self.params._parameters, keys[n]) for n in model.parameters] + \
            [(n, self.state._buffers, keys[n]) for n in model.state] + \
            [(n, self.constants._buffers, keys[n]) for n in model.constants]
        self.rng = np.random.default_rng()  # dropout's masks: numpy's draws, as the numpy engine makes them
        self.rng.bit_generator.state = model.rng.bit_generator.state
        self._plans = {}  # (batched inputs, outputs, training) -> Plan
        self.train(model.training)  # the model's mode (inference unless set): module.train() / .eval() switch it
        self._loss_inputs = tuple(n for n in model.inputs if model.loss and n in model.ancestors([model.loss]))

    def _numpy(self, name: str, value) -> np.ndarray:
        """A leaf's value in its declared dtype (floats in the model's)."""
        dtype = self.model.graph.vertices[name].dtype
        return np.array(value, dtype=self.model.dtype if dtype.startswith("float") else dtype)

    @property
    def device(self) -> torch.device:
        return next(iter([*self.params.values(), *self.state.buffers()]), torch.empty(0)).device

    def variable(self, name: str) -> torch.Tensor:
        """The parameter, state or constant tensor of a graphdef name ("h1/W")."""
        section, key = self.names[name].split(".", 1)
        return getattr(self, section)[key] if section == "params" else getattr(getattr(self, section), key)

    def variables(self) -> dict:
        """graphdef name -> tensor, for every parameter and state value: what to_model brings back."""
        return {n: self.variable(n) for n in [*self.model.parameters, *self.model.state]}

    def reseed(self, seed: int | None = None, state: dict | None = None) -> None:
        """Restart the generator dropout draws from (a seed, or a numpy bit_generator state: `model.rng`'s, to
        draw the masks a graphdef run draws)."""
        self.rng.bit_generator.state = state or np.random.default_rng(seed).bit_generator.state

    def forward(self, inputs: dict, outputs=None) -> dict:
        """{name: tensor} of `outputs` (default: the model's outputs, and its loss when every input it needs is
        given). Inputs: tensors or arrays of one sample, or with one more leading axis, a batch."""
        feeds, batched = self._feed(inputs)
        plan = self._plan(batched, self._wanted(feeds, outputs), self.training)
        env = {name: values[key] for name, values, key in self._leaves}
        env.update(feeds)
        plan.run(env)
        if plan.updating:
            self._update_state(plan, env)
        return {name: env[name] for name in plan.outputs}

    # -- feeding ----------------------------------------------------------------------------

    def _feed(self, inputs: dict) -> tuple[dict, frozenset]:
        """The inputs as tensors of their dtypes on the module's device, checked against the declared shapes;
        and the names of those carrying a batch axis."""
        if not isinstance(inputs, dict):
            raise GraphDefError("inputs must be a mapping: name -> tensor or array")
        model, device, feeds, batched = self.model, self._device(), {}, []
        for name, value in inputs.items():
            if name not in model.inputs:
                raise GraphDefError(Problem(f"unknown input '{name}'",
                                            hint=f"the model's inputs: {', '.join(model.inputs) or 'none'}"))
            dtype = DTYPES[model.input_dtypes[name].name] if name in model.input_dtypes else self.dtype
            value = self._checked(name, value)
            if value.dtype != dtype or value.device != device:
                value = value.to(device, dtype)
            feeds[name] = value
            if self._batched(name, value):
                batched.append(name)
        if len({len(feeds[n]) for n in batched}) > 1:
            raise GraphDefError("batched inputs disagree on the batch size: "
                                + ", ".join(f"'{n}' has {len(feeds[n])}" for n in batched))
        return feeds, frozenset(batched)

    def _checked(self, name: str, value):
        """A fed value as numpy's engine accepts it (numbers, whole ones for an integer input, finite), with the
        same errors; a tensor is looked at on its device."""
        if not isinstance(value, torch.Tensor):
            from .inputs import _array
            array, problem = _array(self.model, name, value)
            if problem:
                raise GraphDefError(problem)
            return torch.as_tensor(array)
        whole = name in self.model.input_dtypes
        if value.is_complex() or (whole and value.is_floating_point() and not bool((value == value.round()).all())):
            kind = "complex numbers" if value.is_complex() else "fractions"
            raise GraphDefError(self.model.problem(name, f"input '{name}' holds {kind}",
                                                   "give whole numbers" if whole else "give real numbers"))
        return value

    def _device(self) -> torch.device:
        leaf = next(iter(self.params._parameters.values()), None)
        return leaf.device if leaf is not None else self.device

    def _batched(self, name: str, value) -> bool:
        """Whether a fed value is a batch: one more axis than the declared shape (whose sizes it must have)."""
        declared = self.model.inputs[name]
        if declared is None:
            return False
        batch = name in self.model.batchable and value.ndim == len(declared) + 1
        if value.ndim != len(declared) + batch or any(d is not None and d != s for d, s in
                                                      zip(declared, value.shape[batch:])):
            raise GraphDefError(self.model.problem(name, f"input '{name}' has shape {list(value.shape)}, expected "
                                                   f"{list(declared)} or, for a batch, [N] + that"))
        return batch

    def _wanted(self, feeds: dict, outputs) -> tuple:
        """The names to compute: those asked for, else the outputs and (when its inputs are fed) the loss."""
        if outputs is not None:
            return (outputs,) if isinstance(outputs, str) else tuple(outputs)
        model = self.model
        loss = [model.loss] if model.loss and model.loss not in model.outputs and \
            all(n in feeds for n in self._loss_inputs) else []
        return (*model.outputs, *loss)

    # -- plans --------------------------------------------------------------------------------

    def _plan(self, batched: frozenset, outputs: tuple, training: bool) -> "Plan":
        key = (batched, outputs, training)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(self, batched, outputs, training)
        return plan

    @torch.compiler.disable
    def _update_state(self, plan: "Plan", env: dict) -> None:
        """Each op with state (batch norm) moves it after a training-mode forward, called as Model.update_state
        calls its update rule: the op's PyTorch `torch_update` on the device, else its numpy `update` on CPU
        copies; the new values are copied into the buffers in place."""
        context = {"training": True, "rng": self.rng}
        with torch.no_grad():
            for step, lift, flags in plan.updating:
                function = step.op.torch_update_function()
                if function is not None and lift is not PER_SAMPLE:
                    new = function(*[env[a] for a in step.inputs], **attrs_of(step, lift, context))
                else:
                    args = [env[a].detach().cpu().numpy() for a in step.inputs]
                    new = call(step, lift, args, flags, context, rule=step.op.update)
                for position, value in zip(step.op.state, new):
                    name = step.inputs[position]
                    if name in self.model.state:
                        target = env[name]
                        target.copy_(torch.as_tensor(value, dtype=target.dtype, device=target.device))


class Plan:
    """The lowered steps for one set of batched inputs, one mode and one choice of outputs: per node its
    PyTorch function, the attributes it is called with and the axes to insert and drop, decided once."""

    def __init__(self, module: GraphModule, batched: frozenset, outputs: tuple, training: bool):
        model = module.model
        unknown = [n for n in outputs if n not in model.graph.vertices]
        if unknown:
            raise GraphDefError([Problem(f"outputs: no vertex named '{n}'") for n in unknown])
        self.outputs, self.model = outputs, model
        needed = model.ancestors(outputs)
        flags_of = batched_vertices(model.graph, batched)
        context = {"training": training, "rng": module.rng}
        self.steps, self.updating = [], []
        for step in model.steps:
            if step.name not in needed:
                continue
            lift = lift_of(model.graph, step, flags_of)
            flags = tuple(a in flags_of for a in step.inputs)
            self.steps.append(lowered(step, lift, flags, context))
            if training and step.op.update is not None:
                self.updating.append((step, lift, flags))
        self.inputs = [n for n in model.inputs if n in needed]

    def run(self, env: dict) -> None:
        """env (leaves and inputs) extended with the value of every step."""
        missing = [n for n in self.inputs if n not in env]
        if missing:
            raise GraphDefError([self.model.problem(n, f"missing input '{n}'", f"give a value for '{n}'")
                                 for n in missing])
        step = None
        try:
            for step in self.steps:
                env[step[0]] = step[1](*[env[a] for a in step[2]])
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise GraphDefError(self.model.problem(step[0], f"node '{step[0]}' failed in PyTorch: {e}")) from e


def lowered(step, lift, flags: tuple, context: dict) -> tuple:
    """(name, function of the input tensors, input names): the node's op expression called as the numpy
    engine calls its rules (engine/lift.py): as it is, lifted, or once per sample."""
    function, attrs = compilable(step.op.torch_function()), dict(attrs_of(step, lift, context))
    if lift is PER_SAMPLE:
        return step.name, per_sample(function, attrs, flags), step.inputs
    if lift is None:
        return step.name, bound(function, attrs), step.inputs
    expand, squeeze = [sorted_axes(axes) for axes in lift.expand], tuple(lift.squeeze)
    if not any(expand) and not squeeze:
        lifted = bound(function, attrs)
    else:
        def lifted(*xs):
            xs = [unsqueezed(x, axes) if axes else x for x, axes in zip(xs, expand)]
            out = function(*xs, **attrs)
            return out.squeeze(squeeze) if squeeze else out
    if step.op.context:  # batch norm, dropout: a batch is not a stack of samples, only the lift is right
        return step.name, lifted, step.inputs
    return step.name, lift_or_map(lifted, per_sample(function, dict(step.attrs), flags)), step.inputs


def lift_or_map(lifted, mapped):
    """The lifted call; where the op's PyTorch expression refuses the lifted inputs (it does not broadcast
    singleton axes as the numpy rule does: concat, layer_norm's weights per sample), torch.vmap of the
    per-sample expression from then on, which computes the same (tests/test_torch.py checks vmap)."""
    state = {"lift": True}

    def run(*xs):
        if state["lift"]:
            try:
                return lifted(*xs)
            except (RuntimeError, ValueError, TypeError, IndexError):
                state["lift"] = False
        return mapped(*xs)
    return run


def compilable(function):
    """The expression's function with globals that name no module: TorchDynamo looks a global up in the module
    `__name__` names (the registering one, which lacks the `torch` and `F` the expression was given)."""
    scope = {k: v for k, v in function.__globals__.items() if k != "__name__"}
    return types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__, function.__closure__)


def bound(function, attrs: dict):
    """The function with its attributes bound (no keyword dict unpacked per call when there are none)."""
    return function if not attrs else lambda *xs: function(*xs, **attrs)


def sorted_axes(axes: tuple) -> tuple:
    """np.expand_dims's axes in the order unsqueeze inserts them (negative ones resolved at the call)."""
    return tuple(sorted(axes, key=lambda a: (a < 0, a)))


def unsqueezed(x, axes: tuple):
    """np.expand_dims(x, axes) for a tensor: each axis counted in the result, inserted in increasing order."""
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return x


def per_sample(function, attrs: dict, flags: tuple):
    """A node with no batching rule for this case: torch.vmap of its expression over the batched inputs; if
    vmap cannot run it (data-dependent shapes, .item()), the samples one by one, stacked."""
    in_dims = tuple(0 if f else None for f in flags)
    mapped = torch.vmap(lambda *xs: function(*xs, **attrs), in_dims=in_dims)
    state = {"vmap": True}

    def run(*xs):
        if state["vmap"]:
            try:
                return mapped(*xs)
            except (RuntimeError, NotImplementedError):
                state["vmap"] = False
        n = next(len(x) for x, f in zip(xs, flags) if f)
        return torch.stack([function(*(x[i] if f else x for x, f in zip(xs, flags)), **attrs) for i in range(n)])
    return run


# -- the public functions ---------------------------------------------------------------------

def to_module(model: Model, device=None) -> GraphModule:
    """The model as a torch.nn.Module on `device` (default: CUDA when available, else the CPU), in its dtype;
    its parameters copied (the model is left as it is)."""
    if not isinstance(model, Model):
        raise GraphDefError(f"to_module takes a graphdef.Model, got {type(model).__name__}")
    return GraphModule(model, device)


def to_model(module, model: Model | None = None) -> Model:
    """A graphdef Model holding a module's trained values: `module` a GraphModule (then `model`, if given, is
    updated in place, else a copy of the module's model is made) or a state_dict of one (keys as
    `module.names` gives them, or graphdef names), with the model to update."""
    if isinstance(module, GraphModule):
        values, model = module.variables(), model
        source = module.model
    elif isinstance(module, dict) and model is not None:
        names, source = {k: _graphdef_name(str(k), model) for k in module}, None
        unknown = [str(k) for k, name in names.items() if name is None]
        if unknown:  # a misspelt key would load nothing, silently: refused, as load_state_dict(strict=True) does
            raise GraphDefError(Problem(f"the state_dict has keys the model does not: {', '.join(unknown[:5])}",
                                        hint="keys are graphdef names, or state_dict keys as module.names gives them"))
        values = {name: module[k] for k, name in names.items()}
    else:
        raise GraphDefError("to_model takes a GraphModule, or a state_dict and the model it belongs to")
    target = model if model is not None else _copy(source)
    for section in (target.parameters, target.state):
        for name, array in section.items():
            if name in values:
                value = values[name].detach().cpu().numpy() if isinstance(values[name], torch.Tensor) \
                    else np.asarray(values[name])
                if value.shape != array.shape:
                    raise GraphDefError(target.problem(name, f"'{name}' has shape {list(value.shape)} in the "
                                                             f"module, {list(array.shape)} in the model"))
                array[...] = value.astype(array.dtype)
    return target


def _graphdef_name(key: str, model: Model) -> str | None:
    """The graphdef name of a state_dict key ("params.h1_2f_W") or of a graphdef name itself; None for others."""
    if key in model.parameters or key in model.state:
        return key
    section, _, rest = key.partition(".")
    try:
        name = vertex_name(rest) if section in ("params", "state") and rest else None
    except (ValueError, IndexError):  # not a key attribute_key makes
        return None
    return name if name in model.parameters or name in model.state else None


def _copy(model: Model) -> Model:
    """A model on the same graph with its own parameter and state arrays (and generator state, and mode)."""
    copy = Model(model.graph, model.doc, model.source, reference=model.reference)
    copy.parameters = {k: np.array(v) for k, v in model.parameters.items()}
    copy.state = {k: np.array(v) for k, v in model.state.items()}
    copy.rng.bit_generator.state = model.rng.bit_generator.state
    copy.training = model.training
    return copy
