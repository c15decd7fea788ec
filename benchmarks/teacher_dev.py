"""Teacher model selection on *training* photos (never the held-out ones): the vessel map alone
and, for each inpainter given, |x - x^| and missing vasculature max(0, x^ - x) on the intact map
(the authors' one-pass inference), and the shipped rule: each pixel redrawn with its 64-px cell
hidden, relative missing vasculature (``teacher.expected_vessels`` + ``missing_vasculature``).

    python benchmarks/teacher_dev.py VESSELS.pt NAME=INPAINTER.pt [NAME=INPAINTER.pt ...]

Prints patch AUROC per degradation (severities 2-3), overall and ranking: the model card's log.
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluation import run, summarise
from efiqa.imageio import read_image
from efiqa.train.distill import working_copy
from efiqa.train.data import TEACHER_TRAIN, data_root, resolve, to_geometry
from efiqa.train.teacher import pool_cells, vessel_map, GRID, load_model, expected_vessels, missing_vasculature
from efiqa.train import vessels as vs
torch.set_num_threads(2)
root = data_root()
ex = vs.load_model(sys.argv[1])
models = {k: load_model(v) for k, v in (a.split("=") for a in sys.argv[2:])}
dev = [TEACHER_TRAIN[i] for i in (0, 4, 16, 19, 22, 23)]
photos = {n: working_copy(read_image(resolve(n, root))) for n in dev}
memo = {}
def go(bgr):
    if memo.get("img") is not bgr:
        photo = to_geometry(bgr, vs.SIZE)
        v, fov = vessel_map(ex, photo)
        r = {}
        with torch.no_grad():
            for k, m in models.items():
                r[k] = np.clip(m(torch.from_numpy(v)[None, None])[0, 0].numpy(), 0, 1)
                r[k + ":masked"] = expected_vessels(m, v)
        memo.update(img=bgr, v=v, fov=fov, r=r, crop=photo.crop)
    return memo
def mk(f):
    def m(bgr):
        d = go(bgr); s = f(d)
        cov = pool_cells(np.zeros((256,256),np.float32), d["fov"], GRID, 0)[2]
        return s, d["crop"], cov
    return m
P = lambda a, fov: pool_cells(np.where(fov, a, 0).astype(np.float32), fov, GRID, 0)[0]
methods = {"neg_vessel": mk(lambda d: -P(d["v"], d["fov"]))}
for k in models:
    methods[k + ":abs"] = mk(lambda d, k=k: P(cv2.GaussianBlur(np.abs(d["v"] - d["r"][k]), (0,0), 1), d["fov"]))
    methods[k + ":miss"] = mk(lambda d, k=k: P(np.maximum(cv2.GaussianBlur(d["r"][k] - d["v"], (0,0), 2), 0), d["fov"]))
    methods[k + ":masked"] = mk(lambda d, k=k: P(missing_vasculature(d["r"][k + ":masked"], d["v"], d["fov"]), d["fov"]))
recs = run(photos, methods, severities=(2, 3))
s = summarise(recs, list(methods))
print(" " * 22, " ".join(f"{m[:16]:>16s}" for m in methods))
for k, v in s["per_kind"].items():
    print(f"{k:22s}", " ".join(f"{v[m]['auroc']:16.3f}" for m in methods))
print(f"{'overall':22s}", " ".join(f"{s['overall'][m]['auroc']:16.3f}" for m in methods))
print(f"{'ranking':22s}", " ".join(f"{s['ranking'].get(m, float('nan')):16.3f}" for m in methods))
