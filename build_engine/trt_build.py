"""ONNX (with its precision inside) → TensorRT engine + engine manifest.

Two targets (see ``efiqa.engine``): ``tensorrt`` (TensorRT ≥ 10, built on the GPU that runs it)
and ``tensorrt-rtx`` (TensorRT for RTX, built ahead of time on any machine, no GPU needed, for a
list of compute capabilities). Strongly typed networks only: the ONNX's casts and Q/DQ nodes decide
precision, which is how TensorRT 11 and TensorRT for RTX work (no FP16/INT8 builder flags, no
implicit calibrators) and how TensorRT 10 should be driven (implicit INT8 calibration is
deprecated since 10.1).

The builder's detailed layer report (``ProfilingVerbosity.DETAILED``, verbose log) says which
datatype each fused layer of the *built engine* reads; :func:`engine_layers` parses it, so what
runs in INT8 or FP16 is recorded in the manifest, not assumed.
"""
from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from efiqa.backends.cuda import load_cuda
from efiqa.backends.tensorrt import import_tensorrt
from efiqa.engine import TARGET_MODULES, TARGETS, EngineManifest
from efiqa.errors import BackendUnavailableError, ModelError

#: Ahead-of-time targets of a TensorRT for RTX build unless --compute-capability says otherwise:
#: Ampere (RTX 30, RTX A-series), Ada (RTX 40, RTX Ada), Blackwell (RTX 50, RTX PRO).
DEFAULT_RTX_CCS = ("86", "89", "120")


def tensorrt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def resolve_target(target: str | None = None) -> tuple[str, object]:
    """(target, library module): the named one, or the first importable (full TensorRT first).
    Raises :class:`BackendUnavailableError` before any work is done where none is installed."""
    if target is not None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
        return target, import_tensorrt(target)
    for name in TARGETS:
        try:
            return name, import_tensorrt(name)
        except BackendUnavailableError:
            continue
    raise BackendUnavailableError(
        "no TensorRT library is installed: for RTX GPUs (built here, no GPU needed) pip install 'efiqa[rtx]'; "
        "on Jetson use JetPack's TensorRT; on other NVIDIA GPUs install NVIDIA's tensorrt wheels")


def parse_compute_capabilities(trt, text: str | None) -> list[str]:
    """"86,89,120" → ["86", "89", "120"], checked against what the library can target."""
    ccs = [c.strip().replace(".", "") for c in (text or ",".join(DEFAULT_RTX_CCS)).split(",") if c.strip()]
    known = sorted((n[2:] for n in dir(trt.ComputeCapability) if n.startswith("SM")), key=int)
    bad = [c for c in ccs if c not in known]
    if bad or not ccs:
        raise ValueError(f"unknown compute capability {', '.join(bad) or repr(text)}: this TensorRT for RTX "
                         f"targets {', '.join(known)}")
    return ccs


@dataclass
class EngineLayer:
    """One fused layer of a built engine, from the builder's detailed layer report."""

    name: str
    kind: str                     # the builder's LayerType: correlation (convolution), kgen, gemm …
    input_dtypes: tuple[str, ...]  # Float, Half, Int8 … of its activation inputs (not constants)
    onnx_nodes: tuple[str, ...]    # the ONNX nodes fused into it


@dataclass
class BuiltEngine:
    manifest: EngineManifest
    path: Path
    seconds: float
    size_bytes: int
    network_layers: dict[str, int]          # parsed network: layer type → count (CONVOLUTION, QUANTIZE …)
    layers: list[EngineLayer] = field(default_factory=list)


#: LayerType names of convolutions in the builder's report (Myelin calls them correlations).
_CONV_KINDS = {"correlation", "convolution", "Convolution", "CaskConvolution"}


def engine_layers(log_lines: list[str]) -> list[EngineLayer]:
    """Parse the builder's "Layers:" report (one line per fused layer: name, type, inputs with their
    datatypes, constants, outputs, tactic, and the ONNX layers it came from)."""
    report = next((m for m in log_lines if m.startswith("Layers:")), None)
    if report is None:
        return []
    out = []
    for line in report.splitlines()[1:]:
        name = re.match(r"Name: ([^,]*),", line)
        kind = re.search(r"LayerType: (\w+)", line)
        if not name or not kind:
            continue
        inputs = re.search(r"Inputs: \[(.*?)\], (?:Constants|Outputs):", line)
        dtypes = tuple(re.findall(r"Datatype: (\w+)", inputs.group(1))) if inputs else ()
        out.append(EngineLayer(name.group(1), kind.group(1), dtypes,
                               tuple(re.findall(r"\[ONNX Layer: ([^\]]+)\]", line))))
    return out


def layer_precisions(layers: list[EngineLayer]) -> dict[str, dict[str, int]]:
    """{"convolution": {"Int8": 30, "Float": 6}, "other": {...}} by the first input's datatype."""
    out: dict[str, Counter] = {}
    for layer in layers:
        if not layer.input_dtypes:
            continue
        kind = "convolution" if layer.kind in _CONV_KINDS else "other"
        out.setdefault(kind, Counter())[layer.input_dtypes[0]] += 1
    return {k: dict(v) for k, v in out.items()}


def _logger(trt, lines: list[str]):
    """Keeps every message (the layer report comes at VERBOSE) and shows warnings and errors."""

    class Log(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            lines.append(msg)
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR,
                            trt.ILogger.Severity.WARNING):
                print(f"TensorRT: {msg}", file=sys.stderr)

    return Log()


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


def parse_network(trt, onnx_bytes: bytes, source: str | None = None, lines: list[str] | None = None):
    """(builder, network, parser) of a strongly typed network parsed from ONNX; a parse failure is a
    :class:`ModelError` naming ``source`` and TensorRT's errors."""
    lines = [] if lines is None else lines
    logger = _logger(trt, lines)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)).strip() for i in range(parser.num_errors)) or "no detail"
        raise ModelError(f"TensorRT cannot parse the ONNX: {errors}", source)
    return builder, network, parser, logger


def network_layer_types(network) -> dict[str, int]:
    """Layer type → count in a parsed network (QUANTIZE/DEQUANTIZE for INT8, CAST for FP16 …)."""
    return dict(Counter(str(network.get_layer(i).type).split(".")[-1] for i in range(network.num_layers)))


def build_engine(onnx_bytes: bytes, out: str | Path, *, precision: str, bundle_sha256: str, onnx_sha256: str,
                 input_name: str, input_shape: tuple[int, int, int], target: str | None = None,
                 compute_capabilities: str | None = None, calibration_sha256: str | None = None,
                 max_batch: int = 8, workspace_mb: int = 1024, timing_cache: str | Path | None = None,
                 progress: bool = True, source: str | None = None) -> BuiltEngine:
    """Build and write ``out`` and ``out.json``. ``target`` None: the first installed library."""
    target, trt = resolve_target(target)
    if target == "tensorrt" and tensorrt_major(trt) < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} is too old: efiqa builds with TensorRT ≥ 10")
    ccs = parse_compute_capabilities(trt, compute_capabilities) if target == "tensorrt-rtx" else None
    if target == "tensorrt":  # built on the GPU that will run it
        dev = load_cuda().device_info()
        gpu_name, cc = dev.name, dev.compute_capability
    else:  # ahead of time, for the listed GPUs; no GPU needed here
        gpu_name, cc = "", ",".join(f"{c[:-1]}.{c[-1]}" for c in ccs)

    lines: list[str] = []
    t0 = time.perf_counter()
    builder, network, _parser, _log = parse_network(trt, onnx_bytes, source, lines)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if hasattr(trt, "ProfilingVerbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if ccs:
        config.num_compute_capabilities = len(ccs)
        for i, c in enumerate(ccs):
            config.set_compute_capability(getattr(trt.ComputeCapability, f"SM{c}"), i)
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
        raise ModelError("TensorRT failed to build the engine (see the log above)", source)
    seconds = time.perf_counter() - t0
    data = bytes(serialized)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    if cache is not None:
        Path(timing_cache).write_bytes(bytes(cache.serialize()))
    layers = engine_layers(lines)
    manifest = EngineManifest(bundle_sha256=bundle_sha256, precision=precision, tensorrt_version=trt.__version__,
                              gpu_name=gpu_name, compute_capability=cc, onnx_sha256=onnx_sha256,
                              calibration_sha256=calibration_sha256, max_batch=max_batch, target=target,
                              layer_precisions=layer_precisions(layers),
                              build_flags={"strongly_typed": True, "workspace_mb": workspace_mb,
                                           "library": TARGET_MODULES[target],
                                           "timing_cache": str(timing_cache) if timing_cache else None,
                                           "profile": {"min": 1, "opt": 1, "max": max_batch}})
    manifest.save(out)
    return BuiltEngine(manifest, out, seconds, len(data), network_layer_types(network), layers)
