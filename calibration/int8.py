"""INT8 explicit quantization (Q/DQ in the ONNX) from a calibration set, TensorRT-ready:
symmetric int8 activations and weights (zero points 0), per-channel weights, biases left in float
(TensorRT's parser rejects int32 bias Q/DQ). Built on ONNX Runtime's ``quantize_static``.
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

METHODS = ("minmax", "percentile")


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over preprocessed tensors."""

    def __init__(self, tensors: np.ndarray, input_name: str) -> None:
        self._it = iter(tensors)
        self.name = input_name

    def get_next(self):
        x = next(self._it, None)
        return None if x is None else {self.name: x[None].astype(np.float32)}

    def rewind(self):  # pragma: no cover - not used by quantize_static's single pass
        pass


def conv_nodes(onnx_bytes: bytes) -> list[str]:
    import onnx

    return [n.name for n in onnx.load_from_string(onnx_bytes).graph.node if n.op_type == "Conv"]


def sensitive_nodes(onnx_bytes: bytes) -> list[str]:
    """Convolutions kept in float by default: depthwise ones (one filter per channel, per-tensor
    activation ranges hurt most) and those whose output feeds a residual Add (linear bottlenecks).
    Measured on the Lite0 student: quantizing them drops map Pearson r to 0.84-0.86; keeping them
    in float gives r ≈ 0.98 (benchmarks/precision_fidelity.py)."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    add_inputs = {i for n in graph.node if n.op_type == "Add" for i in n.input}
    out = []
    for n in graph.node:
        if n.op_type != "Conv":
            continue
        depthwise = any(a.name == "group" and a.i > 1 for a in n.attribute)
        if depthwise or n.output[0] in add_inputs:
            out.append(n.name)
    return out


def quantize(onnx_bytes: bytes, tensors: np.ndarray, input_name: str, method: str = "minmax",
             exclude: list[str] | None = None, keep_first_last_fp32: bool = True,
             percentile: float = 99.99, keep_sensitive_fp32: bool = True,
             ops: tuple[str, ...] | list[str] = ("Conv", "Add", "Concat", "AveragePool")) -> tuple[bytes, list[str]]:
    """Q/DQ INT8 model bytes and the list of nodes left in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    convs = conv_nodes(onnx_bytes)
    excluded = list(exclude or [])
    if keep_first_last_fp32 and convs:
        excluded += [convs[0], convs[-1]]
    if keep_sensitive_fp32:
        excluded += sensitive_nodes(onnx_bytes)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # ORT prints progress
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), _Reader(tensors, input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=excluded, op_types_to_quantize=list(ops),
                        calibrate_method=CalibrationMethod.MinMax if method == "minmax" else CalibrationMethod.Percentile,
                        extra_options=extra)
        return dst.read_bytes(), sorted(set(excluded))
