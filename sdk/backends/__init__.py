"""Inference backends behind one interface (:class:`Backend`). Heavy imports stay lazy."""
from __future__ import annotations

from ..bundle import Bundle
from ..errors import BackendUnavailableError
from .base import Backend

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def create_backend(name: str, bundle: Bundle, *, engine: str | None = None, threads: int | None = None) -> Backend:
    """Open ``bundle`` on backend ``name``. ``auto`` takes TensorRT when an engine is given, else ONNX Runtime."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        name = "tensorrt" if engine else "onnxruntime"
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, threads=threads)
    if not engine:
        raise BackendUnavailableError("the TensorRT backend needs an engine: build one with 'efiqa build' "
                                      "on the target machine and pass --engine")
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(bundle, engine)


__all__ = ["Backend", "BACKENDS", "create_backend"]
