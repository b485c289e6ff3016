"""The `graphdef` command: a thin layer over the Python API.

main(argv, stdout, stderr) -> exit code: 0 success, 1 invalid model or data (or output that
cannot be written), 2 usage error, 130 interrupted. Nothing a user does shows a traceback:
an unexpected exception becomes a two-line report (GRAPHDEF_DEBUG=1 adds the traceback).

Each command is a row of the command table (name, function, help, arguments), built into an
argparse parser by _build_parser; its cmd_* function calls the API and prints the result.
Modules are imported where they are used, so a command imports only what it needs:
`graphdef --version` none of graphdef's, `graphdef validate` the loader but not the training
loop, graphviz or ONNX.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import math
import os
import re
import shlex
import sys
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

from .. import __version__
from ..errors import GraphDefError, Problem, did_you_mean

VERSION = f"graphdef {__version__}"
DEBUG_VARIABLE = "GRAPHDEF_DEBUG"
SHOWN_CHARACTERS = 300  # of an unexpected error's message: one screen, not a dump
PLUGIN_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class UsageError(Exception):
    pass


class OutputError(Exception):
    """Standard output cannot be written (a full disk, /dev/full): reported in one line, exit 1."""


class ReaderLeft(BrokenPipeError):
    """The reader of standard output went away (`graphdef ops | head`): not an error, see console()."""


class _Output:
    """Standard output whose write failures say what they are, apart from any other OSError."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        return self._do(self.stream.write, text)

    def flush(self):
        return self._do(self.stream.flush)

    def __getattr__(self, name):  # isatty, encoding, ...: as the stream has them
        return getattr(self.stream, name)

    @staticmethod
    def _do(operation, *args):
        try:
            return operation(*args)
        except BrokenPipeError as e:
            raise ReaderLeft(*e.args) from None
        except OSError as e:
            raise OutputError(e.strerror or str(e)) from None


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors to the caller instead of exiting, and prints help to `out`."""

    def __init__(self, *args, out=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.out = out

    def error(self, message):
        raise UsageError(f"{message}\n{self.format_usage().strip()}")

    def _print_message(self, message, file=None):
        if message:
            (self.out or sys.stdout).write(message)

    def _check_value(self, action, value):
        """An unknown command or choice, with the closest one suggested."""
        if action.choices is None or value in action.choices:
            return
        command = isinstance(action, argparse._SubParsersAction)
        close = did_you_mean(value, action.choices)
        message = (f"unknown {'command' if command else 'choice'} '{value}'" + (f" ({close})" if close else "")
                   + f"; choose from {', '.join(map(str, action.choices))}")
        raise argparse.ArgumentError(None if command else action, message)


def console() -> None:
    """Entry point of the installed `graphdef` script and of `python -m graphdef`."""
    code = 1
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `graphdef ops | head`: the reader left, nothing to report
        code = 0
        _discard_stdout()
    except OSError as e:  # main reported a failed write already, unless this last flush is the first
        if code == 0:
            print(f"graphdef: cannot write the output: {e.strerror or e}", file=sys.stderr)
        code = 1
        _discard_stdout()
    sys.exit(code)


def _discard_stdout() -> None:
    """What is still buffered cannot be written: let the exit's own flush go nowhere instead of failing."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv=None, stdout=None, stderr=None) -> int:
    """Run one command line; every failure ends in a message on stderr and an exit code."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    out, err = _Output(stdout or sys.stdout), stderr or sys.stderr
    try:
        code = _dispatch(argv, out, err)
        out.flush()
        return code
    except ReaderLeft:
        raise
    except OutputError as e:
        print(f"graphdef: cannot write the output: {e}", file=err)
    except UsageError as e:
        print(f"graphdef: usage error: {e}", file=err)
        return 2
    except GraphDefError as e:
        print(e, file=err)
    except KeyboardInterrupt:
        print("graphdef: interrupted", file=err)
        return 130
    except MemoryError:
        print("graphdef: out of memory: the model or its data is too large for this machine "
              "(try a smaller --batch-size, or less data)", file=err)
    except Exception as e:  # a bug: say so briefly, never with a traceback unless asked
        _internal_error(e, argv, err)
    return 1


def _dispatch(argv: list, out, err) -> int:
    """Parse the command line, import the plugins, run the command."""
    if argv == ["--version"]:  # answered before the parser is built, which imports what the commands' options name
        out.write(VERSION + "\n")
        return 0
    parser = _build_parser(out)
    if not argv:
        parser.print_help()
        return 0
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:  # --help, --version
        return e.code or 0
    if extra:
        raise UsageError(_unexpected(parser, args, extra))
    if args.command_name is None:
        raise UsageError(f"give a command (graphdef --help lists them)\n{parser.format_usage().strip()}")
    _import_plugins(args.plugin or [])
    return args.command(args, out, err) or 0


def _internal_error(error: Exception, argv: list, err) -> None:
    """An exception graphdef did not expect: its type and message, and what to do; the traceback only if asked."""
    if os.environ.get(DEBUG_VARIABLE) == "1":
        traceback.print_exception(type(error), error, error.__traceback__, file=err)
    message = " ".join(str(error).split())
    if len(message) > SHOWN_CHARACTERS:
        message = message[:SHOWN_CHARACTERS] + "..."
    command = shlex.join(["graphdef", *argv])
    command = command if len(command) <= SHOWN_CHARACTERS else command[:SHOWN_CHARACTERS] + "..."
    print(f"graphdef: internal error: {type(error).__name__}: {message}", file=err)
    print(f"This is a bug in graphdef: please report it with the command that was run ({command}); "
          f"{DEBUG_VARIABLE}=1 shows the traceback.", file=err)


def _unexpected(parser, args, extra: list) -> str:
    """The usage error for arguments no command takes, naming the closest flag to an unknown one."""
    command = getattr(args, "command_name", None)
    sub = _subparsers(parser).get(command, parser)
    usage = sub.format_usage().strip()
    flag = next((x.partition("=")[0] for x in extra if x.startswith("-") and len(x) > 1), None)
    if flag is None:
        return f"unexpected argument '{extra[0]}'\n{usage}"
    where = f" for 'graphdef {command}'" if command else ""
    if flag in parser._option_string_actions and sub is not parser:
        metavar = parser._option_string_actions[flag].metavar or ""
        return (f"{flag} is a global option: put it before the command (graphdef {flag} {metavar} {command} ...)"
                f"\n{usage}")
    close = _closest_flag(flag, sub)
    return f"unknown option '{flag}'{where}" + (f" (did you mean '{close}'?)" if close else "") + f"\n{usage}"


def _subparsers(parser) -> dict:
    """Command name -> its parser."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _closest_flag(flag: str, parser) -> str | None:
    """The option a mistyped flag meant, matched on its spelling, its help text or its initials
    (--learning-rate -> --lr, whose help is 'learning rate')."""
    names = {}
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            longest = max(action.option_strings, key=len)
            for alias in (*action.option_strings, action.dest, action.help or ""):
                names.setdefault(_words(alias), longest)
    words = _words(flag)
    initials = "".join(w[0] for w in words.split())
    if len(words.split()) > 1 and initials in names:
        return names[initials]
    close = difflib.get_close_matches(words, list(names), n=1, cutoff=0.6)
    return names[close[0]] if close else None


def _words(text: str) -> str:
    """'--batch-size', 'batch_size' and 'Batch size' all -> 'batch size'."""
    return " ".join(w for w in re.split(r"[-_\s]+", text.lower()) if w)


def _import_plugins(modules: list) -> None:
    """Import each --plugin module: importing it registers its ops (graphdef.register_op)."""
    for name in modules:
        if not PLUGIN_NAME.fullmatch(name):
            raise UsageError(f"--plugin takes a Python module name such as mypkg.ops, not '{name}' "
                             "(put a module file's folder on PYTHONPATH and give the module's name)")
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as e:
            hint = ("is it installed, or its folder on PYTHONPATH?" if isinstance(e, ModuleNotFoundError)
                    else "the error is in the plugin's own code")
            raise GraphDefError(Problem(f"cannot load plugin '{name}': {type(e).__name__}: {e}", hint=hint)) from None


# -- commands ---------------------------------------------------------------------

def cmd_validate(args, out, err):
    from .summary import summary
    failed = 0
    for file in args.files:
        try:
            model = _load(args, file)
        except GraphDefError as e:
            failed += 1
            print(e, file=err)
            continue
        s = summary(model)
        print(f"ok: {file}: {s.nodes} nodes, {s.inputs} inputs, {s.parameters} parameters", file=out)
    return 1 if failed else 0


def cmd_show(args, out, err):
    from .summary import VERTEX_COLUMNS, summary
    s = summary(_load(args, args.model))
    _table(VERTEX_COLUMNS, s.rows, out)
    print(f"{s.name}: {s.vertices} vertices, {s.steps} steps, "
          f"{s.parameter_values:,} parameter values in {s.parameters} arrays"
          + (f", {s.state} state arrays (running statistics, not trained by gradients)" if s.state else ""), file=out)


def cmd_run(args, out, err):
    device, model, inputs = _device(args), _load(args, args.model), _inputs(args)
    if args.backend == "torch":
        values = _torch().run(model, inputs, _computable(model, inputs), device)
    else:
        values = model.forward(inputs)
    if args.check_numerics:
        model.check_numerics(values)
    # the loss only when computed: without the label (inference) it is left out
    shown = {name: values[name] for name in model.outputs + [model.loss] if name in values}
    if args.json:
        print(_dumps({"outputs": shown}), file=out)
    else:
        for name, value in shown.items():
            print(f"{name} = {_fmt(value)}", file=out)


def cmd_grad(args, out, err):
    device, model = _device(args), _load(args, args.model)
    if args.explain and args.method == "numeric":
        raise UsageError("--explain shows the backward sweep (--method reverse, the default), the forward-mode "
                         "passes (--method forward) or every path (--method paths); numeric differences have no "
                         "steps to show")
    if args.explain and args.backend == "torch":
        raise UsageError("--explain shows graphdef's own sweeps: leave out --backend torch")
    if args.explain:
        from . import explain as explaining
        explain = {"paths": explaining.explain_paths, "forward": explaining.explain_forward}.get(
            args.method, explaining.explain_sweep)
        print(explain(model, _inputs(args), of=args.of, wrt=args.wrt), file=out)
        return
    of, wrt = model.resolve(args.of, args.wrt, labels=False)  # labels' gradients only when asked for
    if args.backend == "torch":
        if args.method != "reverse":
            raise UsageError(f"--backend torch differentiates by autograd (reverse mode), not --method {args.method}")
        values, grads = _torch().value_and_gradients(model, _inputs(args), of, wrt, device)
    else:
        values, grads = model.value_and_gradients(_inputs(args), of=of, wrt=wrt, method=args.method)
    if args.check_numerics:
        model.check_numerics(values, grads, of)
    if args.json:
        print(_dumps({"of": of, "method": args.method, "value": values[of], "gradients": grads}), file=out)
    else:
        print(f"{of} = {_fmt(values[of])}", file=out)
        for name, g in grads.items():
            print(f"∂{of}/∂{name} = {_fmt(g)}", file=out)


def cmd_draw(args, out, err):
    from . import draw
    model = _load(args, args.model)
    inputs = _inputs(args) if args.at or args.inputs else None
    path = draw.write(draw.to_dot(model, inputs, args.of, args.max_nodes), args.output)
    print(f"wrote {path}", file=err)


def cmd_serve(args, out, err):
    from . import serve
    model = _load(args, args.model)
    return serve.run(model, args.host, args.port, args.open, args.max_nodes, out, err)


def cmd_cost(args, out, err):
    if (args.model is None) == (args.diamond is None):
        raise UsageError("give a MODEL, or --diamond DEPTH for the table of stacked diamonds")
    from .explain import cost, diamond_table
    if args.diamond is not None:
        print(f"{'depth':>5} {'paths':>14} {'path-sum mult.':>16} {'sweep mult.':>12}", file=out)
        for depth, c in diamond_table(args.diamond):
            print(f"{depth:>5} {c.paths:>14,} {c.path_multiplications:>16,} {c.sweep_multiplications:>12,}", file=out)
        return
    model = _load(args, args.model)
    of, wrt = model.resolve(args.of, args.wrt, labels=False)
    c = cost(model, of, wrt)
    print(f"∂{of}/∂({', '.join(wrt)}), counted on the scalar graph (one multiplication per edge derivative used):",
          file=out)
    _table(("method", "paths/passes", "multiplications", "additions"),
           [(m, n, f"{x:,}", f"{a:,}") for m, n, x, a in c.rows()], out)
    print(c.verdict(), file=out)


def cmd_plan(args, out, err):
    from .summary import step_table
    model = _load(args, args.model)
    plan = step_table(model, args.of, args.wrt)
    _table(plan.header, plan.rows, out)
    print(f"{len(plan.rows)} forward steps; backward visits {plan.backward} of them "
          f"for ∂{plan.of}/∂({', '.join(plan.wrt)})", file=out)
    if args.code:
        print("\n" + model.compiled_backprop(plan.of, plan.wrt).source, file=out)


def cmd_export(args, out, err):
    from . import onnx
    onnx.export(_load(args, args.model), args.output, opset=args.opset, with_loss=args.with_loss)
    print(f"wrote {args.output}", file=err)


def cmd_import(args, out, err):
    from . import onnx
    from ..format.serialize import save
    output = Path(args.output)
    if not output.name or (args.weights is not None and not Path(args.weights).name):
        raise UsageError("-o and --weights name files, such as -o imported/model.yaml")
    weights = Path(args.weights) if args.weights else output.with_name(output.stem + ".weights.npz")
    if weights.resolve().parent != output.resolve().parent:
        raise UsageError("--weights must be in the same folder as the model file (-o)")
    model = onnx.load(args.model, name=args.name, loss=args.loss)
    path = save(model, output.parent, name=output.name, weights=weights.name)
    print(f"wrote {path} and {weights} ({len(model.steps)} nodes, {len(model.parameters)} parameters)", file=err)


def cmd_conformance(args, out, err):
    from . import onnx
    from ..format.serialize import atomic_write
    report = onnx.conformance()
    imported, total = onnx.imported_schemas()
    print(f"{report.summary()}; graphdef imports {len(imported)} of ONNX's {total} operator schemas", file=out)
    if args.report:
        atomic_write(args.report, report.markdown().encode())
        print(f"wrote {args.report}", file=err)
    return 1 if report.failed else 0


def cmd_plot(args, out, err):
    from ..training.plot import plot_run
    print(f"wrote {plot_run(args.run_dir, log=args.log)}", file=err)


def cmd_train(args, out, err):
    if (args.model is None) == (args.resume is None):
        raise UsageError("give a MODEL to train, or --resume RUN_DIR to continue a run (not both)")
    from ..training import train
    from ..training.config import check_overrides
    backend = _backend(args)
    overrides = check_overrides({k: getattr(args, k) for k in ("epochs", "lr", "optimizer", "batch_size", "seed")})
    model = None if args.model is None else _load(args, args.model, seed=args.seed)
    history = train(model, args.data, run_dir=args.output, resume=args.resume, force=args.force, out=err,
                    check_numerics=args.check_numerics, **backend, **overrides)
    if history.rank:  # another process of a torchrun launch: rank 0 prints the result
        return 130 if history.status == "interrupted" else 0
    if args.json:
        print(_dumps({"run_dir": str(history.run_dir), "model": str(history.saved), "status": history.status,
                      "history": list(history)}), file=out)
    else:
        print(history.saved, file=out)  # the result; progress and the epoch lines went to stderr
    return 130 if history.status == "interrupted" else 0


def cmd_eval(args, out, err):
    from ..training import evaluate
    backend, model = _backend(args), _load(args, args.model)
    _warn_untrained(model, args.model, "evaluating", err)
    result = evaluate(model, args.data, **backend)
    if args.json:
        print(_dumps(result), file=out)
    else:
        print("  ".join(f"{k} {_fmt(v)}" for k, v in result.items()), file=out)


def cmd_predict(args, out, err):
    from ..format.serialize import atomic_write
    from ..training import predict
    from ..training.tables import prediction_columns, to_csv
    backend, model = _backend(args), _load(args, args.model)
    _warn_untrained(model, args.model, "predicting with", err)
    columns = prediction_columns(predict(model, args.data, **backend))
    text = to_csv(columns)
    if args.output:
        atomic_write(args.output, text.encode())
        print(f"wrote {len(next(iter(columns.values())))} predictions to {args.output}", file=err)
    else:
        out.write(text)


def standard_library() -> dict:
    """The standard library's functions, its module imported when `graphdef ops` lists them."""
    from ..format.library import standard_library
    return standard_library()


def cmd_ops(args, out, err):
    from ..format.functions import REPEAT_DOC, REPEAT_SIGNATURE
    from ..ops import OPS
    print("primitive ops:", file=out)
    for op in sorted(OPS.values(), key=lambda o: o.name):
        print(f"  {op.signature()}\n      {op.doc}", file=out)
    print("functions (standard library; expanded into primitive ops when a model loads):", file=out)
    for fn in sorted(standard_library().values(), key=lambda f: f.name):
        print(f"  {fn.signature()} -> {', '.join(fn.body['outputs'])}  [function]\n      {fn.doc}", file=out)
    print(f"  {REPEAT_SIGNATURE}  [construct]\n      {REPEAT_DOC}", file=out)


def cmd_schema(args, out, err):
    from ..format.schema import schema_text
    out.write(schema_text())


# -- helpers ------------------------------------------------------------------------

def _load(args, path, **options):
    """graphdef.load with the limits, dtype and weights permission given on the command line."""
    from ..format.loader import load
    from ..format.source import Limits
    limits = {}
    for item in args.limit or []:
        name, _, value = item.partition("=")
        if name not in Limits.__dataclass_fields__ or not value.isdigit():
            raise UsageError(f"--limit takes NAME=INTEGER with NAME one of {', '.join(Limits.__dataclass_fields__)}")
        limits[name] = int(value)
    return load(path, dtype=args.dtype, allow_outside=args.allow_outside,
                limits=Limits(**limits), **options)


def _torch():
    """The torch backend's run and grad (graphdef.training.torch_engine), imported only when asked for."""
    from ..training import torch_engine
    return torch_engine


def _device(args) -> str | None:
    """--device, which only the torch backend takes (numpy runs on the cpu)."""
    if args.backend == "numpy" and args.device not in (None, "cpu"):
        raise UsageError(f"--device {args.device} needs --backend torch (the numpy backend runs on the cpu)")
    return args.device


def _backend(args) -> dict:
    """The backend and device keywords of train, evaluate and predict."""
    return {"backend": args.backend, "device": _device(args)}


def _computable(model, given: dict) -> list:
    """The outputs, and the loss when the given inputs determine it (run leaves it out without the label; an
    output's missing input is an error, as on the numpy backend)."""
    missing = set(model.inputs) - set(given)
    loss = [model.loss] if model.loss and not missing & model.ancestors([model.loss]) else []
    return list(dict.fromkeys([*model.outputs, *loss]))


def _inputs(args) -> dict:
    import yaml
    from ..format.data import read_arrays
    values = read_arrays(args.inputs) if args.inputs else {}
    for item in args.at or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--at takes NAME=VALUE, got '{item}'")
        try:
            values[name.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise GraphDefError(f"--at {item}: the value is not a YAML literal (try 3, 0.5 or [1, 2])") from None
    return values


def _at_least_one(text: str) -> int:
    """An argparse type for counts that must be positive (--max-nodes): 0 would draw nothing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _table(header: tuple, rows, out) -> None:
    """Columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)


def _fmt(value) -> str:
    """A number or array for reading; adding 0.0 turns -0.0 into 0 (a sign that only confuses)."""
    import numpy as np
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value) + 0.0:.10g}"
    return np.array2string(value, separator=", ", formatter={"float_kind": lambda x: f"{x + 0.0:.8g}"})


def _dumps(value) -> str:
    """--json output: strict JSON, so NaN and infinity (which JSON lacks) become null, and -0.0 becomes 0.0."""
    return json.dumps(_plain(value), allow_nan=False)


def _plain(value):
    """Arrays and numpy numbers as lists and Python numbers, every float finite or None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and numbers
        return _plain(value.tolist())
    if isinstance(value, float):
        return value + 0.0 if math.isfinite(value) else None
    return value


def _warn_untrained(model, path, doing: str, err) -> None:
    """Random weights give random answers: say so when the parameters were drawn at load, not trained."""
    if model.untrained:
        names = ", ".join(model.untrained[:5]) + (", ..." if len(model.untrained) > 5 else "")
        print(f"graphdef: warning: {doing} untrained weights ({names} drawn at random when the model loaded); "
              f"train first with `graphdef train {path}`", file=err)


# -- the command table ---------------------------------------------------------------

class Arg(NamedTuple):
    """One add_argument call, as data."""

    flags: tuple
    options: dict

    def but(self, **changes) -> Arg:
        """The same argument with some options changed (a different help text, say)."""
        return Arg(self.flags, {**self.options, **changes})


def arg(*flags, **options) -> Arg:
    return Arg(flags, options)


class Command(NamedTuple):
    name: str
    func: Callable  # (args, out, err) -> exit code or None
    help: str  # also the description of `graphdef NAME --help`
    arguments: tuple[Arg, ...] = ()
    loads_models: bool = True  # takes the options of loading (--limit, --allow-outside, --dtype)


# Options of graphdef itself, given before the command.
GLOBAL_OPTIONS = (
    arg("--plugin", action="append", metavar="MODULE",
        help="import the Python module MODULE (e.g. mypkg.ops) before the command runs, so the ops it "
             "registers with graphdef.register_op can be used by models; repeatable. A module name found "
             "on the Python path (PYTHONPATH), not a file; only the command line loads plugins, never a model file"),
)

# Arguments several commands share, defined once.
MODEL = arg("model", metavar="MODEL")
JSON = arg("--json", action="store_true", help="print one JSON object (NaN and infinity as null)")
AT = arg("--at", action="append", metavar="NAME=VALUE", help="an input value, a YAML literal")
INPUTS = arg("--inputs", metavar="DATA", help="input values from a .npz or .json file")
AT_INPUTS_JSON = (MODEL.but(metavar="FILE"), AT, INPUTS, JSON)  # run and grad: a model at given input values
OF = arg("--of", metavar="NODE")
WRT = arg("--wrt", nargs="+", metavar="NAME")
OUTPUT = arg("-o", "--output")
BACKEND = (arg("--backend", choices=["numpy", "torch"], default="numpy",
               help="compute with graphdef's numpy engine (default) or the model lowered to PyTorch"),
           arg("--device", choices=["cpu", "cuda", "mps"],
               help="with --backend torch: where to compute (default: cuda when available, else cpu)"))


def _command_table() -> tuple[tuple[Arg, ...], tuple[Command, ...]]:
    """The options of the commands that load models, and the command table. Their options name what other
    modules define (limits, gradient methods, optimizers, data sets, the drawing's size), imported here:
    building the parser needs them, `graphdef --version` does not."""
    from . import draw
    from ..engine.gradients import METHODS
    from ..format.source import Limits
    from ..training.datasets import BUILTIN
    from ..training.optimizers import DEFAULTS as OPTIMIZERS

    load_options = (
        arg("--limit", action="append", metavar="NAME=N",
            help="raise a safety limit for a file you trust: " + ", ".join(Limits.__dataclass_fields__)),
        arg("--allow-outside", "--allow-outside-weights", dest="allow_outside", action="store_true",
            help="let a model read includes and its weights file outside its own folder"),
        arg("--dtype", choices=["float32", "float64"], help="override the model's dtype"),
    )
    data_help = f"built-in data set ({', '.join(BUILTIN)}) or a .csv/.npz file"

    return load_options, (
        Command("validate", cmd_validate, "check model files against the schema and the op rules",
                (arg("files", nargs="+", metavar="FILE"),)),
        Command("run", cmd_run, "evaluate a model's outputs", (
            *AT_INPUTS_JSON,
            arg("--check-numerics", action="store_true",
                help="stop at the first vertex producing NaN or infinity, naming it"),
            *BACKEND,
        )),
        Command("grad", cmd_grad, "differentiate a model at given inputs", (
            *AT_INPUTS_JSON,
            arg("--no-check-numerics", dest="check_numerics", action="store_false",
                help="do not stop at NaN or infinity (checked by default)"),
            OF.but(help="vertex to differentiate (default: loss, else the output)"),
            WRT.but(help="inputs/parameters (default: all)"),
            arg("--method", choices=METHODS, default="reverse"),
            arg("--explain", action="store_true",
                help="show the backward sweep step by step (with --method forward: the forward-mode passes; "
                     "with --method paths: every path and its product)"),
            *BACKEND,
        )),
        Command("draw", cmd_draw, "draw a model: values on vertices, local derivatives on edges", (
            MODEL, AT.but(help="an input value: show forward values"), INPUTS,
            OF.but(help="also show ∂NODE/∂vertex on every vertex (needs input values)"),
            OUTPUT.but(required=True, metavar="OUT", help="OUT.svg, .png, .pdf or .dot"),
            arg("--max-nodes", type=_at_least_one, default=draw.MAX_NODES, metavar="N",
                help="collapse groups, then drop far vertices, above this many (default %(default)s)"),
        )),
        Command("serve", cmd_serve, "the lecture in the browser: a local page showing values, the sweeps and paths", (
            MODEL,
            arg("--port", type=int, default=8765, metavar="N", help="0 picks a free port (default %(default)s)"),
            arg("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)"),
            arg("--open", action="store_true", help="open the page in a web browser"),
            arg("--max-nodes", type=_at_least_one, default=draw.MAX_NODES, metavar="N",
                help="collapse groups, then drop far vertices, above this many (default %(default)s)"),
        )),
        Command("cost", cmd_cost, "work of the path sum, forward mode and reverse mode (the backward sweep)", (
            MODEL.but(nargs="?"), OF, WRT,
            arg("--diamond", type=int, metavar="DEPTH", help="the table for stacked diamonds of depth 1..DEPTH"),
        )),
        Command("plan", cmd_plan, "the compiled execution plan: steps in order, and the generated code", (
            MODEL, OF, WRT,
            arg("--code", action="store_true", help="print the generated forward-and-backward function"),
        )),
        Command("export", cmd_export, "export a model (trained weights too) to ONNX", (
            MODEL, OUTPUT.but(required=True, metavar="OUT.onnx"),
            arg("--opset", type=int, default=18, help="ONNX opset (13 or newer; default %(default)s)"),
            arg("--with-loss", action="store_true",
                help="also export the loss and the inputs it needs (the label); default: the inference graph"),
        )),
        Command("import", cmd_import, "import an ONNX model as graphdef YAML + weights", (
            MODEL.but(metavar="MODEL.onnx"), OUTPUT.but(required=True, metavar="OUT.yaml"),
            arg("--weights", metavar="WEIGHTS.npz", help="default: OUT.weights.npz beside OUT.yaml"),
            arg("--name", help="the model's name (default: the file's)"),
            arg("--loss", choices=["softmax_cross_entropy", "cross_entropy", "mse"],
                help="add a target input `y` and this loss on the first output, so the model can be trained"),
        ), loads_models=False),
        Command("onnx-conformance", cmd_conformance, "run ONNX's own node test cases for the ops graphdef imports",
                (arg("--report", metavar="FILE.md", help="also write the cases run, passed and skipped (with why)"),),
                loads_models=False),
        Command("plot", cmd_plot, "redraw a run's training curves (RUN_DIR/curves.png)",
                (arg("run_dir", metavar="RUN_DIR"),
                 arg("--log", action=argparse.BooleanOptionalAction, default=None,
                     help="loss on a log scale, or not (default: when it spans more than two decades)")),
                loads_models=False),
        Command("train", cmd_train, "train a model and save it in a run directory", (
            MODEL.but(nargs="?"),
            arg("--data", help=data_help + " (default: the model's training.data)"),
            arg("--epochs", type=int, metavar="N"),
            arg("--lr", type=float, metavar="X", help="learning rate"),
            arg("--optimizer", choices=list(OPTIMIZERS), help="replaces the model's optimizer settings"),
            arg("--batch-size", type=int, metavar="N"),
            arg("--seed", type=int, metavar="N"),
            OUTPUT.but(metavar="RUN_DIR", help="where to save (default: runs/NAME, never reused)"),
            arg("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint"),
            arg("--force", action="store_true", help="overwrite an existing run directory"),
            JSON.but(help="print the history as one JSON object (NaN and infinity as null)"),
            arg("--check-numerics", action="store_true",
                help="check every batch for NaN or infinity, naming the vertex (slower)"),
            *BACKEND,
        )),
        Command("eval", cmd_eval, "loss and metrics of a (trained) model", (
            MODEL, arg("--data", help=data_help + " (default: the held-out split of its training data)"), JSON,
            *BACKEND,
        )),
        Command("predict", cmd_predict, "predictions of a (trained) model, as CSV", (
            MODEL, arg("--data", required=True, help=data_help),
            OUTPUT.but(metavar="FILE.csv", help="write here instead of standard output"),
            *BACKEND,
        )),
        Command("ops", cmd_ops, "list the registered ops and the standard library's functions", loads_models=False),
        Command("show", cmd_show, "list a model's vertices: kind, op, shape and the call each came from", (MODEL,)),
        Command("schema", cmd_schema, "print the JSON Schema of the model format", loads_models=False),
    )


def _build_parser(out) -> argparse.ArgumentParser:
    """The argparse parser of the command table; help and usage go to `out`."""
    parser = _Parser(prog="graphdef", description="Declarative computation graphs in YAML.", out=out,
                     epilog=f"`graphdef COMMAND --help` describes a command. {DEBUG_VARIABLE}=1 in the environment "
                            "shows the traceback of an internal error.")
    parser.add_argument("--version", action="version", version=VERSION)
    _add_arguments(parser, GLOBAL_OPTIONS)
    # dest unlike any option's (import has --name); no command is a usage error of our own
    sub = parser.add_subparsers(dest="command_name", parser_class=_Parser)
    load_arguments, commands = _command_table()
    load_options = _add_arguments(argparse.ArgumentParser(add_help=False), load_arguments)
    for c in commands:
        p = sub.add_parser(c.name, help=c.help, description=c.help, out=out,
                           parents=[load_options] if c.loads_models else [])
        _add_arguments(p, c.arguments).set_defaults(command=c.func)
    return parser


def _add_arguments(parser: argparse.ArgumentParser, arguments) -> argparse.ArgumentParser:
    for a in arguments:
        parser.add_argument(*a.flags, **a.options)
    return parser
