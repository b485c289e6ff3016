"""`graphdef.onnx`: ONNX export, import and conformance (kept at the top level: it is public API)."""
from .tools.onnx import conformance, export, from_proto, imported_schemas, load, model_name  # noqa: F401
