"""Three map heads averaged: the study gate of ``results/map_ensemble_rule.md`` (written before any result).

The shipped map head's training of ``fov_defects.md`` (√region over the perturbations, the 12
teacher-labelled and the 24 FOV-labelled local defects of 4 of 5 training-pool photos) from seeds
0 to 4, one head each; the candidate for s = 0, 1, 2 is the mean logit of the heads of seeds s,
s + 1, s + 2 (what ``distill.train_adapter(..., members=3, seed=s)`` trains: member m from seed
s + m). Everything is scored on the other fifth degraded by ``synth``, against the single heads of
seeds 0, 1, 2 of the same run; never ``soft``, never the held-out photos of ``accuracy.py``.

    python benchmarks/map_ensemble.py

Writes results/map_ensemble.json / .md.
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
from region_targets import SEEDS, region_alone, score_pool, train_heads  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.train import distill  # noqa: E402
from efiqa.train.nets.adapter import combine  # noqa: E402

MEMBERS = 3
#: the rule's gains over the single heads (overall, severity 1); its kind and ranking slack are region_measures'
GAIN = 0.005
SINGLE, ENSEMBLE = "1 head", f"{MEMBERS} heads"


def ensembles(heads: dict, rows: dict) -> tuple[dict, dict]:
    """The candidate for each seed s of :data:`SEEDS`: the mean logit of the single heads of seeds
    s … s + MEMBERS − 1, keyed and described as :func:`region_targets.train_heads` keys its rows."""
    out_heads, out_rows = {}, {}
    for s in SEEDS:
        key = f"{ENSEMBLE} | seed {s}"
        out_heads[key] = combine([heads[f"{SINGLE} | seed {s + m}"] for m in range(MEMBERS)]).eval()
        out_rows[key] = {**rows[f"{SINGLE} | seed {s}"], "heads": ENSEMBLE}
    return out_heads, out_rows


def reproduced(rows: dict) -> float | None:
    """The largest difference in overall AUROC between this run's single heads and ``fov_defects.json``'s
    rows of the same seeds (None: that file is absent)."""
    path = HERE / "results" / "fov_defects.json"
    if not path.exists():
        return None
    old = {r["seed"]: r["overall"] for r in json.loads(path.read_text())["rows"].values()}
    return max(abs(r["overall"] - old[r["seed"]]) for r in rows.values() if r["seed"] in old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    t0 = time.time()
    size = distill.DEFAULT["size"]
    names, sets, phi, train, val = pool_features(args, (size,), regions_too=True, families=("defects", "fov-defects"))
    seeds = tuple(range(SEEDS[0], SEEDS[-1] + MEMBERS))
    singles, single_rows = train_heads(region_alone(sets[size], np.sqrt), "heads", SINGLE, train, phi, seeds=seeds)
    scored_singles = {k: r for k, r in single_rows.items() if r["seed"] in SEEDS}
    ens, ens_rows = ensembles(singles, single_rows)
    heads = {**{k: singles[k] for k in scored_singles}, **ens}
    rows = {**scored_singles, **ens_rows}
    summary, photos = score_pool(heads, rows, names, val, args.data)
    means = {v: study_means({k: r for k, r in rows.items() if r["heads"] == v}) for v in (SINGLE, ENSEMBLE)}
    checks = study_checks(means[ENSEMBLE], means[SINGLE], gain=GAIN, severity_1_gain=GAIN)
    passed = all(checks.values())
    drift = reproduced(scored_singles)
    command = " ".join(["python benchmarks/map_ensemble.py", *sys.argv[1:]])
    trained = sum(p in train for p in sets[size].photo)
    out = {"benchmark": "map_ensemble", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "training_samples": trained,
           "seconds": round(time.time() - t0), "rows": rows, "means": means,
           "single_rows_vs_fov_defects_json (largest overall difference)": drift, "checks": checks, "passed": passed}
    write_gate("map_ensemble", out, "Three map heads averaged: the study gate",
               f"The shipped map head trained on √region over the perturbations, the 12 local defects per photo and the "
               f"24 labelled by their FOV alone of {len(train)} training-pool photos ({trained} samples), from seeds "
               f"{seeds[0]} to {seeds[-1]}; `{ENSEMBLE} | seed s` is the mean logit of seeds s to s + {MEMBERS - 1}. "
               f"Scored on the other {len(photos)} degraded by `synth`, against the single heads of seeds "
               f"{', '.join(map(str, SEEDS))}. Rule: `results/map_ensemble_rule.md`. Command: `{command}`.",
               "heads", summary, SINGLE, drift)


if __name__ == "__main__":
    main()
