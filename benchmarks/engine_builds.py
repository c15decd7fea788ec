"""Real TensorRT-for-RTX engine builds of the shipped student on this machine (ahead of time, no
GPU): build time, engine size and what the built engine's convolutions read, per precision.

    python benchmarks/engine_builds.py [--model BUNDLE] [--int8 BUNDLE] [--compute-capability 86,89,120]

FP32 is the bundle itself; FP16 is made as ``efiqa verify --precision fp16`` makes it; INT8 is the
verified INT8 bundle given with --int8 (default: the shipped models/default-int8, which passed
``efiqa verify``; see benchmarks/precision_fidelity.py). Writes benchmarks/results/engine_builds.json (+ .md). Full TensorRT (Jetson,
data-centre GPUs) builds only on the GPU that runs the engine: not measured here.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

from efiqa.build.trt_build import DEFAULT_RTX_CCS, build_engine  # noqa: E402
from efiqa.build.variants import make_variant  # noqa: E402
from efiqa.bundle import load_bundle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--int8", help="a verified INT8 bundle (efiqa verify --precision int8 --out …)")
    ap.add_argument("--compute-capability", default=",".join(DEFAULT_RTX_CCS))
    ap.add_argument("--repeats", type=int, default=3, help="builds per precision (median time reported)")
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    m = bundle.manifest
    graphs = {"fp32": (bundle.onnx_bytes, "the FP32 bundle"), "fp16": (make_variant(bundle, "fp16")[0],
                                                                         "FP16 variant (efiqa verify's)")}
    int8 = Path(args.int8) if args.int8 else HERE.parent / "models" / "default-int8"
    if int8.exists():
        variant = load_bundle(int8)
        if variant.manifest.variant_of != bundle.sha256:
            raise SystemExit(f"{int8} is a variant of {variant.manifest.variant_of}, not of {args.model or 'the shipped bundle'} "
                             f"({bundle.sha256[:12]}…): make it first (precision_fidelity.py --write-bundles)")
        graphs["int8"] = (variant.onnx_bytes, f"verified INT8 bundle {int8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision, (onnx_bytes, what) in graphs.items():
            times = []
            for _ in range(args.repeats):
                built = build_engine(onnx_bytes, Path(tmp) / f"{precision}.engine", precision=precision,
                                     bundle_sha256=bundle.root_sha256,
                                     onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(), input_name=m.input_name,
                                     input_shape=(3, m.input_size, m.input_size), target="tensorrt-rtx",
                                     compute_capabilities=args.compute_capability, progress=False)
                times.append(built.seconds)
            em = built.manifest
            rows.append({"precision": precision, "source": what, "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                         "target": "tensorrt-rtx",
                         "library_version": em.tensorrt_version, "compute_capabilities": em.compute_capability,
                         "onnx_mib": round(len(onnx_bytes) / 2**20, 2), "engine_mib": round(built.size_bytes / 2**20, 2),
                         "build_seconds_median": round(statistics.median(times), 2), "builds": len(times),
                         "layer_precisions": em.layer_precisions, "network_layers": built.network_layers})
            print(f"{precision}: {rows[-1]['engine_mib']} MiB engine in {rows[-1]['build_seconds_median']} s; "
                  f"convolutions {em.layer_precisions.get('convolution')}", flush=True)
    result = {"benchmark": "engine_builds", "command": "python benchmarks/engine_builds.py " + " ".join(sys.argv[1:]),
              "machine": stamp(), "model": m.name, "bundle_sha256": bundle.root_sha256, "rows": rows,
              "not_measured": "full TensorRT builds (they need the GPU that runs the engine); running any engine"}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "engine_builds.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["| precision | target | compute capabilities | ONNX MiB | engine MiB | build s (median) | convolutions read |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['precision']} | {r['target']} {r['library_version']} | {r['compute_capabilities']} | {r['onnx_mib']} | "
           f"{r['engine_mib']} | {r['build_seconds_median']} | "
           f"{', '.join(f'{n} {t}' for t, n in sorted(r['layer_precisions'].get('convolution', {}).items()))} |"
           for r in rows]
    (HERE / "results" / "engine_builds.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
