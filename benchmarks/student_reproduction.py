"""Does a fresh ``efiqa train student`` reproduce the shipped adapter (models/student)?

Run the training from an empty cache first (it relabels every perturbation: ~45 min on 2 cores,
then ~20 min of features and adapters), then compare:

    efiqa train student --out /tmp/repro/student --cache /tmp/repro/cache
    efiqa export --adapter /tmp/repro/student --out /tmp/repro/default
    python benchmarks/student_reproduction.py /tmp/repro/student --cache /tmp/repro/cache --bundle /tmp/repro/default

Writes benchmarks/results/student_reproduction.json: the sha256 of both adapters' weights, the
largest weight difference, whether the thresholds and sample counts agree, with ``--bundle`` the
sha256 of the fresh export's ONNX against models/default's, and which perturbed photos the teacher
refused (from the fresh run's label cache).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fresh", type=Path, help="the adapter folder the fresh run wrote")
    ap.add_argument("--shipped", type=Path, default=Path("models/student"))
    ap.add_argument("--cache", type=Path, help="the fresh run's cache folder (for the refused perturbations)")
    ap.add_argument("--bundle", type=Path, help="the fresh adapter exported (efiqa export), compared with models/default")
    args = ap.parse_args()

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
           "reproduced": diff == 0.0 and all(agree.values())}
    if args.bundle:
        onnx = {"fresh": sha256(args.bundle / "model.onnx"), "shipped": sha256(Path("models/default/model.onnx"))}
        out.update(onnx_sha256=onnx, reproduced=out["reproduced"] and onnx["fresh"] == onnx["shipped"])
    if args.cache:
        labels = sorted(args.cache.glob("labels_*.pkl"), key=lambda p: p.stat().st_mtime)
        if labels:
            skipped = pickle.loads(labels[-1].read_bytes()).skipped
            out["refused_perturbations"] = skipped
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "student_reproduction.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
