"""Teacher selection on *training* photos (never the held-out ones): the exposure terms.

Compares, on the same six pool photos as ``teacher_dev.py`` and the ``synth`` generator's kinds ×
severities 1-3, the teacher's patch score (mean anomaly per cell) under
- ``v3.4``: visibility from vessel depth only;
- ``v3.5``: the smaller of depth and Weber contrast, times the washed-out term;
- ``v3.6 (lo-hi)``: v3.5 times an under-exposure term, 0 below lo × the photo's median green, 1
  from hi × (``teacher.UNDEREXPOSED``);
- ``radial (lo-hi)``: the same exposure term (both ramps) against the median green of the pixel's
  *ring* of the FOV (10 rings by radius) instead of the whole photo's, so a photo's normal
  vignetting does not read as under-exposure (a candidate, not the shipped teacher).
The prior, the extractors and the references come from TEACHER_DIR (default models/teacher); only
the visibility rule differs, so the expensive part runs once per frame.

    python benchmarks/teacher_exposure.py [TEACHER_DIR]

Writes benchmarks/results/teacher_exposure.json (per kind, per severity, overall, ranking).
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluation import run, summarise  # noqa: E402
from machine import stamp  # noqa: E402
from teacher_rules import RINGS, radial_visibility  # noqa: E402
from teacher_selection import DEV as dev, print_table, setup  # noqa: E402

from efiqa.train import teacher as T  # noqa: E402

teacher, photos = setup()
RAMPS = {"v3.5": None, "v3.6 (0.3-0.7)": (0.3, 0.7), "v3.6 (0.25-0.55)": (0.25, 0.55), "v3.6 (0.4-0.85)": (0.4, 0.85)}
RADIAL = {"radial (0.3-0.7)": (0.3, 0.7), "radial (0.4-0.85)": (0.4, 0.85), "radial (0.5-0.9)": (0.5, 0.9)}
PHOTO_VISIBILITY = T.brightness_visibility  # the shipped rule (against the photo median)
memo: dict = {}


def maps(bgr):
    if memo.get("img") is not bgr:
        parts = teacher.parts(bgr)
        photo, expected, traced, fov = parts.photo, parts.expected, parts.traced, T.map_fov(parts.photo)
        depth = teacher.config["vessel_depth"]
        out = {"v3.4": T.disagreement(expected, traced, photo.rgb, fov, depth)[0]}
        shipped = T.UNDEREXPOSED
        variants = [(n, r, PHOTO_VISIBILITY) for n, r in RAMPS.items()] + \
            [(n, r, radial_visibility) for n, r in RADIAL.items()]
        try:
            for name, ramp, rule in variants:
                T.UNDEREXPOSED, T.brightness_visibility = ramp, rule
                out[name] = T.disagreement(expected, traced, photo.rgb, fov, depth,
                                           contrasts=teacher.config["vessel_contrast"])[0]
        finally:
            T.UNDEREXPOSED, T.brightness_visibility = shipped, PHOTO_VISIBILITY
        memo.update(img=bgr, fov=fov, crop=photo.crop, out=out)
    return memo


def method(name):
    def m(bgr):
        d = maps(bgr)
        score, _, cov = T.pool_cells(d["out"][name], d["fov"], T.GRID, 0)
        return score, d["crop"], cov
    return m


names = ["v3.4", *RAMPS, *RADIAL]
recs = run(photos, {n: method(n) for n in names}, severities=(1, 2, 3))
s = summarise(recs, names)
print_table(s, names, 16)
clean = {m: float(np.mean([r.scores[m][r.valid].mean() for r in recs if r.kind == "clean"])) for m in names}
print(f"{'clean mean score':22s}", " ".join(f"{clean[m]:16.3f}" for m in names))

out = Path(__file__).resolve().parent / "results" / "teacher_exposure.json"
out.write_text(json.dumps({"benchmark": "teacher_exposure",
                           "command": "python benchmarks/teacher_exposure.py " + " ".join(sys.argv[1:]),
                           "machine": stamp(), "photos": dev, "methods": names, "ramps": RAMPS, "radial_ramps": RADIAL, "rings": RINGS,
                           "clean_mean_score": clean, "summary": s}, indent=2, default=float) + "\n")
