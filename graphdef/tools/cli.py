"""The `graphdef` command: a thin layer over the Python API.

main(argv, stdout, stderr) -> exit code: 0 success, 1 invalid model or data, 2 usage error.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import yaml

from . import draw
from .. import evaluate, load, predict, train
from ..format.functions import standard_library
from ..ops.registry import show_shape
from .explain import cost, diamond_table, explain_paths, explain_sweep
from ..training.plot import plot_run
from ..format.data import read_arrays
from ..errors import GraphDefError
from ..engine.model import METHODS
from ..ops import OPS
from ..format.schema import schema_text
from ..format.serialize import atomic_write, save
from ..format.source import Limits
from ..training.optimizers import DEFAULTS as OPTIMIZERS


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors to the caller instead of exiting."""

    def error(self, message):
        raise UsageError(f"{message}\n{self.format_usage().strip()}")

    def _print_message(self, message, file=None):
        if message:
            self.out.write(message)


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
        kinds = [v.kind for v in model.graph.vertices.values()]
        print(f"ok: {file}: {kinds.count('node')} nodes, {kinds.count('input')} inputs, "
              f"{kinds.count('parameter')} parameters", file=out)
    return 1 if failed else 0


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
    of, wrt = model.resolve(args.of, args.wrt)
    steps, wanted = model.backward_plan(of, tuple(wrt))
    rows = [(str(i), s.name, s.op.name, ", ".join(s.inputs), ", ".join(f"{k}={v}" for k, v in s.attrs.items()),
             "yes" if s in steps else "") for i, s in enumerate(model.steps)]
    _table(("#", "vertex", "op", "inputs", "attributes", f"on the backward path of {of}"), rows, out)
    print(f"{len(model.steps)} forward steps; backward visits {len(steps)} of them "
          f"for ∂{of}/∂({', '.join(wrt)})", file=out)
    if args.code:
        print("\n" + model.compiled_backprop(of, wrt).source, file=out)


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
    predictions = predict(_load(args, args.model), args.data)
    columns = {}
    for name, values in predictions.items():
        flat = values.reshape(len(values), -1)
        columns |= {name: flat[:, 0]} if values.ndim == 1 else {f"{name}[{i}]": flat[:, i] for i in range(flat.shape[1])}
    if len(predictions) == 1 and next(iter(predictions.values())).ndim == 2:
        columns["class"] = np.argmax(next(iter(predictions.values())), axis=-1)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*(c.tolist() for c in columns.values())))
    if args.output:
        atomic_write(args.output, text.getvalue().encode())
        print(f"wrote {len(next(iter(columns.values())))} predictions to {args.output}", file=err)
    else:
        out.write(text.getvalue())


def cmd_ops(args, out, err):
    print("primitive ops:", file=out)
    for op in sorted(OPS.values(), key=lambda o: o.name):
        print(f"  {op.signature()}\n      {op.doc}", file=out)
    print("functions (standard library; expanded into primitive ops when a model loads):", file=out)
    for fn in sorted(standard_library().values(), key=lambda f: f.name):
        print(f"  {fn.signature()}  [function]\n      {fn.doc}", file=out)


def cmd_show(args, out, err):
    model = _load(args, args.model)
    rows = [(v.name, v.kind, v.op.name if v.op else "", show_shape(v.shape), v.call or "")
            for v in model.graph.vertices.values()]
    _table(("vertex", "kind", "op", "shape", "call"), rows, out)
    size = sum(p.size for p in model.parameters.values())
    print(f"{model.name}: {len(model.graph)} vertices, {len(model.steps)} steps, "
          f"{size:,} parameter values in {len(model.parameters)} arrays", file=out)


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


def _table(header: tuple, rows: list, out) -> None:
    """Columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)


def _fmt(value) -> str:
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.10g}"
    return np.array2string(value, separator=", ", formatter={"float_kind": lambda x: f"{x:.8g}"})


def _build_parser(out) -> argparse.ArgumentParser:
    parser = _Parser(prog="graphdef", description="Declarative computation graphs in YAML.")
    parser.out = out
    parser.add_argument("--version", action="version", version="graphdef 0.1.0")
    sub = parser.add_subparsers(dest="name", required=True, parser_class=_Parser)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--limit", action="append", metavar="NAME=N",
                        help="raise a safety limit for a file you trust: " + ", ".join(Limits.__dataclass_fields__))
    common.add_argument("--allow-outside-weights", action="store_true",
                        help="let a model read a weights file outside its own folder")
    common.add_argument("--dtype", choices=["float32", "float64"], help="override the model's dtype")

    def command(name, func, help, loads_models=True):
        p = sub.add_parser(name, help=help, description=help, parents=[common] if loads_models else [])
        p.out = out
        p.set_defaults(command=func)
        return p

    p = command("validate", cmd_validate, "check model files against the schema and the op rules")
    p.add_argument("files", nargs="+", metavar="FILE")

    for name, func, help in [("run", cmd_run, "evaluate a model's outputs"),
                             ("grad", cmd_grad, "differentiate a model at given inputs")]:
        p = command(name, func, help)
        p.add_argument("model", metavar="FILE")
        p.add_argument("--at", action="append", metavar="NAME=VALUE", help="an input value, a YAML literal")
        p.add_argument("--inputs", metavar="DATA", help="input values from a .npz or .json file")
        p.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "run":
            p.add_argument("--check-numerics", action="store_true",
                           help="stop at the first vertex producing NaN or infinity, naming it")
        if name == "grad":
            p.add_argument("--no-check-numerics", dest="check_numerics", action="store_false",
                           help="do not stop at NaN or infinity (checked by default)")
            p.add_argument("--of", metavar="NODE", help="vertex to differentiate (default: loss, else the output)")
            p.add_argument("--wrt", nargs="+", metavar="NAME", help="inputs/parameters (default: all)")
            p.add_argument("--method", choices=METHODS, default="reverse")
            p.add_argument("--explain", action="store_true",
                           help="show the backward sweep step by step (with --method paths: every path and its product)")

    p = command("draw", cmd_draw, "draw a model: values on vertices, local derivatives on edges")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--at", action="append", metavar="NAME=VALUE", help="an input value: show forward values")
    p.add_argument("--inputs", metavar="DATA", help="input values from a .npz or .json file")
    p.add_argument("--of", metavar="NODE", help="also show ∂NODE/∂vertex on every vertex (needs input values)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.svg, .png, .pdf or .dot")
    p.add_argument("--max-nodes", type=int, default=draw.MAX_NODES, metavar="N",
                   help="collapse groups, then drop far vertices, above this many (default %(default)s)")

    p = command("cost", cmd_cost, "work of the path sum against the backward sweep")
    p.add_argument("model", nargs="?", metavar="MODEL")
    p.add_argument("--of", metavar="NODE")
    p.add_argument("--wrt", nargs="+", metavar="NAME")
    p.add_argument("--diamond", type=int, metavar="DEPTH", help="the table for stacked diamonds of depth 1..DEPTH")

    p = command("plan", cmd_plan, "the compiled execution plan: steps in order, and the generated code")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--of", metavar="NODE")
    p.add_argument("--wrt", nargs="+", metavar="NAME")
    p.add_argument("--code", action="store_true", help="print the generated forward-and-backward function")

    p = command("export", cmd_export, "export a model (trained weights too) to ONNX")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (13 or newer; default %(default)s)")

    p = command("import", cmd_import, "import an ONNX model as graphdef YAML + weights", loads_models=False)
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("-o", "--output", required=True, metavar="OUT.yaml")
    p.add_argument("--weights", metavar="WEIGHTS.npz", help="default: OUT.weights.npz beside OUT.yaml")
    p.add_argument("--name", help="the model's name (default: the file's)")
    p.add_argument("--loss", choices=["softmax_cross_entropy", "cross_entropy", "mse"],
                   help="add a target input `y` and this loss on the first output, so the model can be trained")

    p = command("onnx-conformance", cmd_conformance, "run ONNX's own node test cases for the ops graphdef imports",
                loads_models=False)
    p.add_argument("--report", metavar="FILE.md", help="also write the cases run, passed and skipped (with why)")

    p = command("plot", cmd_plot, "redraw a run's training curves (RUN_DIR/curves.png)", loads_models=False)
    p.add_argument("run_dir", metavar="RUN_DIR")

    data_help = "built-in data set (xor, moons, spirals, digits) or a .csv/.npz file"
    p = command("train", cmd_train, "train a model and save it in a run directory")
    p.add_argument("model", nargs="?", metavar="MODEL")
    p.add_argument("--data", help=data_help + " (default: the model's training.data)")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument("--lr", type=float, metavar="X", help="learning rate")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), help="replaces the model's optimizer settings")
    p.add_argument("--batch-size", type=int, metavar="N")
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="where to save (default: runs/NAME, never reused)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.add_argument("--json", action="store_true", help="print the history as one JSON object")
    p.add_argument("--check-numerics", action="store_true",
                   help="check every batch for NaN or infinity, naming the vertex (slower)")

    p = command("eval", cmd_eval, "loss and metrics of a (trained) model")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", help=data_help + " (default: the held-out split of its training data)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("predict", cmd_predict, "predictions of a (trained) model, as CSV")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("-o", "--output", metavar="FILE.csv", help="write here instead of standard output")

    command("ops", cmd_ops, "list the registered ops and the standard library's functions", loads_models=False)
    p = command("show", cmd_show, "list a model's vertices: kind, op, shape and the call each came from")
    p.add_argument("model", metavar="MODEL")
    command("schema", cmd_schema, "print the JSON Schema of the model format", loads_models=False)
    return parser
