"""How the teacher's distillation labels are spread (label-free: no quality label, no evaluation).

The teacher's mean anomaly per cell (the ``soft`` target) on the training pool's unperturbed photos
and on their label-free perturbations, cells with FOV coverage ≥ 0.5, from the cached labels of
``efiqa train student``'s defaults. Why it matters: a degradation map combined with these labels by
a maximum would hide every value below the labels of clean cells, which is why the ``union`` target
combines them either-or (``results/region_targets_rule.md``).

    python benchmarks/label_spread.py [--data DIR] [--teacher models/teacher] [--cache benchmarks/.cache]

Needs the labels cache (made by ``efiqa train student`` or any benchmark that trains on the pool).
Writes benchmarks/results/label_spread.json.
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

from efiqa.train import distill  # noqa: E402
from efiqa.train.data import data_root, training_pool  # noqa: E402

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    ap.add_argument("--augmentations", type=int, default=24)
    ap.add_argument("--cache", type=Path, default=HERE / ".cache")
    args = ap.parse_args()
    names = training_pool(data_root(args.data))
    path = args.cache / f"labels_{distill.label_cache_key(names, args.teacher, args.augmentations, 0)}.pkl"
    if not path.exists():
        sys.exit(f"no labels cache at {path}: run 'efiqa train student' first")
    labels = pickle.loads(path.read_bytes())
    score, valid = np.stack(labels.score), np.stack(labels.coverage) >= 0.5
    unperturbed = np.array([k == 0 for _, k in labels.samples])
    spread = {name: {f"q{round(q * 100)}": float(np.quantile(score[sel][valid[sel]], q)) for q in QUANTILES}
              for name, sel in (("unperturbed", unperturbed), ("perturbed", ~unperturbed))}
    out = {"benchmark": "label_spread", "command": " ".join(["python benchmarks/label_spread.py", *sys.argv[1:]]),
           "machine": stamp(), "labels_cache": path.name, "samples": len(labels.samples),
           "teacher_mean_anomaly_per_cell": spread}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "label_spread.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(spread, indent=2))


if __name__ == "__main__":
    main()
