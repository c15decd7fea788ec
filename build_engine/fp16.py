"""FP16 variant of a bundle's ONNX: float16 inside, float32 I/O kept (casts at the edges).

Precision lives in the ONNX so that TensorRT 10 and 11 build it strongly typed (TensorRT 11 has
no FP16/INT8 builder flags). ``keep_fp32`` names op types left in float32 where fidelity needs it.
"""
from __future__ import annotations

#: Op types kept in float32 by default: the in-graph input normalisation works on 0-255 values.
DEFAULT_KEEP_FP32 = ("Sub", "Div")


def to_fp16(onnx_bytes: bytes, keep_fp32: tuple[str, ...] = DEFAULT_KEEP_FP32) -> bytes:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load_from_string(onnx_bytes)
    fp16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(keep_fp32))
    return fp16.SerializeToString()
