"""Teacher model selection on *training* photos (never the held-out ones): the shipped v3.1 rule and
its ablations, each a patch score on the 16×16 grid.

- ``neg_visible``: the visible-vessel map alone (inverted density), no expectation;
- ``v2.1``: the prior's redraw of the ungated vessel map from 64-px holes vs that map (σ 6);
- ``anat``: the anatomy map as expectation vs the ungated vessel map;
- ``anat+gate``: … vs the visible (contrast-weighted) map;
- ``anat+holes``: max(anatomy, the prior's redraw of it from 64-px holes) vs the visible map;
- ``v3``: the prior's one-pass reconstruction of the anatomy map vs the visible map (share missing);
- ``v3.1``: the same, two-sided (missing and unexplained visible structure) — the shipped rule.

    python benchmarks/teacher_dev.py [TEACHER_DIR]

Prints patch AUROC per degradation (severities 2-3), overall and ranking: the model card's log.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluation import run, summarise  # noqa: E402

from efiqa.imageio import read_image  # noqa: E402
from efiqa.train import teacher as T  # noqa: E402
from efiqa.train import vessels as vs  # noqa: E402
from efiqa.train.data import TEACHER_TRAIN, data_root, resolve, to_geometry  # noqa: E402
from efiqa.train.distill import working_copy  # noqa: E402

torch.set_num_threads(2)
root = data_root()
teacher = T.Teacher.load(sys.argv[1] if len(sys.argv) > 1 else "models/teacher")
dev = [TEACHER_TRAIN[i] for i in (0, 4, 16, 19, 22, 23)]
photos = {n: working_copy(read_image(resolve(n, root))) for n in dev}
memo: dict = {}


def maps(bgr):
    if memo.get("img") is not bgr:
        photo = to_geometry(bgr, vs.SIZE)
        v, fov = T.vessel_map(teacher.extractor, photo)
        seen = T.visible_vessels(v, T.vessel_depth(photo.rgb), teacher.config["vessel_depth"])
        anat = T.vessel_map(teacher.anatomy, photo)[0]
        with torch.no_grad():
            prior_v = T.expected_vessels(teacher.inpainter, v)
            prior_a = T.expected_vessels(teacher.inpainter, anat)
            recon_a = T.reconstruct(teacher.inpainter, anat)
        memo.update(img=bgr, v=v, seen=seen, anat=anat, prior_v=prior_v, prior_a=prior_a, recon_a=recon_a, fov=fov,
                    crop=photo.crop)
    return memo


def method(f):
    def m(bgr):
        d = maps(bgr)
        score, _, cov = T.pool_cells(f(d), d["fov"], T.GRID, 0)
        return score, d["crop"], cov
    return m


methods = {
    "neg_visible": method(lambda d: 1 - d["seen"]),
    "v2.1": method(lambda d: T.missing_vasculature(d["prior_v"], d["v"], d["fov"], sigma=6.0)),
    "anat": method(lambda d: T.missing_vasculature(d["anat"], d["v"], d["fov"])),
    "anat+gate": method(lambda d: T.missing_vasculature(d["anat"], d["seen"], d["fov"])),
    "anat+holes": method(lambda d: T.missing_vasculature(np.maximum(d["anat"], d["prior_a"]), d["seen"], d["fov"])),
    "v3": method(lambda d: T.missing_vasculature(d["recon_a"], d["seen"], d["fov"])),
    "v3.1": method(lambda d: T.vessel_anomaly(d["recon_a"], d["seen"], d["fov"])),
}
recs = run(photos, methods, severities=(2, 3))
s = summarise(recs, list(methods))
print(" " * 22, " ".join(f"{m[:12]:>12s}" for m in methods))
for k, v in s["per_kind"].items():
    print(f"{k:22s}", " ".join(f"{v[m]['auroc']:12.3f}" for m in methods))
print(f"{'overall':22s}", " ".join(f"{s['overall'][m]['auroc']:12.3f}" for m in methods))
print(f"{'ranking':22s}", " ".join(f"{s['ranking'].get(m, float('nan')):12.3f}" for m in methods))
