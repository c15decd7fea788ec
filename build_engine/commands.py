"""``efiqa export|calibrate|verify|build``: the toolchain from a trained student to a gated
precision variant and an engine. Registered by the command line without importing onnx, torch or
TensorRT; each command imports what it needs when it runs (exit 3 with one line where it is missing)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from efiqa.cli_helpers import collect_inputs, positive_int, require, training_module
from efiqa.exit_codes import EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE


def register(sub, parser_class) -> None:
    """Add ``export``, ``calibrate``, ``verify`` and ``build`` to the ``efiqa`` sub-commands."""
    ex = sub.add_parser("export", help="student (backbone + trained adapter) → ONNX bundle",
                        description="Export backbone + adapter to one ONNX (opset 18, normalisation inside, "
                                    "dynamic batch), check it against torch (max |Δ| ≤ 1e-4) and write a bundle.")
    ex.add_argument("--adapter", type=Path, default=Path("models/student"), help="output of 'efiqa train student'")
    ex.add_argument("--out", type=Path, default=Path("models/default"))
    ex.set_defaults(func=cmd_export)

    ca = sub.add_parser("calibrate", help="build an INT8 calibration set from unlabelled photos",
                        description="Preprocess photos exactly as the runtime does, stratify them (dark, bright, "
                                    "blurred, degraded, good) and keep up to --size of them, with a manifest.")
    ca.add_argument("paths", nargs="+", metavar="PATH", help="photos or folders (required: no data, no calibration)")
    ca.add_argument("--model", help="FP32 bundle (default: the shipped one)")
    ca.add_argument("--out", type=Path, required=True, help="calibration folder to write")
    ca.add_argument("--size", type=positive_int, default=200)
    ca.set_defaults(func=cmd_calibrate)

    ve = sub.add_parser("verify", help="make an FP16/INT8 variant and gate it on map fidelity vs FP32",
                        description="Create a precision variant of a bundle and compare its maps with the FP32 "
                                    "bundle on photos disjoint from the calibration set. Only a variant that "
                                    "passes is written (as a bundle); otherwise exit 4 and name the worst layers.")
    ve.add_argument("--precision", choices=["fp16", "int8"], required=True)
    ve.add_argument("--images", nargs="+", required=True,
                    help="verification photos/folders, disjoint from the calibration set")
    ve.add_argument("--perturbations", type=int, default=16, metavar="N",
                    help="label-free perturbed copies of each verification photo (default 16: 13 photos give "
                         "221 inputs; the gate needs at least 200)")
    ve.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    ve.add_argument("--calib", type=Path, help="calibration folder (INT8)")
    ve.add_argument("--method", choices=["minmax", "percentile"], default="percentile", help="INT8 range method")
    ve.add_argument("--exclude", nargs="*", default=[], help="node names kept in float (INT8)")
    ve.add_argument("--quantize-first-last", action="store_true", help="also quantize the first and last conv")
    ve.add_argument("--quantize-sensitive", action="store_true",
                    help="also quantize depthwise convs and convs feeding residual adds (kept float by default)")
    ve.add_argument("--model", help="FP32 bundle (default: the shipped one)")
    ve.add_argument("--out", type=Path, required=True, help="variant bundle folder, written only on a pass")
    ve.add_argument("--json", action="store_true", help="print the fidelity report as JSON")
    ve.set_defaults(func=cmd_verify)

    bu = sub.add_parser("build", help="build a TensorRT or TensorRT-for-RTX engine",
                        description="Parse a bundle's ONNX (precision inside: use a variant from 'efiqa verify') "
                                    "and build a strongly typed engine with its manifest. --target tensorrt builds "
                                    "on the GPU that will run it (Jetson, data-centre GPUs); --target tensorrt-rtx "
                                    "builds ahead of time on any machine, no GPU needed, for RTX-class GPUs of the "
                                    "given compute capabilities. Exit 3 where the library (or, for tensorrt, a "
                                    "GPU) is missing.")
    bu.add_argument("--precision", choices=["fp32", "fp16", "int8"], required=True)
    bu.add_argument("--target", choices=["tensorrt", "tensorrt-rtx"],
                    help="engine library (default: the installed one, full TensorRT first)")
    bu.add_argument("--compute-capability", metavar="SM,...",
                    help="tensorrt-rtx targets, e.g. 86,89,120 (the default: Ampere, Ada, Blackwell RTX GPUs)")
    bu.add_argument("--model", help="bundle of that precision (default: the shipped bundle, fp32)")
    bu.add_argument("--calib", type=Path, help="calibration folder: make the INT8 variant here, unverified")
    bu.add_argument("--out", type=Path, required=True, help="engine file (its manifest goes to <out>.json)")
    bu.add_argument("--workspace", type=int, default=1024, metavar="MB")
    bu.add_argument("--timing-cache", type=Path)
    bu.add_argument("--max-batch", type=positive_int, default=8)
    bu.set_defaults(func=cmd_build)


def cmd_export(args: argparse.Namespace) -> int:
    distill = training_module("distill")
    build = training_module("efiqa.build.student_bundle")
    student, meta = distill.load_student(args.adapter)
    path, err = build.export_student(student, meta, args.out)
    print(f"exported {path} (max |Δ| vs torch {err:.1e})")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from efiqa.calibration import calibset
    m = calibset.build(args.paths, args.out, args.model, size=args.size, progress=sys.stderr.isatty())
    counts = ", ".join(f"{k} {len(v)}" for k, v in m.strata.items())
    print(f"calibration set: {len(m.images)} photos ({counts}); {len(m.skipped)} skipped; sha256 {m.sha256[:16]}… "
          f"→ {args.out}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from efiqa.bundle import load_bundle

    require("onnx", "build")
    from efiqa.build import variants
    if args.perturbations < 0:
        print("efiqa: error: --perturbations must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    bundle = load_bundle(args.model)
    calib, calib_sha, calib_images = None, None, set()
    if args.precision == "int8":
        if not args.calib:
            print("efiqa: error: --calib is required for int8", file=sys.stderr)
            return EXIT_USAGE
        from efiqa.calibration import calibset
        calib, cm = calibset.load(args.calib, bundle)
        calib_sha, calib_images = cm.sha256, set(cm.images)
    files, _ = collect_inputs(args.images)
    overlap = calib_images & {str(f) for f in files}
    progress = sys.stderr.isatty()
    tensors, valid, names, photos = variants.verification_tensors(bundle, files, skip=calib_images,
                                                                  perturbations=args.perturbations, seed=args.seed,
                                                                  progress=progress)
    variant, info = variants.make_variant(bundle, args.precision, calib, args.method, args.exclude,
                                          not args.quantize_first_last, not args.quantize_sensitive)
    fid = variants.gate(bundle, variant, args.precision, tensors, valid, variants.degraded_tensors(bundle, photos))
    report = {**fid.to_dict(), "verification_inputs": names, "perturbations_per_photo": args.perturbations,
              "skipped_as_calibration": sorted(overlap), **info}
    if args.json:
        print(json.dumps(report, default=float))
    else:
        lo, hi = fid.agreement_ci95
        print(f"{args.precision}: Pearson r {fid.pearson:.5f}, max |Δp| {fid.max_abs_dp:.4f}, patch decisions kept "
              f"{fid.patch_agreement:.2%}, gradable decisions kept {fid.gradable_agreement:.2%} (95 % CI "
              f"{lo:.1%}-{hi:.1%}; {fid.flipped} flipped) on {fid.frames} inputs "
              f"({len(photos)} photos × {args.perturbations} perturbations + originals) → "
              f"{'PASS' if fid.passed else 'FAIL'}")
        if fid.auroc:
            a = fid.auroc
            print(f"patch AUROC on {a['frames']} degraded copies (evaluation degradations): fp32 {a['fp32']:.4f}, "
                  f"{args.precision} {a[args.precision]:.4f} (change {a['change']:+.4f})")
    if not fid.passed:
        worst = ", ".join(f"{n} ({e:.3f})" for n, e in fid.worst_layers)
        print(f"efiqa: variant not written: it fails the fidelity gate ({'; '.join(fid.failures)}); "
              f"worst layers: {worst}", file=sys.stderr)
        return EXIT_GATE_FAILED
    variants.write_variant(bundle, variant, args.precision, fid, args.out, calib_sha, info)
    print(f"wrote deployable {args.precision} bundle {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    import hashlib

    from efiqa.bundle import load_bundle

    from efiqa.build import trt_build
    target, trt = trt_build.resolve_target(args.target)  # before any work: exit 3 where none is installed
    if target == "tensorrt-rtx":
        try:
            trt_build.parse_compute_capabilities(trt, args.compute_capability)
        except ValueError as exc:
            print(f"efiqa: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    elif args.compute_capability:
        print("efiqa: error: --compute-capability is for --target tensorrt-rtx (tensorrt builds for this GPU)",
              file=sys.stderr)
        return EXIT_USAGE
    bundle = load_bundle(args.model)
    m = bundle.manifest
    onnx_bytes, calib_sha = bundle.onnx_bytes, m.calibration_sha256
    if m.precision != args.precision:
        if m.precision != "fp32":
            print(f"efiqa: error: {bundle.path} is a {m.precision} bundle, not {args.precision}", file=sys.stderr)
            return EXIT_USAGE
        if args.precision != "fp32":  # convenience: make the variant here, without the fidelity gate
            require("onnx", "build")
            from efiqa.build import variants
            calib = None
            if args.precision == "int8":
                if not args.calib:
                    print("efiqa: error: int8 needs --calib, or a verified int8 bundle via --model", file=sys.stderr)
                    return EXIT_USAGE
                from efiqa.calibration import calibset

                calib, cm = calibset.load(args.calib, bundle)
                calib_sha = cm.sha256
            onnx_bytes, _ = variants.make_variant(bundle, args.precision, calib)
            print("efiqa: warning: this variant has not passed 'efiqa verify'", file=sys.stderr)
    built = trt_build.build_engine(onnx_bytes, args.out, precision=args.precision, bundle_sha256=bundle.root_sha256,
                                   onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(), target=target,
                                   compute_capabilities=args.compute_capability,
                                   input_name=m.input_name, input_shape=(3, m.input_size, m.input_size),
                                   calibration_sha256=calib_sha, max_batch=args.max_batch,
                                   workspace_mb=args.workspace, timing_cache=args.timing_cache,
                                   progress=sys.stderr.isatty(), source=str(bundle.path))
    em = built.manifest
    where = (f"for compute capabilities {em.compute_capability}" if em.target == "tensorrt-rtx"
             else f"for {em.gpu_name} (sm {em.compute_capability})")
    convs = em.layer_precisions.get("convolution", {})
    conv_text = ("; convolutions " + ", ".join(f"{n} {t}" for t, n in sorted(convs.items()))) if convs else ""
    print(f"built {args.out}: {em.precision}, {em.target} {em.tensorrt_version} {where}{conv_text}; "
          f"{built.size_bytes / 2**20:.1f} MiB in {built.seconds:.1f} s")
    return EXIT_OK


