"""Minimal CUDA plumbing for the TensorRT backend: device/pinned buffers, a stream, async copies,
optional CUDA-graph capture. cuda-python (``cuda-bindings``, NVIDIA's current recommendation)
first; pycuda where that is what the user has. Imported lazily, only by the TensorRT backend.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100) …
    total_memory_mb: int


def _check(result: Any, what: str) -> Any:
    """cuda-python returns (err, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(getattr(err, "value", err))
    if code != 0:
        raise BackendUnavailableError(f"CUDA {what} failed: {getattr(err, 'name', code)}")
    return values[0] if len(values) == 1 else (tuple(values) if values else None)


class CudaPython:
    """The calls we need, through cuda-python's runtime API."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-bindings ≥ 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python layout
        self.rt = cudart
        count = _check(cudart.cudaGetDeviceCount(), "device query")
        if not count:
            raise BackendUnavailableError("no CUDA device found")

    def device_info(self, device: int = 0) -> DeviceInfo:
        p = _check(self.rt.cudaGetDeviceProperties(device), "device properties")
        name = p.name.decode(errors="replace").rstrip("\x00") if isinstance(p.name, bytes) else str(p.name)
        return DeviceInfo(name, f"{p.major}.{p.minor}", int(p.totalGlobalMem) // 2**20)

    def malloc(self, nbytes: int) -> int:
        return int(_check(self.rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        _check(self.rt.cudaFree(ptr), "cudaFree")

    def malloc_host(self, nbytes: int) -> int:
        return int(_check(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))

    def free_host(self, ptr: int) -> None:
        _check(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def stream(self) -> Any:
        return _check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def destroy_stream(self, stream: Any) -> None:
        _check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def h2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def d2h(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync D2H")

    def synchronize(self, stream: Any) -> None:
        _check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: Any) -> Any:
        graph = _check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        return _check(self.rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch_graph(self, graph_exec: Any, stream: Any) -> None:
        _check(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")


class PyCuda:
    """The same calls through pycuda (no graph capture)."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as drv

        self.drv = drv
        self._allocs: dict[int, Any] = {}
        self._host: dict[int, np.ndarray] = {}

    def device_info(self, device: int = 0) -> DeviceInfo:
        d = self.drv.Device(device)
        major, minor = d.compute_capability()
        return DeviceInfo(d.name(), f"{major}.{minor}", d.total_memory() // 2**20)

    def malloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(nbytes)
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def malloc_host(self, nbytes: int) -> int:
        arr = self.drv.pagelocked_empty(nbytes, np.uint8)
        self._host[arr.ctypes.data] = arr
        return arr.ctypes.data

    def free_host(self, ptr: int) -> None:
        self._host.pop(ptr, None)

    def stream(self) -> Any:
        return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream: Any) -> None:
        pass

    def h2d(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, _host_view(src, nbytes), stream)

    def d2h(self, dst: int, src: int, nbytes: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(_host_view(dst, nbytes), src, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def begin_capture(self, stream: Any) -> None:
        raise BackendUnavailableError("CUDA graphs need cuda-python")

    end_capture = launch_graph = begin_capture  # type: ignore[assignment]


def _host_view(ptr: int, nbytes: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))


def host_array(ptr: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A numpy view of pinned host memory at ``ptr``."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return _host_view(ptr, n).view(dtype).reshape(shape)


def load_cuda() -> CudaPython | PyCuda:
    """cuda-python, else pycuda, else a clear error."""
    errors = []
    for cls in (CudaPython, PyCuda):
        try:
            return cls()
        except ImportError as exc:
            errors.append(f"{cls.name}: not installed ({exc.name})")
        except BackendUnavailableError as exc:
            errors.append(f"{cls.name}: {exc.message}")
    raise BackendUnavailableError("no usable CUDA Python binding: " + "; ".join(errors)
                                  + " (pip install 'efiqa[trt]' on a machine with an NVIDIA GPU)")
