"""A map head that sees the whole photo: the study gate of ``results/context_head_rule.md`` (written before any result).

The shipped map head's training of ``fov_defects.md`` (√region over the perturbations, the 12
teacher-labelled and the 24 FOV-labelled local defects of 4 of 5 training-pool photos) with the
shipped ``conv`` head and with the ``context`` head (``adapter.ContextHead``: its first layer also
sees the photo's mean features), each from seeds 0, 1, 2. Scored on the other fifth degraded by
``synth``; never ``soft``, never the held-out photos of ``accuracy.py``.

    python benchmarks/context_head.py

Writes results/context_head.json / .md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from map_ensemble import reproduced  # noqa: E402
from region_measures import study_checks, study_means, write_gate  # noqa: E402
from region_targets import region_alone, score_pool, train_heads  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.train import distill  # noqa: E402

BASE, CANDIDATE = "conv", "context"
#: the rule's gains over the conv heads (overall, severity 1); its kind and ranking slack are region_measures'
GAIN = 0.005


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    t0 = time.time()
    size = distill.DEFAULT["size"]
    names, sets, phi, train, val = pool_features(args, (size,), regions_too=True, families=("defects", "fov-defects"))
    fs = region_alone(sets[size], np.sqrt)
    heads, rows = {}, {}
    for kind in (BASE, CANDIDATE):
        h, r = train_heads(fs, "head", kind, train, phi, head=kind)
        heads.update(h)
        rows.update(r)
    params = {kind: sum(p.numel() for p in heads[f"{kind} | seed 0"].parameters()) for kind in (BASE, CANDIDATE)}
    summary, photos = score_pool(heads, rows, names, val, args.data)
    means = {v: study_means({k: r for k, r in rows.items() if r["head"] == v}) for v in (BASE, CANDIDATE)}
    checks = study_checks(means[CANDIDATE], means[BASE], gain=GAIN, severity_1_gain=GAIN)
    passed = all(checks.values())
    drift = reproduced({k: r for k, r in rows.items() if r["head"] == BASE})
    command = " ".join(["python benchmarks/context_head.py", *sys.argv[1:]])
    trained = sum(p in train for p in fs.photo)
    out = {"benchmark": "context_head", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "training_samples": trained,
           "parameters": params, "seconds": round(time.time() - t0), "rows": rows, "means": means,
           "conv_rows_vs_fov_defects_json (largest overall difference)": drift, "checks": checks, "passed": passed}
    write_gate("context_head", out, "A map head that sees the whole photo: the study gate",
               f"The shipped map head's training (√region over the perturbations, the 12 local defects per photo and "
               f"the 24 labelled by their FOV alone) on {len(train)} training-pool photos ({trained} samples), as the "
               f"shipped `{BASE}` head ({params[BASE]} parameters) and as the `{CANDIDATE}` head ({params[CANDIDATE]}: "
               f"its first layer also sees the photo's mean features), each from seeds 0, 1, 2. Scored on the other "
               f"{len(photos)} degraded by `synth`. Rule: `results/context_head_rule.md`. Command: `{command}`.",
               "head", summary, BASE, drift)


if __name__ == "__main__":
    main()
