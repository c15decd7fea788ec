"""Which part of the map head's ``union`` target holds it back: the teacher's labels or the
training perturbations themselves? A diagnostic, never shipped.

The shipped map head (384 px, three-scale, conv adapter), seeds 0/1/2, trained on 4 of 5
training-pool photos on the region maps alone (how much detail each label-free perturbation
destroyed, ``efiqa.train.regions`` as shipped; the unperturbed photos' maps are 0, so real defects
of the pool photos are taught as clean), scored on the other fifth degraded by ``synth``, as
``region_targets.py`` and ``region_measures.py`` score. Read beside them:

- teacher labels alone (``region_targets.md``, ``soft``): 0.80;
- the union (``region_measures.md``, ``cs``): 0.86;
- ``synth``'s own masks (``feature_ceiling.md``): 0.99, a ceiling trained on the generator it is scored on.

If the region maps alone come near the masks, the teacher's share of the union (its noise on clean
cells) is what holds the map back; if they stay near the union, the perturbations' kinds do (what
the head is never shown). Never ``soft``, never the held-out photos of ``accuracy.py``.

    python benchmarks/region_only.py

Writes results/region_only.json / .md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from region_targets import region_alone, score_pool, seed_means, seed_table, train_heads  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.train import distill  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    t0 = time.time()
    size = distill.DEFAULT["size"]
    names, sets, phi, train, val = pool_features(args, (size,), regions_too=True)
    fs = sets[size]
    heads, rows = train_heads(region_alone(fs), "target", "region only", train, phi)
    summary, photos = score_pool(heads, rows, names, val, args.data)
    kinds, sevs = list(summary["per_kind"]), list(summary["per_severity"])
    mean = seed_means(rows)
    results = HERE / "results"
    others = {"teacher labels (region_targets.json, soft)": json.loads((results / "region_targets.json").read_text())
              ["gate"]["means"]["soft"],
              "union (region_measures.json, cs)": json.loads((results / "region_measures.json").read_text())
              ["gate"]["means"]["cs"]}
    command = " ".join(["python benchmarks/region_only.py", *sys.argv[1:]])
    out = {"benchmark": "region_only", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "seconds": round(time.time() - t0),
           "rows": rows, "mean": mean, "beside": others}
    (results / "region_only.json").write_text(json.dumps(out, indent=2) + "\n")
    md = ["# The region maps alone as the map head's target (diagnostic)", "",
          f"The shipped map head trained on the perturbations' region maps alone, on {len(train)} training-pool photos; "
          f"scored on the other {len(photos)} degraded by `synth` (patch AUROC). Command: `{command}`.", "",
          *seed_table(rows, "target", sevs, kinds)]
    md += ["", "Means over seeds 0-2, beside the other targets' (same photos, split, head and seeds):", "",
           "| target | overall | ranking | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
    md += [f"| {t} | {m['overall']:.4f} | {m['ranking']:.3f} | " + " | ".join(f"{m['per_kind'][k]:.3f}" for k in kinds)
           + " |" for t, m in {"region only": mean, **others}.items()]
    (results / "region_only.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
