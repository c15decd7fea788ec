"""Three times the FOV-labelled defects: the study gate of ``results/fov_defects_72_rule.md`` (written before any result).

The shipped map head's training of ``fov_defects.md`` (√region over the perturbations, the 12
teacher-labelled local defects and the FOV-labelled ones of 4 of 5 training-pool photos) with
``distill.FOV_DEFECTS_PER_PHOTO`` = 72 instead of 24, from seeds 0, 1, 2; scored on the other
fifth degraded by ``synth`` (never ``soft``, never the held-out photos of ``accuracy.py``) against
the ``conv`` rows of ``results/context_head.json`` (24 per photo, same seeds, photos and scoring).

    python benchmarks/fov_defects_72.py

Writes results/fov_defects_72.json / .md.
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
from region_measures import study_checks, study_means, write_gate  # noqa: E402
from region_targets import region_alone, score_pool, train_heads  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.train import distill  # noqa: E402

COUNT = 72
BASE, CANDIDATE = "24 per photo", f"{COUNT} per photo"
#: the rule's gains over the baseline (overall, severity 1); its kind and ranking slack are region_measures'
GAIN = 0.005


def baseline() -> tuple[dict, str]:
    """The ``conv`` rows of ``context_head.json`` relabelled as :data:`BASE`, and that run's commit and date."""
    path = HERE / "results" / "context_head.json"
    if not path.exists():
        raise SystemExit(f"{path} is absent: run python benchmarks/context_head.py first (the rule's baseline)")
    run = json.loads(path.read_text())
    rows = {k.replace("conv", BASE, 1): {**r, "head": BASE} for k, r in run["rows"].items() if r["head"] == "conv"}
    return rows, f"{run['machine']['commit']}, {run['machine']['date']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    base_rows, base_run = baseline()
    t0 = time.time()
    distill.FOV_DEFECTS_PER_PHOTO = COUNT  # the candidate: its count keys its own cache entry
    size = distill.DEFAULT["size"]
    names, sets, phi, train, val = pool_features(args, (size,), regions_too=True, families=("defects", "fov-defects"))
    fs = region_alone(sets[size], np.sqrt)
    heads, rows = train_heads(fs, "head", CANDIDATE, train, phi)
    summary, photos = score_pool(heads, rows, names, val, args.data)
    rows = {**base_rows, **rows}
    means = {v: study_means({k: r for k, r in rows.items() if r["head"] == v}) for v in (BASE, CANDIDATE)}
    checks = study_checks(means[CANDIDATE], means[BASE], gain=GAIN, severity_1_gain=GAIN)
    passed = all(checks.values())
    command = " ".join(["python benchmarks/fov_defects_72.py", *sys.argv[1:]])
    trained = sum(p in train for p in fs.photo)
    out = {"benchmark": "fov_defects_72", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "training_samples": trained,
           "baseline": f"context_head.json's conv rows ({base_run})", "seconds": round(time.time() - t0),
           "rows": rows, "means": means, "checks": checks, "passed": passed}
    write_gate("fov_defects_72", out, "Three times the FOV-labelled defects: the study gate",
               f"The shipped map head's training (√region over the perturbations, the 12 local defects per photo and "
               f"{COUNT} labelled by their FOV alone) on {len(train)} training-pool photos ({trained} samples), seeds "
               f"0, 1, 2, scored on the other {len(photos)} degraded by `synth`, against the shipped 24 per photo: "
               f"`context_head.json`'s conv rows ({base_run}). Rule: `results/fov_defects_72_rule.md`. "
               f"Command: `{command}`.", "head", summary, BASE, None)


if __name__ == "__main__":
    main()
