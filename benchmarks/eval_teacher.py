"""Evaluate the stage-1 teacher against the classical per-patch baseline on held-out photographs
with the evaluation degradations (10 kinds × 3 severities), plus real degraded photos.

    python benchmarks/eval_teacher.py [--data DIR] [--severities 1 2 3]

Writes benchmarks/results/teacher_eval.json, teacher_eval.md and teacher_examples.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluation import image_score, markdown_table, run, summarise, working_copy  # noqa: E402
from machine import stamp  # noqa: E402

from efiqa.imageio import read_image  # noqa: E402
from efiqa.synth import degrade  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402
from efiqa.train.baseline import ClassicalBaseline  # noqa: E402
from efiqa.train.data import HELD_OUT, REAL_DEGRADED, TEACHER_TRAIN, data_root, resolve, to_geometry  # noqa: E402
from efiqa.train.metrics import auroc  # noqa: E402
from efiqa.train.teacher import Teacher, pool_cells  # noqa: E402

RESULTS = HERE / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    torch.set_num_threads(2)
    root = data_root(args.data)
    teacher = Teacher.load(args.teacher)
    photos = {n: working_copy(read_image(resolve(n, root))) for n in HELD_OUT}
    base = ClassicalBaseline.load(Path(args.teacher) / "baseline.json")

    memo: dict = {}

    def teacher_out(bgr):
        """The two teacher scores share one run per image."""
        if memo.get("img") is not bgr:
            memo.update(img=bgr, out=teacher(bgr))
        return memo["out"]

    def m_base(bgr):
        p = to_geometry(bgr, 512)
        fov = cv2.resize(p.fov_mask.astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST) > 0
        return base(p), p.crop, pool_cells(np.zeros((256, 256), np.float32), fov, 16, 0.0)[2]

    methods = {
        "teacher": lambda bgr: (teacher_out(bgr).patch_fraction, teacher_out(bgr).crop, teacher_out(bgr).coverage),
        "teacher_mean": lambda bgr: (teacher_out(bgr).patch_score, teacher_out(bgr).crop, teacher_out(bgr).coverage),
        "classical": m_base,
    }
    records = run(photos, methods, severities=tuple(args.severities))
    names = list(methods)
    summary = summarise(records, names, flag_thresholds={"teacher": teacher.config["phi"],
                                                          "teacher_mean": teacher.config["mean_threshold"]})

    # real photos of visibly reduced quality vs the clean held-out ones (image level, tiny set)
    real = {}
    for n in REAL_DEGRADED:
        bgr = working_copy(read_image(resolve(n, root)))
        real[n] = {m: image_score(*_score_valid(methods[m](bgr))) for m in names}
    clean_scores = {r.photo: {m: image_score(r.scores[m], r.valid) for m in names} for r in records if r.kind == "clean"}
    summary["real_degraded"] = {
        "degraded": real, "clean": clean_scores,
        "auroc": {m: auroc(np.array([v[m] for v in real.values()] + [v[m] for v in clean_scores.values()]),
                           np.array([1] * len(real) + [0] * len(clean_scores))) for m in names},
    }
    result = {"benchmark": "teacher_eval", "command": "python benchmarks/eval_teacher.py " + " ".join(sys.argv[1:]),
              "machine": stamp(), "held_out": HELD_OUT, "teacher_train": TEACHER_TRAIN, "real_degraded": REAL_DEGRADED,
              "teacher_config": teacher.config, "severities": args.severities, "summary": summary}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "teacher_eval.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    md = markdown_table(summary, names)
    (RESULTS / "teacher_eval.md").write_text(
        f"# Teacher vs classical baseline (held-out photos, evaluation degradations)\n\n{md}\n\n"
        f"Real degraded vs clean (image-level AUROC, {len(real)} vs {len(clean_scores)} photos): "
        + ", ".join(f"{m} {v:.3f}" for m, v in summary["real_degraded"]["auroc"].items()) + "\n")
    print(md)
    print("real degraded AUROC:", summary["real_degraded"]["auroc"])
    figure(photos, teacher, RESULTS / "teacher_examples.png")


def _score_valid(out):
    scores, _, cov = out
    return scores, cov >= 0.5


def figure(photos: dict[str, np.ndarray], teacher, path: Path) -> None:
    """Rows: photo | vessel map | inpainted | teacher anomaly | patch map | ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [("blur", 3), ("haze", 3), ("underexposure", 2), ("lash_shadow", 3), ("noise", 3)]
    names = list(photos)
    fig, axes = plt.subplots(len(cases), 6, figsize=(15, 2.6 * len(cases)))
    for row, (kind, sev) in enumerate(cases):
        img = photos[names[row % len(names)]]
        d = degrade(img, find_fov(img), kind, sev, seed=row)
        t = teacher(d.image)
        sq = to_geometry(d.image, 256)
        from efiqa.synth import patch_truth

        truth = patch_truth(d.mask, t.crop, 16)
        panels = [(sq.rgb, f"{kind} (sev {sev})"), (t.vessels, "vessel map"), (t.reconstruction, "inpainted"),
                  (t.anomaly, "|x − x̂|"), (t.patch_fraction, "teacher patch map"), (truth, "ground truth")]
        for col, (im, title) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(im, cmap=None if im.ndim == 3 else ("magma" if col >= 3 else "gray"),
                      vmin=None if im.ndim == 3 else 0, vmax=None if im.ndim == 3 else (1 if col != 3 else 0.3))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
