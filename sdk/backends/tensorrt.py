"""TensorRT backend: runs engines built by ``efiqa build`` for either target — TensorRT 10/11 (as on
JetPack 6) or TensorRT for RTX — after checking the engine manifest against this device, with
pinned host buffers, async copies on one CUDA stream and, optionally, CUDA-graph replay.

Only the name-based I/O API is used (``num_io_tensors``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``), which both libraries provide. TensorRT for RTX
compiles kernels on the first run; its runtime cache (``<engine>.cache``) keeps them for the next.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..bundle import Bundle
from ..engine import TARGET_MODULES, EngineManifest
from ..errors import BackendUnavailableError, ModelError
from .base import Backend
from .cuda import host_array, load_cuda

_MISSING = {
    "tensorrt": "TensorRT is not installed: on Jetson it comes with JetPack 6; elsewhere install NVIDIA's "
                "tensorrt wheels on a machine with an NVIDIA GPU",
    "tensorrt-rtx": "TensorRT for RTX is not installed: pip install 'efiqa[rtx]'",
}


def import_tensorrt(target: str = "tensorrt"):
    """The library module of ``target`` (``tensorrt`` or ``tensorrt-rtx``), or a clear error."""
    import importlib

    try:
        return importlib.import_module(TARGET_MODULES[target])
    except ImportError:
        raise BackendUnavailableError(_MISSING[target]) from None


def runtime_cache_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".cache")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, bundle: Bundle, engine: str | Path, cuda_graph: bool = False) -> None:
        super().__init__(bundle)
        self.engine_path = Path(engine)
        if not self.engine_path.is_file():
            raise ModelError("no such engine file", str(engine))
        self.engine_manifest = EngineManifest.load(self.engine_path)
        self.target = self.engine_manifest.target
        self.cuda_graph_requested = cuda_graph
        self._resources: contextlib.ExitStack | None = None

    def _activate(self) -> None:
        engine = self.engine_path
        trt = import_tensorrt(self.target)
        self.cuda = load_cuda()
        dev = self.cuda.device_info()
        self.engine_manifest.check(engine, self.bundle.root_sha256, trt.__version__, dev.name,
                                   dev.compute_capability, self.target)
        with contextlib.ExitStack() as stack:  # unwinds what was acquired if a later step fails
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(engine.read_bytes())
            if self.engine is None:
                raise ModelError("TensorRT could not deserialize the engine (corrupt, or built by another version)",
                                 str(engine))
            stack.callback(self._drop_engine)
            if hasattr(self.engine, "create_runtime_config"):  # TensorRT for RTX: JIT kernels, cached on disk
                config = self.engine.create_runtime_config()
                cache = config.create_runtime_cache()
                cache_path = runtime_cache_path(engine)
                if cache_path.is_file():
                    cache.deserialize(cache_path.read_bytes())  # False: a stale cache, rebuilt as kernels compile
                config.set_runtime_cache(cache)
                self.context = self.engine.create_execution_context(config)
                stack.callback(_save_cache, cache, cache_path)  # runs before the engine is dropped
            else:
                self.context = self.engine.create_execution_context()
            self._check_io(trt)
            per_in, per_out = int(np.prod(self.input_shape)) * 4, int(np.prod(self.output_shape)) * 4
            self._d_in = self._acquire(stack, self.cuda.malloc, self.cuda.free, self.max_batch * per_in)
            self._d_out = self._acquire(stack, self.cuda.malloc, self.cuda.free, self.max_batch * per_out)
            self._h_in_ptr = self._acquire(stack, self.cuda.malloc_host, self.cuda.free_host, self.max_batch * per_in)
            self._h_out_ptr = self._acquire(stack, self.cuda.malloc_host, self.cuda.free_host, self.max_batch * per_out)
            self._h_in = host_array(self._h_in_ptr, (self.max_batch, *self.input_shape), np.float32)
            self._h_out = host_array(self._h_out_ptr, (self.max_batch, *self.output_shape), np.float32)
            self.stream = self.cuda.stream()
            stack.callback(self.cuda.destroy_stream, self.stream)
            for name, ptr in ((self.in_name, self._d_in), (self.out_name, self._d_out)):
                if self.context.set_tensor_address(name, ptr) is False:
                    raise ModelError(f"TensorRT refused the address of tensor {name}", str(engine))
            self.cuda_graph = self.cuda_graph_requested and self.cuda.name == "cuda-python"
            self._graphs: dict[int, object] = {}
            self._resources = stack.pop_all()

    @staticmethod
    def _acquire(stack: contextlib.ExitStack, get, release, nbytes: int) -> int:
        ptr = get(nbytes)
        stack.callback(release, ptr)
        return ptr

    def _check_io(self, trt) -> None:
        m, engine = self.bundle.manifest, str(self.engine_path)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if m.input_name not in names or m.output_name not in names:
            raise ModelError(f"engine I/O {names} does not match the bundle ({m.input_name}→{m.output_name})", engine)
        self.in_name, self.out_name = m.input_name, m.output_name
        in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.in_name)))
        out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.out_name)))
        if in_dtype != np.float32 or out_dtype != np.float32:
            raise ModelError(f"engine I/O must be float32, found {in_dtype}/{out_dtype}", engine)
        out_shape = tuple(int(d) for d in self.engine.get_tensor_shape(self.out_name))[1:]
        if out_shape != self.output_shape:
            raise ModelError(f"engine output shape (N, {', '.join(map(str, out_shape))}) does not match the bundle's "
                             f"(N, {', '.join(map(str, self.output_shape))}: outputs {m.outputs})", engine)
        profile_max = self.engine.get_tensor_profile_shape(self.in_name, 0)[2] \
            if self.engine.get_tensor_shape(self.in_name)[0] == -1 else self.engine.get_tensor_shape(self.in_name)
        self.max_batch = int(profile_max[0])

    def _drop_engine(self) -> None:
        self.context = self.engine = self._runtime = None

    def _deactivate(self) -> None:
        resources, self._resources = self._resources, None
        if resources is not None:
            resources.close()

    def _run_chunk(self, n: int) -> None:
        stream, source = self.stream, str(self.engine_path)
        per_in = int(np.prod(self.input_shape)) * 4
        per_out = int(np.prod(self.output_shape)) * 4
        if not self.context.set_input_shape(self.in_name, (n, *self.input_shape)):
            raise ModelError(f"TensorRT refused input shape {(n, *self.input_shape)} (engine profile: batch 1-"
                             f"{self.max_batch})", source)
        self.cuda.h2d(self._d_in, self._h_in_ptr, n * per_in, stream)
        if self.cuda_graph:
            graph = self._graphs.get(n)
            if graph is None:  # capture the enqueue once per batch size, replay afterwards
                self.cuda.begin_capture(stream)
                ok = self.context.execute_async_v3(self.cuda.stream_handle(stream))
                captured = self.cuda.end_capture(stream)  # always end the capture, even after a failure
                if not ok:
                    raise ModelError("TensorRT execution failed while capturing a CUDA graph", source)
                graph = self._graphs[n] = captured
            self.cuda.launch_graph(graph, stream)
        elif not self.context.execute_async_v3(self.cuda.stream_handle(stream)):
            raise ModelError("TensorRT execution failed", source)
        self.cuda.d2h(self._h_out_ptr, self._d_out, n * per_out, stream)
        self.cuda.synchronize(stream)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        outs = []
        for start in range(0, batch.shape[0], self.max_batch):
            chunk = batch[start:start + self.max_batch]
            n = chunk.shape[0]
            self._h_in[:n] = chunk
            self._run_chunk(n)
            outs.append(self._h_out[:n].copy())
        return np.concatenate(outs)


def _save_cache(cache, path: Path) -> None:
    try:
        path.write_bytes(bytes(cache.serialize()))
    except OSError:  # a read-only engine folder: the next start compiles again
        pass
