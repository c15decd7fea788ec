"""Which held-out clean photos carry a student's clean false-positive rate, and is it where the
photo's frame clips the FOV circle?

``accuracy.py`` reports one clean false-positive rate over the held-out photos (the share of their
cells, FOV coverage ≥ 0.5, at or above the bundle's patch threshold). This splits it by photo, and
recomputes it without the cells next to a frame clip (cells where the FOV disc runs out of the
photo's frame, as HRF's and some EyePACS photos' do, and their 8 neighbours): if the rate fell
there, a clipped FOV, not the photo, would be what the student flags. Cells count where the
student's own coverage is ≥ 0.5; ``accuracy.py`` counts those its first method (the teacher)
covers, so its pooled rate differs a little (shipped: 0.043 there).

    python benchmarks/clean_fpr_photos.py [--data DIR] NAME=BUNDLE ...

Default: the shipped bundle only. The rejected candidates' bundles are rebuilt from branches
``teacher-v37`` / ``teacher-v37b`` (their ``accuracy_teacher37*.json`` ``selection`` records say how).
Writes benchmarks/results/clean_fpr_photos.json / .md.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import stamp  # noqa: E402

from efiqa import QualityAssessor  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.result import MIN_COVERAGE, _geometry, _key  # noqa: E402
from efiqa.train.data import HELD_OUT, data_root, resolve  # noqa: E402
from efiqa.train.distill import working_copy  # noqa: E402


def near_clip(fov, crop, image_shape: tuple[int, int], coverage: np.ndarray) -> np.ndarray:
    """Cells where the FOV disc reaches out of the photo's frame (its coverage with the frame
    ignored exceeds the reported coverage by > 0.05), and their 8 neighbours."""
    key = list(_key(fov, crop, image_shape))
    key[4:] = [-10 ** 6, -10 ** 6, 10 ** 6, 10 ** 6]  # a frame far outside the disc
    disc = _geometry(coverage.shape[0], tuple(key))[0]
    clipped = (disc - coverage) > 0.05
    return cv2.dilate(clipped.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("bundles", nargs="*", metavar="NAME=BUNDLE", default=["shipped=models/default"])
    args = ap.parse_args()
    root = data_root(args.data)
    photos = {n: working_copy(read_image(resolve(n, root))) for n in HELD_OUT}
    rows = {}
    for spec in args.bundles:
        name, _, bundle = spec.partition("=")
        qa = QualityAssessor(bundle, backend="onnxruntime", threads=2)
        per, flagged, away = {}, [], []
        for n, bgr in photos.items():
            r = qa.assess(bgr)
            valid = r.coverage >= MIN_COVERAGE
            near = near_clip(r.fov, r.crop, bgr.shape[:2], r.coverage)
            hit = r.flagged  # the SDK's flags: at or above the patch threshold, coverage >= MIN_COVERAGE
            flagged.append(hit[valid])
            away.append(hit[valid & ~near])
            per[n] = {"cells": int(valid.sum()), "clean_fpr": float(hit[valid].mean()),
                      "cells_near_clip": int((valid & near).sum()),
                      "clean_fpr_away_from_clip": float(hit[valid & ~near].mean()) if (valid & ~near).any() else None}
        rows[name] = {"bundle": bundle, "patch_threshold": r.patch_threshold,
                      "clean_fpr": float(np.concatenate(flagged).mean()),
                      "clean_fpr_away_from_clip": float(np.concatenate(away).mean()), "per_photo": per}
        print(name, {k: v for k, v in rows[name].items() if k != "per_photo"}, flush=True)
    command = shlex.join(["python", "benchmarks/clean_fpr_photos.py", *sys.argv[1:]])
    out = {"benchmark": "clean_fpr_photos", "command": command, "machine": stamp(), "held_out": list(HELD_OUT),
           "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "clean_fpr_photos.json").write_text(json.dumps(out, indent=2) + "\n")
    names = list(rows)
    md = ["# Clean false-positive rate by held-out photo", "",
          f"Share of each clean held-out photo's cells (FOV coverage ≥ {MIN_COVERAGE}) at or above the bundle's patch "
          f"threshold; in brackets, without the cells next to a frame clip. Command: `{command}`.", "",
          "| photo | cells (near a clip) | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
    for n in HELD_OUT:
        first = rows[names[0]]["per_photo"][n]
        md.append(f"| {n} | {first['cells']} ({first['cells_near_clip']}) | " + " | ".join(
            f"{fmt(rows[m]['per_photo'][n]['clean_fpr'])} ({fmt(rows[m]['per_photo'][n]['clean_fpr_away_from_clip'])})"
            for m in names) + " |")
    md.append("| **all** | | " + " | ".join(f"**{rows[m]['clean_fpr']:.4f}** ({rows[m]['clean_fpr_away_from_clip']:.4f})"
                                         for m in names) + " |")
    md += ["", "Bundles: " + "; ".join(f"{m}: `{rows[m]['bundle']}` (patch threshold {rows[m]['patch_threshold']:.3f})"
                                      for m in names) + "."]
    (HERE / "results" / "clean_fpr_photos.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
