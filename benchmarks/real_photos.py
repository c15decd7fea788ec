"""Real photographs: does every fundus photo get a verdict and a reason, and is every non-fundus
picture refused (or at least scored ungradable)?

* DRIMDB-dev (Good / Bad / Outlier, the dataset's own labels; checking only, never training):
  refused (NotFundusError), scored ungradable, mean score, reason counts, FOV sources, image-level
  AUROC Bad-vs-Good (score; refused photos ranked worst), verdicts correct.
* The unlabelled cameras of the training pool (IDRiD, REFUGE, SCES; no quality labels: every IDRiD
  photo shows diabetic retinopathy), per camera.
* The other development photos (DRIVE, HRF, EyePACS) and preprocessed variants of them and of the
  DRIMDB-dev Good/Bad photos (:data:`efiqa.eval.synth.PREPROCESSINGS`: CLAHE, Graham-style background
  subtraction with and without its 0.9 r mask, 256-px thumbnails, ``img·0.08``, cropped to the FOV);
  photos over 1600 px are reduced to 1600 px on their long side first.
* Non-fundus pictures: scikit-image's natural photos, text pages, faces, coins, uniform grey, white
  and black frames; and the files a fundus dataset ships beside its photos (DRIVE's FOV masks and
  manual vessel maps).

    python benchmarks/real_photos.py [--data DIR] [--model BUNDLE --tag T]

Writes benchmarks/results/real_photos.json and .md (with ``--tag T``: real_photos_T.json and .md,
e.g. for a candidate bundle checked before it ships).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

from efiqa import QualityAssessor  # noqa: E402
from efiqa.errors import NotFundusError  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402
from efiqa.imageio import IMAGE_SUFFIXES, at_most, read_image, to_bgr8  # noqa: E402
from efiqa.eval.synth import PREPROCESSINGS, preprocessed  # noqa: E402
from efiqa.train.data import UNLABELLED, data_root, training_pool  # noqa: E402

RESULTS = HERE / "results"
MAX_SIDE = 1600
NATURAL = ["astronaut", "chelsea", "coffee", "rocket", "camera", "moon", "page", "immunohistochemistry",
           "hubble_deep_field", "coins", "text", "brick", "grass", "gravel", "cat", "retina_not"]


def auroc(pos: list[float], neg: list[float]) -> float | None:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    if not pos or not neg:
        return None
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


class Tally:
    """Per-group counts: refused, ungradable, scores, reasons, FOV sources."""

    def __init__(self) -> None:
        self.n = 0
        self.refused: list[str] = []
        self.ungradable = 0
        self.scores: list[float] = []
        self.reasons: Counter = Counter()
        self.sources: Counter = Counter()

    def add(self, qa: QualityAssessor, image, name: str) -> tuple[float | None, bool]:
        """(score or None if refused, gradable)."""
        self.n += 1
        try:
            res = qa.assess(image)
        except NotFundusError as err:
            self.refused.append(f"{name}: {err.message}")
            return None, False
        self.ungradable += not res.gradable
        self.scores.append(res.score)
        self.reasons.update({r.code for r in res.reasons})
        self.sources[res.fov.source] += 1
        return res.score, res.gradable

    def to_dict(self) -> dict:
        return {"n": self.n, "refused": len(self.refused), "ungradable": self.ungradable,
                "gradable": self.n - len(self.refused) - self.ungradable,
                "mean_score": round(float(np.mean(self.scores)), 4) if self.scores else None,
                "score_range": [round(float(min(self.scores)), 4), round(float(max(self.scores)), 4)] if self.scores else None,
                "reasons": dict(self.reasons.most_common()), "fov_source": dict(self.sources),
                "refused_photos": self.refused}


def _range(d: dict) -> str:
    return "—" if not d.get("score_range") else f"{d['score_range'][0]:.3f}–{d['score_range'][1]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="fundus photographs (default: EFIQA_DATA or ../shared/data/fundus)")
    ap.add_argument("--model", help="student bundle (default: the shipped one)")
    ap.add_argument("--tag", help="suffix of the result files (real_photos_TAG.json, .md)")
    args = ap.parse_args()
    from tqdm import tqdm

    root = data_root(args.data)
    qa = QualityAssessor(args.model, threads=2)
    out: dict = {"benchmark": "real_photos", "command": "python benchmarks/real_photos.py " + " ".join(sys.argv[1:]),
                 "machine": stamp(), "model": args.model or "models/default",
                 "onnx_sha256": qa.bundle.manifest.onnx_sha256, "threshold": qa.threshold}

    # --- DRIMDB-dev, as published -------------------------------------------------------------
    drimdb = root / "DRIMDB-dev"
    rows = list(csv.DictReader(open(drimdb / "labels.csv")))
    per_label = {lab: Tally() for lab in ("Good", "Bad", "Outlier")}
    scores: dict[str, list[float]] = {"Good": [], "Bad": []}
    correct = Counter()
    for row in tqdm(rows, desc="DRIMDB-dev"):
        lab = row["label"]
        s, gradable = per_label[lab].add(qa, drimdb / row["image"], row["image"])
        if lab in scores:
            scores[lab].append(np.inf if s is None else s)  # refused: ranked worst
        correct[lab] += gradable if lab == "Good" else not gradable
    out["drimdb"] = {lab: t.to_dict() for lab, t in per_label.items()}
    out["drimdb_auroc_bad_vs_good"] = auroc(scores["Bad"], scores["Good"])
    out["drimdb_verdicts_correct"] = {lab: f"{correct[lab]}/{per_label[lab].n}" for lab in per_label}
    out["drimdb_verdict_accuracy"] = sum(correct.values()) / len(rows)

    # --- the unlabelled cameras of the training pool --------------------------------------------
    cameras: dict[str, Tally] = {}
    for name in tqdm([n for n in training_pool(root) if Path(n).parts[0] == UNLABELLED], desc="unlabelled cameras"):
        cameras.setdefault(Path(name).parts[1], Tally()).add(qa, at_most(read_image(root / name), MAX_SIDE), name)
    out["unlabelled_cameras"] = {k: t.to_dict() for k, t in cameras.items()}

    # --- other development photos and preprocessed variants ------------------------------------
    others = sorted(root.rglob("images/*"))
    plain = Tally()
    variants = {k: Tally() for k in PREPROCESSINGS}
    drimdb_variants = {k: {"Good": Tally(), "Bad": Tally()} for k in PREPROCESSINGS}
    variant_scores = {k: {"Good": [], "Bad": []} for k in PREPROCESSINGS}
    for p in tqdm(others, desc="dev photos"):
        name = str(p.relative_to(root))
        img = at_most(read_image(p), MAX_SIDE)
        plain.add(qa, img, name)
        ref = find_fov(img, name)
        for kind in PREPROCESSINGS:
            variants[kind].add(qa, preprocessed(img, ref, kind), f"{name} [{kind}]")
    for row in tqdm([r for r in rows if r["label"] != "Outlier"], desc="DRIMDB variants"):
        img = read_image(drimdb / row["image"])
        ref = find_fov(img, row["image"])
        for kind in PREPROCESSINGS:
            s, _ = drimdb_variants[kind][row["label"]].add(qa, preprocessed(img, ref, kind), f"{row['image']} [{kind}]")
            variant_scores[kind][row["label"]].append(np.inf if s is None else s)
    out["dev_photos"] = plain.to_dict()
    out["dev_variants"] = {k: t.to_dict() for k, t in variants.items()}
    out["drimdb_variants"] = {k: {lab: t.to_dict() for lab, t in v.items()} for k, v in drimdb_variants.items()}
    out["drimdb_variants_auroc_bad_vs_good"] = {k: auroc(v["Bad"], v["Good"]) for k, v in variant_scores.items()}

    # --- pictures that are not fundus photographs -----------------------------------------------
    import skimage.data as skdata

    non = {}
    pictures = {n: to_bgr8(getattr(skdata, n)(), color="rgb") for n in NATURAL if hasattr(skdata, n)}
    pictures.update({"uniform_grey": np.full((480, 640, 3), 128, np.uint8),
                     "uniform_white": np.full((480, 640, 3), 255, np.uint8),
                     "black": np.zeros((480, 640, 3), np.uint8)})
    for name, img in pictures.items():
        try:
            res = qa.assess(img)
            non[name] = "ungradable" if not res.gradable else f"ACCEPTED gradable (score {res.score:.3f})"
        except NotFundusError as err:
            non[name] = f"refused: {err.message}"
    out["non_fundus"] = non
    shipped_beside = {}
    for label, pattern in (("DRIVE FOV masks", "DRIVE/training/mask/*"), ("DRIVE manual vessel maps", "DRIVE/training/1st_manual/*")):
        t = Tally()
        for p in sorted(f for f in root.glob(pattern) if f.suffix.lower() in IMAGE_SUFFIXES):
            t.add(qa, read_image(p), str(p.relative_to(root)))
        if not t.n:
            continue
        shipped_beside[label] = {"n": t.n, "refused": len(t.refused), "ungradable": t.ungradable,
                                 "messages": dict(Counter(m.split(": ", 1)[1] for m in t.refused))}
    out["dataset_files_not_photos"] = shipped_beside
    out["non_fundus_summary"] = {"n": len(non), "refused": sum(v.startswith("refused") for v in non.values()),
                                 "ungradable": sum(v == "ungradable" for v in non.values())}

    RESULTS.mkdir(exist_ok=True)
    stem = f"real_photos_{args.tag}" if args.tag else "real_photos"
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    md = render(out)
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)


def _reasons(d: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in d["reasons"].items()) or "—"


def render(out: dict) -> str:
    """The Markdown report."""
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["# Real photographs: refusals, verdicts and reasons", "",
             f"Gradable threshold {out['threshold']:.3f} (score below it: gradable; a decisive reason vetoes).", "",
             "## DRIMDB-dev (dataset's labels; checking only)", "",
             "| label | n | refused | scored ungradable | gradable | mean score | score range | verdicts correct | reasons |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lab, d in out["drimdb"].items():
        lines.append(f"| {lab} | {d['n']} | {d['refused']} | {d['ungradable']} | {d['gradable']} | "
                     f"{fmt(d['mean_score'])} | {_range(d)} | {out['drimdb_verdicts_correct'][lab]} | {_reasons(d)} |")
    lines += ["", f"Image AUROC Bad vs Good (score; refused ranked worst): **{fmt(out['drimdb_auroc_bad_vs_good'])}**; "
              f"verdicts correct (Good gradable; Bad and Outlier refused or ungradable): "
              f"**{out['drimdb_verdict_accuracy']:.1%}**.", "",
              "## Unlabelled cameras of the training pool (no quality labels)", "",
              "Photos the adapter was distilled from (teacher labels, never quality labels); none is known to be "
              "bad, none was graded. IDRiD's are from its lesion-segmentation subset (every photo shows diabetic "
              "retinopathy; Kowa VX-10α): where one is called ungradable, suspect a false alarm (pathology or "
              "this camera read as poor quality), not a defect found.", "",
              "| camera | n | refused | ungradable | mean score | score range | reasons |", "|---|---|---|---|---|---|---|"]
    for cam, d in out.get("unlabelled_cameras", {}).items():
        lines.append(f"| {cam} | {d['n']} | {d['refused']} | {d['ungradable']} | {fmt(d['mean_score'])} | {_range(d)} | "
                     f"{_reasons(d)} |")
    lines += ["", "## Other development photos (DRIVE, HRF, EyePACS) and preprocessed variants", "",
              "| input | n | refused | ungradable | mean score | reasons |", "|---|---|---|---|---|---|"]
    d = out["dev_photos"]
    lines.append(f"| as published | {d['n']} | {d['refused']} | {d['ungradable']} | {fmt(d['mean_score'])} | {_reasons(d)} |")
    for k, d in out["dev_variants"].items():
        lines.append(f"| {k} | {d['n']} | {d['refused']} | {d['ungradable']} | {fmt(d['mean_score'])} | {_reasons(d)} |")
    lines += ["", "## Preprocessed DRIMDB-dev Good / Bad", "",
              "| variant | Good refused | Good ungradable | Bad refused | Bad ungradable | AUROC Bad vs Good |",
              "|---|---|---|---|---|---|"]
    for k, v in out["drimdb_variants"].items():
        lines.append(f"| {k} | {v['Good']['refused']}/{v['Good']['n']} | {v['Good']['ungradable']} | "
                     f"{v['Bad']['refused']}/{v['Bad']['n']} | {v['Bad']['ungradable']} | "
                     f"{fmt(out['drimdb_variants_auroc_bad_vs_good'][k])} |")
    s = out["non_fundus_summary"]
    lines += ["", "## Not fundus photographs", "",
              f"{s['refused']} of {s['n']} refused, {s['ungradable']} scored ungradable.", ""]
    lines += [f"* {k}: {v}" for k, v in out["non_fundus"].items()]
    lines += ["", "Files a dataset ships beside its photos:", ""]
    lines += [f"* {k}: {v['refused']} of {v['n']} refused, {v['ungradable']} scored ungradable"
              + "".join(f"; {m} ({c})" for m, c in v["messages"].items())
              for k, v in out.get("dataset_files_not_photos", {}).items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
