"""ONNX (with its precision inside) → TensorRT engine + engine manifest, on the target machine.

Strongly typed networks only: the ONNX's casts and Q/DQ nodes decide precision, which is how
TensorRT 11 works (no FP16/INT8 builder flags, no implicit calibrators) and how TensorRT 10 should
be driven (implicit INT8 calibration is deprecated since 10.1). Supported: TensorRT ≥ 10.
"""
from __future__ import annotations

import threading
from pathlib import Path

from efiqa.backends.cuda import load_cuda
from efiqa.backends.tensorrt import import_tensorrt
from efiqa.engine import EngineManifest
from efiqa.errors import BackendUnavailableError, ModelError


def tensorrt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _progress_monitor(trt):
    """A tqdm-backed IProgressMonitor (TensorRT ≥ 10), or None where the API is absent."""
    if not hasattr(trt, "IProgressMonitor"):
        return None
    from tqdm import tqdm

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, tqdm] = {}
            self._lock = threading.Lock()

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=False)

        def step_complete(self, phase_name, step):
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(1)
            return True  # never cancel

        def phase_finish(self, phase_name):
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return Monitor()


def build_engine(onnx_bytes: bytes, out: str | Path, *, precision: str, bundle_sha256: str, onnx_sha256: str,
                 input_name: str, input_shape: tuple[int, int, int], calibration_sha256: str | None = None,
                 max_batch: int = 8, workspace_mb: int = 1024, timing_cache: str | Path | None = None,
                 progress: bool = True) -> EngineManifest:
    trt = import_tensorrt()
    if tensorrt_major(trt) < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} is too old: efiqa builds with TensorRT ≥ 10")
    dev = load_cuda().device_info()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse the ONNX: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    monitor = _progress_monitor(trt) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor
    cache = None
    if timing_cache:
        tc = Path(timing_cache)
        cache = config.create_timing_cache(tc.read_bytes() if tc.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    c, h, w = input_shape
    profile.set_shape(input_name, (1, c, h, w), (1, c, h, w), (max_batch, c, h, w))
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError("TensorRT failed to build the engine (see the log above)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    if cache is not None:
        Path(timing_cache).write_bytes(bytes(cache.serialize()))
    manifest = EngineManifest(bundle_sha256=bundle_sha256, precision=precision, tensorrt_version=trt.__version__,
                              gpu_name=dev.name, compute_capability=dev.compute_capability, onnx_sha256=onnx_sha256,
                              calibration_sha256=calibration_sha256, max_batch=max_batch,
                              build_flags={"strongly_typed": True, "workspace_mb": workspace_mb,
                                           "timing_cache": str(timing_cache) if timing_cache else None,
                                           "profile": {"min": 1, "opt": 1, "max": max_batch}})
    manifest.save(out)
    return manifest
