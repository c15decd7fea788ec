"""Accuracy of the maps: teacher (stage 1), student (stage 2, the shipped bundle) and two classical
per-patch baselines, on held-out photographs with two independent evaluation generators — ``synth``
(:mod:`efiqa.eval.synth`, 10 kinds) and ``soft`` (:mod:`efiqa.eval.soft_regions`, soft-edged regions,
7 kinds) — × 3 severities; real photos (reduced-quality EyePACS vs the clean held-out ones, DRIMDB-dev
Bad vs Good, HRF healthy / DR / glaucoma); vessel-extractor metrics; and the frame→map latency of
student vs teacher measured in the same run.

    python benchmarks/accuracy.py [--data DIR] [--generators synth soft] [--severities 1 2 3] [--photos N]
                                  [--no-teacher-real] [--model BUNDLE --tag T] [--previous BUNDLE]

Methods: ``teacher`` (share of anomalous pixels per cell), ``student``, ``classical`` (the baseline
fitted to clean training photos, :mod:`efiqa.train.baseline`), ``patch_classical`` (a fixed rule
against the photo's own cells, :mod:`efiqa.eval.patch_baseline`); for ``synth`` only, the diagnostic
``teacher_mean`` and ``vessels_only``.

Writes benchmarks/results/accuracy.json, accuracy.md and accuracy_examples.png (with ``--tag T``:
accuracy_T.json, …, e.g. ``--tag 512`` for a student trained with ``--size 512``). The JSON holds
``summary[GENERATOR]`` (per kind, per severity, per kind × severity, overall, ranking, clean FPR,
refused, distillation) beside the generator-free ``latency_ms_p50``, ``real_degraded``, ``drimdb``,
``hrf`` (with ``--previous``, ``hrf_previous`` beside it) and ``vessels``.
"""
from __future__ import annotations

import argparse
import csv
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
from evaluation import GENERATORS, fmt, image_score, markdown_table, run, severity_table, side_by_side, summarise  # noqa: E402
from machine import stamp  # noqa: E402

from efiqa import QualityAssessor  # noqa: E402
from efiqa.errors import EfiqaError  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.result import MIN_COVERAGE  # noqa: E402
from efiqa.eval.patch_baseline import patch_classical  # noqa: E402
from efiqa.eval.synth import degrade, patch_truth  # noqa: E402
from efiqa.train import vessels as vessel_stage  # noqa: E402
from efiqa.train.baseline import ClassicalBaseline  # noqa: E402
from efiqa.train.distill import working_copy  # noqa: E402
from efiqa.train.data import (HELD_OUT, REAL_DEGRADED, data_root, resolve, to_geometry,  # noqa: E402
                              training_pool)
from efiqa.eval.metrics import auroc  # noqa: E402
from efiqa.train.teacher import Teacher, pool_cells  # noqa: E402

RESULTS = HERE / "results"
#: the four methods scored on every generator; the diagnostic two only on synth
MAIN_METHODS = ["teacher", "classical", "patch_classical", "student"]
DIAGNOSTIC = {"synth": ["teacher_mean", "vessels_only"]}
HRF_GROUPS = {"h": "healthy", "dr": "diabetic retinopathy", "g": "glaucoma"}


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
    ap.add_argument("--generators", nargs="+", choices=list(GENERATORS), default=list(GENERATORS),
                    help="evaluation generators to run (default: all)")
    ap.add_argument("--severities", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--photos", type=int, help="only the first N held-out photos (quick runs)")
    ap.add_argument("--no-teacher-real", action="store_true",
                    help="skip the teacher on DRIMDB-dev (its slowest section)")
    ap.add_argument("--previous", metavar="BUNDLE",
                    help="a previous student bundle, scored beside the current one as student_previous")
    ap.add_argument("--tag", help="suffix of the result files (accuracy_TAG.json …)")
    args = ap.parse_args()
    stem = "accuracy" + (f"_{args.tag}" if args.tag else "")
    generators = list(dict.fromkeys(args.generators))
    torch.set_num_threads(2)
    root = data_root(args.data)
    teacher = Teacher.load(args.teacher)
    base = ClassicalBaseline.load(Path(args.teacher) / "baseline.json")
    qa = QualityAssessor(args.model, backend="onnxruntime", threads=2)
    held = HELD_OUT[:args.photos] if args.photos else HELD_OUT
    photos = {n: working_copy(read_image(resolve(n, root))) for n in held}

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

    def assessed(assessor: QualityAssessor):
        def method(bgr):
            r = assessor.assess(bgr)
            return r.map, r.crop, r.coverage
        return method

    prev = QualityAssessor(args.previous, backend="onnxruntime", threads=2) if args.previous else None

    def m_vessels_only(bgr):  # the vessel map alone, no prior: low vessel density = bad (what the prior adds)
        t = teacher_out(bgr)
        return -t.vessel_density, t.crop, t.coverage

    every = {"teacher": Timed(m_teacher), "teacher_mean": m_teacher_mean, "vessels_only": m_vessels_only,
             "classical": Timed(m_classical), "patch_classical": Timed(patch_classical), "student": Timed(assessed(qa))}
    thresholds = {"teacher": teacher.config["phi"], "teacher_mean": teacher.config["mean_threshold"],
                  "student": qa.manifest.patch_threshold}
    if prev:
        every["student_previous"] = assessed(prev)
        thresholds["student_previous"] = prev.manifest.patch_threshold

    summary: dict = {}
    clean: dict[str, dict[str, float]] = {}   # clean photo → method → image score (the same under every generator)
    all_names: list[str] = []
    for gen in generators:
        # teacher first: the first method's crop and coverage define the truth and the cells that count
        names = [m for m in every if m in MAIN_METHODS + ["student_previous"] or m in DIAGNOSTIC.get(gen, [])]
        all_names += [m for m in names if m not in all_names]
        records = run(photos, {m: every[m] for m in names}, severities=tuple(args.severities), generator=gen)
        g = summarise(records, names, flag_thresholds={m: v for m, v in thresholds.items() if m in names})
        g["refused"] = list(evaluation.failures)
        g["methods"] = names
        g["kinds"] = list(GENERATORS[gen][1])
        g["distillation"] = distillation(records, teacher.config["phi"])
        summary[gen] = g
        for r in records:
            if r.kind == "clean":
                clean.setdefault(r.photo, {}).update({m: image_score(r.scores[m], r.valid) for m in names})
    summary["latency_ms_p50"] = {n: float(np.median(m.ms)) for n, m in every.items() if isinstance(m, Timed) and m.ms}
    summary["speedup_student_over_teacher"] = summary["latency_ms_p50"]["teacher"] / summary["latency_ms_p50"]["student"]

    real: dict[str, dict[str, float]] = {}
    for n in REAL_DEGRADED:
        bgr = working_copy(read_image(resolve(n, root)))
        for m in all_names:
            try:
                sc, _, cov = every[m](bgr)
                real.setdefault(n, {})[m] = image_score(sc, cov >= 0.5)
            except EfiqaError:  # refused: ranked worst, as in the DRIMDB section
                real.setdefault(n, {})[m] = float("inf")
    summary["real_degraded"] = {"degraded": real, "clean": clean, "auroc": {
        m: auroc(np.array([v[m] for v in real.values()] + [v[m] for v in clean.values()]),
                 np.array([1] * len(real) + [0] * len(clean))) for m in all_names}}
    summary["drimdb"] = drimdb(root, qa, None if args.no_teacher_real else teacher)
    summary["hrf"] = hrf(root, qa)
    if prev:  # in the same run: a ship gate compares with these, not with a file the ship overwrites
        summary["hrf_previous"] = hrf(root, prev)
    summary["vessels"] = vessel_stage.evaluate(teacher.extractor, root)

    result = {"benchmark": "accuracy", "command": "python benchmarks/accuracy.py " + " ".join(sys.argv[1:]),
              "machine": stamp(), "held_out": held, "training_pool": training_pool(root), "real_degraded": REAL_DEGRADED,
              "teacher_config": teacher.config, "student_model": qa.manifest.name,
              "student_onnx_sha256": qa.bundle.manifest.onnx_sha256,
              "previous_model": str(args.previous) if prev else None,
              "previous_onnx_sha256": prev.bundle.manifest.onnx_sha256 if prev else None, "severities": args.severities,
              "generators": generators, "summary": summary}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    text = render(summary, generators, all_names, len(photos))
    (RESULTS / f"{stem}.md").write_text(text)
    print(text)
    # the committed figure shows the CC0 example photo only: no research-use photograph is redistributed
    from efiqa.data import retina_path

    figure({"retina (CC0)": read_image(retina_path())}, teacher, qa,
           RESULTS / f"{stem}_examples.png")


def distillation(records: list, phi: float) -> dict:
    """The student against the teacher's own labels (and its mean score, where it was run)."""
    if not records:
        return {"auroc_vs_teacher_labels": float("nan"), "pearson_vs_teacher": float("nan")}
    s = np.concatenate([r.scores["student"][r.valid] for r in records])
    t = np.concatenate([r.scores["teacher"][r.valid] for r in records])
    out = {"auroc_vs_teacher_labels": auroc(s, t >= phi), "pearson_vs_teacher": float(np.corrcoef(s, t)[0, 1])}
    if all("teacher_mean" in r.scores for r in records):
        tm = np.concatenate([r.scores["teacher_mean"][r.valid] for r in records])
        out["pearson_vs_teacher_mean"] = float(np.corrcoef(s, tm)[0, 1])
    return out


def drimdb(root: Path, qa: QualityAssessor, teacher: Teacher | None) -> dict:
    """DRIMDB-dev image AUROC Bad vs Good (Outliers excluded; the dataset's labels, checking only).

    Image scores, higher = worse: the student's ``result.score`` (the shipped pipeline on the file),
    the teacher's mean patch_fraction and patch_classical's mean cell score over cells with FOV
    coverage ≥ 0.5. A photo a method refuses (not a fundus photo to it) is ranked worst."""
    folder = root / "DRIMDB-dev"
    if not (folder / "labels.csv").is_file():
        return {"skipped": f"{folder} not found"}
    with open(folder / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in ("Good", "Bad")]

    def m_student(path, bgr):
        return qa.assess(path).score

    def m_teacher(path, bgr):
        t = teacher(bgr)
        return image_score(t.patch_fraction, t.coverage >= 0.5)

    def m_patch(path, bgr):
        sc, _, cov = patch_classical(bgr)
        return image_score(sc, cov >= 0.5)

    methods = {"student": m_student, "patch_classical": m_patch}
    if teacher is not None:
        methods["teacher"] = m_teacher
    scores = {m: {"Good": [], "Bad": []} for m in methods}
    refused: dict[str, list[str]] = {m: [] for m in methods}
    from tqdm import tqdm

    for row in tqdm(rows, desc="DRIMDB-dev"):
        path = folder / row["image"]
        bgr = working_copy(read_image(path))
        for m, fn in methods.items():
            try:
                v = fn(path, bgr)
            except EfiqaError:
                refused[m].append(row["image"])
                v = float("inf")
            scores[m][row["label"]].append(float(v))
    out = {"n": {lab: sum(r["label"] == lab for r in rows) for lab in ("Good", "Bad")},
           # refused photos score +inf: ranked worst; ties count half (rank-based AUROC)
           "auroc_bad_vs_good": {m: auroc(np.array(s["Bad"] + s["Good"]), np.array([1] * len(s["Bad"]) + [0] * len(s["Good"])))
                                 for m, s in scores.items()},
           "refused": refused,
           "mean_score": {m: {lab: (float(np.mean([v for v in s[lab] if np.isfinite(v)]))
                                    if any(np.isfinite(v) for v in s[lab]) else None) for lab in s}
                          for m, s in scores.items()}}
    if teacher is None:
        out["teacher"] = "skipped (--no-teacher-real)"
    return out


def hrf(root: Path, qa: QualityAssessor) -> dict:
    """HRF healthy / DR / glaucoma: per group the share the student calls ungradable and the mean share of
    in-FOV patches at or above the manifest's patch threshold; 01 and 02 are in the training pool, 03 held out."""
    folder = root / "HRF" / "images"
    if not folder.is_dir():
        return {"skipped": f"{folder} not found"}
    pool = set(training_pool(root))
    photos, groups = {}, {}
    for p in sorted(folder.glob("0?_*.*")):
        code = p.stem.split("_", 1)[1].lower()
        if code not in HRF_GROUPS:
            continue
        name = str(p.relative_to(root))
        try:
            r = qa.assess(p)
        except EfiqaError as err:
            photos[name] = {"group": code, "in_training_pool": name in pool, "refused": err.message}
            continue
        valid = r.coverage >= MIN_COVERAGE
        photos[name] = {"group": code, "in_training_pool": name in pool, "gradable": bool(r.gradable),
                        "score": float(r.score), "flagged_share": float(r.flagged[valid].mean()) if valid.any() else None}
    for code, label in HRF_GROUPS.items():
        rows = [v for v in photos.values() if v["group"] == code]
        scored = [v for v in rows if "gradable" in v]
        groups[code] = {"label": label, "n": len(rows), "refused": len(rows) - len(scored),
                        "ungradable_share": (float(np.mean([not v["gradable"] for v in scored])) if scored else None),
                        "mean_flagged_share": (float(np.mean([v["flagged_share"] for v in scored])) if scored else None),
                        "mean_score": float(np.mean([v["score"] for v in scored])) if scored else None}
    return {"patch_threshold": qa.manifest.patch_threshold, "gradable_threshold": qa.threshold,
            "groups": groups, "photos": photos}


def render(summary: dict, generators: list[str], names: list[str], n_photos: int) -> str:
    """accuracy.md: the generators side by side, then each generator's tables, then real photos."""
    about = {"synth": "efiqa.eval.synth: blob and band masks, 10 kinds",
             "soft": "efiqa.eval.soft_regions: soft-edged Gaussian-bump / eyelid / glow regions, 7 kinds"}
    out = ["# Map accuracy on held-out photos with evaluation degradations", "",
           f"{n_photos} held-out photos; generators: " + "; ".join(f"`{g}` ({about.get(g, g)})" for g in generators)
           + ". Patch AUROC and best Dice over cells with FOV coverage ≥ 0.5; ranking = share of degraded copies "
           "whose image score exceeds their clean photo's; clean FPR = share of clean photos' cells at or above "
           "the method's own flag threshold (— : the method has none); flagged = share of degraded cells at or "
           "above that same threshold.", "",
           "## Generators side by side (overall)", "", side_by_side({g: summary[g] for g in generators}, names), ""]
    for g in generators:
        s = summary[g]
        out += [f"## Generator `{g}`: per kind", "", markdown_table(s, s["methods"]), "",
                f"### Generator `{g}`: patch AUROC per kind × severity", "", severity_table(s, s["methods"]), ""]
        if s["refused"]:
            out += [f"Refused ({len(s['refused'])}): " + "; ".join(
                f"{r['photo']} {r['kind']} {r['severity']}" for r in s["refused"]), ""]
        d = s["distillation"]
        out.append(f"Student vs teacher (`{g}`): AUROC vs teacher labels {fmt(d['auroc_vs_teacher_labels'])}, "
                   f"Pearson {fmt(d['pearson_vs_teacher'])}"
                   + (f" (vs its mean score {fmt(d['pearson_vs_teacher_mean'])})" if "pearson_vs_teacher_mean" in d else "")
                   + ".")
        out.append("")
    lat = summary["latency_ms_p50"]
    out += ["Frame→map latency p50 (ms, this run): " + ", ".join(f"{k} {v:.0f}" for k, v in lat.items())
            + f"; student speed-up over the teacher {summary['speedup_student_over_teacher']:.0f}×", ""]
    rd = summary["real_degraded"]
    out += ["## Real photographs", "",
            f"Real degraded EyePACS vs the clean held-out photos (image-level AUROC, {len(rd['degraded'])} vs "
            f"{len(rd['clean'])}): " + ", ".join(f"{m} {fmt(v)}" for m, v in rd["auroc"].items()), ""]
    dr = summary["drimdb"]
    if "skipped" in dr:
        out += [f"DRIMDB-dev: {dr['skipped']}", ""]
    else:
        out += [f"DRIMDB-dev, image AUROC Bad vs Good ({dr['n']['Bad']} vs {dr['n']['Good']}, Outliers excluded; "
                "refused photos ranked worst):", "",
                "| method | AUROC | refused | mean score Good | mean score Bad |", "|---|---|---|---|---|"]
        out += [f"| {m} | {fmt(a)} | {len(dr['refused'][m])} | {fmt(dr['mean_score'][m]['Good'])} | "
                f"{fmt(dr['mean_score'][m]['Bad'])} |" for m, a in dr["auroc_bad_vs_good"].items()]
        if "teacher" in dr:
            out.append(f"| teacher | {dr['teacher']} | | | |")
        out.append("")
    h = summary["hrf"]
    if "skipped" in h:
        out += [f"HRF: {h['skipped']}", ""]
    else:
        out += [f"HRF, student (patch threshold {h['patch_threshold']:.3f}, gradable below {h['gradable_threshold']:.3f}); "
                "01 and 02 are in the training pool, 03 is held out:", "",
                "| group | n | refused | ungradable | mean share of flagged patches | mean score |", "|---|---|---|---|---|---|"]
        out += [f"| {g['label']} | {g['n']} | {g['refused']} | {fmt(g['ungradable_share'])} | "
                f"{fmt(g['mean_flagged_share'])} | {fmt(g['mean_score'])} |" for g in h["groups"].values()]
        hp = summary.get("hrf_previous")
        if hp and "skipped" not in hp:
            out += ["", f"The previous student in the same run (patch threshold {hp['patch_threshold']:.3f}), mean share "
                    "of flagged patches: " + ", ".join(f"{g['label']} {fmt(g['mean_flagged_share'])}"
                                                      for g in hp["groups"].values())]
        out += ["", "| photo | training pool | gradable | flagged share | score |", "|---|---|---|---|---|"]
        out += [f"| {n} | {'yes' if v['in_training_pool'] else 'held out'} | "
                + (f"refused: {v['refused']} | | |" if "refused" in v else
                   f"{'yes' if v['gradable'] else 'no'} | {fmt(v['flagged_share'])} | {fmt(v['score'])} |")
                for n, v in h["photos"].items()]
        out.append("")
    v = summary["vessels"]
    out.append(f"Vessels (DRIVE 37-40, in FOV): U-Net AUROC {v['unet']['auroc']:.4f} F1 {v['unet']['best_f1']:.4f}; "
               f"Frangi AUROC {v['frangi']['auroc']:.4f} F1 {v['frangi']['best_f1']:.4f}")
    return "\n".join(out) + "\n"


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
        fov = find_fov(img)
        d = degrade(img, fov, kind, sev, seed=row)
        t = teacher(d.image)
        panels = [(to_geometry(d.image, 256).rgb, f"{kind} (severity {sev})"), (t.vessels, "visible vessels x"),
                  (t.reconstruction, "expected x̂ (anatomy+prior)"), (t.anomaly, "anomaly |x̂−x| rel."),
                  (t.patch_fraction, "teacher map")]
        panels.append((qa.assess(d.image).map, "student map"))
        panels.append((patch_truth(d.mask, t.crop, 16, fov=fov), "ground truth"))
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
