"""What holds the region-trained map head back: the form of its target (a graded measure of lost
detail instead of a mask), or the perturbations it is shown? A diagnostic; nothing here ships.

Two facts frame it. The shipped measure of lost detail (``efiqa.train.regions``, 1 − SSIM's
contrast-structure term), computed between a ``synth``-degraded photo and the photo itself, finds
``synth``'s regions almost perfectly (``--oracle``: its per-cell patch AUROC on the 17 validation
photos of the pool). Yet the map head trained on that measure over the label-free training
perturbations reaches far less (``region_only.md``). The same conv head (384 px, three-scale, seeds
0/1) is trained here on the 68 training photos of the pool degraded by ``synth`` (every kind,
severities 1-3, region seeds apart from the evaluation's: ``feature_ceiling.TRAIN_SEED``), with
each of three targets:

- **masks**: the generator's own masks (``feature_ceiling.md``'s ceiling);
- **cs**: the shipped measure of each copy against its clean photo, per cell, as
  ``efiqa.train.regions.degradation`` computes it in training;
- **cs, square root**: the same, square-rooted (same order of cells, larger values for mild loss).

If **cs** comes near **masks**, a graded target teaches the head as well as a mask does, and the gap
of ``region_only.md`` is the training perturbations' (what kinds and amounts they show); if it stays
near ``region_only.md``, the target's form is the limit. Trained on the evaluation generator on
purpose and only here, as ``feature_ceiling.py``; scored on the held-out fifth degraded by ``synth``;
never ``soft``, never the held-out photos of ``accuracy.py``.

    python benchmarks/target_form.py

Writes results/target_form.json / .md.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluation import run, summarise  # noqa: E402
from feature_ceiling import GRID, TRAIN_SEED, backbones, features_of, jobs_of, score_heads, synth_copies  # noqa: E402
from machine import stamp  # noqa: E402
from region_targets import seed_means, seed_table  # noqa: E402
from student_variants import pool_arguments  # noqa: E402

from efiqa.errors import EfiqaError  # noqa: E402
from efiqa.eval import synth  # noqa: E402
from efiqa.eval.synth import patch_truth  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.preprocess import Preprocessor  # noqa: E402
from efiqa.result import cell_coverage  # noqa: E402
from efiqa.train import distill, regions  # noqa: E402
from efiqa.train.data import data_root, resolve  # noqa: E402

SIZE, KIND, SEEDS = 384, "three-scale", (0, 1)
TARGETS = {"masks": lambda m, r: m, "cs": lambda m, r: r, "cs, square root": lambda m, r: np.sqrt(r)}


def copies(names: list[str], train: set[int], data: str | None, cache: Path) -> dict:
    """The training photos as they are and degraded by ``synth``: features, masks and the shipped
    measure of each copy against its clean photo (cached)."""
    key = distill._code_key((names, sorted(train), TRAIN_SEED, SIZE), (regions, synth, jobs_of, synth_copies, features_of, copies))
    path = cache / f"target_form_{key}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    nets = backbones((SIZE,))
    out: dict = {"features": [], "mask": [], "cs": [], "valid": [], "photo": [], "job": []}
    for n, i, img, test, mask, fov in synth_copies(names, train, data, "synth copies"):
        try:
            f, p = features_of(test, nets)
        except EfiqaError:
            continue
        out["features"].append(f[SIZE][distill.CHANNELS[KIND]].astype(np.float16))
        out["mask"].append(patch_truth(mask, p.crop, GRID, fov=fov).astype(np.float32))
        out["cs"].append(regions.degradation(img, test, p.fov, GRID).astype(np.float32))  # as training measures it
        out["valid"].append(cell_coverage(p.fov, p.crop, p.image_shape, GRID) >= 0.5)
        out["photo"].append(i)
        out["job"].append(n)
    path.write_bytes(pickle.dumps(out))
    return out


def oracle(names: list[str], val: set[int], data: str | None) -> dict:
    """The shipped measure against each validation photo's clean self, scored as a method would be."""
    root = data_root(data)
    pre = Preprocessor(SIZE)
    records = []
    for order, i in enumerate(sorted(val)):
        clean = distill.working_copy(read_image(resolve(names[i], root)))

        def measure(bgr: np.ndarray, clean=clean):
            p = pre(bgr, fov=find_fov(bgr))
            return regions.degradation(clean, bgr, p.fov, GRID), p.crop, cell_coverage(p.fov, p.crop, p.image_shape, GRID)

        # evaluation.run seeds a photo's regions by its place in the run: the place it has in score_heads' run
        records += run({names[i]: clean}, {"cs oracle": measure}, seed=100 * order, progress=False)
    s = summarise(records, ["cs oracle"])
    return {"overall": s["overall"]["cs oracle"]["auroc"], "ranking": s["ranking"]["cs oracle"],
            "per_severity": {k: v["cs oracle"]["auroc"] for k, v in s["per_severity"].items()},
            "per_kind": {k: v["cs oracle"]["auroc"] for k, v in s["per_kind"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.time()
    names = [n for n, _ in distill.photo_list(None, args.data)]
    val = {i for i in range(len(names)) if i % 5 == 0}
    train = set(range(len(names))) - val
    c = copies(names, train, args.data, args.cache)
    valid = np.stack(c["valid"])
    mask, cs = np.stack(c["mask"]), np.stack(c["cs"])
    heads, rows = {}, {}
    for target, form in TARGETS.items():
        y = form(mask, cs)
        fs = distill.FeatureSet(SIZE, np.stack(c["features"]), list(y), list(y), list(valid), c["photo"], c["job"])
        for seed in SEEDS:
            res = distill.train_adapter(fs, KIND, distill.DEFAULT["head"], seed=seed, train_photos=train, target="soft")
            key = f"{target} | seed {seed}"
            heads[key] = res.head.eval()
            rows[key] = {"target": target, "seed": seed, "size": SIZE, "kind": KIND}
            print(key, flush=True)
    root = data_root(args.data)
    photos = {names[i]: distill.working_copy(read_image(resolve(names[i], root))) for i in sorted(val)}
    summary = score_heads(heads, rows, photos)
    means = {t: seed_means({k: r for k, r in rows.items() if r["target"] == t}) for t in TARGETS}
    truth = oracle(names, val, args.data)
    results = HERE / "results"
    beside = json.loads((results / "region_only.json").read_text())["mean"]
    command = " ".join(["python benchmarks/target_form.py", *sys.argv[1:]])
    on = valid & (mask > 0)
    out = {"benchmark": "target_form", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "seconds": round(time.time() - t0),
           "training_cs_in_masked_cells_50_90": [float(q) for q in np.quantile(cs[on], [0.5, 0.9])],
           "training_cs_elsewhere_50_90_99": [float(q) for q in np.quantile(cs[valid & (mask == 0)], [0.5, 0.9, 0.99])],
           "rows": rows, "means": means, "cs_oracle": truth, "region_only_means (region_only.json)": beside}
    (results / "target_form.json").write_text(json.dumps(out, indent=2) + "\n")
    kinds, sevs = list(summary["per_kind"]), list(summary["per_severity"])
    table = {**{f"head on synth copies, {t}": m for t, m in means.items()},
             "head on the training perturbations, region only (region_only.json)": beside,
             "the measure itself against the clean photo (no head)": truth}
    md = ["# The region-trained head: target form or training perturbations? (diagnostic)", "",
          f"The shipped conv head trained on {len(train)} training-pool photos degraded by `synth` with each target; "
          f"scored on the other {len(photos)} degraded by `synth` (patch AUROC). Trained on the evaluation generator "
          f"on purpose, never shipped. Command: `{command}`.", "", *seed_table(rows, "target", sevs, kinds), "",
          "Means over seeds, beside the head trained on the label-free perturbations and the measure itself:", "",
          "| what | overall | ranking | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
    md += [f"| {t} | {m['overall']:.4f} | {m['ranking']:.3f} | " + " | ".join(f"{m['per_kind'][k]:.3f}" for k in kinds)
           + " |" for t, m in table.items()]
    md += ["", f"The shipped measure on the training copies: median {out['training_cs_in_masked_cells_50_90'][0]:.3f} "
           f"(90th percentile {out['training_cs_in_masked_cells_50_90'][1]:.3f}) in masked cells; elsewhere median "
           f"{out['training_cs_elsewhere_50_90_99'][0]:.3f}, 99th percentile {out['training_cs_elsewhere_50_90_99'][2]:.3f}."]
    (results / "target_form.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
