"""Convolution and pooling ops, NCHW as in PyTorch and ONNX; shapes are per sample ([C, H, W])."""
