"""End-to-end stream loop on this machine: decode → preprocess → infer → guidance → overlay.

A scripted alignment video (made from the built-in example photo) is played as fast as the loop
runs, every frame processed; per-frame times are split by stage, with and without overlay drawing.

    python benchmarks/stream_fps.py [--size 720] [--repeat 3]

Writes benchmarks/results/stream_fps.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

from efiqa import QualityAssessor  # noqa: E402
from efiqa.data import retina_path  # noqa: E402
from efiqa.guidance import Guide  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.draw import draw_stream_overlay  # noqa: E402
from efiqa.stream import FrameSource  # noqa: E402
from efiqa.eval.synth import alignment_sequence  # noqa: E402


def percentiles(v: list[float]) -> dict:
    a = np.asarray(v)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99))}


def run(video: Path, qa: QualityAssessor, overlay: bool) -> dict:
    guide = Guide(qa)
    stages: dict[str, list[float]] = {"decode": [], "guide": [], "overlay": [], "total": []}
    it = iter(FrameSource(str(video)))
    while True:
        t0 = time.perf_counter()
        item = next(it, None)
        if item is None:
            break
        ts, frame = item
        t1 = time.perf_counter()
        state = guide.update(frame, ts)
        t2 = time.perf_counter()
        if overlay:
            draw_stream_overlay(frame, state, guide.threshold)
        t3 = time.perf_counter()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            stages[k].append(v * 1e3)
    out = {k: percentiles(v) for k, v in stages.items() if any(v)}
    out["frames"] = len(stages["total"])
    out["fps"] = len(stages["total"]) / (sum(stages["total"]) / 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=720, help="video frame side (px)")
    ap.add_argument("--repeat", type=int, default=3, help="times the 6-s sequence is played")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    seq = alignment_sequence(read_image(retina_path()), fps=15, size=args.size)
    qa = QualityAssessor(backend="onnxruntime", threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "align.mp4"
        w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), seq.fps, (args.size, args.size))
        for _ in range(args.repeat):
            for f in seq.frames:
                w.write(f)
        w.release()
        run(video, qa, False)  # warm-up
        rows = {"without_overlay": run(video, qa, False), "with_overlay": run(video, qa, True)}
    result = {"benchmark": "stream_fps", "command": "python benchmarks/stream_fps.py " + " ".join(sys.argv[1:]),
              "machine": stamp(), "backend": "onnxruntime", "threads": args.threads, "frame_size": args.size,
              "model": qa.manifest.name, "results": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "stream_fps.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, r in rows.items():
        print(f"{k}: {r['fps']:.1f} frames/s, total p50 {r['total']['p50']:.1f} ms p95 {r['total']['p95']:.1f} "
              f"p99 {r['total']['p99']:.1f} (decode {r['decode']['p50']:.1f}, guide {r['guide']['p50']:.1f}"
              + (f", overlay {r['overlay']['p50']:.1f}" if "overlay" in r else "") + ")")


if __name__ == "__main__":
    main()
