"""``efiqa bench`` (efiqa.bench): timing arithmetic on a fake clock, the JSON schema, compare, the
CPU ONNX Runtime path end to end on a few frames, and one-line errors for engines that cannot run."""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import types

import cv2
import numpy as np
import pytest

from efiqa import bench
from efiqa.bundle import load_bundle
from efiqa.engine import EngineManifest
from efiqa.errors import BackendUnavailableError, EngineMismatchError, ModelError

from .conftest import synthetic_fundus
from .trt_double import FakeCuda, fake_tensorrt


def run_bench(argv: list[str]) -> int:
    """What ``efiqa bench ...`` does once cli.py registers add_parser (errors propagate)."""
    p = argparse.ArgumentParser(prog="efiqa")
    bench.add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["bench", *argv])
    return args.func(args)


# ---------------------------------------------------------------------------------------------
# Arithmetic on a fake clock


class FakeClock:
    """Nanosecond clock that only moves when told to."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, ms: float) -> None:
        self.ns += int(round(ms * 1e6))


class FakeQA:
    """QualityAssessor-like: each stage advances the clock by a scheduled amount per call."""

    def __init__(self, clock: FakeClock, pre, inf, post) -> None:
        self.clock, self.pre, self.inf, self.post_ms = clock, pre, inf, post
        self.calls = {"pre": 0, "inf": 0, "post": 0}
        self.backend = types.SimpleNamespace(infer=self._infer)
        self.fovs_seen: list = []

    def preprocessor(self, frame, fov=None):
        self.fovs_seen.append(fov)
        self.clock.advance(self.pre(self.calls["pre"]))
        self.calls["pre"] += 1
        return types.SimpleNamespace(tensor=np.zeros((3, 4, 4), np.float32))

    def _infer(self, batch):
        self.clock.advance(self.inf(self.calls["inf"], len(batch)))
        self.calls["inf"] += 1
        return np.zeros((len(batch), 1, 2, 2), np.float32)

    def postprocess(self, logits, prep, frame):
        self.clock.advance(self.post_ms(self.calls["post"]))
        self.calls["post"] += 1


def test_percentiles_are_numpy_linear_and_exact_on_known_values():
    assert bench.percentiles(list(range(1, 101))) == pytest.approx([50.5, 90.1, 95.05, 99.01])
    assert bench.percentiles([7.0]) == [7.0] * 4
    assert all(math.isnan(v) for v in bench.percentiles([]))
    rng = np.random.default_rng(1)
    x = rng.lognormal(3, 0.5, 257).tolist()
    assert bench.percentiles(x, (50, 90, 99.9)) == pytest.approx(np.percentile(x, [50, 90, 99.9]).tolist())
    s = bench.Stats.of([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean, s.min, s.max) == (4, 2.5, 1.0, 4.0)
    assert s.sd == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_time_frames_by_count_on_a_fake_clock():
    clock = FakeClock()
    # call k: preprocess 2 ms, inference 100 ms for the first (cold) call then k ms, postprocess 0.5 ms
    qa = FakeQA(clock, lambda k: 2.0, lambda k, n: 100.0 if k == 0 else float(k - 2), lambda k: 0.5)
    run = bench.time_frames(qa, [np.zeros((8, 8, 3), np.uint8)], count=100, warmup=3, postprocess=qa.postprocess,
                            clock=clock)
    s = run.samples
    assert len(s.total) == 100 and qa.calls["inf"] == 103
    assert s.inference == pytest.approx([float(k) for k in range(1, 101)])  # timed calls 3..102 → 1..100 ms
    st = s.stats()
    assert (st["inference"].p50, st["inference"].p90, st["inference"].p99) == pytest.approx((50.5, 90.1, 99.01))
    assert st["total"].p50 == pytest.approx(53.0) and st["preprocess"].sd == 0.0
    assert run.first_inference_ms == pytest.approx(100.0) and run.first_map_ms == pytest.approx(102.5)
    assert run.seconds == pytest.approx(sum(s.total) / 1e3)
    assert s.t_s[0] == 0.0 and all(b > a for a, b in zip(s.t_s, s.t_s[1:]))
    # 30 fps → 33.3 ms budget: totals are k + 2.5 ms, over budget for k ≥ 31 → 70 of 100
    assert bench.over_budget(s.total, 30) == pytest.approx(0.70)


def test_duration_run_reports_first_and_last_window_on_a_fake_clock():
    clock = FakeClock()
    # 10 ms frames; inference degrades from 5 ms to 9 ms halfway (a throttling device)
    qa = FakeQA(clock, lambda k: 0.5, lambda k, n: 5.0 if k < 50 else 9.0, lambda k: 0.5)
    run = bench.time_frames(qa, [np.zeros((8, 8, 3), np.uint8)], count=None, duration_s=0.8, warmup=0,
                            postprocess=qa.postprocess, clock=clock)
    n = len(run.samples.total)
    assert sum(run.samples.total[:n - 1]) < 800 <= sum(run.samples.total)  # stops at the first frame past 0.8 s
    st = bench.stability(run.samples, 0.8)
    assert st["window_s"] == pytest.approx(0.2)  # min(60 s, run / 4)
    assert st["first"]["total_ms"]["p50"] == pytest.approx(6.0) and st["first"]["n"] == 34  # 0..198 ms at 6 ms
    assert st["last"]["total_ms"]["p50"] == pytest.approx(10.0)
    assert st["p50_ratio"] == pytest.approx(10.0 / 6.0)
    tl = bench.timeline(run.samples, run.seconds)
    assert sum(tl["n"]) == n and tl["p50_ms"][0] == pytest.approx(6.0) and tl["p50_ms"][-1] == pytest.approx(10.0)
    assert bench.stability(run.samples, 600.0)["window_s"] == 60.0


def test_last_window_holds_a_slow_last_frame():
    """Five frames, the last one longer than a quarter of the run (a busy machine): it starts before
    the last window and ends in it; the window must not come out empty (a null in the JSON)."""
    samples = bench.Samples()
    for t, tot in ((0.0, 10.0), (0.01, 10.0), (0.02, 10.0), (0.03, 10.0), (0.04, 60.0)):
        samples.t_s.append(t)
        samples.total.append(tot)
    st = bench.stability(samples, 0.1)
    assert st["first"]["n"] == 3 and st["last"]["n"] == 1 and st["last"]["total_ms"]["mean"] == 60.0
    assert st["p50_ratio"] == pytest.approx(6.0)


def test_batches_and_fov_reuse_on_a_fake_clock():
    clock = FakeClock()
    qa = FakeQA(clock, lambda k: 1.0, lambda k, n: 2.0 + n, lambda k: 0.25)  # inference: 2 ms + 1 ms per frame
    b = bench.time_batches(qa, [np.zeros((8, 8, 3), np.uint8)] * 3, 4, 10, warmup=1, postprocess=qa.postprocess,
                           clock=clock)
    assert (b.size, b.frames) == (4, 12) and b.latency_ms == pytest.approx([4 + 6 + 1.0] * 3)
    d = b.to_dict()
    assert d["fps"] == pytest.approx(12 / 0.033) and d["per_frame_ms"] == pytest.approx(11 / 4)
    qa.fovs_seen.clear()
    bench.time_frames(qa, ["a", "b"], count=4, warmup=0, fovs=["fa", "fb"], postprocess=qa.postprocess, clock=clock)
    assert qa.fovs_seen == ["fa", "fb", "fa", "fb"]


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1m30s", 90), ("45", 45),
                                           ("2.5m", 150)])
def test_parse_duration(text, seconds):
    assert bench.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10x", "0s", "5m garbage"])
def test_parse_duration_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_duration(text)


def test_nvml_sampler_integrates_power(monkeypatch):
    """A pynvml double at a constant 150 W: energy = 150 W × sampled time, maps/J from it."""
    nv = types.ModuleType("pynvml")
    nv.NVML_CLOCK_SM, nv.NVML_TEMPERATURE_GPU = 1, 0
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetCount = lambda: 1
    nv.nvmlDeviceGetHandleByIndex = lambda i: "h"
    nv.nvmlDeviceGetPowerUsage = lambda h: 150_000  # mW
    nv.nvmlDeviceGetClockInfo = lambda h, kind: 1500
    nv.nvmlDeviceGetTemperature = lambda h, kind: 55
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2 * 2**30, total=8 * 2**30)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    sampler = bench.NvmlSampler.create()
    sampler.interval_s = 0.01
    sampler.start()
    import time

    time.sleep(0.15)
    sampler.stop()
    p = sampler.summary(frames=30)
    span = sampler.rows[-1][0] - sampler.rows[0][0]
    assert p["samples"] >= 3 and p["power_w"] == {"mean": 150.0, "max": 150.0}
    assert p["energy_j"] == pytest.approx(150.0 * span) and p["maps_per_joule"] == pytest.approx(30 / (150 * span))
    assert p["temperature_c"]["max"] == 55 and p["gpu_memory_used_mb"] == 2048


def test_without_pynvml_there_is_no_sampler(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert bench.NvmlSampler.create() is None


# ---------------------------------------------------------------------------------------------
# The real thing on the CPU (ONNX Runtime), a few frames


STATS = {k: (int if k == "n" else float) for k in ("n", "mean", "sd", "min", "p50", "p90", "p95", "p99", "max")}
OPT_STR, OPT_FLOAT, OPT_INT = (str, type(None)), (float, int, type(None)), (int, type(None))
WINDOW = {"start_s": (float, int), "end_s": (float, int), "n": int, "fps": float, "total_ms": STATS}
#: efiqa-bench/1: every key and its type (a dict: an object with exactly these keys).
SCHEMA = {
    "schema": str, "created": str, "command": str,
    "device": {"cpu": str, "cores": int, "load_avg": (list, type(None)), "platform": str, "python": str,
               "gpu": (dict, type(None)), "jetson": OPT_STR,
               "versions": {k: OPT_STR for k in ("efiqa", "onnxruntime", "numpy", "opencv", "tensorrt",
                                                 "tensorrt_rtx", "pynvml")}},
    "bundle": {"name": str, "path": str, "sha256": str, "root_sha256": str, "precision": str, "input_size": int,
               "grid": int},
    "backend": {"name": str, "precision": str, "providers": (list, type(None)), "engine": OPT_STR,
                "target": OPT_STR, "threads": OPT_INT},
    "engine": (dict, type(None)),
    "settings": {"label": str, "model": OPT_STR, "backend": str, "engine": OPT_STR, "threads": OPT_INT,
                 "source": OPT_STR, "frames": int, "duration_s": OPT_FLOAT, "warmup": int, "batch": int,
                 "fps": (float, int), "check": bool, "cold_start": bool, "reuse_fov": bool},
    "input": {"source": str, "distinct_frames": int, "shapes": list},
    "results": {
        "frames": int, "seconds": float, "stages_ms": {k: STATS for k in bench.STAGES},
        "fps_batch1": float, "fps_at_p50": float,
        "batch": {"size": int, "frames": int, "fps": float, "per_frame_ms": float, "latency_ms": STATS},
        "first_inference_ms": float, "first_map_ms": float, "frame_budget_ms": float, "over_budget": float,
        "peak_rss_mb": float, "cold_start": (dict, type(None)),
        "stability": {"window_s": float, "first": WINDOW, "last": WINDOW, "p50_ratio": float},
        "timeline": {"bin_s": float, "t_s": list, "n": list, "p50_ms": list, "p95_ms": list, "max_ms": list},
        "check": (dict, type(None)), "power": (dict, type(None)),
    },
}


def validate(doc, spec, path="") -> None:
    if isinstance(spec, dict):
        assert isinstance(doc, dict), f"{path}: expected an object"
        assert set(doc) == set(spec), f"{path}: keys differ: missing {set(spec) - set(doc)}, extra {set(doc) - set(spec)}"
        for k, sub in spec.items():
            validate(doc[k], sub, f"{path}.{k}")
    else:
        assert isinstance(doc, spec) and not (spec in (int, OPT_INT) and isinstance(doc, bool)), \
            f"{path}: {doc!r} is not {spec}"


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One CLI run: 5 frames, ONNX Runtime on the CPU, JSON + plot + check, no cold start."""
    out = tmp_path_factory.mktemp("bench")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run_bench(["--backend", "onnxruntime", "--frames", "5", "--warmup", "1", "--batch", "2",
                          "--no-cold-start", "--check", "--threads", "1", "--json", str(out / "cpu.json"),
                          "--plot", str(out / "cpu.png")])
    return code, buf.getvalue(), out


def test_cli_on_the_cpu_writes_a_valid_report(cpu_run):
    code, stdout, out = cpu_run
    assert code == 0
    doc = json.loads((out / "cpu.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    validate(doc, SCHEMA)
    r = doc["results"]
    assert doc["schema"] == "efiqa-bench/1" and r["frames"] == 5 and doc["backend"]["threads"] == 1
    assert doc["backend"]["name"] == "onnxruntime" and "CPUExecutionProvider" in doc["backend"]["providers"]
    assert doc["bundle"]["sha256"] == load_bundle().sha256 and doc["engine"] is None
    t = r["stages_ms"]
    assert 0 < t["inference"]["p50"] <= t["inference"]["max"] and t["total"]["n"] == 5
    assert t["total"]["p50"] >= t["inference"]["p50"] + t["preprocess"]["min"]
    assert r["batch"]["size"] == 2 and r["batch"]["frames"] == 6 and r["fps_batch1"] > 0
    assert r["frame_budget_ms"] == pytest.approx(1000 / 30) and 0 <= r["over_budget"] <= 1
    assert r["peak_rss_mb"] > 50 and r["first_inference_ms"] > 0 and r["cold_start"] is None
    c = r["check"]  # the FP32 bundle against itself on ONNX Runtime: identical maps
    assert c["frames"] == 1 and c["max_abs_dp"] < 1e-5 and c["gradable_agreement"] == 1.0
    assert "| total |" in stdout and "frames/s" in stdout and "check vs onnxruntime fp32" in stdout
    plotted = (out / "cpu.png").is_file()
    try:
        import matplotlib  # noqa: F401
        assert plotted and (out / "cpu.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        assert not plotted


def test_schema_docstring_names_every_key(cpu_run):
    """The schema is documented at the top of efiqa/bench.py: every key of a real file is named there."""
    doc = json.loads((cpu_run[2] / "cpu.json").read_text())
    missing = []

    def walk(d, path):
        for k, v in d.items():
            if not re.search(rf"\b{re.escape(k)}\b", bench.__doc__):
                missing.append(f"{path}.{k}")
            if isinstance(v, dict) and k != "engine":  # engine: EngineManifest's own fields
                walk(v, f"{path}.{k}")

    walk(doc, "")
    assert not missing and "efiqa-bench/1" in bench.__doc__


def test_compare_two_recorded_runs(cpu_run, tmp_path, capsys):
    doc = json.loads((cpu_run[2] / "cpu.json").read_text())
    a = tmp_path / "a.json"
    a.write_text(json.dumps(doc))
    slow = json.loads(json.dumps(doc))
    slow["backend"]["threads"] = 2
    slow["results"]["stages_ms"]["total"]["p50"] = 2 * doc["results"]["stages_ms"]["total"]["p50"]
    slow["results"]["fps_batch1"] = doc["results"]["fps_batch1"] / 4
    b = tmp_path / "b.json"
    b.write_text(json.dumps(slow))
    table = bench.compare([a, b])
    lines = table.splitlines()
    assert lines[0].startswith("|  | 1: onnxruntime") and "2 threads" in lines[0] and "1 thread ·" in lines[0]
    p50 = next(line for line in lines if line.startswith("| total p50 (ms) |"))
    assert p50.endswith("(×2.00) |") and p50.count("×") == 1
    fps = next(line for line in lines if line.startswith("| frames/s, batch 1 |"))
    assert fps.endswith("(×0.25) |")
    assert "| file | a.json | b.json |" in table
    # the sub-command: the same table; a file of another kind: exit 1, one line
    assert run_bench(["compare", str(a), str(b)]) == 0 and capsys.readouterr().out == table
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"benchmark": "frame_to_map_latency"}))
    assert run_bench(["compare", str(a), str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an efiqa-bench/1 file" in err[0]


def test_cold_start_in_a_child_process():
    from efiqa.data import retina_path

    cs = bench.measure_cold_start(bench.cold_start_command(retina_path(), backend="onnxruntime", threads=1))
    assert cs.ok and cs.error is None and cs.ms > 50  # a Python start plus imports takes more than 50 ms
    assert cs.command[1:4] == ["-m", "efiqa", "assess"]
    bad = bench.measure_cold_start([sys.executable, "-c", "import sys; sys.exit('no model here')"])
    assert not bad.ok and bad.ms is None and bad.error == "no model here"


def test_frames_from_a_folder_and_a_video(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), synthetic_fundus(120, 160, seed=i))
    frames, text = bench.load_frames(tmp_path)
    assert len(frames) == 3 and frames[0].shape == (120, 160, 3) and "3 of 3 images" in text
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    if not w.isOpened():
        pytest.skip("this OpenCV build writes no MJPG video")
    for i in range(4):
        w.write(synthetic_fundus(120, 160, seed=i))
    w.release()
    frames, text = bench.load_frames(video, limit=3)
    assert len(frames) == 3 and frames[0].shape == (120, 160, 3) and "video frames" in text
    with pytest.raises(bench.ImageReadError):
        bench.load_frames(tmp_path / "missing.mp4")


def test_one_run_per_thread_count_and_engine():
    p = argparse.ArgumentParser()
    bench.add_parser(p.add_subparsers())
    args = p.parse_args(["bench", "--threads", "1", "--threads", "2", "--engine", "a.engine", "--duration", "2m"])
    runs = bench._plan(args)
    assert [(r.backend, r.threads, r.engine) for r in runs] == [("onnxruntime", 1, None), ("onnxruntime", 2, None),
                                                                ("tensorrt", None, "a.engine")]
    assert all(r.duration_s == 120 and r.cold_start for r in runs)
    args = p.parse_args(["bench", "--engine", "a.engine", "--engine", "b.engine"])
    assert [r.engine for r in bench._plan(args)] == ["a.engine", "b.engine"]  # engines only: no ORT run


def test_usage_errors_exit_1(capsys):
    assert run_bench(["--backend", "onnxruntime", "--engine", "x.engine"]) == 1
    assert run_bench(["--backend", "tensorrt", "--engine", "x.engine", "--threads", "2"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


# ---------------------------------------------------------------------------------------------
# Engines that cannot run here: the errors the CLI prints in one line


FAST = ["--frames", "2", "--warmup", "0", "--batch", "1", "--no-cold-start"]


def test_missing_engine_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such engine file") as exc:
        run_bench(["--engine", str(tmp_path / "missing.engine"), *FAST])
    assert len(str(exc.value).splitlines()) == 1


def _rtx_engine_on(monkeypatch, tmp_path, built_for: str, gpu: tuple[str, str]):
    """A TensorRT-RTX 'engine' (the double runs the ONNX) built for ``built_for``, on ``gpu``."""
    bundle = load_bundle()
    engine = tmp_path / "rtx.engine"
    engine.write_bytes(bundle.onnx_bytes)
    EngineManifest(bundle.root_sha256, "fp16", "1.7.1.116", "", built_for, bundle.sha256, max_batch=4,
                   target="tensorrt-rtx").save(engine)
    cuda = FakeCuda(gpu)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", fake_tensorrt(cuda, version="1.7.1.116", rtx=True))
    monkeypatch.setattr("efiqa.backends.tensorrt.load_cuda", lambda: cuda)
    return engine, cuda


def test_engine_for_another_gpu_is_refused(monkeypatch, tmp_path):
    """A TensorRT-RTX engine built for sm 8.6 on an H200 (9.0), through the TensorRT double."""
    engine, _ = _rtx_engine_on(monkeypatch, tmp_path, "8.6", ("NVIDIA H200", "9.0"))
    with pytest.raises(EngineMismatchError, match=r"compute capabilities 8\.6, this GPU is 9\.0 \(NVIDIA H200\)") as e:
        run_bench(["--engine", str(engine), *FAST])
    assert len(str(e.value).splitlines()) == 1 and "efiqa build --target tensorrt-rtx" in str(e.value)


def test_engine_on_the_double_is_timed(monkeypatch, tmp_path):
    """The same engine on a GPU it was built for runs (through the double) and the JSON names it."""
    engine, cuda = _rtx_engine_on(monkeypatch, tmp_path, "8.6,8.9", ("NVIDIA GeForce RTX 4090", "8.9"))
    report = bench.run(bench.BenchSettings(engine=str(engine), backend="tensorrt", frames=2, warmup=0, batch=1,
                                           cold_start=False))
    d = report.to_dict()
    assert d["backend"] == {"name": "tensorrt", "precision": "fp16", "providers": None, "engine": str(engine),
                            "target": "tensorrt-rtx", "threads": None}
    assert d["engine"]["compute_capability"] == "8.6,8.9" and d["results"]["frames"] == 2
    assert d["device"]["gpu"]["name"] == "NVIDIA GeForce RTX 4090" and "RTX 4090" in bench.run_label(d)
    assert cuda.calls.count("execute_async_v3") == 2 and cuda.calls.count("free") == 2  # closed after the run


def test_without_tensorrt_the_backend_is_unavailable(monkeypatch, tmp_path):
    bundle = load_bundle()
    engine = tmp_path / "trt.engine"
    engine.write_bytes(b"engine")
    EngineManifest(bundle.root_sha256, "fp16", "10.3.0", "NVIDIA Jetson AGX Orin", "8.7", bundle.sha256).save(engine)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed") as exc:
        run_bench(["--engine", str(engine), *FAST])
    assert len(str(exc.value).splitlines()) == 1
    versions = bench.device_info()["versions"]
    assert versions["tensorrt"] is None and versions["tensorrt_rtx"] is None


def test_plot_without_matplotlib_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = bench.BenchReport({}, {}, {}, None, bench.BenchSettings(), {}, {"frame_budget_ms": 33.3},
                               samples=bench.Samples([0.0], [1.0], [2.0], [0.5], [3.5]))
    msg = bench.plot(report, tmp_path / "p.png")
    assert msg == "efiqa bench: matplotlib is not installed; --plot skipped (pip install matplotlib)"
    assert not (tmp_path / "p.png").exists()
