"""Frame → map latency of the runtime (decoded frame in, QualityResult out), split by stage.

    python benchmarks/latency.py [--model BUNDLE] [--frames 300] [--threads 2]

Frames are the built-in example photo at its own size (1411²) and padded/scaled to a 4752×3168
camera frame. Modes: "full" finds the FOV on every frame; "fov-reuse" passes the FOV found on
the first frame (what a stream with a steady camera can do). Writes
benchmarks/results/latency_cpu.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import stamp  # noqa: E402

from efiqa import QualityAssessor  # noqa: E402
from efiqa.data import retina_path  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.result import build_result  # noqa: E402

STAGES = ("preprocess", "inference", "postprocess", "total")


def frames() -> dict[str, np.ndarray]:
    img = read_image(retina_path())
    cam = cv2.copyMakeBorder(cv2.resize(img, (3168, 3168), interpolation=cv2.INTER_CUBIC), 0, 0, 792, 792,
                             cv2.BORDER_CONSTANT)
    return {"1411x1411": img, "4752x3168": cam}


def time_frames(qa: QualityAssessor, frame: np.ndarray, n: int, reuse_fov: bool) -> dict[str, list[float]]:
    fov = qa.preprocessor(frame).fov if reuse_fov else None
    out: dict[str, list[float]] = {k: [] for k in STAGES}
    for _ in range(10):  # warm-up
        qa.assess(frame, fov=fov)
    for _ in range(n):
        t0 = time.perf_counter()
        prep = qa.preprocessor(frame, fov=fov)
        t1 = time.perf_counter()
        logits = qa.backend.infer(prep.tensor[None])
        t2 = time.perf_counter()
        build_result(logits[0, 0], prep.fov, prep.crop, prep.image_shape, qa.threshold)
        t3 = time.perf_counter()
        for k, v in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            out[k].append(v * 1e3)
    return out


def summarise(samples: dict[str, list[float]]) -> dict:
    res = {}
    for k, v in samples.items():
        a = np.asarray(v)
        res[k] = {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
                  "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}
    res["fps_at_p50"] = 1000.0 / res["total"]["p50"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latency_cpu.json")
    args = ap.parse_args()

    qa = QualityAssessor(args.model, backend="onnxruntime", threads=args.threads)
    m = qa.manifest
    rows = []
    for name, frame in frames().items():
        for reuse in (False, True):
            s = summarise(time_frames(qa, frame, args.frames, reuse))
            rows.append({"frame": name, "mode": "fov-reuse" if reuse else "full", **s})
    result = {
        "benchmark": "frame_to_map_latency",
        "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
        "machine": stamp(),
        "backend": "onnxruntime", "precision": "fp32", "threads": args.threads, "batch": 1,
        "model": {"name": m.name, "backbone": m.backbone, "input_size": m.input_size, "grid": m.grid},
        "frames_per_case": args.frames,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| frame | mode | preprocess p50 | inference p50 | postprocess p50 | total p50 | total p95 | total p99 | fps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['frame']} | {r['mode']} | {r['preprocess']['p50']:.1f} | {r['inference']['p50']:.1f} | "
              f"{r['postprocess']['p50']:.2f} | {r['total']['p50']:.1f} | {r['total']['p95']:.1f} | "
              f"{r['total']['p99']:.1f} | {r['fps_at_p50']:.1f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
