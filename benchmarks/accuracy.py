"""Accuracy of the maps: teacher (stage 1), student (stage 2, the shipped bundle) and a classical
per-patch baseline, on held-out photographs with the evaluation degradations (10 kinds × 3
severities), plus real photos of reduced quality; vessel-extractor metrics; and the frame→map
latency of student vs teacher measured in the same run.

    python benchmarks/accuracy.py [--data DIR] [--severities 1 2 3] [--model BUNDLE --tag T]

Writes benchmarks/results/accuracy.json, accuracy.md and accuracy_examples.png (with ``--tag T``:
accuracy_T.json, …, e.g. ``--tag 512`` for a student trained with ``--size 512``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import evaluation  # noqa: E402
from evaluation import image_score, markdown_table, run, summarise  # noqa: E402
from machine import stamp  # noqa: E402

from efiqa import QualityAssessor  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.eval.synth import degrade, patch_truth  # noqa: E402
from efiqa.train import vessels as vessel_stage  # noqa: E402
from efiqa.train.baseline import ClassicalBaseline  # noqa: E402
from efiqa.train.distill import working_copy  # noqa: E402
from efiqa.train.data import HELD_OUT, REAL_DEGRADED, TEACHER_TRAIN, data_root, resolve, to_geometry  # noqa: E402
from efiqa.eval.metrics import auroc  # noqa: E402
from efiqa.train.teacher import Teacher, pool_cells  # noqa: E402

RESULTS = HERE / "results"


class Timed:
    """Wraps a method and keeps its wall times (ms)."""

    def __init__(self, fn):
        self.fn, self.ms = fn, []

    def __call__(self, bgr):
        t = time.perf_counter()
        out = self.fn(bgr)
        self.ms.append((time.perf_counter() - t) * 1e3)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--teacher", default="models/teacher")
    ap.add_argument("--model", help="student bundle (default: the shipped one)")
    ap.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--tag", help="suffix of the result files (accuracy_TAG.json …)")
    args = ap.parse_args()
    stem = "accuracy" + (f"_{args.tag}" if args.tag else "")
    torch.set_num_threads(2)
    root = data_root(args.data)
    teacher = Teacher.load(args.teacher)
    base = ClassicalBaseline.load(Path(args.teacher) / "baseline.json")
    qa = QualityAssessor(args.model, backend="onnxruntime", threads=2)
    photos = {n: working_copy(read_image(resolve(n, root))) for n in HELD_OUT}

    memo: dict = {}

    def teacher_out(bgr):
        if memo.get("img") is not bgr:
            memo.update(img=bgr, out=teacher(bgr))
        return memo["out"]

    def m_teacher(bgr):
        t = teacher_out(bgr)
        return t.patch_fraction, t.crop, t.coverage

    def m_teacher_mean(bgr):
        t = teacher_out(bgr)
        return t.patch_score, t.crop, t.coverage

    def m_classical(bgr):
        p = to_geometry(bgr, 512)
        fov = cv2.resize(p.fov_mask.astype(np.uint8), (256, 256), interpolation=cv2.INTER_NEAREST) > 0
        return base(p), p.crop, pool_cells(np.zeros((256, 256), np.float32), fov, 16, 0.0)[2]

    def m_student(bgr):
        r = qa.assess(bgr)
        return r.map, r.crop, r.coverage

    def m_vessels_only(bgr):  # the vessel map alone, no prior: low vessel density = bad (what the prior adds)
        t = teacher_out(bgr)
        return -t.vessel_density, t.crop, t.coverage

    methods = {"teacher": Timed(m_teacher), "teacher_mean": m_teacher_mean, "vessels_only": m_vessels_only,
               "classical": Timed(m_classical), "student": Timed(m_student)}
    names = list(methods)
    records = run(photos, methods, severities=tuple(args.severities))
    summary = summarise(records, names, flag_thresholds={"teacher": teacher.config["phi"],
                                                          "teacher_mean": teacher.config["mean_threshold"],
                                                          "student": qa.manifest.patch_threshold})
    summary["refused"] = list(evaluation.failures)
    # distillation: the student against the teacher's own labels
    s = np.concatenate([r.scores["student"][r.valid] for r in records])
    t = np.concatenate([r.scores["teacher"][r.valid] for r in records])
    tm = np.concatenate([r.scores["teacher_mean"][r.valid] for r in records])
    summary["distillation"] = {"auroc_vs_teacher_labels": auroc(s, t >= teacher.config["phi"]),
                               "pearson_vs_teacher": float(np.corrcoef(s, t)[0, 1]),
                               "pearson_vs_teacher_mean": float(np.corrcoef(s, tm)[0, 1])}
    summary["latency_ms_p50"] = {n: float(np.median(m.ms)) for n, m in methods.items() if isinstance(m, Timed)}
    summary["speedup_student_over_teacher"] = summary["latency_ms_p50"]["teacher"] / summary["latency_ms_p50"]["student"]

    real = {}
    for n in REAL_DEGRADED:
        bgr = working_copy(read_image(resolve(n, root)))
        real[n] = {m: image_score(sc, cov >= 0.5) for m in names for sc, _, cov in [methods[m](bgr)]}
    clean = {r.photo: {m: image_score(r.scores[m], r.valid) for m in names} for r in records if r.kind == "clean"}
    summary["real_degraded"] = {"degraded": real, "clean": clean, "auroc": {
        m: auroc(np.array([v[m] for v in real.values()] + [v[m] for v in clean.values()]),
                 np.array([1] * len(real) + [0] * len(clean))) for m in names}}
    summary["vessels"] = vessel_stage.evaluate(teacher.extractor, root)

    result = {"benchmark": "accuracy", "command": "python benchmarks/accuracy.py " + " ".join(sys.argv[1:]),
              "machine": stamp(), "held_out": HELD_OUT, "teacher_train": TEACHER_TRAIN, "real_degraded": REAL_DEGRADED,
              "teacher_config": teacher.config, "student_model": qa.manifest.name, "severities": args.severities,
              "summary": summary}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    md = markdown_table(summary, names)
    lat = summary["latency_ms_p50"]
    extra = ["Frame→map latency p50 (ms, this run): " + ", ".join(f"{k} {v:.0f}" for k, v in lat.items())]
    d = summary["distillation"]
    extra.append(f"Student vs teacher: AUROC vs teacher labels {d['auroc_vs_teacher_labels']:.3f}, "
                 f"Pearson {d['pearson_vs_teacher']:.3f} (vs its mean score {d['pearson_vs_teacher_mean']:.3f}), "
                 f"speed-up {summary['speedup_student_over_teacher']:.0f}×")
    extra.append(f"Real degraded vs clean photos (image-level AUROC, {len(real)} vs {len(clean)}): "
                 + ", ".join(f"{m} {v:.3f}" for m, v in summary["real_degraded"]["auroc"].items()))
    v = summary["vessels"]
    extra.append(f"Vessels (DRIVE 37-40, in FOV): U-Net AUROC {v['unet']['auroc']:.4f} F1 {v['unet']['best_f1']:.4f}; "
                 f"Frangi AUROC {v['frangi']['auroc']:.4f} F1 {v['frangi']['best_f1']:.4f}")
    text = "# Map accuracy on held-out photos with evaluation degradations\n\n" + md + "\n\n" + "\n\n".join(extra) + "\n"
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    # the committed figure shows the CC0 example photo only: no research-use photograph is redistributed
    from efiqa.data import retina_path

    figure({"retina (CC0)": read_image(retina_path())}, teacher, qa,
           RESULTS / f"{stem}_examples.png")


def figure(photos: dict[str, np.ndarray], teacher: Teacher, qa, path: Path) -> None:
    """Rows: photo | vessel map | expected x̂ | anomaly | teacher map | student map | truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [("blur", 3), ("haze", 3), ("underexposure", 2), ("lash_shadow", 3), ("uneven_illumination", 3), ("flare", 3)]
    names = list(photos)
    cols = 7
    fig, axes = plt.subplots(len(cases), cols, figsize=(2.3 * cols, 2.4 * len(cases)))
    for row, (kind, sev) in enumerate(cases):
        img = photos[names[(2 * row) % len(names)]]
        d = degrade(img, find_fov(img), kind, sev, seed=row)
        t = teacher(d.image)
        panels = [(to_geometry(d.image, 256).rgb, f"{kind} (severity {sev})"), (t.vessels, "visible vessels x"),
                  (t.reconstruction, "expected x̂ (anatomy+prior)"), (t.anomaly, "anomaly |x̂−x| rel."),
                  (t.patch_fraction, "teacher map")]
        panels.append((qa.assess(d.image).map, "student map"))
        panels.append((patch_truth(d.mask, t.crop, 16), "ground truth"))
        for col, (im, title) in enumerate(panels):
            ax = axes[row, col]
            if im.ndim == 3:
                ax.imshow(im)
            else:
                ax.imshow(im, cmap="gray" if col < 3 else "magma", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


if __name__ == "__main__":
    main()
