"""ONNX interop: export a graphdef model to ONNX (export.py), import an ONNX model as a graphdef
model (load.py: proto.py checks the file, importer.py walks the graph, rules_*.py map each ONNX
op), and run ONNX's own node test cases (conformance.py). Needs the `onnx` extra:
pip install "graphdef[onnx]".
"""
from .conformance import conformance, imported_schemas, model_name  # noqa: F401
from .exporter import DEFAULT_OPSET, export  # noqa: F401
from .importer import RULES  # noqa: F401
from .reader import add_loss, from_proto, load, to_document  # noqa: F401
from .proto import CONSTANTS_KEY, LOSS_KEY  # noqa: F401
