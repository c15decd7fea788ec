"""Test doubles for ``tensorrt`` and the CUDA bindings — NOT TensorRT.

They record the calls our orchestration makes and, so results can be checked, "execute" the engine
by running the bundle's ONNX in ONNX Runtime. The "engine file" is the ONNX bytes. Device memory is
plain host memory addressed by fake pointers. This checks our code's life cycle, shapes, copies,
version/manifest logic and CUDA-graph bookkeeping; it proves nothing about real TensorRT.
"""
from __future__ import annotations

import ctypes
import types

import numpy as np

from efiqa.backends.cuda import DeviceInfo


class FakeCuda:
    name = "cuda-python"

    def __init__(self, gpu=("NVIDIA Jetson AGX Orin", "8.7")) -> None:
        self.calls: list[str] = []
        self.device: dict[int, bytearray] = {}
        self.host: dict[int, np.ndarray] = {}
        self._next = 0x1000
        self.gpu = gpu

    def device_info(self, device=0):
        return DeviceInfo(self.gpu[0], self.gpu[1], 32768)

    def malloc(self, nbytes):
        self.calls.append("malloc")
        self._next += 0x100000
        self.device[self._next] = bytearray(nbytes)
        return self._next

    def free(self, ptr):
        self.calls.append("free")
        del self.device[ptr]

    def malloc_host(self, nbytes):
        self.calls.append("malloc_host")
        arr = np.zeros(nbytes, np.uint8)
        self.host[arr.ctypes.data] = arr
        return arr.ctypes.data

    def free_host(self, ptr):
        self.calls.append("free_host")
        del self.host[ptr]

    def stream(self):
        return 7

    def stream_handle(self, stream):
        return stream

    def destroy_stream(self, stream):
        self.calls.append("destroy_stream")

    def h2d(self, dst, src, nbytes, stream):
        self.calls.append("h2d")
        self.device[dst][:nbytes] = ctypes.string_at(src, nbytes)

    def d2h(self, dst, src, nbytes, stream):
        self.calls.append("d2h")
        ctypes.memmove(dst, bytes(self.device[src][:nbytes]), nbytes)

    def synchronize(self, stream):
        self.calls.append("sync")

    def begin_capture(self, stream):
        self.calls.append("begin_capture")

    def end_capture(self, stream):
        self.calls.append("end_capture")
        return ("graph", len(self.calls))

    def launch_graph(self, graph, stream):
        self.calls.append("launch_graph")
        self.last_context.run()


def fake_tensorrt(cuda: FakeCuda, version: str = "10.3.0", max_batch: int = 4, rtx: bool = False) -> types.ModuleType:
    """``rtx``: TensorRT for RTX's extra runtime API (runtime config and cache), logged in ``cache_log``."""
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt_rtx" if rtx else "tensorrt")
    trt.__version__ = version
    trt.cache_log = []

    class RuntimeCache:
        def deserialize(self, blob):
            trt.cache_log.append(f"deserialize:{bytes(blob).decode()}")
            return True

        def serialize(self):
            trt.cache_log.append("serialize")
            return b"kernels"

    class RuntimeConfig:
        def create_runtime_cache(self):
            trt.cache_log.append("create")
            return RuntimeCache()

        def set_runtime_cache(self, cache):
            trt.cache_log.append("set")
            return True

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addresses = engine, {}, {}
            cuda.last_context = self

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            return True

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def run(self):
            (in_name, shape), = self.shapes.items()
            n = int(np.prod(shape)) * 4
            x = np.frombuffer(bytes(cuda.device[self.addresses[in_name]][:n]), np.float32).reshape(shape)
            y = self.engine.session.run(None, {in_name: x})[0].astype(np.float32)
            out_name = [k for k in self.addresses if k != in_name][0]
            cuda.device[self.addresses[out_name]][:y.nbytes] = y.tobytes()

        def execute_async_v3(self, stream):
            cuda.calls.append("execute_async_v3")
            if cuda.calls[-2:-1] == ["begin_capture"]:
                return True  # captured, not run: replay happens at launch_graph
            self.run()
            return True

    class Engine:
        def __init__(self, onnx_bytes):
            self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            self.inp = self.session.get_inputs()[0]
            self.out = self.session.get_outputs()[0]
            self.num_io_tensors = 2

        def get_tensor_name(self, i):
            return [self.inp.name, self.out.name][i]

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_shape(self, name):
            return (-1, *self.inp.shape[1:]) if name == self.inp.name else (-1, *self.out.shape[1:])

        def get_tensor_profile_shape(self, name, profile):
            rest = tuple(self.inp.shape[1:])
            return ((1, *rest), (1, *rest), (max_batch, *rest))

        def create_execution_context(self, runtime_config=None):
            return Context(self)

        if rtx:
            def create_runtime_config(self):
                return RuntimeConfig()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                return Engine(data)
            except Exception:
                return None

    class ILogger:
        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            pass

    trt.Logger, trt.Runtime, trt.ILogger = Logger, Runtime, ILogger
    trt.nptype = lambda dtype: np.float32
    return trt


def add_builder(trt: types.ModuleType, cuda: FakeCuda) -> dict:
    """Builder-side doubles; returns the dict where they record what they were asked to do."""
    rec: dict = {"profiles": [], "pool": None, "flags": None, "timing_cache_set": False}

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class IProgressMonitor:
        def __init__(self):
            pass

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"timing-cache"

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            rec["profiles"].append((name, mn, opt, mx))

    class Config:
        progress_monitor = None

        def set_memory_pool_limit(self, pool, size):
            rec["pool"] = (pool, size)

        def create_timing_cache(self, data):
            rec["timing_cache_in"] = data
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            rec["timing_cache_set"] = True

        def add_optimization_profile(self, p):
            pass

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            rec["parsed_bytes"] = len(data)
            return data[:4] != b"bad!"

        def get_error(self, i):
            return "bad model"

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            rec["flags"] = flags
            return types.SimpleNamespace(num_layers=0)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec["monitor"] = config.progress_monitor
            return b"serialized-engine"

    trt.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    trt.MemoryPoolType = MemoryPoolType
    trt.IProgressMonitor = IProgressMonitor
    trt.Builder, trt.OnnxParser = Builder, Parser
    return rec
