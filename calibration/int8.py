"""INT8 explicit quantization (Q/DQ in the ONNX) from a calibration set, TensorRT-ready:
symmetric int8 activations and weights (zero points 0), per-channel weights, biases left in float
(TensorRT's parser rejects int32 bias Q/DQ). Built on ONNX Runtime's ``quantize_static``.

The default recipe quantizes the backbone's convolutions and keeps in float what the map's
fidelity needs (each choice measured on ≥ 200 inputs, benchmarks/precision_fidelity.py):
the adapter (3 small convs per head on the 16×16 grid: a small share of the work, and the layers
whose output *is* the map), the first conv (raw pixels), depthwise convs and convs feeding a
residual add (see :func:`sensitive_nodes`), and every non-conv op — the per-cell statistics read
the unrounded features (see :func:`float_consumers_read_float`).
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
    Measured on the shipped Lite0 student (benchmarks/precision_fidelity.py, 219 inputs):
    quantizing them too flips 5 gradable decisions; keeping them float flips none."""
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


def adapter_nodes(onnx_bytes: bytes) -> list[str]:
    """Convolutions downstream of a Concat, in graph order: the student's adapter (every head of an
    ensemble), which reads the concatenated per-cell feature statistics (the backbone has no Concat)."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    readers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    todo = [o for n in graph.node if n.op_type == "Concat" for o in n.output]
    seen: set[str] = set()
    while todo:
        for n in readers.get(todo.pop(), []):
            if n.name not in seen:
                seen.add(n.name)
                todo.extend(n.output)
    return [n.name for n in graph.node if n.op_type == "Conv" and n.name in seen]


def quantize(onnx_bytes: bytes, tensors: np.ndarray, input_name: str, method: str = "minmax",
             exclude: list[str] | None = None, keep_first_last_fp32: bool = True,
             percentile: float = 99.99, keep_sensitive_fp32: bool = True, keep_adapter_fp32: bool = True,
             ops: tuple[str, ...] | list[str] = ("Conv",), float_reads_float: bool = True) -> tuple[bytes, list[str]]:
    """Q/DQ INT8 model bytes and the list of convolutions left in float. ``float_reads_float=False``
    keeps ONNX Runtime's wiring (float ops read the rounded copy): for the ablation only."""
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
    if keep_adapter_fp32:
        excluded += adapter_nodes(onnx_bytes)
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
        data = dst.read_bytes()
        return (float_consumers_read_float(data, ops, excluded) if float_reads_float else data), sorted(set(excluded))


def float_consumers_read_float(onnx_bytes: bytes, ops, excluded) -> bytes:
    """Rewire every node that stays in float to read the float tensor, not its Q→DQ copy.

    ONNX Runtime's quantizer gives a tensor one Q/DQ pair and points *all* its readers at the DQ
    output, so a float op beside a quantized conv (the per-cell mean and standard deviation of the
    student's backbone features) would read rounded values: rounding adds variance inside every
    cell, which the standard deviation reports as texture. TensorRT then runs those ops in float on
    the unrounded tensor, exactly as the ONNX says."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    g = model.graph
    inits = {i.name for i in g.initializer}
    q_input = {n.output[0]: n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    float_of = {n.output[0]: q_input[n.input[0]] for n in g.node
                if n.op_type == "DequantizeLinear" and n.input[0] in q_input and q_input[n.input[0]] not in inits}
    quantized_ops, excluded = set(ops), set(excluded)
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type in quantized_ops and n.name not in excluded:
            continue
        for k, name in enumerate(n.input):
            if name in float_of:
                n.input[k] = float_of[name]
    for out in g.output:  # a graph output must stay float too
        if out.name in float_of:
            raise ValueError(f"graph output {out.name} is quantized")
    return model.SerializeToString()
