"""How the teacher rules' noise measures respond to contrast enhancement and to speckle.

Teacher v3.7c's noise term (the fine residual |green − its 3×3 median| against the clean pool's,
``teacher_rules.noise_level``) read CLAHE'd photos as noisy. This measures, at the teacher's 512-px
geometry:

* on 16 training-pool photos (every other non-IDRiD photo, then 4 IDRiD ones), the absolute and
  the relative level (``teacher_rules.relative_noise_level``: the residual over the photo's own
  contrast scale) of each photo altered, over the same photo as it is: CLAHE (clip 2, 8 tiles; clip
  4, 16 tiles), unsharp masks (amount 1, radius 5/1000 of the frame; 1.5, 10/1000), Gaussian
  speckle (σ 8, 20, 35 grey levels), blur, JPEG 10 and CLAHE + speckle;
* on DRIMDB-dev's Good photos (checking photos, never trained on) as published and CLAHE'd as
  ``real_photos.py`` does: both levels over the pool's clean medians;
* on the first 12 of those photos, the mean in-FOV teacher anomaly, as published and CLAHE'd,
  under the shipped rule, v3.7c's rule and v3.7c's rule without its noise term (the teacher's
  networks run on each photo; profiles from the stored parts of ``teacher_rules.py``).

    python benchmarks/noise_measures.py [--data DIR]

Writes benchmarks/results/noise_measures.json. Needs the stored parts that
``benchmarks/teacher_rules.py`` leaves under ``--cache`` (its first run makes them).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import teacher_rules as R  # noqa: E402
from machine import stamp  # noqa: E402

from efiqa.errors import EfiqaError  # noqa: E402
from efiqa.eval.synth import preprocessed  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.train import distill, vessels  # noqa: E402
from efiqa.train.augment import clahe_luminance, unsharp_mask  # noqa: E402
from efiqa.train.data import data_root, to_geometry  # noqa: E402

V37C = "three-quarter traced + noise term 2-4x, disc exempt, vignetting, vessel profile"
NO_NOISE = "three-quarter traced, disc exempt, vignetting, vessel profile"


def clahe(img: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    return clahe_luminance(img, clip, tiles)


def unsharp(img: np.ndarray, amount: float, radius: float) -> np.ndarray:
    return unsharp_mask(img, amount, radius * max(img.shape[:2]) / 1000)


def speckle(img: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(img + np.random.default_rng(0).normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


ALTERATIONS = {
    "CLAHE clip 2, 8 tiles": clahe,
    "CLAHE clip 4, 16 tiles": lambda x: clahe(x, 4, 16),
    "unsharp 1, r 5": lambda x: unsharp(x, 1.0, 5),
    "unsharp 1.5, r 10": lambda x: unsharp(x, 1.5, 10),
    "speckle σ 8": lambda x: speckle(x, 8),
    "speckle σ 20": lambda x: speckle(x, 20),
    "speckle σ 35": lambda x: speckle(x, 35),
    "blur σ 5/1000": lambda x: cv2.GaussianBlur(x, (0, 0), 5 * max(x.shape[:2]) / 1000),
    "JPEG 10": lambda x: cv2.imdecode(cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, 10])[1], cv2.IMREAD_COLOR),
    "CLAHE clip 2 + speckle σ 20": lambda x: speckle(clahe(x), 20),
}


def levels(bgr: np.ndarray, name: str) -> tuple[float, float]:
    """Median in-FOV absolute and relative residual level of a working copy, over the pool's clean medians."""
    photo = to_geometry(distill.working_copy(bgr), vessels.SIZE, name)
    fov = photo.fov_mask
    return (float(np.median(R.noise_level(photo.rgb, fov)[fov])) / R.NOISE_REFERENCE[0],
            float(np.median(R.relative_noise_level(photo.rgb, fov)[fov])) / R.RELATIVE_NOISE_REFERENCE[0])


def spread(ratios: list[float]) -> dict:
    return {"median": float(np.median(ratios)), "min": float(np.min(ratios)), "max": float(np.max(ratios))}


def main(args: argparse.Namespace) -> None:
    names, photos, teacher, store, _ = R.pool(args)
    R.NOISE_REFERENCE[:] = [R.noise_reference(names, photos)]
    R.RELATIVE_NOISE_REFERENCE[:] = [R.noise_reference(names, photos, R.relative_noise_level)]
    named = list(zip(names, photos))
    chosen = [(n, p) for n, p in named if R.camera(n) != "IDRiD"][::2][:12] + [(n, p) for n, p in named if R.camera(n) == "IDRiD"][:4]
    pool: dict[str, dict[str, list[float]]] = {k: {"absolute": [], "relative": []} for k in ALTERATIONS}
    for name, bgr in chosen:
        plain = levels(bgr, name)
        for kind, alter in ALTERATIONS.items():
            changed = levels(alter(bgr), name)
            pool[kind]["absolute"].append(changed[0] / plain[0])
            pool[kind]["relative"].append(changed[1] / plain[1])

    root = data_root(args.data) / "DRIMDB-dev"
    with open(root / "labels.csv", newline="") as f:
        good = [r["image"] for r in csv.DictReader(f) if r["label"] == "Good"]
    drimdb: dict[str, dict[str, list[float]]] = {k: {"absolute": [], "relative": []} for k in ("as published", "CLAHE'd")}
    refused = 0
    unperturbed = R.unperturbed_parts(store)
    R.VIGNETTING[:] = R.vignetting_profile([p for _, p, _ in unperturbed])
    R.VESSEL_PROFILE[:] = R.vessel_profile([p for _, p, _ in unperturbed])
    rules = [R.SHIPPED, V37C, NO_NOISE]
    anomaly: dict[str, dict[str, list[float]]] = {k: {r: [] for r in rules} for k in drimdb}
    for n, image in enumerate(good):
        img = read_image(root / image)
        try:
            versions = {"as published": img, "CLAHE'd": preprocessed(img, find_fov(img, image), "clahe")}
            measured = {k: levels(x, image) for k, x in versions.items()}
        except EfiqaError:
            refused += 1
            continue
        for k, (a, r) in measured.items():
            drimdb[k]["absolute"].append(a)
            drimdb[k]["relative"].append(r)
        if n < 12:
            for k, x in versions.items():
                for rule, out in R.judge_all(teacher, teacher.parts(distill.working_copy(x), image), rules).items():
                    anomaly[k][rule].append(float(out.anomaly[out.fov].mean()))
    out = {"benchmark": "noise_measures", "command": "python benchmarks/noise_measures.py", "machine": stamp(),
           "noise_reference": R.NOISE_REFERENCE[0], "relative_noise_reference": R.RELATIVE_NOISE_REFERENCE[0],
           "pool_photos": [n for n, _ in chosen],
           "pool_altered_over_as_is": {k: {m: spread(v) for m, v in d.items()} for k, d in pool.items()},
           "drimdb_good_over_pool_reference": {k: {m: spread(v) for m, v in d.items()} for k, d in drimdb.items()},
           "drimdb_good_refused": refused,
           "drimdb_good_first12_mean_anomaly": {k: {r: float(np.mean(v)) for r, v in d.items()} for k, d in anomaly.items()}}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "noise_measures.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    from student_variants import pool_arguments

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    main(ap.parse_args())
