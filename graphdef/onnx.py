"""`graphdef.onnx`: ONNX export, import and conformance (kept at the top level: it is public API)."""
from .tools.onnx import conformance, export, from_proto, load  # noqa: F401
