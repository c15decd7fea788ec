"""FP16 and INT8 variants of a bundle against its FP32 maps, gated as ``efiqa verify`` gates them:
on ≥ 200 inputs — the held-apart photos (never trained on, never in the calibration set) and
label-free perturbed copies of them (``efiqa.train.augment``) — with a 95 % interval for decision
agreement, and patch AUROC on the evaluation degradations of the held-out originals.

Calibration: the teacher-training photos and the unlabelled pool (``unlabelled/``: three more
cameras), i.e. label-free training data only. INT8 runs as Q/DQ in ONNX Runtime with graph
optimisations off (simulates TensorRT's int8 arithmetic). Besides the default INT8 recipe, each
ablation quantizes one more thing, to show why it stays float.

    python benchmarks/precision_fidelity.py [--model BUNDLE] [--data DIR] [--perturbations 16] [--write-bundles]

Writes benchmarks/results/precision_fidelity.json (+ .md); --write-bundles also writes the passing
FP16 and INT8 variants to models/default-fp16 and models/default-int8 (what `efiqa verify` writes).
Equivalent CLI for the default rows:
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
from efiqa.calibration.int8 import conv_nodes, quantize  # noqa: E402
from efiqa.train.data import HELD_OUT, REAL_DEGRADED, data_root, resolve, training_pool  # noqa: E402


#: The variants written by --write-bundles when they pass (the CLI's defaults).
SHIPPED = ("fp16", "int8 default (percentile)")


def conv_macs(onnx_bytes: bytes, size: int) -> dict[str, float]:
    """Multiply-accumulates of each Conv at batch 1 (ONNX shape inference), to say what share of
    the network's convolution work runs in INT8."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load_from_string(onnx_bytes)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
    inits = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "Conv" and n.output[0] in shapes and n.input[1] in inits:
            _, c, h, w = shapes[n.output[0]]
            k = inits[n.input[1]]  # (out, in/group, kh, kw)
            out[n.name] = float(c * h * w * k[1] * k[2] * k[3])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--perturbations", type=int, default=16)
    ap.add_argument("--write-bundles", action="store_true")
    args = ap.parse_args()
    root = data_root(args.data)
    bundle = load_bundle(args.model)
    m = bundle.manifest
    calib_files = [resolve(n, root) for n in training_pool(root)]  # the student's own (label-free) training pool
    verify_files = [resolve(n, root) for n in HELD_OUT + REAL_DEGRADED]
    rows, t0 = [], time.perf_counter()
    macs = conv_macs(bundle.onnx_bytes, m.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        cm = calibset.build(calib_files, Path(tmp) / "calib", args.model, size=len(calib_files), progress=True)
        calib, _ = calibset.load(Path(tmp) / "calib", bundle)
        tensors, valid, names, photos = variants.verification_tensors(
            bundle, verify_files, skip=set(cm.images), perturbations=args.perturbations, progress=True)
        held = [p for f, p in zip(verify_files, photos) if f.name in {Path(n).name for n in HELD_OUT}]
        degraded = variants.degraded_tensors(bundle, held)
        print(f"{len(calib)} calibration photos, {len(tensors)} verification inputs, {len(degraded[0])} degraded "
              f"copies ({time.perf_counter() - t0:.0f} s)", flush=True)
        t = time.perf_counter()
        run_maps(bundle.onnx_bytes, tensors, m.input_name)
        fp32_s = time.perf_counter() - t
        convs = conv_nodes(bundle.onnx_bytes)
        cases = [  # (label, precision, quantize() keyword arguments)
            ("fp16", "fp16", None),
            ("int8 default (percentile)", "int8", {"method": "percentile"}),
            ("int8 default (minmax)", "int8", {"method": "minmax"}),
            ("int8, float ops read the rounded copy (ORT's wiring)", "int8",
             {"method": "percentile", "float_reads_float": False}),
            ("int8 + adapter int8", "int8", {"method": "percentile", "keep_adapter_fp32": False}),
            ("int8 + depthwise and residual-feeding convs int8", "int8",
             {"method": "percentile", "keep_sensitive_fp32": False}),
            ("int8 + adds, concats and pools int8, ORT's wiring (the previous recipe)", "int8",
             {"method": "percentile", "ops": ("Conv", "Add", "Concat", "AveragePool"), "keep_adapter_fp32": False,
              "float_reads_float": False}),
        ]
        written = {}
        for label, precision, kw in cases:
            if precision == "fp16":
                onnx_bytes, info = variants.make_variant(bundle, "fp16")
            else:
                onnx_bytes, kept = quantize(bundle.onnx_bytes, calib, m.input_name, **kw)
                info = {"method": kw["method"], "float_nodes": kept}
            fid = variants.gate(bundle, onnx_bytes, precision, tensors, valid, degraded)
            row = {"variant": label, "precision": precision, "onnx_mb": round(len(onnx_bytes) / 2**20, 2),
                   **fid.to_dict(), **info}
            if precision == "int8":
                int8 = [c for c in convs if c not in set(info["float_nodes"])]
                row["convs_int8"] = f"{len(int8)} of {len(convs)}"
                row["conv_macs_int8_share"] = sum(macs.get(c, 0) for c in int8) / sum(macs.values())
            rows.append(row)
            print(f"{label}: r={fid.pearson:.5f} max|Δp|={fid.max_abs_dp:.4f} gradable kept={fid.gradable_agreement:.4f} "
                  f"({fid.flipped} flipped; CI {fid.agreement_ci95[0]:.3f}-{fid.agreement_ci95[1]:.3f}) "
                  f"AUROC change {fid.auroc['change']:+.4f} → {'PASS' if fid.passed else 'FAIL ' + '; '.join(fid.failures)}",
                  flush=True)
            if args.write_bundles and fid.passed and label in SHIPPED:
                out = HERE.parent / "models" / f"default-{precision}"
                variants.write_variant(bundle, onnx_bytes, precision, fid, out,
                                       cm.sha256 if precision == "int8" else None, info)
                written[precision] = str(out.relative_to(HERE.parent))
    result = {"benchmark": "precision_fidelity", "command": "python benchmarks/precision_fidelity.py "
              + " ".join(sys.argv[1:]), "machine": stamp(), "model": m.name, "bundle_sha256": bundle.sha256,
              "calibration": {"photos": len(cm.images), "strata": {k: len(v) for k, v in cm.strata.items()},
                              "skipped": cm.skipped, "sha256": cm.sha256, "sources": "the training pool: teacher-training photos + unlabelled/"},
              "verification": {"photos": len(photos), "perturbations_per_photo": args.perturbations,
                               "inputs": len(tensors), "names": names},
              "fp32_onnx_mb": round(len(bundle.onnx_bytes) / 2**20, 2), "fp32_seconds": fp32_s,
              "bundles_written": written, "variants": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "precision_fidelity.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    md = [f"{len(tensors)} inputs ({len(photos)} held-apart photos + {args.perturbations} label-free perturbations "
          f"each); calibration {len(cm.images)} photos; gate: r ≥ 0.98 (FP16 0.999), gradable decisions kept ≥ 99 %, "
          "patch AUROC drop ≤ 0.01, ≥ 200 inputs.", "",
          "| variant | convs INT8 (share of conv MACs) | map Pearson r (score map's) | max abs Δp | gradable decisions kept (95 % CI) "
          "| patch decisions kept | patch AUROC (fp32 → variant) | gate |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['variant']} | {r.get('convs_int8', '-')}"
           f"{' (' + format(r['conv_macs_int8_share'], '.0%') + ')' if 'conv_macs_int8_share' in r else ''} | "
           f"{_pearsons(r)} | {r['max_abs_dp']:.4f} | {r['gradable_agreement']:.3f} ({r['flipped']} flipped; "
           f"{r['agreement_ci95'][0]:.3f}-{r['agreement_ci95'][1]:.3f}) | {r['patch_agreement']:.3f} | "
           f"{r['auroc']['fp32']:.3f} → {r['auroc'][r['precision']]:.3f} | "
           f"{'pass' if r['passed'] else 'FAIL'} |" for r in rows]
    (HERE / "results" / "precision_fidelity.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _pearsons(row: dict) -> str:
    """The map's Pearson r, with the score map's in brackets where the bundle has two heads."""
    score = row.get("score_pearson")
    return f"{row['pearson']:.5f}" + ("" if score is None else f" ({score:.5f})")


if __name__ == "__main__":
    main()
