"""How many adapter heads to average, chosen label-free: a candidate for ``distill.DEFAULT["members"]``,
which ships only if it then passes a held-out check (3 did not: ``results/accuracy_ensemble.md``).

Every member is the shipped head (``distill.DEFAULT``: size, features, head, target) trained alike
from its own seed (0, 1, …); the student's map is the mean of their logits
(``training/nets/adapter.Ensemble``). Quality is judged as in ``student_variants.py``: agreement with
the teacher's patch scores (Pearson r) and its rule (AUROC) on perturbed photos of training-set photos
held out of adapter training (a photo-level split, every fifth photo). Cost: FLOPs of the exported
student (2 × MACs of Conv/MatMul/Gemm; latency is measured beside the teacher in ``accuracy.py``).

Rule, fixed before the first run: the fewest members whose r lies within 0.002 of the best r over
1…``--max`` members, among those adding at most 10 % FLOPs to the single-head student. The output also
gives each choice's margin and the gain of each added member, since a "within the best" rule drifts
with ``--max``.

    python benchmarks/adapter_ensemble.py [--max 5]

Writes benchmarks/results/adapter_ensemble.json / .md.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from peers import count  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.build.export import export_onnx  # noqa: E402
from efiqa.eval.metrics import auroc  # noqa: E402
from efiqa.train import distill  # noqa: E402
from efiqa.train.nets.adapter import combine  # noqa: E402

TIE = 0.002
MAX_EXTRA_FLOPS = 0.10


def choose(rows: list[dict]) -> tuple[dict, float]:
    """(the fewest members within ``TIE`` of the best r, that best r), among the rows within the
    FLOPs allowance."""
    allowed = [r for r in rows if r["extra_flops"] <= MAX_EXTRA_FLOPS]
    best = max(r["val_pearson_vs_teacher_score"] for r in allowed)
    return min((r for r in allowed if r["val_pearson_vs_teacher_score"] >= best - TIE),
               key=lambda r: r["members"]), best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    ap.add_argument("--max", type=int, default=5, help="most members tried (default 5)")
    args = ap.parse_args()
    if args.max < 1:
        ap.error("--max must be at least 1")
    cfg = distill.DEFAULT
    names, sets, phi, train, val = pool_features(args, (cfg["size"],))
    fs = sets[cfg["size"]]
    full = distill.train_adapter(fs, cfg["features"], cfg["head"], phi=phi, seed=0, train_photos=train,
                                 target=cfg["target"], members=args.max)
    heads = list(full.head.members) if args.max > 1 else [full.head]
    rows = []
    for k in range(1, args.max + 1):
        res = distill.AdapterResult(combine(heads[:k]).eval(), full.feature_kind, full.size, [], 0)
        prob, frac, score, valid = distill.predict(res, fs, val)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "student.onnx"
            path.write_bytes(export_onnx(distill.assemble(res), cfg["size"]))
            params, flops = count(path)
        r = float(np.corrcoef(prob[valid], score[valid])[0, 1])
        rows.append({"members": k, "val_pearson_vs_teacher_score": r,
                     "gain_over_one_fewer": r - rows[-1]["val_pearson_vs_teacher_score"] if rows else None,
                     "val_auroc_vs_teacher": auroc(prob[valid], frac[valid] >= phi), "params": params,
                     "gflops": flops / 1e9, "extra_flops": flops / 1e9 / rows[0]["gflops"] - 1 if rows else 0.0})
        print(rows[-1], flush=True)
    chosen, best = choose(rows)
    margin = chosen["val_pearson_vs_teacher_score"] - (best - TIE)
    out = {"benchmark": "adapter_ensemble", "command": " ".join(["python benchmarks/adapter_ensemble.py", *sys.argv[1:]]),
           "machine": stamp(), "config": {k: v for k, v in cfg.items() if k != "members"},
           "validation_photos": sorted(names[i] for i in val), "rule": {"tie": TIE, "max_extra_flops": MAX_EXTRA_FLOPS},
           "rows": rows, "chosen_members": chosen["members"], "chosen_margin_over_tie": margin}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "adapter_ensemble.json").write_text(json.dumps(out, indent=2) + "\n")
    md = ["# Adapter ensemble: how many heads to average", "",
          f"Shipped head ({cfg['head']}, {cfg['features']}, {cfg['size']} px, {cfg['target']} target) trained from seeds "
          f"0…{args.max - 1}; map = mean logit of the first n. Label-free: agreement with the teacher on perturbed copies "
          f"of {len(val)} held-out training-set photos. Rule (fixed before the run): fewest members within {TIE} of the "
          f"best r, at most +{MAX_EXTRA_FLOPS:.0%} FLOPs. Command: `{out['command']}`.", "",
          "| members | Pearson r vs teacher score | gain over one fewer | AUROC vs teacher rule | params | GFLOPs | "
          "extra FLOPs |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['members']} | {r['val_pearson_vs_teacher_score']:.4f} | "
           f"{'—' if r['gain_over_one_fewer'] is None else format(r['gain_over_one_fewer'], '+.4f')} | "
           f"{r['val_auroc_vs_teacher']:.4f} | {r['params']} | {r['gflops']:.3f} | {r['extra_flops']:+.1%} |"
           for r in rows]
    md += ["", f"Chosen: {chosen['members']} members, {margin:.1e} inside the tie (r {best:.4f} − {TIE} = "
               f"{best - TIE:.4f}{'; a thin margin' if margin < TIE / 4 else ''}) on {len(val)} photos. Each member adds "
               f"{rows[1]['extra_flops'] if len(rows) > 1 else 0:.1%} FLOPs."]
    (HERE / "results" / "adapter_ensemble.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
