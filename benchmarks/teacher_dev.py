"""Teacher model selection on *training* photos (never the held-out ones): the v3.4 rule (v3.5 adds
Weber contrast and a washed-out term: models/teacher/MODEL_CARD.md) and
its ablations, each a patch score on the 16×16 grid.

- ``neg_visible``: the visible-vessel map alone (inverted density), no expectation;
- ``v2.1``: the prior's redraw of the ungated vessel map from 64-px holes vs that map (σ 6);
- ``anat``: the anatomy map as expectation vs the ungated vessel map;
- ``anat+gate``: … vs the visible map (contrast-weighted as in v3.1: 256-px green, one 9-px scale);
- ``v3``: the prior's one-pass reconstruction of the anatomy map vs that visible map (share missing);
- ``v3.1``: the same, two-sided (missing and unexplained visible structure);
- ``v3.2``: v3.1 with contrast measured on the 512-px photo at a thin-vessel and an all-calibre
  scale, the larger anomaly kept;
- ``v3.3``: v3.2 with the visible map capped by the anatomy map;
- ``v3.4``: v3.3 with the relative measure's floor lowered from 0.05 to 0.02 — the shipped rule.
(``anat+holes``, the prior's redraw from 64-px holes, is in the log of commit a91b94c.)

    python benchmarks/teacher_dev.py [TEACHER_DIR]

Prints patch AUROC per degradation (severities 1-3), overall, per severity and ranking (the model
card's log) and writes them to benchmarks/results/teacher_dev.json.
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluation import run, summarise  # noqa: E402
from machine import stamp  # noqa: E402
from teacher_selection import DEV as dev, print_table, setup  # noqa: E402

from efiqa.train import teacher as T  # noqa: E402
from efiqa.train import vessels as vs  # noqa: E402
from efiqa.train.data import to_geometry  # noqa: E402

teacher, photos = setup()
memo: dict = {}
V31_DEPTH = 10.448  # v3.1's calibrated reference vessel depth (models/teacher/teacher.json at a91b94c)
V33_FLOOR = 0.05    # the relative measures' floor up to v3.3 (v3.4: T.EXPECTED_FLOOR)


def v31_depth(rgb):
    """v3.1's contrast measure: black-hat (9 px) of the 256-px green channel, smoothed σ 1."""
    g = cv2.resize(rgb, (T.MAP_SIZE, T.MAP_SIZE), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(T.vessel_depth(g, 9), (0, 0), 1.0)


def maps(bgr):
    if memo.get("img") is not bgr:
        photo = to_geometry(bgr, vs.SIZE)
        with torch.no_grad():
            visible, anatomy = vs.predict(teacher.extractor, photo), vs.predict(teacher.anatomy, photo)
            v, anat, fov = T.to_map(visible), T.to_map(anatomy), T.map_fov(photo)
            prior_v = T.expected_vessels(teacher.inpainter, v)
            recon_a = T.reconstruct(teacher.inpainter, anat)
        seen = T.visible_vessels(v, v31_depth(photo.rgb), V31_DEPTH)
        refs = teacher.config["vessel_depth"]
        v32 = T.disagreement(recon_a, visible, photo.rgb, fov, refs, V33_FLOOR)[0]
        capped = np.minimum(visible, anatomy)
        v33 = T.disagreement(recon_a, capped, photo.rgb, fov, refs, V33_FLOOR)[0]
        shipped = T.disagreement(recon_a, capped, photo.rgb, fov, refs)[0]  # v3.4 (no vessel_contrast)
        memo.update(img=bgr, v=v, seen=seen, anat=anat, prior_v=prior_v, recon_a=recon_a, fov=fov,
                    crop=photo.crop, v32=v32, v33=v33, shipped=shipped)
    return memo


def method(f):
    def m(bgr):
        d = maps(bgr)
        score, _, cov = T.pool_cells(f(d), d["fov"], T.GRID, 0)
        return score, d["crop"], cov
    return m


methods = {
    "neg_visible": method(lambda d: 1 - d["seen"]),
    "v2.1": method(lambda d: T.missing_vasculature(d["prior_v"], d["v"], d["fov"], sigma=6.0, floor=V33_FLOOR)),
    "anat": method(lambda d: T.missing_vasculature(d["anat"], d["v"], d["fov"], floor=V33_FLOOR)),
    "anat+gate": method(lambda d: T.missing_vasculature(d["anat"], d["seen"], d["fov"], floor=V33_FLOOR)),
    "v3": method(lambda d: T.missing_vasculature(d["recon_a"], d["seen"], d["fov"], floor=V33_FLOOR)),
    "v3.1": method(lambda d: T.vessel_anomaly(d["recon_a"], d["seen"], d["fov"], floor=V33_FLOOR)),
    "v3.2": method(lambda d: d["v32"]),
    "v3.3": method(lambda d: d["v33"]),
    "v3.4": method(lambda d: d["shipped"]),
}
recs = run(photos, methods, severities=(1, 2, 3))
s = summarise(recs, list(methods))
print_table(s, list(methods))

out = Path(__file__).resolve().parent / "results" / "teacher_dev.json"
out.write_text(json.dumps({"benchmark": "teacher_dev", "command": "python benchmarks/teacher_dev.py " + " ".join(sys.argv[1:]),
                           "machine": stamp(), "photos": dev, "methods": list(methods), "summary": s},
                          indent=2, default=float) + "\n")
