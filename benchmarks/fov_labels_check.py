"""Are the FOV-only labels (``distill.fov_labels``) the teacher's own, on every teacher-labelled defect?

The ``fov-defects`` family is labelled without the teacher's networks: the crop (FOV) and the in-FOV
share per cell, computed by the teacher's own steps. This compares them, sample by sample, with the
teacher's labels of the 12 local defects per pool photo in the feature cache (``efiqa train student``
or any study over the ``defects`` family fills it): the same samples kept and refused, the same
FOV, the same coverage to the bit.

    python benchmarks/fov_labels_check.py

Writes results/fov_labels_check.json.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from student_variants import pool_arguments  # noqa: E402

from efiqa.train import distill  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    named = distill.photo_list(None, args.data)
    names, photos = [n for n, _ in named], [p for _, p in named]
    path = args.cache / f"labels_{distill.defect_cache_key(names, args.teacher, 0)}.pkl"
    if not path.exists():
        raise SystemExit(f"{path}: no teacher labels of the defects cached; run efiqa train student first")
    teacher = pickle.loads(path.read_bytes())
    fov = distill.fov_labels(photos, args.augmentations, 0, family="defects")
    same_samples = fov.samples == teacher.samples
    n = len(teacher.samples)
    fov_equal = same_samples and fov.fov == teacher.fov
    coverage_equal = same_samples and all(np.array_equal(a, b) for a, b in zip(fov.coverage, teacher.coverage))
    out = {"benchmark": "fov_labels_check", "command": " ".join(["python benchmarks/fov_labels_check.py", *sys.argv[1:]]),
           "machine": stamp(), "defects": len(photos) * distill.DEFECTS_PER_PHOTO, "labelled_by_teacher": n,
           "refused_by_teacher": teacher.skipped, "refused_by_fov_labels": fov.skipped,
           "same_samples": same_samples, "fov_identical": fov_equal, "coverage_identical": coverage_equal,
           "identical": same_samples and fov_equal and coverage_equal}
    (HERE / "results" / "fov_labels_check.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
