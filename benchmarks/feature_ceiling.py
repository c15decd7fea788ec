"""What limits the student's maps: the teacher's labels, or what the frozen backbone's features can
tell apart? A diagnostic; nothing here trains or changes what ships.

The same adapter (the shipped conv head, its training loop) is trained twice over on the same 4 of
5 training-pool photos (every fifth held out, as ``teacher_rules.py`` and
``adapter_ground_truth.py`` hold it out):

- **teacher**: on the shipped teacher's labels of the pool's label-free perturbations (the cached
  distillation features: what ``efiqa train student`` trains on);
- **masks**: on the ``synth`` generator's own degradation masks of the same photos (every kind,
  severities 1-3, region seeds apart from the evaluation's), each cell's target 1 where the
  evaluation would call it degraded. This is the one place the project trains on an evaluation
  generator's masks, on purpose and only here: it is a ceiling, not a method. It is optimistic,
  the generator it is scored on being the one it learnt (its kinds, its region shapes): a feature
  set that cannot reach a high patch AUROC even so cannot reach it from any teacher.

- **masks without one kind**: as *masks*, shipped features, with every copy of one kind left out
  of training (one head per kind): what such a head scores on the kind it never saw says whether a
  head taught by degradation regions learns degradation at large or only the kinds it was shown (a
  training generator of one's own can never hold every kind a camera meets).

Both are scored on the held-out fifth degraded by ``synth`` (the evaluation of ``teacher_rules.py``;
never ``soft``, never the held-out photos of ``accuracy.py``): patch AUROC per kind and severity,
image ranking. Feature sets: the shipped one (384 px, per-cell mean and std at strides 4/8/16),
``all`` (plus stride 32), and the shipped kind at 512 px. The teacher rows at 384 px, three-scale,
seeds 0-2 repeat the shipped row of ``teacher_rules.py`` (a check that the two harnesses agree).

    python benchmarks/feature_ceiling.py

Writes benchmarks/results/feature_ceiling.json / .md.
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
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluation import run, summarise  # noqa: E402
from machine import stamp  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402
from teacher_rules import subset  # noqa: E402

from efiqa.errors import EfiqaError  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402
from efiqa.eval.synth import DEGRADATIONS, degrade, patch_truth  # noqa: E402
from efiqa.imageio import read_image  # noqa: E402
from efiqa.preprocess import Preprocessor  # noqa: E402
from efiqa.result import cell_coverage  # noqa: E402
from efiqa.train import distill  # noqa: E402
from efiqa.train.data import data_root, resolve  # noqa: E402
from efiqa.train.nets.efficientnet_lite import EfficientNetLite0  # noqa: E402
from efiqa.train.nets.student import GRID, Student  # noqa: E402

SIZES = (384, 512)
SEEDS = (0, 1, 2)
#: (name, input size, feature kind, seeds)
FEATURE_SETS = (("384 px, three-scale (shipped)", 384, "three-scale", SEEDS),
                ("384 px, all", 384, "all", (0,)),
                ("512 px, three-scale", 512, "three-scale", (0,)))
#: region seeds of the training copies: apart from the evaluation's (``evaluation.run``: 100 × photo + kind)
TRAIN_SEED = 1_000_000
KINDS = tuple(DEGRADATIONS)


def backbones(sizes: tuple[int, ...] = SIZES) -> dict[int, tuple[Preprocessor, Student]]:
    net = Student(EfficientNetLite0().load_imagenet(), features="all").freeze_backbone().eval()
    return {s: (Preprocessor(s), net) for s in sizes}


def features_of(bgr: np.ndarray, nets: dict[int, tuple[Preprocessor, Student]]) -> tuple[dict[int, np.ndarray], object]:
    """``all`` features at every size (C, G, G) and the first size's preparation (crop, FOV, shape);
    the FOV is found once, as the runtime finds it, and serves every size."""
    out, prep, fov = {}, None, find_fov(bgr)
    for size, (pre, net) in nets.items():
        p = pre(bgr, fov=fov)
        prep = prep or p
        with torch.no_grad():
            out[size] = net.features(torch.from_numpy(p.tensor[None]))[0].numpy()
    return out, prep


def jobs_of(train: set[int]) -> list[tuple[int, str, int]]:
    """(photo, kind, severity) of every training copy, in the order of the samples' perturbation index."""
    return [(i, kind, sev) for i in sorted(train) for kind in ("clean", *KINDS)
            for sev in ((0,) if kind == "clean" else (1, 2, 3))]


def synth_copies(names: list[str], train: set[int], data: str | None, desc: str):
    """(job, photo, clean photo, copy, mask, FOV of the clean photo) for each of :func:`jobs_of`'s
    copies: the photo as it is (an empty mask) or degraded by ``synth`` with the training region seeds."""
    root = data_root(data)
    current = img = fov = None
    for n, (i, kind, sev) in enumerate(tqdm(jobs_of(train), desc=desc)):
        if i != current:
            current, img = i, distill.working_copy(read_image(resolve(names[i], root)))
            fov = find_fov(img)
        if kind == "clean":
            yield n, i, img, img, np.zeros(img.shape[:2], bool), fov
        else:
            d = degrade(img, fov, kind, sev, seed=TRAIN_SEED + 100 * i + KINDS.index(kind))
            yield n, i, img, d.image, d.mask, fov


def mask_sets(names: list[str], train: set[int], data: str | None, cache: Path) -> dict[int, distill.FeatureSet]:
    """The training photos as they are and degraded by ``synth`` (every kind × severity, one region
    per photo and kind): features per size, targets from the masks (cached)."""
    from efiqa.eval import synth

    key = distill._code_key((names, sorted(train), TRAIN_SEED, SIZES), (synth, jobs_of, synth_copies, features_of, mask_sets))
    path = cache / f"feature_ceiling_masks_{key}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    nets = backbones()
    feats: dict[int, list[np.ndarray]] = {s: [] for s in SIZES}
    truth, valid, photo, pert = [], [], [], []
    for n, i, _, test, mask, fov in synth_copies(names, train, data, "mask copies"):
        try:
            f, p = features_of(test, nets)
        except EfiqaError:  # a degradation that hides the FOV: not trained on, as a refused perturbation
            continue
        for s in SIZES:
            feats[s].append(f[s].astype(np.float16))
        truth.append(patch_truth(mask, p.crop, GRID, fov=fov).astype(np.float32))
        valid.append(cell_coverage(p.fov, p.crop, p.image_shape, GRID) >= 0.5)
        photo.append(i)
        pert.append(n)
    sets = {s: distill.FeatureSet(s, np.stack(feats[s]), truth, truth, valid, photo, pert) for s in SIZES}
    path.write_bytes(pickle.dumps(sets))
    return sets


def score_heads(heads: dict[str, torch.nn.Module], rows: dict[str, dict], photos: dict[str, np.ndarray]) -> dict:
    """Score each head (``rows[key]``: its input ``size`` and feature ``kind``) on ``photos`` degraded by
    ``synth`` (``evaluation.run``; features computed once per image for every head); each row gains
    its overall patch AUROC, ranking, per-kind and per-severity AUROC. Returns the summary."""
    nets = backbones(tuple(sorted({row["size"] for row in rows.values()})))
    memo: dict = {}

    def method(key: str):
        size, kind = rows[key]["size"], rows[key]["kind"]

        def m(bgr: np.ndarray):
            if memo.get("img") is not bgr:
                f, p = features_of(bgr, nets)
                memo.update(img=bgr, features=f, crop=p.crop,
                            coverage=cell_coverage(p.fov, p.crop, p.image_shape, GRID))
            x = torch.from_numpy(memo["features"][size][distill.CHANNELS[kind]][None])
            with torch.no_grad():
                prob = torch.sigmoid(heads[key](x))[0, 0].numpy()
            return prob, memo["crop"], memo["coverage"]
        return m

    records = run(photos, {k: method(k) for k in heads}, generator="synth")
    summary = summarise(records, list(heads))
    for key, row in rows.items():
        row.update(overall=summary["overall"][key]["auroc"], ranking=summary["ranking"][key],
                   per_kind={k: v[key]["auroc"] for k, v in summary["per_kind"].items()},
                   per_severity={s: v[key]["auroc"] for s, v in summary["per_severity"].items()})
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    t0 = time.time()
    names, teacher_sets, phi, train, val = pool_features(args, SIZES)
    masks = mask_sets(names, train, args.data, args.cache)
    heads: dict[str, torch.nn.Module] = {}
    rows: dict[str, dict] = {}
    for labels, sets in (("teacher", teacher_sets), ("masks", masks)):
        for fname, size, kind, seeds in FEATURE_SETS:
            for seed in seeds:
                res = distill.train_adapter(sets[size], kind, distill.DEFAULT["head"], phi=phi, seed=seed,
                                            train_photos=train, target="soft")
                key = f"{labels} | {fname} | seed {seed}"
                heads[key] = res.head.eval()
                rows[key] = {"labels": labels, "features": fname, "size": size, "kind": kind, "seed": seed,
                             "training_samples": int(sum(p in train for p in sets[size].photo))}
                print(key, flush=True)
    jobs = jobs_of(train)
    fname, size, kind, _ = FEATURE_SETS[0]
    for left in KINDS:
        res = distill.train_adapter(subset(masks[size], lambda n: jobs[n][1] != left), kind, distill.DEFAULT["head"],
                                    phi=phi, seed=0, train_photos=train, target="soft")
        key = f"masks without {left} | {fname} | seed 0"
        heads[key] = res.head.eval()
        rows[key] = {"labels": f"masks without {left}", "left_out": left, "features": fname, "size": size,
                     "kind": kind, "seed": 0,
                     "training_samples": int(sum(p in train and jobs[n][1] != left
                                                 for n, p in zip(masks[size].perturbation, masks[size].photo)))}
        print(key, flush=True)

    root = data_root(args.data)
    photos = {names[i]: distill.working_copy(read_image(resolve(names[i], root))) for i in sorted(val)}
    summary = score_heads(heads, rows, photos)
    command = " ".join(["python benchmarks/feature_ceiling.py", *sys.argv[1:]])
    out = {"benchmark": "feature_ceiling", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "seconds": round(time.time() - t0),
           "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "feature_ceiling.json").write_text(json.dumps(out, indent=2) + "\n")
    kinds = list(summary["per_kind"])
    sevs = list(summary["per_severity"])
    md = ["# What limits the student: labels or features", "",
          f"The shipped adapter trained on {len(train)} training-pool photos, on the teacher's labels of their "
          f"label-free perturbations or on the `synth` generator's own masks of them (a ceiling: the generator "
          f"it is scored on; never shipped); scored on the other {len(photos)} degraded by `synth` (patch AUROC). "
          f"Command: `{command}`.", "",
          "| labels | features | seed | training samples | overall AUROC | ranking | "
          + " | ".join(f"severity {s}" for s in sevs) + " | " + " | ".join(kinds) + " |",
          "|---|---|---|---|---|---|" + "---|" * (len(sevs) + len(kinds))]
    md += [f"| {r['labels']} | {r['features']} | {r['seed']} | {r['training_samples']} | {r['overall']:.4f} | "
           f"{r['ranking']:.3f} | " + " | ".join(f"{r['per_severity'][s]:.3f}" for s in sevs) + " | "
           + " | ".join(f"{r['per_kind'][k]:.3f}" for k in kinds) + " |" for r in rows.values()]
    left = [r for r in rows.values() if "left_out" in r]
    if left:
        shown = rows[f"masks | {FEATURE_SETS[0][0]} | seed 0"]
        taught = [rows[f"teacher | {FEATURE_SETS[0][0]} | seed {s}"] for s in SEEDS]
        md += ["", "Each kind left out of the mask-trained head (shipped features, seed 0): patch AUROC on that kind, "
                   "beside the head that saw it and the teacher-trained heads (mean of seeds 0-2).", "",
               "| kind left out | never seen | seen (masks) | teacher |", "|---|---|---|---|"]
        md += [f"| {r['left_out']} | {r['per_kind'][r['left_out']]:.3f} | {shown['per_kind'][r['left_out']]:.3f} | "
               f"{np.mean([t['per_kind'][r['left_out']] for t in taught]):.3f} |" for r in left]
    (HERE / "results" / "feature_ceiling.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
