"""Local defects in the map head's training set (``efiqa.train.defects``): the study and ship gates of
``results/local_defects_rule.md`` (written before any result).

The shipped map head (384 px, three-scale, conv adapter) learns ``union`` with the shipped region
maps, from seeds 0/1/2, on 4 of 5 training-pool photos: over the label-free perturbations alone
(``base``, the map head of the student shipped before it) and over the perturbations and 12 local defects of each photo
(``defects``). Both are scored on the other fifth degraded by ``synth``, as ``region_targets.py``
scores; never ``soft``, never the held-out photos of ``accuracy.py``.

    python benchmarks/local_defects.py
    # the candidate student (efiqa train student with DEFAULT["defects"]): its score head must be the shipped one's
    python benchmarks/local_defects.py --construction STUDENT --shipped models/student
    # the ship gate from the candidate's held-out runs tagged TAG (accuracy.py --previous, real_photos.py)
    python benchmarks/local_defects.py --ship TAG --bundle models/default --previous OLD_BUNDLE

Writes results/local_defects.json / .md and local_defects_examples.png (the first pool photo's
defects: reference, defective, then the teacher's label, the region map and their union, on the FOV found in it); the second
form results/local_defects_construction.json, the third local_defects_ship_TAG.json / .md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from region_measures import construction, gate_arguments, means_table, ship_gate, study_checks, train_and_score  # noqa: E402
from region_targets import clause_table, seed_table  # noqa: E402
from student_variants import pool_features  # noqa: E402

from efiqa.train import distill  # noqa: E402


def examples(photo: np.ndarray, fs: distill.FeatureSet, path: Path) -> None:
    """The first pool photo's local defects, a row each: reference, defective, then the teacher's
    label, the region map and the union (the map head's target) as heat maps."""
    import cv2

    from efiqa.fov import find_fov
    from efiqa.preprocess import Crop, Preprocessor

    row = {(p, k): n for n, (p, k) in enumerate(zip(fs.photo, fs.perturbation))}
    pre, side = Preprocessor(192), 192
    heat = lambda a: cv2.applyColorMap(cv2.resize((np.clip(a, 0, 1) * 255).astype(np.uint8), (side, side),  # noqa: E731
                                                  interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_INFERNO)
    lines = []
    rng = np.random.default_rng([0, distill.DEFECT_STREAM])  # defect_pairs' stream: the first photo's come first
    for j in range(distill.DEFECTS_PER_PHOTO):
        reference, img, kind = distill.defects.defect_pair(photo, rng)
        n = row.get((0, distill.DEFECT_OFFSET + j))
        if n is None:
            continue
        crop = Crop.around(find_fov(img), img.shape)
        tile = np.hstack([pre.crop_resize(reference, crop), pre.crop_resize(img, crop), heat(fs.score[n]),
                          heat(fs.region[n]), heat(1 - (1 - fs.score[n]) * (1 - fs.region[n]))])
        cv2.putText(tile, kind, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        lines.append(tile)
    cv2.imwrite(str(path), np.vstack(lines))


def study(args: argparse.Namespace) -> None:
    t0 = time.time()
    size = distill.DEFAULT["size"]
    names, sets, phi, train, val = pool_features(args, (size,), regions_too=True, families=("defects",))
    fs = sets[size]
    rows, mean, summary, photos = train_and_score({"base": distill.perturbations_only(fs), "defects": fs},
                                                  "training set", train, val, phi, names, args.data)
    named = distill.photo_list(None, args.data)
    examples(named[0][1], fs, HERE / "results" / "local_defects_examples.png")
    checks = study_checks(mean["defects"], mean["base"])
    passed = all(checks.values())
    defect = np.array([k >= distill.DEFECT_OFFSET for k in fs.perturbation])
    mine = np.array([p in train for p in fs.photo])
    valid = np.stack(fs.valid)
    spread = {}
    for name, pick in (("perturbations", mine & ~defect), ("defects", mine & defect)):
        union = 1 - (1 - np.stack(fs.score)[pick]) * (1 - np.stack(fs.region)[pick])
        spread[name] = {"samples": int(pick.sum()), "region_mean": float(np.stack(fs.region)[pick][valid[pick]].mean()),
                        "union_mean": float(union[valid[pick]].mean())}
    command = " ".join(["python benchmarks/local_defects.py", *sys.argv[1:]])
    out = {"benchmark": "local_defects", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "seconds": round(time.time() - t0),
           "training_targets": spread, "rows": rows, "means": mean, "checks": checks, "passed": passed}
    (HERE / "results" / "local_defects.json").write_text(json.dumps(out, indent=2) + "\n")
    kinds, sevs = list(summary["per_kind"]), list(summary["per_severity"])
    md = ["# Local defects in the map head's training set: the study gate", "",
          f"The shipped map head trained on `union` over the perturbations alone (`base`) or with 12 local defects per "
          f"photo (`defects`), on {len(train)} training-pool photos; scored on the other {len(photos)} degraded by "
          f"`synth` (patch AUROC). Rule: `results/local_defects_rule.md`. Command: `{command}`.", "",
          *seed_table(rows, "training set", sevs, kinds), "", "Means over seeds:", "",
          *means_table("training set", mean, kinds)]
    md += ["", f"Training samples of the {len(train)} photos (valid cells' mean region map and union target): " + "; ".join(
        f"{k} {v['samples']} (region {v['region_mean']:.3f}, union {v['union_mean']:.3f})" for k, v in spread.items()),
           "", "Checks against `base`: " + ", ".join(f"{k} {'pass' if ok else 'FAIL'}" for k, ok in checks.items()),
           "", "**Passed: on to the ship gate.**" if passed else "**Failed: recorded, not shipped.**", "",
           "Examples (`local_defects_examples.png`): the first pool photo's defects: reference, defective, "
           "the teacher's label, the region map, the union."]
    (HERE / "results" / "local_defects.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    ap = gate_arguments(__doc__)
    args = ap.parse_args()
    results = HERE / "results"
    if args.construction:
        doc = {**construction(args.construction, args.shipped), "benchmark": "local_defects_construction"}
        (results / "local_defects_construction.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(doc, indent=1))
        return
    if args.ship:
        if not args.previous:
            ap.error("--ship needs --previous")
        built = results / "local_defects_construction.json"
        if not built.exists() or not json.loads(built.read_text())["identical"]:
            raise SystemExit(f"{built.name}: the candidate's score head is not the shipped one (or was not checked): "
                             "the rule stops here")
        verdict = {**ship_gate(args.ship, args.bundle, args.previous), "benchmark": "local_defects_ship"}
        (results / f"local_defects_ship_{args.ship}.json").write_text(json.dumps(verdict, indent=2) + "\n")
        md = [f"# Local defects: the ship gate of candidate `{args.ship}`", "",
              f"Rule: `results/local_defects_rule.md` (its clauses those of `region_measures_rule.md`); runs: "
              f"`accuracy_{args.ship}.json`, `real_photos_{args.ship}.json`, the variants' manifests and "
              f"`engine_builds.json`; candidate ONNX sha256 `{verdict['candidate_onnx_sha256'][:16]}…`. "
              f"Command: `{verdict['command']}`.", "", *clause_table(verdict)]
        (results / f"local_defects_ship_{args.ship}.md").write_text("\n".join(md) + "\n")
        print("\n".join(md))
        return
    study(args)


if __name__ == "__main__":
    main()
