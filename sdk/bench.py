"""``efiqa bench``: how fast the frame → map path runs on *this* device, with the backend and
precision at hand, and how it holds up over minutes. Runtime only (no torch, no dataset).

Measurement rules: frames are decoded before timing (no I/O in the timed region); one monotonic
nanosecond clock (``time.perf_counter_ns``, injectable for tests) times every stage; GPU work is
synchronous at the stage boundary (ONNX Runtime returns host arrays, the TensorRT backend
synchronises its stream), so GPU time is not hidden in a later stage; the machine's load average
is recorded with the results. The same timing code serves ``benchmarks/latency.py``.

JSON schema ``efiqa-bench/1`` — one file per run; every key is always present, ``null`` where it
does not apply (times in milliseconds unless the key says otherwise)::

    schema              "efiqa-bench/1"
    created             ISO 8601 UTC time the run finished
    command             the command line that made the file (str)
    device              {cpu, cores, load_avg, platform, python, gpu, jetson, versions}
      cpu               CPU model name (str)
      cores             logical CPUs (int)
      load_avg          [1, 5, 15 min] load average when the run started, or null
      platform          platform.platform() (str)
      python            Python version (str)
      gpu               null, or {name, driver, cuda, memory_mb, compute_capability} (null where unknown)
      jetson            null, or the L4T release line of a Jetson (/etc/nv_tegra_release)
      versions          {efiqa, onnxruntime, numpy, opencv, tensorrt, tensorrt_rtx, pynvml}: str or null
    bundle              {name, path, sha256, root_sha256, precision, input_size, grid}
    backend             {name, precision, providers, engine, target, threads}
      name              "onnxruntime" or "tensorrt"
      precision         arithmetic of what ran: the engine's precision, else the bundle's
      providers         ONNX Runtime execution providers in use (list), or null
      engine            engine path, or null
      target            "tensorrt" / "tensorrt-rtx" for an engine, or null
      threads           ONNX Runtime intra-op threads asked for, or null (its default)
    engine              the engine manifest (efiqa.engine.EngineManifest fields), or null
    settings            BenchSettings fields: label, model, backend, engine, threads, source, frames,
                        duration_s, warmup, batch, fps, check, cold_start, reuse_fov
    input               {source, distinct_frames, shapes}: what was timed ([[h, w], ...] per distinct frame)
    results
      frames            frames timed at batch 1 (int)
      seconds           wall time of the timed batch-1 loop (float, s)
      stages_ms         {preprocess, inference, postprocess, total}, each a Stats:
                        {n, mean, sd, min, p50, p90, p95, p99, max}
      fps_batch1        frames / seconds of the batch-1 loop
      fps_at_p50        1000 / stages_ms.total.p50
      batch             {size, frames, fps, per_frame_ms, latency_ms: Stats of one whole batch}
                        (size 1: the batch-1 loop itself)
      first_inference_ms  the first backend call of a fresh session (lazy allocation, JIT kernels)
      first_map_ms      the first frame end to end in this process, preprocess to result
      frame_budget_ms   1000 / settings.fps
      over_budget       share (0-1) of timed frames whose total exceeded frame_budget_ms
      peak_rss_mb       peak resident memory of the benchmarking process during the run (getrusage;
                        on Linux the peak is reset when the run starts, elsewhere it is the process's so far)
      cold_start        null (not measured), or {ms, ok, error, command}: a child process
                        ``python -m efiqa assess EXAMPLE --json`` from spawn to its first stdout line
      stability         {window_s, first, last, p50_ratio}: first and last window of the run
                        (window_s = min(60 s, run/4); frames starting in the first, ending in the
                        last); first/last = {start_s, end_s, n, fps, total_ms: Stats};
                        p50_ratio = last.total_ms.p50 / first.total_ms.p50
      timeline          {bin_s, t_s, n, p50_ms, p95_ms, max_ms}: total latency per time bin (lists)
      check             null (not asked), {skipped: reason}, or {reference, frames, max_abs_dp,
                        mean_abs_dp, max_abs_dscore, gradable_agreement, patch_agreement}:
                        maps of the timed backend vs ONNX Runtime FP32 on the same frames
      power             null (no NVML), or {source, samples, interval_s, power_w: {mean, max}, energy_j,
                        maps_per_joule, sm_clock_mhz: {first, last, min}, temperature_c: {first, last, max},
                        gpu_memory_used_mb}
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EfiqaError, ImageReadError

SCHEMA = "efiqa-bench/1"
STAGES = ("preprocess", "inference", "postprocess", "total")
PERCENTILES = (50, 90, 95, 99)
#: At most this many distinct frames are decoded (and held in memory) for a run.
MAX_DISTINCT_FRAMES = 32
#: ... and at most this many bytes of them.
MAX_FRAME_BYTES = 1 << 30
EXIT_OK, EXIT_USAGE, EXIT_MISSING = 0, 1, 3

#: A monotonic clock in nanoseconds (``time.perf_counter_ns``; tests pass a fake one).
Clock = Callable[[], int]


# --------------------------------------------------------------------------------------------
# Statistics


def percentiles(values: Sequence[float], qs: Sequence[float] = PERCENTILES) -> list[float]:
    """Percentiles by linear interpolation between closest ranks (numpy's default method):
    position (n − 1)·q/100 in the sorted values. NaN for no values."""
    s = sorted(values)
    n = len(s)
    out = []
    for q in qs:
        if n == 0:
            out.append(math.nan)
            continue
        pos = (n - 1) * q / 100.0
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1)
        out.append(s[lo] + (s[hi] - s[lo]) * (pos - lo))
    return out


@dataclass
class Stats:
    """Summary of a list of latencies (milliseconds)."""

    n: int
    mean: float
    sd: float
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stats":
        n = len(values)
        if n == 0:
            return cls(0, *([math.nan] * 8))
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        p50, p90, p95, p99 = percentiles(values)
        return cls(n, mean, sd, min(values), p50, p90, p95, p99, max(values))


# --------------------------------------------------------------------------------------------
# Timing


@dataclass
class Samples:
    """Per-frame timings of a timed loop; ``t_s`` is each frame's start, seconds from the loop's start."""

    t_s: list[float] = field(default_factory=list)
    preprocess: list[float] = field(default_factory=list)
    inference: list[float] = field(default_factory=list)
    postprocess: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, Stats]:
        return {k: Stats.of(getattr(self, k)) for k in STAGES}


@dataclass
class TimedRun:
    samples: Samples
    seconds: float
    first_inference_ms: float | None
    first_map_ms: float | None


@dataclass
class BatchRun:
    size: int
    frames: int
    seconds: float
    latency_ms: list[float]

    def to_dict(self) -> dict:
        fps = self.frames / self.seconds if self.seconds > 0 else math.nan
        return {"size": self.size, "frames": self.frames, "fps": fps,
                "per_frame_ms": self.seconds * 1e3 / self.frames if self.frames else math.nan,
                "latency_ms": asdict(Stats.of(self.latency_ms))}


Postprocess = Callable[[np.ndarray, Any, np.ndarray], Any]


def default_postprocess(qa: Any) -> Postprocess:
    """What :meth:`QualityAssessor.assess` does after inference: logits → map, score, zones, reasons."""
    from .reasons import explain
    from .result import build_result

    def post(logits: np.ndarray, prep: Any, frame: np.ndarray) -> Any:
        return explain(build_result(logits, prep.fov, prep.crop, prep.image_shape, qa.threshold, None,
                                    qa.manifest.patch_threshold), prep)

    return post


def _progress(total: float | None, unit: str, enabled: bool, desc: str):
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, leave=False)


def time_frames(qa: Any, frames: Sequence[np.ndarray], *, count: int | None = 200, duration_s: float | None = None,
                warmup: int = 10, fovs: Sequence[Any] | None = None, postprocess: Postprocess | None = None,
                clock: Clock = time.perf_counter_ns, progress: bool = False) -> TimedRun:
    """Warm up, then time frames one at a time (batch 1), cycling through ``frames``.

    ``qa`` is a :class:`QualityAssessor` or anything with ``preprocessor(frame, fov=...)``
    (returning ``.tensor``, ``.fov``, ``.crop``, ``.image_shape``) and ``backend.infer``. Runs
    ``count`` frames, or for ``duration_s`` seconds when given. ``fovs[i]`` (optional) is passed
    for ``frames[i]`` (a steady camera's FOV, found once). The first warm-up frame (or the first
    timed one without warm-up) gives the first-inference and first-map latencies.
    """
    if not frames:
        raise ValueError("no frames to time")
    if duration_s is None and (count is None or count < 1):
        raise ValueError("give count ≥ 1 or duration_s")
    post = postprocess or default_postprocess(qa)
    nf = len(frames)
    first: list[float] = []

    def one(i: int) -> tuple[int, int, int, int]:
        frame = frames[i % nf]
        fov = fovs[i % nf] if fovs is not None else None
        t0 = clock()
        prep = qa.preprocessor(frame, fov=fov)
        t1 = clock()
        logits = qa.backend.infer(prep.tensor[None])
        t2 = clock()
        post(logits[0], prep, frame)
        t3 = clock()
        if not first:
            first.extend(((t2 - t1) / 1e6, (t3 - t0) / 1e6))
        return t0, t1, t2, t3

    for i in range(max(0, warmup)):
        one(i)
    s = Samples()
    bar = _progress(duration_s if duration_s is not None else count, "s" if duration_s is not None else "frame",
                    progress, "bench")
    start = clock()
    end = start + int(duration_s * 1e9) if duration_s is not None else None
    i, shown = 0, 0
    try:
        while True:
            t0, t1, t2, t3 = one(warmup + i)
            s.t_s.append((t0 - start) / 1e9)
            s.preprocess.append((t1 - t0) / 1e6)
            s.inference.append((t2 - t1) / 1e6)
            s.postprocess.append((t3 - t2) / 1e6)
            s.total.append((t3 - t0) / 1e6)
            i += 1
            if bar is not None:
                now = int((t3 - start) / 1e9) if end is not None else i
                bar.update(now - shown)
                shown = now
            if (end is not None and t3 >= end) or (end is None and i >= count):
                break
        stop = clock()
    finally:
        if bar is not None:
            bar.close()
    return TimedRun(s, (stop - start) / 1e9, first[0] if first else None, first[1] if first else None)


def time_batches(qa: Any, frames: Sequence[np.ndarray], batch: int, count: int, *, warmup: int = 1,
                 postprocess: Postprocess | None = None, clock: Clock = time.perf_counter_ns) -> BatchRun:
    """Throughput at ``batch`` frames per inference call: preprocess ``batch`` frames, one
    ``backend.infer``, postprocess each; about ``count`` frames (whole batches), after ``warmup`` batches."""
    post = postprocess or default_postprocess(qa)
    nf = len(frames)
    batches = max(1, math.ceil(count / batch))

    def one(k: int) -> int:
        chunk = [frames[(k * batch + j) % nf] for j in range(batch)]
        t0 = clock()
        preps = [qa.preprocessor(f) for f in chunk]
        logits = qa.backend.infer(np.stack([p.tensor for p in preps]))
        for j, (p, f) in enumerate(zip(preps, chunk)):
            post(logits[j], p, f)
        return clock() - t0

    for k in range(max(0, warmup)):
        one(k)
    lat = [one(warmup + k) / 1e6 for k in range(batches)]
    return BatchRun(batch, batches * batch, sum(lat) / 1e3, lat)


def over_budget(total_ms: Sequence[float], fps: float) -> float:
    """Share of frames slower than one frame period at ``fps``."""
    budget = 1000.0 / fps
    return sum(1 for v in total_ms if v > budget) / len(total_ms) if total_ms else math.nan


def stability(samples: Samples, seconds: float, window_s: float | None = None) -> dict:
    """First and last window of the run side by side; window = min(60 s, run/4). The first holds the
    frames that start in it, the last those that end in it, so neither is empty when one slow frame
    spans more than a window (a short run on a busy machine)."""
    w = window_s if window_s is not None else min(60.0, seconds / 4)

    def window(a: float, b: float, times: list[float]) -> dict:
        vals = [tot for t, tot in zip(times, samples.total) if a <= t < b or (b >= seconds and t >= a)]
        span = b - a
        return {"start_s": a, "end_s": b, "n": len(vals), "fps": len(vals) / span if span > 0 else math.nan,
                "total_ms": asdict(Stats.of(vals))}

    ends = [t + tot / 1e3 for t, tot in zip(samples.t_s, samples.total)]
    first, last = window(0.0, w, samples.t_s), window(max(0.0, seconds - w), seconds, ends)
    ratio = last["total_ms"]["p50"] / first["total_ms"]["p50"] if first["n"] and last["n"] else math.nan
    return {"window_s": w, "first": first, "last": last, "p50_ratio": ratio}


def timeline(samples: Samples, seconds: float, max_bins: int = 120) -> dict:
    """Total latency per time bin (about 10 frames a bin at least, at most ``max_bins`` bins)."""
    bins = max(1, min(max_bins, len(samples.total) // 10))
    width = seconds / bins if seconds > 0 else 1.0
    groups: list[list[float]] = [[] for _ in range(bins)]
    for t, v in zip(samples.t_s, samples.total):
        groups[min(bins - 1, int(t / width))].append(v)
    out: dict[str, Any] = {"bin_s": width, "t_s": [], "n": [], "p50_ms": [], "p95_ms": [], "max_ms": []}
    for b, g in enumerate(groups):
        if not g:
            continue
        p50, p95 = percentiles(g, (50, 95))
        out["t_s"].append(round(b * width, 4))
        out["n"].append(len(g))
        out["p50_ms"].append(round(p50, 4))
        out["p95_ms"].append(round(p95, 4))
        out["max_ms"].append(round(max(g), 4))
    return out


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ≥ 4.0: ``/proc/self/clear_refs``), so that several runs in
    one process each report their own peak. False where it cannot: the peak is then the process's so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident memory (getrusage): since :func:`reset_peak_rss`, or since the process started."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


# --------------------------------------------------------------------------------------------
# Cold start, power, device


@dataclass
class ColdStart:
    ms: float | None
    ok: bool
    error: str | None
    command: list[str]


def cold_start_command(example: str | Path, model: str | None = None, backend: str = "auto",
                       engine: str | None = None, threads: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "efiqa", "assess", str(example), "--json", "--backend", backend]
    if model:
        cmd += ["--model", str(model)]
    if engine:
        cmd += ["--engine", str(engine)]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd


def measure_cold_start(cmd: Sequence[str], timeout_s: float = 300.0, clock: Clock = time.perf_counter_ns) -> ColdStart:
    """Process start → first map: spawn ``cmd`` and time until its first stdout line."""
    t0 = clock()
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        return ColdStart(None, False, f"cannot start: {exc}", list(cmd))
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline()
        t1 = clock()
        _, err = proc.communicate()
    finally:
        timer.cancel()
    if proc.returncode != 0 or not line.strip():
        last = (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return ColdStart(None, False, last, list(cmd))
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return ColdStart(None, False, f"unexpected first line: {line.strip()[:120]}", list(cmd))
    return ColdStart((t1 - t0) / 1e6, True, None, list(cmd))


def _nvml():
    """The pynvml module, initialised, or None (not installed, no driver, no GPU)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
    except Exception:  # NVMLError and friends: no driver or no device
        return None
    return pynvml


class NvmlSampler:
    """Samples GPU 0's power, SM clock, temperature and memory in a thread while a run is timed."""

    def __init__(self, nvml: Any, interval_s: float = 0.2) -> None:
        self.nvml, self.interval_s = nvml, interval_s
        self.handle = nvml.nvmlDeviceGetHandleByIndex(0)
        self.rows: list[tuple[float, float | None, float | None, float | None, float | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @classmethod
    def create(cls) -> "NvmlSampler | None":
        nvml = _nvml()
        return cls(nvml) if nvml is not None else None

    def _read(self, fn: Callable[[], float]) -> float | None:
        try:
            return float(fn())
        except Exception:  # a metric this GPU does not report
            return None

    def _run(self) -> None:
        n, h = self.nvml, self.handle
        while not self._stop.is_set():
            self.rows.append((time.monotonic(),
                              self._read(lambda: n.nvmlDeviceGetPowerUsage(h) / 1000.0),
                              self._read(lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                              self._read(lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                              self._read(lambda: n.nvmlDeviceGetMemoryInfo(h).used / 2**20)))
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, frames: int) -> dict | None:
        """Power, energy, maps per joule, clocks, temperature and memory over the samples taken."""
        if not self.rows:
            return None
        cols = list(zip(*self.rows))
        t, power, clock, temp, mem = (list(c) for c in cols)

        def present(xs: list) -> list[float]:
            return [x for x in xs if x is not None]

        pw = present(power)
        energy = None
        if len(pw) == len(t) and len(t) > 1:
            energy = sum((t[i + 1] - t[i]) * (power[i] + power[i + 1]) / 2 for i in range(len(t) - 1))
        clk, tmp, mm = present(clock), present(temp), present(mem)
        return {
            "source": "nvml", "samples": len(t), "interval_s": self.interval_s,
            "power_w": {"mean": sum(pw) / len(pw), "max": max(pw)} if pw else None,
            "energy_j": energy, "maps_per_joule": frames / energy if energy else None,
            "sm_clock_mhz": {"first": clk[0], "last": clk[-1], "min": min(clk)} if clk else None,
            "temperature_c": {"first": tmp[0], "last": tmp[-1], "max": max(tmp)} if tmp else None,
            "gpu_memory_used_mb": max(mm) if mm else None,
        }


def cpu_model() -> str:
    """The CPU's model name (x86 'model name', Arm/Jetson 'Model'), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") or line.startswith("Model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    import importlib.metadata

    return importlib.metadata.packages_distributions()


def _module_version(name: str) -> str | None:
    """Version of an importable module, read from package metadata where possible: importing
    TensorRT only to name its version would load CUDA libraries into the measured process."""
    import importlib
    import importlib.metadata
    import importlib.util

    if name in sys.modules:
        mod = sys.modules[name]
        return None if mod is None else str(getattr(mod, "__version__", "unknown"))
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    for dist in _distributions().get(name, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:  # no metadata (e.g. JetPack's system TensorRT): ask the module itself
        mod = importlib.import_module(name)
    except Exception:  # broken install
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _gpu_info() -> dict | None:
    nvml = _nvml()
    if nvml is not None:
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(0)
            name = nvml.nvmlDeviceGetName(h)
            cuda = nvml.nvmlSystemGetCudaDriverVersion()
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
            return {"name": name.decode() if isinstance(name, bytes) else str(name),
                    "driver": _text(nvml.nvmlSystemGetDriverVersion()),
                    "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}",
                    "memory_mb": nvml.nvmlDeviceGetMemoryInfo(h).total / 2**20,
                    "compute_capability": f"{major}.{minor}"}
        except Exception:
            pass
    import shutil

    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
            first = out.stdout.strip().splitlines()[0].split(", ") if out.returncode == 0 else []
            if len(first) >= 3:
                return {"name": first[0], "driver": first[1], "cuda": None, "memory_mb": float(first[2]),
                        "compute_capability": first[3] if len(first) > 3 else None}
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    return None


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def device_info(load_avg: list[float] | None = None) -> dict:
    """CPU, cores, load, GPU (via NVML or nvidia-smi), Jetson release and library versions."""
    import efiqa

    jetson = None
    try:
        jetson = Path("/etc/nv_tegra_release").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        pass
    if load_avg is None and hasattr(os, "getloadavg"):
        load_avg = [round(x, 2) for x in os.getloadavg()]
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "load_avg": load_avg, "platform": platform.platform(),
        "python": platform.python_version(), "gpu": _gpu_info(), "jetson": jetson,
        "versions": {"efiqa": efiqa.__version__, "onnxruntime": _module_version("onnxruntime"),
                     "numpy": np.__version__, "opencv": _module_version("cv2"),
                     "tensorrt": _module_version("tensorrt"), "tensorrt_rtx": _module_version("tensorrt_rtx"),
                     "pynvml": _module_version("pynvml")},
    }


# --------------------------------------------------------------------------------------------
# Inputs


def load_frames(source: str | Path | None = None, limit: int = MAX_DISTINCT_FRAMES) -> tuple[list[np.ndarray], str]:
    """Decode the frames to time (before any timing): the example photo, an image, a folder of
    images (name order) or a video. Returns (8-bit BGR frames, description of the source)."""
    from .imageio import IMAGE_SUFFIXES, read_image

    if source is None:
        from .data import retina_path

        return [read_image(retina_path())], "example photo (efiqa.data.retina_path)"
    p = Path(source)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageReadError("folder holds no image files", str(p))
        frames: list[np.ndarray] = []
        size = 0
        for f in files[:limit]:
            img = read_image(f)
            frames.append(img)
            size += img.nbytes
            if size > MAX_FRAME_BYTES:
                break
        return frames, f"{p} ({len(frames)} of {len(files)} images)"
    if not p.is_file():
        raise ImageReadError("no such file or folder", str(p))
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return [read_image(p)], str(p)
    import cv2

    cap = cv2.VideoCapture(str(p))
    frames, size = [], 0
    try:
        if not cap.isOpened():
            raise ImageReadError("not an image, and cannot be opened as a video", str(p))
        while len(frames) < limit and size <= MAX_FRAME_BYTES:
            ok, frame = cap.read()
            if not ok:
                break
            if frame is not None and frame.size:
                frames.append(frame)
                size += frame.nbytes
    finally:
        cap.release()
    if not frames:
        raise ImageReadError("video holds no readable frames", str(p))
    return frames, f"{p} (first {len(frames)} video frames)"


# --------------------------------------------------------------------------------------------
# A run


@dataclass
class BenchSettings:
    """What one run measures (also written to the JSON as ``settings``)."""

    model: str | None = None
    backend: str = "auto"
    engine: str | None = None
    threads: int | None = None
    source: str | None = None
    frames: int = 200
    duration_s: float | None = None
    warmup: int = 10
    batch: int = 8
    fps: float = 30.0
    check: bool = False
    cold_start: bool = True
    reuse_fov: bool = False
    label: str = ""


@dataclass
class BenchReport:
    """One run: the JSON document (:meth:`to_dict`) plus the raw samples for plots."""

    device: dict
    bundle: dict
    backend: dict
    engine: dict | None
    settings: BenchSettings
    input: dict
    results: dict
    command: str = ""
    created: str = ""
    samples: Samples | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "created": self.created, "command": self.command, "device": self.device,
                "bundle": self.bundle, "backend": self.backend, "engine": self.engine,
                "settings": asdict(self.settings), "input": self.input, "results": self.results}

    def to_json(self) -> str:
        return json.dumps(_finite(self.to_dict()), indent=2) + "\n"

    def summary(self) -> str:
        return summary_markdown(self.to_dict())


def _finite(x: Any) -> Any:
    """NaN/inf → null, so the file is strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _fp32_reference(bundle: Any) -> Any | None:
    """The FP32 bundle ``bundle`` is, or derives from (looked up among the shipped bundles)."""
    from .bundle import load_bundle

    if bundle.manifest.precision == "fp32":
        return bundle
    try:
        from .models import SHIPPED
    except ImportError:
        return None
    for path in SHIPPED.values():
        try:
            cand = load_bundle(path)
        except EfiqaError:
            continue
        if cand.manifest.precision == "fp32" and cand.sha256 == bundle.root_sha256:
            return cand
    return None


def check_maps(qa: Any, frames: Sequence[np.ndarray], limit: int = 16) -> dict:
    """Maps of ``qa``'s backend vs ONNX Runtime FP32 on the same preprocessed frames."""
    from .backends import create_backend
    from .result import MIN_COVERAGE

    ref_bundle = _fp32_reference(qa.bundle)
    if ref_bundle is None:
        return {"skipped": f"no FP32 bundle found for {qa.bundle.manifest.name} ({qa.bundle.manifest.precision}; "
                           f"variant of {qa.bundle.root_sha256[:12]}…) among the shipped bundles"}
    ref = create_backend("onnxruntime", ref_bundle, providers=["CPUExecutionProvider"])  # active
    post = default_postprocess(qa)
    dps, dscore, same_gradable, same_patch, cells = [], [], 0, 0, 0
    try:
        for frame in frames[:limit]:
            prep = qa.preprocessor(frame)
            a = post(qa.backend.infer(prep.tensor[None])[0], prep, frame)
            b = post(ref.infer(prep.tensor[None])[0], prep, frame)
            dp = np.abs(a.map.astype(np.float64) - b.map.astype(np.float64))
            dps.append(dp)
            dscore.append(abs(a.score - b.score))
            same_gradable += a.gradable == b.gradable
            inside = b.coverage >= MIN_COVERAGE
            same_patch += int(((a.map >= a.patch_threshold) == (b.map >= b.patch_threshold))[inside].sum())
            cells += int(inside.sum())
    finally:
        ref.close()
    n = len(dps)
    return {"reference": f"onnxruntime fp32 CPU ({ref_bundle.manifest.name})", "frames": n,
            "max_abs_dp": float(max(d.max() for d in dps)), "mean_abs_dp": float(np.mean([d.mean() for d in dps])),
            "max_abs_dscore": float(max(dscore)), "gradable_agreement": same_gradable / n,
            "patch_agreement": same_patch / cells if cells else math.nan}


def run(settings: BenchSettings, frames: Sequence[np.ndarray] | None = None, source_text: str | None = None, *,
        command: str = "", clock: Clock = time.perf_counter_ns, progress: bool = False) -> BenchReport:
    """One benchmark run. Opens a fresh :class:`QualityAssessor` (so the first inference is a cold
    session's), times it, and closes it. Raises :class:`BackendUnavailableError`, :class:`ModelError`
    or :class:`EngineMismatchError` for a backend that cannot run here."""
    from .assessor import QualityAssessor

    if frames is None:
        frames, source_text = load_frames(settings.source)
    load_avg = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    reset_peak_rss()
    qa = QualityAssessor(settings.model, backend=settings.backend, engine=settings.engine, threads=settings.threads)
    try:
        b = qa.bundle
        em = getattr(qa.backend, "engine_manifest", None)
        providers = getattr(qa.backend, "providers", None)
        cuda_gpu = None
        if getattr(qa.backend, "cuda", None) is not None:  # the GPU the engine runs on, as CUDA reports it
            d = qa.backend.cuda.device_info()
            cuda_gpu = {"name": d.name, "driver": None, "cuda": None, "memory_mb": float(d.total_memory_mb),
                        "compute_capability": d.compute_capability}
        fovs = [qa.preprocessor(f).fov for f in frames] if settings.reuse_fov else None
        sampler = NvmlSampler.create()
        if sampler is not None:
            sampler.start()
        try:
            timed = time_frames(qa, frames, count=None if settings.duration_s else settings.frames,
                                duration_s=settings.duration_s, warmup=settings.warmup, fovs=fovs, clock=clock,
                                progress=progress)
        finally:
            if sampler is not None:
                sampler.stop()
        power = sampler.summary(len(timed.samples.total)) if sampler is not None else None
        s = timed.samples
        if settings.batch > 1:
            n = settings.frames if not settings.duration_s else min(len(s.total), 25 * settings.batch)
            batch = time_batches(qa, frames, settings.batch, max(n, settings.batch), clock=clock).to_dict()
        else:
            batch = BatchRun(1, len(s.total), sum(s.total) / 1e3, list(s.total)).to_dict()
        stats = s.stats()
        rss = peak_rss_mb()  # before --check opens a second session
        results: dict[str, Any] = {
            "frames": len(s.total), "seconds": timed.seconds,
            "stages_ms": {k: asdict(v) for k, v in stats.items()},
            "fps_batch1": len(s.total) / timed.seconds if timed.seconds > 0 else math.nan,
            "fps_at_p50": 1000.0 / stats["total"].p50 if stats["total"].p50 > 0 else math.nan,
            "batch": batch,
            "first_inference_ms": timed.first_inference_ms, "first_map_ms": timed.first_map_ms,
            "frame_budget_ms": 1000.0 / settings.fps, "over_budget": over_budget(s.total, settings.fps),
            "peak_rss_mb": rss, "cold_start": None,
            "stability": stability(s, settings.duration_s or timed.seconds),
            "timeline": timeline(s, timed.seconds),
            "check": check_maps(qa, frames) if settings.check else None,
            "power": power,
        }
        backend = {"name": qa.backend.name, "precision": em.precision if em else b.manifest.precision,
                   "providers": list(providers) if providers else None,
                   "engine": settings.engine, "target": em.target if em else None, "threads": settings.threads}
        bundle = {"name": b.manifest.name, "path": str(b.path), "sha256": b.sha256, "root_sha256": b.root_sha256,
                  "precision": b.manifest.precision, "input_size": b.manifest.input_size, "grid": b.manifest.grid}
    finally:
        qa.close()
        del qa
        gc.collect()  # what this run held is not counted in the next run's peak RSS
    if settings.cold_start:
        example = settings.source if settings.source and Path(settings.source).is_file() and \
            Path(settings.source).suffix.lower() in _image_suffixes() else None
        if example is None:
            from .data import retina_path

            example = str(retina_path())
        cs = measure_cold_start(cold_start_command(example, settings.model, settings.backend, settings.engine,
                                                   settings.threads))
        results["cold_start"] = asdict(cs)
    device = device_info(load_avg)
    if device["gpu"] is None and cuda_gpu is not None:
        device["gpu"] = cuda_gpu
    return BenchReport(device, bundle, backend, asdict(em) if em else None, settings,
                       {"source": source_text or "frames given by the caller", "distinct_frames": len(frames),
                        "shapes": [list(f.shape[:2]) for f in frames]},
                       results, command=command,
                       created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), samples=s)


def _image_suffixes() -> frozenset[str]:
    from .imageio import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


# --------------------------------------------------------------------------------------------
# Reports


def _f(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def run_label(doc: dict) -> str:
    """Short name of a run: backend, precision, threads or engine target, device."""
    be, dev = doc["backend"], doc["device"]
    parts = [be["name"], be.get("precision") or ""]
    if be.get("target"):
        parts.append(be["target"])
    if be.get("providers"):
        parts.append("CUDA" if "CUDAExecutionProvider" in be["providers"] else "CPU")
    if be.get("threads"):
        parts.append(f"{be['threads']} thread{'s' if be['threads'] != 1 else ''}")
    gpu = (dev.get("gpu") or {}).get("name")
    on_gpu = be["name"] == "tensorrt" or "CUDAExecutionProvider" in (be.get("providers") or [])
    parts.append(gpu if gpu and on_gpu else dev["cpu"])
    return doc["settings"].get("label") or " · ".join(p for p in parts if p)


def summary_markdown(doc: dict) -> str:
    """Markdown summary of one run's JSON document."""
    r, dev = doc["results"], doc["device"]
    lines = [f"### efiqa bench: {run_label(doc)}", "",
             f"{doc['bundle']['name']} ({doc['bundle']['precision']}) on {dev['cpu']} ({dev['cores']} cores"
             + (f", load {dev['load_avg'][0]:.2f}" if dev.get("load_avg") else "") + ")"
             + (f", GPU {dev['gpu']['name']}" if dev.get("gpu") else "")
             + f"; {r['frames']} frames of {doc['input']['source']} in {r['seconds']:.1f} s, "
               f"warm-up {doc['settings']['warmup']}", "",
             "| stage (ms) | p50 | p90 | p95 | p99 | max | mean ± sd |", "|---|---|---|---|---|---|---|"]
    for k in STAGES:
        st = r["stages_ms"][k]
        d = 2 if k == "postprocess" else 1
        lines.append(f"| {k} | {_f(st['p50'], d)} | {_f(st['p90'], d)} | {_f(st['p95'], d)} | {_f(st['p99'], d)} | "
                     f"{_f(st['max'], d)} | {_f(st['mean'], d)} ± {_f(st['sd'], d)} |")
    b = r["batch"]
    lines += ["", f"- frames/s: {_f(r['fps_batch1'])} at batch 1, {_f(b['fps'])} at batch {b['size']} "
                  f"(one batch p50 {_f(b['latency_ms']['p50'])} ms)",
              f"- frame budget at {doc['settings']['fps']:g} fps ({_f(r['frame_budget_ms'])} ms): "
              f"{_f(100 * r['over_budget'] if r['over_budget'] is not None else None)} % of frames over",
              f"- first inference {_f(r['first_inference_ms'])} ms, first map {_f(r['first_map_ms'])} ms"
              + (f"; cold start (process start → first map) {_f(r['cold_start']['ms'], 0)} ms"
                 if r.get("cold_start") and r["cold_start"]["ok"] else
                 (f"; cold start failed: {r['cold_start']['error']}" if r.get("cold_start") else "")),
              f"- peak RSS {_f(r['peak_rss_mb'], 0)} MB"]
    st = r["stability"]
    if st and st["first"]["n"] and st["last"]["n"]:
        f1, l1 = st["first"]["total_ms"], st["last"]["total_ms"]
        lines.append(f"- first vs last {st['window_s']:.3g} s: p50 {_f(f1['p50'])} → {_f(l1['p50'])} ms, "
                     f"p99 {_f(f1['p99'])} → {_f(l1['p99'])} ms, {_f(st['first']['fps'])} → {_f(st['last']['fps'])} "
                     f"frames/s (p50 ratio {_f(st['p50_ratio'], 2)})")
    c = r.get("check")
    if c:
        if "skipped" in c:
            lines.append(f"- check skipped: {c['skipped']}")
        else:
            patch = 100 * c["patch_agreement"] if c["patch_agreement"] is not None else None
            lines.append(f"- check vs {c['reference']} on {c['frames']} frame{'s' if c['frames'] != 1 else ''}: "
                         f"max |Δp| {c['max_abs_dp']:.4f}, gradable decisions agree "
                         f"{100 * c['gradable_agreement']:.1f} %, patch decisions {_f(patch, 2)} %")
    p = r.get("power")
    if p and p.get("power_w"):
        lines.append(f"- GPU power {p['power_w']['mean']:.1f} W mean, {p['power_w']['max']:.1f} W max; "
                     f"{_f(p['maps_per_joule'], 2)} maps/J"
                     + (f"; SM clock {p['sm_clock_mhz']['first']:.0f} → {p['sm_clock_mhz']['last']:.0f} MHz"
                        if p.get("sm_clock_mhz") else "")
                     + (f"; {p['temperature_c']['first']:.0f} → {p['temperature_c']['last']:.0f} °C"
                        if p.get("temperature_c") else ""))
    return "\n".join(lines) + "\n"


def plot(report: BenchReport, path: str | Path) -> str:
    """Latency histogram + latency over time as a PNG. Returns a one-line message."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "efiqa bench: matplotlib is not installed; --plot skipped (pip install matplotlib)"
    s = report.samples
    if s is None or not s.total:
        return "efiqa bench: no samples to plot"
    budget = report.results["frame_budget_ms"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.hist(s.total, bins=min(60, max(10, len(s.total) // 5)), color="tab:blue", alpha=0.8, label="total")
    ax1.hist(s.inference, bins=min(60, max(10, len(s.total) // 5)), color="tab:orange", alpha=0.6,
             label="inference")
    ax1.axvline(budget, color="k", ls="--", lw=1, label=f"budget {budget:.1f} ms")
    ax1.set_xlabel("latency (ms)")
    ax1.set_ylabel("frames")
    ax1.legend()
    ax2.plot(s.t_s, s.total, ".", ms=2, color="tab:blue", label="total")
    ax2.plot(s.t_s, s.inference, ".", ms=2, color="tab:orange", label="inference")
    ax2.axhline(budget, color="k", ls="--", lw=1)
    ax2.set_xlabel("time since start (s)")
    ax2.set_ylabel("latency (ms)")
    ax2.legend()
    fig.suptitle(run_label(report.to_dict()), fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote {path}"


def load_report(path: str | Path) -> dict:
    """Read a bench JSON, refusing anything not of schema ``efiqa-bench/1``."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ImageReadError(f"cannot read a bench JSON ({exc})", str(path)) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ImageReadError(f"not an {SCHEMA} file (schema {doc.get('schema') if isinstance(doc, dict) else None!r})",
                             str(path))
    return doc


#: compare rows: (label, getter, digits, ratio wanted)
_ROWS: list[tuple[str, Callable[[dict], Any], int, bool]] = [
    ("total p50 (ms)", lambda d: d["results"]["stages_ms"]["total"]["p50"], 1, True),
    ("total p95 (ms)", lambda d: d["results"]["stages_ms"]["total"]["p95"], 1, True),
    ("total p99 (ms)", lambda d: d["results"]["stages_ms"]["total"]["p99"], 1, True),
    ("total max (ms)", lambda d: d["results"]["stages_ms"]["total"]["max"], 1, True),
    ("total mean (ms)", lambda d: d["results"]["stages_ms"]["total"]["mean"], 1, True),
    ("preprocess p50 (ms)", lambda d: d["results"]["stages_ms"]["preprocess"]["p50"], 1, True),
    ("inference p50 (ms)", lambda d: d["results"]["stages_ms"]["inference"]["p50"], 1, True),
    ("inference p99 (ms)", lambda d: d["results"]["stages_ms"]["inference"]["p99"], 1, True),
    ("postprocess p50 (ms)", lambda d: d["results"]["stages_ms"]["postprocess"]["p50"], 2, True),
    ("frames/s, batch 1", lambda d: d["results"]["fps_batch1"], 1, True),
    ("frames/s, batch N", lambda d: d["results"]["batch"]["fps"], 1, True),
    ("batch N", lambda d: d["results"]["batch"]["size"], 0, False),
    ("over budget (%)", lambda d: None if d["results"]["over_budget"] is None else 100 * d["results"]["over_budget"],
     1, False),
    ("first inference (ms)", lambda d: d["results"]["first_inference_ms"], 1, True),
    ("cold start (ms)", lambda d: (d["results"]["cold_start"] or {}).get("ms"), 0, True),
    ("peak RSS (MB)", lambda d: d["results"]["peak_rss_mb"], 0, True),
    ("last/first p50", lambda d: d["results"]["stability"]["p50_ratio"], 2, False),
    ("check max |Δp|", lambda d: (d["results"]["check"] or {}).get("max_abs_dp"), 4, False),
    ("maps/J (GPU)", lambda d: (d["results"]["power"] or {}).get("maps_per_joule"), 2, True),
]


def _get(fn: Callable[[dict], Any], doc: dict) -> Any:
    try:
        return fn(doc)
    except (KeyError, TypeError):
        return None


def compare(paths: Sequence[str | Path]) -> str:
    """Side-by-side Markdown table of bench JSONs, with ratios against the first file."""
    docs = [load_report(p) for p in paths]
    head = ["", *[f"{i + 1}: {run_label(d)}" for i, d in enumerate(docs)]]
    rows = [head, ["---"] * len(head)]
    text_rows = [
        ("device", lambda d: d["device"]["cpu"] + (f" + {d['device']['gpu']['name']}" if d["device"].get("gpu") else "")),
        ("backend", lambda d: d["backend"]["name"] + (f" ({d['backend']['target']})" if d["backend"].get("target")
                                                      else "")),
        ("precision", lambda d: d["backend"]["precision"]),
        ("threads", lambda d: d["backend"].get("threads") or "default"),
        ("efiqa / ORT", lambda d: f"{d['device']['versions']['efiqa']} / {d['device']['versions']['onnxruntime']}"),
        ("load (1 min)", lambda d: (d["device"].get("load_avg") or ["–"])[0]),
        ("frames", lambda d: d["results"]["frames"]),
        ("file", None),
    ]
    for name, fn in text_rows:
        if fn is None:
            rows.append([name, *[Path(p).name for p in paths]])
        else:
            rows.append([name, *[str(_get(fn, d)) for d in docs]])
    for name, fn, digits, ratio in _ROWS:
        vals = [_get(fn, d) for d in docs]
        if all(v is None for v in vals):
            continue
        base = vals[0]
        cells = []
        for i, v in enumerate(vals):
            cell = _f(float(v), digits) if isinstance(v, (int, float)) else "–"
            if ratio and i > 0 and isinstance(v, (int, float)) and isinstance(base, (int, float)) and base:
                cell += f" (×{v / base:.2f})"
            cells.append(cell)
        rows.append([name, *cells])
    return "\n".join("| " + " | ".join(str(c) for c in r) + " |" for r in rows) + "\n"


# --------------------------------------------------------------------------------------------
# Command line


def parse_duration(text: str) -> float:
    """``90s``, ``10m``, ``1h``, ``1m30s`` or plain seconds → seconds (argparse type)."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        value = float(t)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms])", "", t).strip():
            raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90s, 10m, 1h)")
        value = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if value <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, not {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` (and ``bench compare``) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "bench", help="measure frame → map latency on this device",
        description="Time the frame → map path on this device: warm-up, then a timed run by frame count or "
                    "duration; p50/p90/p95/p99/max and mean ± sd per stage, frames/s at batch 1 and --batch, "
                    "first-inference and cold-start latency, peak RSS and the share of frames over the frame "
                    "budget. One run per --threads value and per --engine. Frames are decoded before timing. "
                    "'efiqa bench compare A.json B.json ...' tabulates saved runs. Exit 3 where a backend's "
                    "library is missing.")
    p.add_argument("--model", help="bundle folder or .efiqa zip (default: the shipped bundle)")
    p.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt"],
                   help="auto: ONNX Runtime, plus one TensorRT run per --engine")
    p.add_argument("--engine", action="append", default=[], metavar="E",
                   help="TensorRT / TensorRT-RTX engine to time (repeatable)")
    p.add_argument("--threads", action="append", type=_int_at_least(1), default=[], metavar="N",
                   help="ONNX Runtime CPU threads (repeatable: one run per value; default: its own default)")
    p.add_argument("--images", metavar="PATH",
                     help="folder of images, an image or a video (default: the built-in example photo); "
                          f"up to {MAX_DISTINCT_FRAMES} frames are decoded and cycled")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--frames", type=_int_at_least(1), default=200, metavar="N", help="frames to time (default 200)")
    how.add_argument("--duration", type=parse_duration, metavar="T",
                     help="time for this long instead (90s, 10m, 1h); reports first vs last minute")
    p.add_argument("--warmup", type=_int_at_least(0), default=10, metavar="N", help="untimed frames first (default 10)")
    p.add_argument("--batch", type=_int_at_least(1), default=8, metavar="N", help="batch size for the throughput run (default 8)")
    p.add_argument("--fps", type=_positive_float, default=30.0, help="camera rate for the frame budget (default 30)")
    p.add_argument("--check", action="store_true", help="also compare maps with ONNX Runtime FP32 on the same frames")
    p.add_argument("--json", type=Path, metavar="OUT.json",
                   help="write the run as JSON (several runs: OUT-<run>.json each)")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="latency histogram + latency over time (matplotlib)")
    p.add_argument("--no-cold-start", action="store_true", help="skip the child-process cold-start measurement")
    p.set_defaults(func=cmd_bench)
    sub = p.add_subparsers(dest="bench_mode", metavar="{compare}")
    c = sub.add_parser("compare", help="side-by-side table of bench JSONs, ratios against the first",
                       description="Print a Markdown table of saved 'efiqa bench --json' runs, with ratios "
                                   "against the first file.")
    c.add_argument("files", nargs="+", metavar="RUN.json")
    c.set_defaults(func=cmd_compare)
    return p


def _plan(args: argparse.Namespace) -> list[BenchSettings]:
    common = dict(model=args.model, source=args.images, frames=args.frames, duration_s=args.duration,
                  warmup=args.warmup, batch=args.batch, fps=args.fps, check=args.check,
                  cold_start=not args.no_cold_start)
    runs = []
    if args.backend == "onnxruntime" or (args.backend == "auto" and (not args.engine or args.threads)):
        for t in args.threads or [None]:
            runs.append(BenchSettings(backend="onnxruntime", threads=t, **common))
    if args.backend in ("auto", "tensorrt"):
        for e in args.engine or ([None] if args.backend == "tensorrt" else []):
            runs.append(BenchSettings(backend="tensorrt", engine=e, **common))
    return runs


def _slug(s: BenchSettings) -> str:
    if s.engine:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(s.engine).stem)
    return f"onnxruntime-t{s.threads}" if s.threads else "onnxruntime"


def cmd_bench(args: argparse.Namespace) -> int:
    if args.backend == "onnxruntime" and args.engine:
        print("efiqa: error: --engine needs --backend tensorrt or auto", file=sys.stderr)
        return EXIT_USAGE
    if args.backend == "tensorrt" and args.threads:
        print("efiqa: error: --threads is for ONNX Runtime (--backend onnxruntime or auto)", file=sys.stderr)
        return EXIT_USAGE
    runs = _plan(args)
    frames, source_text = load_frames(args.images)
    command = "efiqa bench " + " ".join(_argv_of(args))
    paths: list[Path] = []
    for k, settings in enumerate(runs):
        report = run(settings, frames, source_text, command=command, progress=True)
        print(report.summary(), flush=True)
        if args.json:
            out = args.json if len(runs) == 1 else args.json.with_name(f"{args.json.stem}-{_slug(settings)}"
                                                                      f"{args.json.suffix or '.json'}")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(report.to_json(), encoding="utf-8")
            paths.append(out)
            print(f"wrote {out}", file=sys.stderr)
        if args.plot:
            png = args.plot if len(runs) == 1 else args.plot.with_name(f"{args.plot.stem}-{_slug(settings)}"
                                                                      f"{args.plot.suffix or '.png'}")
            print(plot(report, png), file=sys.stderr)
    if len(paths) > 1:
        print(compare(paths))
    return EXIT_OK


def _argv_of(args: argparse.Namespace) -> list[str]:
    """A command line equivalent to ``args`` (for the JSON's ``command`` when not run as ``efiqa``)."""
    out = []
    for key in ("model", "images", "duration", "json", "plot"):
        v = getattr(args, key, None)
        if v is not None:
            out += [f"--{key}", str(v)]
    if args.backend != "auto":
        out += ["--backend", args.backend]
    for e in args.engine:
        out += ["--engine", str(e)]
    for t in args.threads:
        out += ["--threads", str(t)]
    if args.duration is None:
        out += ["--frames", str(args.frames)]
    out += ["--warmup", str(args.warmup), "--batch", str(args.batch), "--fps", f"{args.fps:g}"]
    out += ["--check"] * args.check + ["--no-cold-start"] * args.no_cold_start
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        print(compare(args.files), end="")
    except ImageReadError as err:
        print(f"efiqa: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
