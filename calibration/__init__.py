"""Calibration sets and INT8 explicit quantization (Q/DQ ONNX) for TensorRT."""
