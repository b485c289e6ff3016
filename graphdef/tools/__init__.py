"""Tools over the Python API: the command line, drawings, explanations, curves, ONNX."""
