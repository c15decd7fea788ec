"""Does a fresh ``efiqa train student`` reproduce the shipped adapter (models/student)?

Run the training from an empty cache first (labels, region maps and features of every family:
~70 min on 2 cores, then ~17 min of adapters), then compare:

    efiqa train student --out /tmp/repro/student --cache /tmp/repro/cache
    efiqa export --adapter /tmp/repro/student --out /tmp/repro/default
    python benchmarks/student_reproduction.py /tmp/repro/student --cache /tmp/repro/cache --bundle /tmp/repro/default \\
        --photos ../shared/data/fundus/DRIMDB-dev

Writes benchmarks/results/student_reproduction.json: the sha256 of both adapters' weights, the
largest weight difference, whether the thresholds and sample counts agree, with ``--bundle`` the
sha256 of the fresh export's ONNX against models/default's, with ``--photos`` both bundles'
verdicts, scores and maps on those photos (what a difference in the last bits became), and which
samples of each family the teacher refused (from the fresh run's label cache).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

COMPARED = ("patch_threshold", "patch_threshold_point", "gradable_threshold", "gradable_threshold_out_of_fold",
            "samples", "positive_fraction", "loss_history", "score_loss_history", "target", "score_target", "members")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def first(value):
    """A loss history's first epoch (the value itself otherwise): where two runs part."""
    return value[0] if isinstance(value, list) and value else value


def refused(cache: Path, teacher: Path, meta: dict) -> dict[str, list[str] | None]:
    """The samples each family of the fresh run refused, "photo#sample: reason", from its cache,
    keyed by the photos and settings its ``adapter.json`` (``meta``) records (None: that family's
    labels are not in the cache)."""
    from efiqa.train import distill

    names, n, seed = meta["photos"], meta["augmentations"], meta["seed"]
    keys = {"perturbations": distill.label_cache_key(names, teacher, n, seed),
            **({"defects": distill.defect_cache_key(names, teacher, seed)} if meta.get("defects") else {}),
            **({"fov-defects": distill.fov_defect_cache_key(names, seed)} if meta.get("fov_defects") else {})}
    found = {family: cache / f"labels_{key}.pkl" for family, key in keys.items()}
    return {family: pickle.loads(path.read_bytes()).skipped if path.exists() else None for family, path in found.items()}


def behaviour(fresh: Path, shipped: Path, folder: Path) -> dict:
    """Both bundles on every photo under ``folder`` (ONNX Runtime): verdicts that agree, the largest
    score and map differences, and the photos whose verdicts differ."""
    import numpy as np
    from tqdm import tqdm

    from efiqa import QualityAssessor
    from efiqa.errors import EfiqaError
    from efiqa.imageio import IMAGE_SUFFIXES

    qa = {k: QualityAssessor(b, backend="onnxruntime", threads=1) for k, b in (("fresh", fresh), ("shipped", shipped))}
    photos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    differ, d_score, d_map, scored = [], 0.0, 0.0, 0
    for path in tqdm(photos, desc="both bundles"):
        answers = {}
        for k, q in qa.items():
            try:
                answers[k] = q.assess(str(path))
            except EfiqaError as e:
                answers[k] = type(e).__name__
        a, b = answers["fresh"], answers["shipped"]
        if isinstance(a, str) or isinstance(b, str):
            same = a == b
        else:
            same = a.gradable == b.gradable
            scored += 1
            d_score = max(d_score, abs(a.score - b.score))
            d_map = max(d_map, float(np.abs(a.map - b.map).max()))
        if not same:
            differ.append(str(path.relative_to(folder)))
    return {"folder": str(folder), "photos": len(photos), "assessed_by_both": scored,
            "verdicts_equal": len(photos) - len(differ), "verdicts_differ": differ,
            "max_abs_score_difference": d_score, "max_abs_map_difference": d_map}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fresh", type=Path, help="the adapter folder the fresh run wrote")
    ap.add_argument("--shipped", type=Path, default=Path("models/student"))
    ap.add_argument("--cache", type=Path, help="the fresh run's cache folder (for the samples each family refused)")
    ap.add_argument("--teacher", type=Path, default=Path("models/teacher"), help="the teacher the labels are keyed by")
    ap.add_argument("--bundle", type=Path, help="the fresh adapter exported (efiqa export), compared with models/default")
    ap.add_argument("--photos", type=Path, help="with --bundle: a folder of photos both bundles assess; where the "
                                                 "weights differ, how much the verdicts and maps do")
    args = ap.parse_args()
    if args.photos and not args.bundle:
        ap.error("--photos compares two bundles: give the fresh one with --bundle")

    fresh_w = torch.load(args.fresh / "adapter.pt", map_location="cpu")
    shipped_w = torch.load(args.shipped / "adapter.pt", map_location="cpu")
    if fresh_w.keys() != shipped_w.keys():  # another adapter layout (e.g. a different number of heads)
        raise SystemExit(f"the adapters differ in layout: {sorted(fresh_w.keys() ^ shipped_w.keys())[:4]} …")
    diff = max(float((fresh_w[k] - shipped_w[k]).abs().max()) for k in shipped_w)
    fresh_meta = json.loads((args.fresh / "adapter.json").read_text())
    shipped_meta = json.loads((args.shipped / "adapter.json").read_text())
    agree = {k: fresh_meta.get(k) == shipped_meta.get(k) for k in COMPARED}
    out = {"benchmark": "student_reproduction",
           "command": "python benchmarks/student_reproduction.py " + " ".join(sys.argv[1:]),
           "machine": stamp(),
           "fresh_adapter_sha256": sha256(args.fresh / "adapter.pt"),
           "shipped_adapter_sha256": sha256(args.shipped / "adapter.pt"),
           "max_abs_weight_difference": diff, "metadata_equal": agree,
           "values (fresh, shipped)": {k: (first(fresh_meta.get(k)), first(shipped_meta.get(k))) for k in COMPARED
                                       if fresh_meta.get(k) != shipped_meta.get(k)},
           "reproduced": diff == 0.0 and all(agree.values())}
    if args.bundle:
        onnx = {"fresh": sha256(args.bundle / "model.onnx"), "shipped": sha256(Path("models/default/model.onnx"))}
        out.update(onnx_sha256=onnx, reproduced=out["reproduced"] and onnx["fresh"] == onnx["shipped"])
    if args.cache:
        out["refused"] = refused(args.cache, args.teacher, fresh_meta)
    if args.photos:
        out["behaviour"] = behaviour(args.bundle, Path("models/default"), args.photos)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "student_reproduction.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
