"""Inference backends behind one interface (:class:`Backend`). Heavy imports stay lazy."""
from __future__ import annotations

from ..bundle import Bundle
from ..errors import BackendUnavailableError
from .base import Backend

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def create_backend(name: str, bundle: Bundle, *, engine: str | None = None, threads: int | None = None,
                   providers: list[str] | None = None, cuda_graph: bool = False) -> Backend:
    """Open ``bundle`` on backend ``name`` and activate it. ``auto`` takes TensorRT when an engine is
    given, else ONNX Runtime. ``providers``: ONNX Runtime execution providers, in order of preference;
    ``cuda_graph``: replay the TensorRT enqueue as a CUDA graph."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        name = "tensorrt" if engine else "onnxruntime"
    if name == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle, threads=threads, providers=providers).activate()
    if not engine:
        raise BackendUnavailableError("the TensorRT backend needs an engine: build one with 'efiqa build' "
                                      "on the target machine and pass --engine")
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(bundle, engine, cuda_graph=cuda_graph).activate()


__all__ = ["Backend", "BACKENDS", "create_backend"]
