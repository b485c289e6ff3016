"""A loaded, validated model: its graph, its values, and running it forward and backward.

Plans (compiled forward and backprop functions) are made on first use and cached under a
PlanKey; the batching of every node is part of the key, decided by which inputs carry a
batch axis. With reference=True (or GRAPHDEF_REFERENCE=1) the reference interpreter runs
instead, for debugging a plan.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import GraphDefError, Problem, did_you_mean
from ..pause_gc import without_gc
from . import gradients, interpret
from .compile import Compiled, compile_backprop, compile_forward
from .inputs import NONE, batched_inputs, feed, feeding
from .lift import StepError, batched_vertices, call, lift_of

METHODS = gradients.METHODS


@dataclass(frozen=True)
class Trace:
    of: str
    wrt: list
    values: dict  # vertex -> value
    grads: dict  # vertex on a path from wrt to of -> ∂of/∂vertex
    steps: tuple  # the backward plan's steps
    wanted: frozenset  # the vertices on those paths


class PlanKey(NamedTuple):
    """Everything a compiled plan depends on (a tuple: made and hashed on every call, so it must be cheap)."""
    of: str | None  # None: a forward plan
    wrt: tuple = ()
    keep: frozenset = frozenset()
    outputs: tuple = ()  # () : every vertex
    batched: frozenset = frozenset()  # the inputs carrying a batch axis
    floats: bool = False  # every value a Python float (see compile.FloatMath)
    mean: bool = False
    training: bool = False  # the mode: dropout draws and batch norm uses batch statistics only in training


class Model:
    """A computation graph loaded from YAML.

    `graph` is a graphdef Graph (its `nx`: the networkx.MultiDiGraph, one vertex per input, parameter,
    constant, literal and node, attribute `kind`; one edge per use keyed by argument
    position) whose `vertices` hold each vertex's record. `parameters` maps names to
    arrays (training updates them in place).
    """

    def __init__(self, graph, doc: dict, source=None, reference: bool | None = None):
        self.graph, self.doc, self.source = graph, doc, source
        self.name, self.description = doc["name"], doc.get("description", "")
        self.dtype = np.dtype(doc.get("dtype", "float64"))
        self.outputs, self.loss = list(doc["outputs"]), doc.get("loss")
        self.inputs = {v.name: v.shape for v in graph.of_kind("input")}
        self.input_dtypes = {v.name: np.dtype(v.dtype) for v in graph.of_kind("input") if not v.differentiable}
        self.batchable = {v.name: len(v.shape) for v in graph.of_kind("input") if v.batchable}
        self.feeding = feeding(self)
        self.parameters = {v.name: v.value for v in graph.of_kind("parameter")}
        self.state = {v.name: v.value for v in graph.of_kind("state")}  # running statistics: updated, not trained
        self.untrained = [v.name for v in graph.of_kind("parameter") if v.init is not None]  # drawn at load
        self.constants = {v.name: v.value for v in graph.of_kind("constant", "literal")}
        self.steps = graph.steps
        self.reference = os.environ.get("GRAPHDEF_REFERENCE") == "1" if reference is None else reference
        self.training = False  # the mode of the public calls: inference (dropout off, running statistics)
        self.rng = np.random.default_rng(training_seed(doc))  # random ops draw from it; reseed() keeps its identity
        self._updating = tuple(s for s in self.steps if s.op.update is not None)  # steps whose op updates state
        self.random = any("rng" in s.op.context for s in self.steps)  # some op draws (dropout)
        self._leaves = frozenset(v.name for v in graph.of_kind("input", "parameter", "constant")  # what wrt may name
                                 if v.differentiable)
        self._plans, self._backward_plans = {}, {}  # PlanKey -> Compiled; (of, wrt) -> (steps, vertices)
        self._resolved = {}  # (of, wrt) as asked -> as resolved
        # every value a float64 scalar: plans may run on Python floats (compile.FloatMath)
        self._floats = self.dtype == np.float64 and all(
            v.shape == () and v.dtype == "float64" and not (v.op and v.op.context) for v in graph.vertices.values())

    @property
    def variables(self) -> dict:
        """Every array a trained model holds: the parameters and the state (saved together)."""
        return {**self.parameters, **self.state}

    @property
    def folder(self) -> Path | None:
        """The folder of the model's file, where its relative paths (data, weights) start; None for text."""
        return Path(self.source.file).resolve().parent if self.source and self.source.file else None

    def save(self, directory) -> Path:
        """Write model.yaml and weights.npz into `directory` (atomically); returns the model.yaml path."""
        from ..format import serialize
        return serialize.save(self, directory)

    def __repr__(self):
        return f"<graphdef.Model '{self.name}': {len(self.graph)} vertices, outputs {self.outputs}>"

    # -- the public calls ----------------------------------------------------------------

    def forward(self, inputs: dict, params: dict | None = None, outputs=None) -> dict:
        """The value (numpy arrays) of every vertex the given inputs (and parameter overrides) determine.

        Inputs that no output needs may be left out (a classifier's label, for inference): the
        vertices depending on them (the loss) are then not computed. With `outputs`, only what
        those vertices need is computed, and only their inputs are required.
        """
        if outputs is None and isinstance(inputs, dict) and not set(self.inputs) <= set(inputs):
            blocked = self.graph.reachable([n for n in self.inputs if n not in inputs])
            outputs = [n for n in self.graph.vertices if n not in blocked] + [o for o in self.outputs if o in blocked]
        needed = None if outputs is None else self.ancestors(outputs)
        return _arrays(self.run_unchecked(feed(self, inputs, params, needed), outputs))

    def ancestors(self, names) -> set:
        """The vertices that `names` depend on, themselves included."""
        return self.graph.ancestors(names)

    def gradients(self, inputs: dict, of: str | None = None, wrt=None, method: str = "reverse") -> dict:
        """∂of/∂w for each w in wrt (default: every input and parameter).

        `of` defaults to the loss, else the single output; for a non-scalar `of` (a batch
        of losses, say) this is the gradient of its sum. method: reverse
        (backpropagation), forward (forward mode, one pass per input element), paths (the
        sum over paths of edge-derivative products; scalar graphs) or numeric (central
        differences).
        """
        if method != "reverse":
            return self.value_and_gradients(inputs, of, wrt, method)[1]
        of, wrt = self.resolve(of, wrt)
        return _arrays(self.backprop(feed(self, inputs), of, wrt, outputs=(of,))[1])

    def value_and_gradients(self, inputs: dict, of: str | None = None, wrt=None, method: str = "reverse"):
        """(every vertex's value, gradients) in one forward pass; see `gradients`."""
        of, wrt = self.resolve(of, wrt)
        gradients.check_method(method)
        env = feed(self, inputs)
        if method == "reverse":
            values, grads = self.backprop(env, of, wrt)
            return _arrays(values), _arrays(grads)
        if method == "forward":
            values = self.reference_forward(env)
            return _arrays(_values(values)), gradients.by_forward(self, values, of, wrt)
        draws = self.rng.bit_generator.state
        values = self.run_unchecked(dict(env))
        self.reseed(state=draws)  # the method sees the random draws (dropout's masks) the values were made with
        return _arrays(values), gradients.BY_METHOD[method](self, env, values, of, wrt)

    def jvp(self, inputs: dict, tangents: dict, outputs=None) -> tuple[dict, dict]:
        """Forward mode: (values of `outputs`, their tangents J·t) for tangents of some inputs and parameters
        (name -> array of its shape; the others held). `outputs` (a name or names) defaults to the model's
        outputs and loss; inputs that they do not need may be left out, as in forward()."""
        names = self._vertices(outputs, "outputs") if outputs is not None else \
            (*self.outputs, *([self.loss] if self.loss else []))
        needed = self.ancestors(names)
        steps = tuple(s for s in self.steps if s.name in needed)
        values = self.reference_forward(feed(self, inputs, needed=needed), steps)
        seeds = self._seeds(values, tangents)
        pushed = self._guard(lambda: interpret.push_forward(self.graph, values, seeds, steps,
                                                            batched_inputs(self, values), self.context(self.training)))
        return ({n: np.asarray(values[n]) for n in names},
                {n: np.asarray(pushed[n]) if n in pushed else np.zeros_like(values[n]) for n in names})

    def _vertices(self, names, what: str) -> tuple:
        """Names of vertices (one, or several), each checked to exist."""
        names = (names,) if isinstance(names, str) else _names(names, what)
        unknown = [n for n in names if n not in self.graph.vertices]
        if unknown:
            raise GraphDefError([Problem(f"{what}: no vertex named '{n}'", hint=did_you_mean(n, self.graph.vertices)
                                         or f"the model's outputs: {', '.join(self.outputs)}") for n in unknown])
        return names

    def _seeds(self, values: dict, tangents: dict) -> dict:
        """Tangents checked: of inputs or parameters, finite numbers shaped like their values."""
        if not isinstance(tangents, dict):
            raise GraphDefError("tangents must be a mapping: input or parameter name -> array of its shape")
        wrt, seeds = self._wrt(list(tangents)), {}
        for name in (w for w in wrt if w in values):  # the others (not fed, not needed) move no output
            t = np.asarray(tangents[name])
            if t.dtype.kind not in "biuf" or t.shape != np.shape(values[name]) or not np.all(np.isfinite(t)):
                raise GraphDefError(self.problem(name, f"the tangent of '{name}' must be finite numbers of shape "
                                                       f"{list(np.shape(values[name]))}, got {t.dtype} of shape "
                                                       f"{list(t.shape)}", "give one number per element of it"))
            seeds[name] = t.astype(np.result_type(values[name], np.float32))
        return seeds

    def reference_forward(self, env: dict, steps=None) -> dict:
        """Every value (of `steps`, default all) by the reference interpreter, with what ops saved for their
        rules (see interpret.SAVED)."""
        return self._guard(lambda: interpret.forward(self.graph, env, batched_inputs(self, env), steps,
                                                     context=self.context(self.training)))

    def trace(self, inputs: dict, of: str | None = None, wrt=None, labels: bool = False) -> Trace:
        """One forward and one backward pass, keeping ∂of/∂v for every vertex v on the way (to explain or draw:
        the labels' gradients only when asked for, see resolve)."""
        of, wrt = self.resolve(of, wrt, labels)
        steps, wanted = self.backward_plan(of, tuple(wrt))
        values, grads = self.backprop(feed(self, inputs), of, wrt, keep=wanted)
        return Trace(of, wrt, _arrays(values), _arrays(grads), steps, wanted)

    # -- running on an environment (inputs, parameters and constants, already checked) ---------

    def run_unchecked(self, env: dict, outputs=None) -> dict:
        """env extended with the values of every node (or of those `outputs` need)."""
        return self._forward(env, outputs, self.training)

    def _forward(self, env: dict, outputs, training: bool) -> dict:
        batched = batched_inputs(self, env)
        key = PlanKey(None, (), NONE, tuple(outputs or ()), batched, self._floats and not batched, training=training)
        if self.reference:
            steps = self._forward_steps(key.outputs)
            return _values(self._guard(lambda: interpret.forward(self.graph, env, key.batched, steps,
                                                                 self.context(key.training))))
        return {**env, **self._run(key, env)}

    def context(self, training: bool) -> dict:
        """What ops that depend on the mode or draw random numbers are given (see ops/registry.py)."""
        return {"training": training, "rng": self.rng}

    def reseed(self, seed: int | None = None, state: dict | None = None) -> None:
        """Restart the generator random ops draw from (from a seed, or a saved bit_generator state),
        keeping the object the compiled plans hold."""
        self.rng.bit_generator.state = state or np.random.default_rng(seed).bit_generator.state

    def backprop(self, env: dict, of: str, wrt, keep=(), outputs=None, mean: bool = False,
                 training: bool | None = None) -> tuple[dict, dict]:
        """(values, ∂of/∂w for w in wrt) by reverse mode, on an unchecked environment (see run_unchecked).

        `keep` names further vertices whose gradients to return; `outputs` limits the forward
        pass to what they (and `of`) need, and the values returned to theirs (the others are
        freed as soon as they have been used: less memory on big batches). With `mean`, a
        batched `of` is averaged over its samples instead of summed (what training minimises).
        """
        batched = batched_inputs(self, env)
        key = PlanKey(of, tuple(wrt), frozenset(keep) if keep else NONE, tuple(outputs) if outputs else (), batched,
                      self._floats and not batched, mean, self.training if training is None else training)
        if self.reference:
            return self._reference_backprop(env, key)
        computed, grads = self._run(key, env)
        return {**env, **computed}, grads

    def train_step(self, batch: dict, loss: str, wrt, outputs=()) -> tuple[dict, dict]:
        """(values, gradients of the mean loss) for a batch of data the caller has checked, in training
        mode; the state (running statistics) is then updated from the batch."""
        env = {**self.constants, **self.state, **self.parameters, **batch}
        kept = (*outputs, *(a for s in self._updating for a in s.inputs)) if outputs else outputs
        values, grads = self.backprop(env, loss, wrt, outputs=kept, mean=True, training=True)
        if self._updating:
            self.update_state(values, batched_inputs(self, env))
        return values, grads

    def update_state(self, values: dict, batched=NONE) -> None:
        """Each op with state (batch norm) updates it from the values of a training step, in place."""
        flags = batched_vertices(self.graph, batched)
        for step in self._updating:
            lift = lift_of(self.graph, step, flags)
            new = self._guard(lambda: call(step, lift, [values[a] for a in step.inputs],
                                           tuple(a in flags for a in step.inputs), self.context(True),
                                           rule=step.op.update))
            for position, value in zip(step.op.state, new):
                if self.graph.vertices[step.inputs[position]].kind == "state":
                    self.state[step.inputs[position]][...] = value

    def predict_batch(self, batch: dict, outputs) -> dict:
        """The values of `outputs` (and what they need) for a batch of data the caller has checked (inference)."""
        return self._forward({**self.constants, **self.state, **self.parameters, **batch}, outputs, False)

    def compiled_backprop(self, of: str, wrt, keep=(), outputs=None, batched=frozenset(),
                          floats: bool = False) -> Compiled:
        """The generated forward-and-backward function for these arguments, made once and cached."""
        return self.plan(PlanKey(of, tuple(wrt), frozenset(keep), tuple(outputs or ()), frozenset(batched), floats))

    def plan(self, key: PlanKey) -> Compiled:
        plan = self._plans.get(key)
        if plan is None:
            with without_gc():
                try:
                    plan = self._plans[key] = self._compile(key)
                except StepError as e:
                    raise GraphDefError(self._failure(e)) from None
        return plan

    def _compile(self, key: PlanKey) -> Compiled:
        batched = batched_vertices(self.graph, key.batched)
        if key.of is None:
            return compile_forward(self.graph, self._forward_steps(key.outputs), batched, key.floats,
                                   self.context(key.training))
        steps, wanted = self.backward_plan(key.of, key.wrt)
        forward = self._forward_steps(key.outputs + (key.of,)) if key.outputs else self.steps
        returned = None if not key.outputs else {*key.outputs, key.of}
        return compile_backprop(self.graph, forward, steps, key.of, key.wrt, wanted, key.keep, batched, returned,
                                key.floats, key.mean, self.context(key.training))

    def _run(self, key: PlanKey, env: dict):
        """The plan for key on env; a plan on Python floats that faults reruns on numpy values."""
        if key.floats:
            try:
                return self.plan(key)(env)
            except StepError as e:  # numpy gives inf or NaN here, or the rule needs numpy values
                if not isinstance(e.cause, (ArithmeticError, ValueError)):
                    self._floats = False
                key = key._replace(floats=False)
        return self._guard(lambda: self.plan(key)(env))

    def _guard(self, compute):
        try:
            return compute()
        except StepError as e:
            raise GraphDefError(self._failure(e)) from None

    def _failure(self, e: StepError) -> Problem:
        where = f" (at {e.line})" if e.line else ""
        return self.problem(e.step.name, f"node '{e.step.name}' ({e.step.op.name}) failed: {e}{where}",
                            "check the shapes and values of its inputs; GRAPHDEF_DEBUG=1 shows the traceback")

    def _reference_backprop(self, env: dict, key: PlanKey) -> tuple[dict, dict]:
        steps, wanted = self.backward_plan(key.of, key.wrt)
        context = self.context(key.training)
        values = self._guard(lambda: interpret.forward(self.graph, env, key.batched, context=context))
        scale = 1 / len(values[key.of]) if key.mean and key.of in batched_vertices(self.graph, key.batched) else 1
        grads = self._guard(lambda: interpret.backward(self.graph, values, key.of, wanted, key.batched,
                                                       np.full_like(values[key.of], scale), context))
        names = dict.fromkeys([*key.wrt, *key.keep])
        return _values(values), {n: grads[n] if n in grads else np.zeros_like(env[n]) for n in names
                        if n in grads or n in key.wrt}

    def _forward_steps(self, outputs: tuple) -> tuple:
        """The steps that computing `outputs` needs (all steps when none are named)."""
        if not outputs:
            return self.steps
        needed = self.ancestors(outputs)
        return tuple(s for s in self.steps if s.name in needed)

    def backward_plan(self, of: str, wrt: tuple):
        """(steps, vertices) on some path from a wrt vertex to `of`: all that backward needs to visit."""
        found = self._backward_plans.get((of, wrt))
        if found is None and not self.graph.vertices[of].differentiable:  # an integer or boolean `of`: no gradient
            found = self._backward_plans[(of, wrt)] = (), frozenset()
        if found is None:
            ancestors = self.graph.ancestors([of], differentiable=True)
            reached = self.graph.reachable([w for w in wrt if w in ancestors]) & ancestors
            wanted = frozenset(n for n in reached if self.graph.vertices[n].differentiable)
            found = self._backward_plans[(of, wrt)] = tuple(s for s in self.steps if s.name in wanted), wanted
        return found

    # -- checking what the caller asked for, and where things are --------------------------

    def check_numerics(self, values: dict, grads: dict | None = None, of: str | None = None) -> None:
        """Raise at the first vertex (in run order) whose value is NaN or infinite, naming its op and the
        ranges of its inputs; then likewise for gradients."""
        gradients.check_numerics(self, values, grads, of)

    def resolve(self, of: str | None = None, wrt=None, labels: bool = True) -> tuple[str, tuple]:
        """(vertex to differentiate, vertices to differentiate by): checked, with the defaults applied;
        remembered, since a training loop or a teacher's slider asks the same on every call. With
        labels=False the default wrt leaves out the labels (what explanations and drawings show)."""
        if wrt is not None and not isinstance(wrt, str):
            wrt = _names(wrt, "wrt")
        if of is not None and not isinstance(of, str):
            raise GraphDefError(Problem(f"of must be a vertex name, got {type(of).__name__} {of!r:.60}",
                                        hint="give the name of a vertex, e.g. of='loss'"))
        resolved = self._resolved.get((of, wrt, labels))
        if resolved is None:
            resolved = self._target(of), tuple(self._wrt(wrt, labels))
            if len(self._resolved) < 1000:
                self._resolved[(of, wrt, labels)] = resolved
        return resolved

    def _target(self, of: str | None) -> str:
        if of is None:
            if self.loss is None and len(self.outputs) != 1:
                raise GraphDefError(Problem(f"the model has {len(self.outputs)} outputs and no loss",
                                            hint="say which vertex to differentiate with of=NAME"))
            of = self.loss or self.outputs[0]
        if of in self.graph.vertices and self.graph.vertices[of].kind == "literal":
            raise GraphDefError(Problem(f"'{of}' is a number written in a node's inputs, not something to "
                                        "differentiate", hint="name a node, an input or a parameter"))
        if of not in self.graph.vertices:
            raise GraphDefError(Problem(f"no vertex named '{of}'", hint=did_you_mean(of, self.graph.vertices)))
        return of

    @property
    def labels(self) -> tuple:
        """Inputs that only the loss reads (targets, one-hot labels): no output needs them, and explanations
        and drawings leave their gradients out unless asked for."""
        predictions = [o for o in self.outputs if o != self.loss]
        if self.loss is None or not predictions:  # nothing but the loss: no input is told apart as a label
            return ()
        needed = self.ancestors(predictions)
        return tuple(n for n in self.inputs if n not in needed and n in self.ancestors([self.loss]))

    def _wrt(self, wrt, labels: bool = True) -> list:
        if wrt is None:
            hidden = () if labels else self.labels
            return [name for name in [*self.inputs, *self.parameters] if name in self._leaves and name not in hidden]
        wrt = [wrt] if isinstance(wrt, str) else list(wrt)
        bad = [w for w in wrt if w not in self._leaves]
        if bad:
            raise GraphDefError([Problem(f"cannot differentiate with respect to '{w}'",
                                         hint=did_you_mean(w, sorted(self._leaves))
                                         or "use an input, parameter or constant holding floats")
                                 for w in bad])
        return wrt

    def problem(self, vertex: str, message: str, hint: str | None = None) -> Problem:
        """A Problem located where `vertex` is declared in the model file."""
        section = {"input": "inputs", "parameter": "parameters", "state": "state", "constant": "constants",
                   "node": "nodes"}
        kind = self.graph.vertices[vertex].kind if vertex in self.graph.vertices else None
        return self.locate((section[kind], vertex) if kind in section else (), message, hint)

    def locate(self, path: tuple, message: str, hint: str | None = None) -> Problem:
        """A Problem at `path` in the model file (unlocated for a model built from data)."""
        return self.source.problem(path, message, hint) if self.source else Problem(message, hint=hint)


def _names(names, what: str) -> tuple:
    """A collection of vertex names as a tuple (a generator is read once), every one a string."""
    try:
        names = tuple(names)
    except TypeError:
        names = (names,)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise GraphDefError(Problem(f"{what} must name vertices, got {type(bad[0]).__name__} {bad[0]!r:.60}",
                                    hint=f"give a name or a list of names, e.g. {what}=['w1', 'b1']"))
    return names


def training_seed(doc: dict) -> int:
    """The model's training.seed when it is one (a wrong one is reported by the schema), else 0."""
    seed = doc["training"].get("seed", 0) if isinstance(doc.get("training"), dict) else 0
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0


def _values(env: dict) -> dict:
    """The vertices' values of a reference run, without what ops saved for their backward rules."""
    return {k: v for k, v in env.items() if isinstance(k, str)}


def _arrays(env: dict) -> dict:
    return {k: np.asarray(v) for k, v in env.items()}
