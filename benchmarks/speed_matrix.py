"""Inference speed of the student across input size × batch × precision (ONNX Runtime, CPU), and
the cold start and peak memory of one `efiqa assess` process.

    python benchmarks/speed_matrix.py [--runs 40] [--threads 2]

The network is the shipped student (models/student, the output of `efiqa train student`), whose
convolutions accept any input size. Each input size is exported
from the torch definition; FP16 and INT8 variants are made by efiqa's own variant code (INT8
calibrated on preprocessed copies of the built-in CC0 photo: enough for timing, not for
accuracy). INT8 is timed with ONNX Runtime's optimisations on (its fused int8 kernels: what a CPU
user would get); the fidelity gate instead simulates TensorRT's arithmetic. Writes
benchmarks/results/speed_matrix.json and .md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

SIZES = (256, 384, 512)
BATCHES = (1, 8)


def calibration_tensors(size: int) -> np.ndarray:
    from efiqa.data import retina_path
    from efiqa.fov import find_fov
    from efiqa.imageio import read_image
    from efiqa.preprocess import Preprocessor
    from efiqa.eval.synth import degrade

    img = read_image(retina_path())
    pre = Preprocessor(size)
    frames = [img] + [degrade(img, find_fov(img), k, 2, seed=i).image
                      for i, k in enumerate(("blur", "haze", "underexposure", "overexposure", "noise"))]
    return np.stack([pre(f).tensor for f in frames]).astype(np.float32)


def time_session(onnx: bytes | str, size: int, batch: int, runs: int, threads: int, warmup: int = 3) -> dict:
    """p50/p95/p99 ms and frames/s of one ONNX model (bytes or path) in ONNX Runtime CPU on random input.
    Also used by peers.py (which runs in its own venv: this module imports no efiqa at top level)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(0, 255, (batch, 3, size, size)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        ts.append((time.perf_counter() - t) * 1e3)
    a = np.asarray(ts)
    p50 = float(np.percentile(a, 50))
    return {"p50": p50, "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99)),
            "frames_per_s": batch * 1000.0 / p50}


CHILD = """
import sys
from efiqa.cli import main
code = main(sys.argv[1:])
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print('VMHWM_KB', hwm, file=sys.stderr)
sys.exit(code)
"""


def cold_start(repeats: int = 3) -> dict:
    """Process start → first map (`efiqa assess` on the built-in photo), and that process's peak RSS
    (VmHWM, which exec resets: ru_maxrss would include this benchmark's own memory, inherited by fork)."""
    from efiqa.data import retina_path

    walls, rss = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", CHILD, "assess", str(retina_path()), "--json"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        walls.append((time.perf_counter() - t) * 1e3)
        if p.returncode != 0:
            raise RuntimeError(f"efiqa assess exited with status {p.returncode}: {p.stderr[-300:]}")
        rss.append(int(p.stderr.split("VMHWM_KB")[1].split()[0]) / 1024)
    return {"command": "efiqa assess sdk/data/retina.jpg --json", "wall_ms_median": float(np.median(walls)),
            "wall_ms": walls, "peak_rss_mib_median": float(np.median(rss))}


def main() -> None:
    import torch

    from efiqa.build.export import INPUT_NAME, export_onnx
    from efiqa.build.fp16 import to_fp16
    from efiqa.calibration.int8 import quantize
    from efiqa.train.distill import load_student
    from efiqa.train.nets.student import GRID

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    model = load_student()[0].eval()  # one network (the shipped student), exported at every size
    for size in SIZES:
        fp32 = export_onnx(model, size)
        variants = {"fp32": fp32, "fp16": to_fp16(fp32)}
        variants["int8"], _ = quantize(fp32, calibration_tensors(size), INPUT_NAME, "percentile")
        for precision, onnx_bytes in variants.items():
            for batch in BATCHES:
                row = {"size": size, "precision": precision, "batch": batch, "grid": GRID}
                try:
                    row.update(time_session(onnx_bytes, size, batch, args.runs if batch == 1 else max(10, args.runs // 4),
                                            args.threads))
                except Exception as exc:  # e.g. an op without a CPU kernel for that precision: recorded, not hidden
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                rows.append(row)
                print(json.dumps(row), flush=True)
    cold = cold_start()
    print(json.dumps(cold), flush=True)
    result = {"benchmark": "speed_matrix", "command": "python benchmarks/speed_matrix.py " + " ".join(sys.argv[1:]),
              "machine": stamp(), "backend": "onnxruntime (CPU)", "threads": args.threads,
              "int8_note": "timed with ORT optimisations on (fused int8 kernels); calibrated on the CC0 photo only",
              "rows": rows, "cold_start": cold}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "speed_matrix.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["| input | precision | batch | p50 ms | p95 ms | p99 ms | frames/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['size']} | {r['precision']} | {r['batch']} | not runnable in ORT CPU: {r['error'][:80]} | | | |")
        else:
            md.append(f"| {r['size']} | {r['precision']} | {r['batch']} | {r['p50']:.1f} | {r['p95']:.1f} | "
                      f"{r['p99']:.1f} | {r['frames_per_s']:.1f} |")
    md += ["", f"Cold start (`{cold['command']}`, process start → map, median of 3): "
           f"{cold['wall_ms_median']:.0f} ms; peak RSS {cold['peak_rss_mib_median']:.0f} MiB."]
    (HERE / "results" / "speed_matrix.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
