"""FP16 and INT8 (MinMax, Percentile) variants of a bundle against its FP32 maps, on real photos:
calibration on the teacher-training photos, verification on the held-out ones (disjoint).
INT8 runs as Q/DQ in ONNX Runtime with graph optimisations off (simulates TensorRT's int8 math).

    python benchmarks/precision_fidelity.py [--model BUNDLE] [--data DIR] [--tag T]

Writes benchmarks/results/precision_fidelity.json (+ .md; precision_fidelity_TAG.* with --tag).
Equivalent CLI:
    efiqa calibrate PHOTOS --out calib/ && efiqa verify --precision int8 --calib calib/ --images HELD_OUT --out DIR
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

from efiqa.build import variants  # noqa: E402
from efiqa.build.verify import run_maps  # noqa: E402
from efiqa.bundle import load_bundle  # noqa: E402
from efiqa.calibration import calibset  # noqa: E402
from efiqa.train.data import HELD_OUT, REAL_DEGRADED, TEACHER_TRAIN, data_root, resolve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--tag", help="suffix of the result files (precision_fidelity_TAG.json …)")
    args = ap.parse_args()
    stem = "precision_fidelity" + (f"_{args.tag}" if args.tag else "")
    root = data_root(args.data)
    bundle = load_bundle(args.model)
    calib_files = [resolve(n, root) for n in TEACHER_TRAIN]
    verify_files = [resolve(n, root) for n in HELD_OUT + REAL_DEGRADED]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cm = calibset.build(calib_files, Path(tmp) / "calib", args.model, size=len(calib_files), progress=False)
        calib, _ = calibset.load(Path(tmp) / "calib")
        tensors, valid, names, photos = variants.verification_tensors(bundle, verify_files, skip=set(cm.images))
        decoded = dict(zip(names, photos))
        degraded = variants.degraded_tensors(bundle, [decoded[str(resolve(n, root))] for n in HELD_OUT
                                                      if str(resolve(n, root)) in decoded])
        t = time.perf_counter()
        run_maps(bundle.onnx_bytes, tensors, bundle.manifest.input_name)
        fp32_s = time.perf_counter() - t
        cases = (("fp16", None, True), ("int8", "minmax", False), ("int8", "percentile", False),
                 ("int8", "minmax", True), ("int8", "percentile", True))
        for precision, method, keep_sensitive in cases:
            onnx_bytes, info = variants.make_variant(bundle, precision, calib if precision == "int8" else None,
                                                     method or "minmax", keep_sensitive_fp32=keep_sensitive)
            fid = variants.gate(bundle, onnx_bytes, precision, tensors, valid, degraded)
            rows.append({"precision": precision, "method": method, "onnx_mb": round(len(onnx_bytes) / 2**20, 2),
                         **fid.to_dict(), **info})
            print(f"{precision} {method or ''} sensitive-in-float={keep_sensitive}: r={fid.pearson:.5f} max|Δp|={fid.max_abs_dp:.4f} "
                  f"gradable agreement={fid.gradable_agreement:.3f} → {'PASS' if fid.passed else 'FAIL'}", flush=True)
    result = {"benchmark": "precision_fidelity", "command": "python benchmarks/precision_fidelity.py "
              + " ".join(sys.argv[1:]), "machine": stamp(), "model": bundle.manifest.name,
              "calibration": {"photos": len(cm.images), "strata":
              {k: len(v) for k, v in cm.strata.items()}, "sha256": cm.sha256}, "verification_photos": names,
              "fp32_onnx_mb": round(len(bundle.onnx_bytes) / 2**20, 2), "fp32_seconds": fp32_s, "variants": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    md = ["| variant | ONNX MB | Pearson r | max abs Δp | mean abs Δp | gradable decisions kept | patch decisions kept "
          "| patch AUROC (fp32 → variant) | gate |", "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['precision']} {r['method'] or ''}"
           f"{' (sensitive convs float)' if r.get('sensitive_kept_fp32') else (' (all convs int8)' if r['precision'] == 'int8' else '')} | {r['onnx_mb']} | {r['pearson']:.5f} | {r['max_abs_dp']:.4f} | "
           f"{r['mean_abs_dp']:.4f} | {r['gradable_agreement']:.3f} | {r['patch_agreement']:.3f} | "
           f"{r['auroc']['fp32']:.3f} → {r['auroc'][r['precision']]:.3f} | "
           f"{'pass' if r['passed'] else 'FAIL'} |" for r in rows]
    (HERE / "results" / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
