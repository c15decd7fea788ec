"""Frame → map latency of the runtime (decoded frame in, QualityResult out), split by stage.

    python benchmarks/latency.py [--model BUNDLE] [--frames 300] [--threads 2]

Frames are the built-in example photo at its own size (1411²) and padded/scaled to a 4752×3168
camera frame. Modes: "full" finds the FOV on every frame; "fov-reuse" passes the FOV found on
the first frame (what a stream with a steady camera can do). Writes
benchmarks/results/latency_cpu.json and prints a Markdown table.

Timing and percentiles are efiqa.bench's (the code behind ``efiqa bench``): one monotonic clock,
frames decoded before timing, postprocess = what ``QualityAssessor.assess`` does after inference
(map, score, zones and reasons).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import stamp  # noqa: E402

from efiqa import QualityAssessor  # noqa: E402
from efiqa.bench import STAGES, Stats, time_frames  # noqa: E402
from efiqa.data import retina_path  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402


def frames() -> dict[str, np.ndarray]:
    img = read_image(retina_path())
    cam = cv2.copyMakeBorder(cv2.resize(img, (3168, 3168), interpolation=cv2.INTER_CUBIC), 0, 0, 792, 792,
                             cv2.BORDER_CONSTANT)
    return {"1411x1411": img, "4752x3168": cam}


def time_case(qa: QualityAssessor, frame: np.ndarray, n: int, reuse_fov: bool) -> dict[str, list[float]]:
    """Per-stage latencies (ms) of ``n`` frames after 10 warm-up frames, by efiqa.bench.time_frames."""
    fovs = [qa.preprocessor(frame).fov] if reuse_fov else None
    samples = time_frames(qa, [frame], count=n, warmup=10, fovs=fovs).samples
    return {k: getattr(samples, k) for k in STAGES}


def summarise(samples: dict[str, list[float]]) -> dict:
    res = {}
    for k, v in samples.items():
        st = Stats.of(v)
        res[k] = {"p50": st.p50, "p95": st.p95, "p99": st.p99, "mean": st.mean}
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
            s = summarise(time_case(qa, frame, args.frames, reuse))
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
