"""The `graphdef` command: a thin layer over the Python API.

main(argv, stdout, stderr) -> exit code: 0 success, 1 invalid model or data, 2 usage error.

Each command is a row of COMMANDS (name, function, help, arguments), built into an argparse
parser by _build_parser; its cmd_* function calls the API and prints the result.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import yaml

from . import draw
from .. import __version__, evaluate, load, predict, train
from ..engine.model import METHODS
from ..errors import GraphDefError
from ..format.data import read_arrays
from ..format.functions import standard_library
from ..format.schema import schema_text
from ..format.serialize import atomic_write, save
from ..format.source import Limits
from ..ops import OPS
from ..training.optimizers import DEFAULTS as OPTIMIZERS
from ..training.plot import plot_run
from ..training.tables import prediction_columns, to_csv
from .explain import cost, diamond_table, explain_paths, explain_sweep
from .summary import VERTEX_COLUMNS, step_table, summary


class UsageError(Exception):
    pass


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


def console() -> None:
    """Entry point of the installed `graphdef` script."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `graphdef ops | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


def main(argv=None, stdout=None, stderr=None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    parser = _build_parser(stdout)
    try:
        args = parser.parse_args(argv)
        return args.command(args, stdout, stderr) or 0
    except SystemExit as e:  # --help, --version
        return e.code or 0
    except UsageError as e:
        print(f"graphdef: usage error: {e}", file=stderr)
        return 2
    except GraphDefError as e:
        print(e, file=stderr)
        return 1
    except KeyboardInterrupt:
        print("graphdef: interrupted", file=stderr)
        return 130


# -- commands ---------------------------------------------------------------------

def cmd_validate(args, out, err):
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
    s = summary(_load(args, args.model))
    _table(VERTEX_COLUMNS, s.rows, out)
    print(f"{s.name}: {s.vertices} vertices, {s.steps} steps, "
          f"{s.parameter_values:,} parameter values in {s.parameters} arrays", file=out)


def cmd_run(args, out, err):
    model = _load(args, args.model)
    values = model.forward(_inputs(args))
    if args.check_numerics:
        model.check_numerics(values)
    shown = {name: values[name] for name in model.outputs + ([model.loss] if model.loss else [])}
    if args.json:
        print(json.dumps({"outputs": {k: v.tolist() for k, v in shown.items()}}), file=out)
    else:
        for name, value in shown.items():
            print(f"{name} = {_fmt(value)}", file=out)


def cmd_grad(args, out, err):
    model = _load(args, args.model)
    if args.explain:
        explain = explain_paths if args.method == "paths" else explain_sweep
        print(explain(model, _inputs(args), of=args.of, wrt=args.wrt), file=out)
        return
    values, grads = model.value_and_gradients(_inputs(args), of=args.of, wrt=args.wrt, method=args.method)
    of = model.resolve(args.of, args.wrt)[0]
    if args.check_numerics:
        model.check_numerics(values, grads, of)
    if args.json:
        print(json.dumps({"of": of, "method": args.method, "value": values[of].tolist(),
                          "gradients": {k: v.tolist() for k, v in grads.items()}}), file=out)
    else:
        print(f"{of} = {_fmt(values[of])}", file=out)
        for name, g in grads.items():
            print(f"∂{of}/∂{name} = {_fmt(g)}", file=out)


def cmd_draw(args, out, err):
    model = _load(args, args.model)
    inputs = _inputs(args) if args.at or args.inputs else None
    path = draw.write(draw.to_dot(model, inputs, args.of, args.max_nodes), args.output)
    print(f"wrote {path}", file=err)


def cmd_cost(args, out, err):
    if (args.model is None) == (args.diamond is None):
        raise UsageError("give a MODEL, or --diamond DEPTH for the table of stacked diamonds")
    if args.diamond is not None:
        print(f"{'depth':>5} {'paths':>14} {'path-sum mult.':>16} {'sweep mult.':>12}", file=out)
        for depth, c in diamond_table(args.diamond):
            print(f"{depth:>5} {c.paths:>14,} {c.path_multiplications:>16,} {c.sweep_multiplications:>12,}", file=out)
        return
    model = _load(args, args.model)
    of, wrt = model.resolve(args.of, args.wrt)
    print(f"∂{of}/∂({', '.join(wrt)}): {cost(model, of, wrt)}", file=out)


def cmd_plan(args, out, err):
    model = _load(args, args.model)
    plan = step_table(model, args.of, args.wrt)
    _table(plan.header, plan.rows, out)
    print(f"{len(plan.rows)} forward steps; backward visits {plan.backward} of them "
          f"for ∂{plan.of}/∂({', '.join(plan.wrt)})", file=out)
    if args.code:
        print("\n" + model.compiled_backprop(plan.of, plan.wrt).source, file=out)


def cmd_export(args, out, err):
    from . import onnx
    onnx.export(_load(args, args.model), args.output, opset=args.opset)
    print(f"wrote {args.output}", file=err)


def cmd_import(args, out, err):
    from . import onnx
    output = Path(args.output)
    weights = Path(args.weights) if args.weights else output.with_name(output.stem + ".weights.npz")
    if weights.resolve().parent != output.resolve().parent:
        raise UsageError("--weights must be in the same folder as the model file (-o)")
    model = onnx.load(args.model, name=args.name, loss=args.loss)
    path = save(model, output.parent, name=output.name, weights=weights.name)
    print(f"wrote {path} and {weights} ({len(model.steps)} nodes, {len(model.parameters)} parameters)", file=err)


def cmd_conformance(args, out, err):
    from . import onnx
    report = onnx.conformance()
    print(report.summary(), file=out)
    if args.report:
        atomic_write(args.report, report.markdown().encode())
        print(f"wrote {args.report}", file=err)
    return 1 if report.failed else 0


def cmd_plot(args, out, err):
    print(f"wrote {plot_run(args.run_dir)}", file=err)


def cmd_train(args, out, err):
    if (args.model is None) == (args.resume is None):
        raise UsageError("give a MODEL to train, or --resume RUN_DIR to continue a run (not both)")
    overrides = {k: getattr(args, k) for k in ("epochs", "lr", "optimizer", "batch_size", "seed")}
    model = None if args.model is None else _load(args, args.model, seed=args.seed)
    history = train(model, args.data, run_dir=args.output, resume=args.resume, force=args.force, out=err,
                    check_numerics=args.check_numerics, **overrides)
    if args.json:
        print(json.dumps({"run_dir": str(history.run_dir), "model": str(history.saved), "status": history.status,
                          "history": list(history)}), file=out)
    else:
        print(history.saved, file=out)  # the result; progress and the epoch lines went to stderr
    return 130 if history.status == "interrupted" else 0


def cmd_eval(args, out, err):
    result = evaluate(_load(args, args.model), args.data)
    if args.json:
        print(json.dumps(result), file=out)
    else:
        print("  ".join(f"{k} {_fmt(v)}" for k, v in result.items()), file=out)


def cmd_predict(args, out, err):
    columns = prediction_columns(predict(_load(args, args.model), args.data))
    text = to_csv(columns)
    if args.output:
        atomic_write(args.output, text.encode())
        print(f"wrote {len(next(iter(columns.values())))} predictions to {args.output}", file=err)
    else:
        out.write(text)


def cmd_ops(args, out, err):
    print("primitive ops:", file=out)
    for op in sorted(OPS.values(), key=lambda o: o.name):
        print(f"  {op.signature()}\n      {op.doc}", file=out)
    print("functions (standard library; expanded into primitive ops when a model loads):", file=out)
    for fn in sorted(standard_library().values(), key=lambda f: f.name):
        print(f"  {fn.signature()}  [function]\n      {fn.doc}", file=out)


def cmd_schema(args, out, err):
    out.write(schema_text())


# -- helpers ------------------------------------------------------------------------

def _load(args, path, **options):
    """graphdef.load with the limits, dtype and weights permission given on the command line."""
    limits = {}
    for item in args.limit or []:
        name, _, value = item.partition("=")
        if name not in Limits.__dataclass_fields__ or not value.isdigit():
            raise UsageError(f"--limit takes NAME=INTEGER with NAME one of {', '.join(Limits.__dataclass_fields__)}")
        limits[name] = int(value)
    return load(path, dtype=args.dtype, allow_outside_weights=args.allow_outside_weights,
                limits=Limits(**limits), **options)


def _inputs(args) -> dict:
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


def _table(header: tuple, rows, out) -> None:
    """Columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)


def _fmt(value) -> str:
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.10g}"
    return np.array2string(value, separator=", ", formatter={"float_kind": lambda x: f"{x:.8g}"})


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
    loads_models: bool = True  # takes LOAD_OPTIONS


# Arguments several commands share, defined once.
LOAD_OPTIONS = (
    arg("--limit", action="append", metavar="NAME=N",
        help="raise a safety limit for a file you trust: " + ", ".join(Limits.__dataclass_fields__)),
    arg("--allow-outside-weights", action="store_true", help="let a model read a weights file outside its own folder"),
    arg("--dtype", choices=["float32", "float64"], help="override the model's dtype"),
)
MODEL = arg("model", metavar="MODEL")
JSON = arg("--json", action="store_true", help="print one JSON object")
AT = arg("--at", action="append", metavar="NAME=VALUE", help="an input value, a YAML literal")
INPUTS = arg("--inputs", metavar="DATA", help="input values from a .npz or .json file")
AT_INPUTS_JSON = (MODEL.but(metavar="FILE"), AT, INPUTS, JSON)  # run and grad: a model at given input values
OF = arg("--of", metavar="NODE")
WRT = arg("--wrt", nargs="+", metavar="NAME")
OUTPUT = arg("-o", "--output")
DATA_HELP = "built-in data set (xor, moons, spirals, digits) or a .csv/.npz file"

COMMANDS = (
    Command("validate", cmd_validate, "check model files against the schema and the op rules",
            (arg("files", nargs="+", metavar="FILE"),)),
    Command("run", cmd_run, "evaluate a model's outputs", (
        *AT_INPUTS_JSON,
        arg("--check-numerics", action="store_true", help="stop at the first vertex producing NaN or infinity, naming it"),
    )),
    Command("grad", cmd_grad, "differentiate a model at given inputs", (
        *AT_INPUTS_JSON,
        arg("--no-check-numerics", dest="check_numerics", action="store_false",
            help="do not stop at NaN or infinity (checked by default)"),
        OF.but(help="vertex to differentiate (default: loss, else the output)"),
        WRT.but(help="inputs/parameters (default: all)"),
        arg("--method", choices=METHODS, default="reverse"),
        arg("--explain", action="store_true",
            help="show the backward sweep step by step (with --method paths: every path and its product)"),
    )),
    Command("draw", cmd_draw, "draw a model: values on vertices, local derivatives on edges", (
        MODEL, AT.but(help="an input value: show forward values"), INPUTS,
        OF.but(help="also show ∂NODE/∂vertex on every vertex (needs input values)"),
        OUTPUT.but(required=True, metavar="OUT", help="OUT.svg, .png, .pdf or .dot"),
        arg("--max-nodes", type=int, default=draw.MAX_NODES, metavar="N",
            help="collapse groups, then drop far vertices, above this many (default %(default)s)"),
    )),
    Command("cost", cmd_cost, "work of the path sum against the backward sweep", (
        MODEL.but(nargs="?"), OF, WRT,
        arg("--diamond", type=int, metavar="DEPTH", help="the table for stacked diamonds of depth 1..DEPTH"),
    )),
    Command("plan", cmd_plan, "the compiled execution plan: steps in order, and the generated code", (
        MODEL, OF, WRT, arg("--code", action="store_true", help="print the generated forward-and-backward function"),
    )),
    Command("export", cmd_export, "export a model (trained weights too) to ONNX", (
        MODEL, OUTPUT.but(required=True, metavar="OUT.onnx"),
        arg("--opset", type=int, default=18, help="ONNX opset (13 or newer; default %(default)s)"),
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
            (arg("run_dir", metavar="RUN_DIR"),), loads_models=False),
    Command("train", cmd_train, "train a model and save it in a run directory", (
        MODEL.but(nargs="?"),
        arg("--data", help=DATA_HELP + " (default: the model's training.data)"),
        arg("--epochs", type=int, metavar="N"),
        arg("--lr", type=float, metavar="X", help="learning rate"),
        arg("--optimizer", choices=list(OPTIMIZERS), help="replaces the model's optimizer settings"),
        arg("--batch-size", type=int, metavar="N"),
        arg("--seed", type=int, metavar="N"),
        OUTPUT.but(metavar="RUN_DIR", help="where to save (default: runs/NAME, never reused)"),
        arg("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint"),
        arg("--force", action="store_true", help="overwrite an existing run directory"),
        JSON.but(help="print the history as one JSON object"),
        arg("--check-numerics", action="store_true",
            help="check every batch for NaN or infinity, naming the vertex (slower)"),
    )),
    Command("eval", cmd_eval, "loss and metrics of a (trained) model", (
        MODEL, arg("--data", help=DATA_HELP + " (default: the held-out split of its training data)"), JSON,
    )),
    Command("predict", cmd_predict, "predictions of a (trained) model, as CSV", (
        MODEL, arg("--data", required=True, help=DATA_HELP),
        OUTPUT.but(metavar="FILE.csv", help="write here instead of standard output"),
    )),
    Command("ops", cmd_ops, "list the registered ops and the standard library's functions", loads_models=False),
    Command("show", cmd_show, "list a model's vertices: kind, op, shape and the call each came from", (MODEL,)),
    Command("schema", cmd_schema, "print the JSON Schema of the model format", loads_models=False),
)


def _build_parser(out) -> argparse.ArgumentParser:
    """The argparse parser of COMMANDS; help and usage go to `out`."""
    parser = _Parser(prog="graphdef", description="Declarative computation graphs in YAML.", out=out)
    parser.add_argument("--version", action="version", version=f"graphdef {__version__}")
    sub = parser.add_subparsers(dest="name", required=True, parser_class=_Parser)
    load_options = _add_arguments(argparse.ArgumentParser(add_help=False), LOAD_OPTIONS)
    for c in COMMANDS:
        p = sub.add_parser(c.name, help=c.help, description=c.help, out=out,
                           parents=[load_options] if c.loads_models else [])
        _add_arguments(p, c.arguments).set_defaults(command=c.func)
    return parser


def _add_arguments(parser: argparse.ArgumentParser, arguments) -> argparse.ArgumentParser:
    for a in arguments:
        parser.add_argument(*a.flags, **a.options)
    return parser
