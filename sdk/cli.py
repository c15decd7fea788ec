"""``efiqa`` command line. Exit codes: 0 ok, 1 usage or model error, 2 some inputs failed,
3 a required backend or library is missing here."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ._version import __version__
from .errors import BackendUnavailableError, EfiqaError, ImageReadError

EXIT_OK, EXIT_USAGE, EXIT_INPUTS, EXIT_MISSING = 0, 1, 2, 3


def _positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a batch of 0 or -1 frames would silently drop inputs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provider", action="append", dest="providers", metavar="EP",
                   help="ONNX Runtime execution provider, repeatable in order of preference "
                        "(e.g. CUDAExecutionProvider); default: CUDA where available, else CPU")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay each batch size as a CUDA graph")


def _options(args: argparse.Namespace) -> dict:
    out = {"cuda_graph": args.cuda_graph}
    if args.providers:
        out["providers"] = args.providers
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 by default; 2 means "inputs failed" here
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="efiqa", description="Spatial fundus image quality maps (EFIQA, label-free).")
    p.add_argument("--version", action="version", version=f"efiqa {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    a = sub.add_parser("assess", help="assess photographs (files or folders)",
                       description="Assess fundus photographs; folders are walked recursively.")
    a.add_argument("paths", nargs="+", metavar="PATH")
    a.add_argument("--model", help="bundle folder or .efiqa zip (default: the shipped bundle)")
    a.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt"])
    a.add_argument("--engine", help="TensorRT engine (with --backend tensorrt/auto)")
    a.add_argument("--out", type=Path, help="write <stem>_overlay.png and <stem>.json here")
    a.add_argument("--json", action="store_true", help="print one JSON object per input (JSON Lines)")
    a.add_argument("--threshold", type=float, help="gradable threshold on the image score (default: manifest)")
    a.add_argument("--threads", type=_positive_int, help="CPU threads for ONNX Runtime")
    _backend_options(a)
    a.add_argument("--batch-size", type=_positive_int, default=4, help="frames per inference call (default 4)")
    a.set_defaults(func=cmd_assess)

    t = sub.add_parser("train", help="train a stage (needs the [train] extra: torch)")
    tsub = t.add_subparsers(dest="stage", metavar="STAGE", parser_class=_Parser, required=True)
    tv = tsub.add_parser("vessels", help="stage 1a: the visible-vessel and anatomy extractors on DRIVE's manual labels")
    tv.add_argument("--data", help="fundus photographs folder (default: $EFIQA_DATA or ../shared/data/fundus)")
    tv.add_argument("--steps", type=int, default=900)
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("--dir", type=Path, default=Path("models/teacher"), help="receives vessels.pt and anatomy.pt")
    tv.set_defaults(func=cmd_train_vessels)

    tt = tsub.add_parser("teacher", help="stage 1b: masked vessel-inpainting teacher on good photos")
    tt.add_argument("--data", help="fundus photographs folder (default: $EFIQA_DATA or ../shared/data/fundus)")
    tt.add_argument("--steps", type=int, default=1500)
    tt.add_argument("--batch", type=int, default=6)
    tt.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda (default: cpu)")
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--dir", type=Path, default=Path("models/teacher"), help="holds vessels.pt and anatomy.pt; receives the teacher")
    tt.add_argument("--calibrate-only", action="store_true",
                    help="keep inpainter.pt; only re-derive teacher.json and baseline.json from the clean photos")
    tt.set_defaults(func=cmd_train_teacher)

    ts = tsub.add_parser("student", help="stage 2: distil the teacher into an adapter on a frozen backbone",
                         description="Distil the teacher into the student adapter from unlabelled photos "
                                     "(adapting to a new camera needs only its photos).")
    ts.add_argument("--images", nargs="+", help="folders/files of unlabelled photos (default: the project's set)")
    ts.add_argument("--data", help="fundus photographs folder for the default set")
    ts.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    ts.add_argument("--backbone", type=Path, metavar="CHECKPOINT",
                    help="a foundation ViT checkpoint you have (DINOv2, RETFound, …; .pth/.safetensors) "
                         "instead of the default ImageNet EfficientNet-Lite0")
    ts.add_argument("--size", type=int, default=384, choices=(384, 512),
                    help="input side of the EfficientNet-Lite0 student: 384 (models/default) or 512 (~1.6x the "
                         "network time, no more accurate on our held-out photos); both give a 16x16 map")
    ts.add_argument("--augmentations", type=int, default=24, help="label-free perturbations per photo")
    ts.add_argument("--epochs", type=int, default=20)
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument("--out", type=Path, default=Path("models/student"), help="adapter weights + config")
    ts.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"), help="feature cache folder")
    ts.set_defaults(func=cmd_train_student)

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
    ca.add_argument("--size", type=_positive_int, default=200)
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
    bu.add_argument("--max-batch", type=_positive_int, default=8)
    bu.set_defaults(func=cmd_build)

    st = sub.add_parser("stream", help="live capture guidance on a video, image folder or camera",
                        description="Guide an operator frame by frame: smoothed map and score, hints, capture "
                                    "trigger. SOURCE is a video file, an image folder (played in name order) "
                                    "or a camera index. Latest frame wins: stale frames are dropped, not queued.")
    st.add_argument("source", metavar="SOURCE")
    st.add_argument("--model", help="bundle (default: the shipped one)")
    st.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "tensorrt"])
    st.add_argument("--engine", help="TensorRT engine")
    st.add_argument("--out", type=Path, help="overlay video to write (.mp4)")
    st.add_argument("--jsonl", type=Path, help="one JSON line per processed frame")
    st.add_argument("--captures", type=Path, help="folder for captured frames (PNG + JSON)")
    st.add_argument("--display", action="store_true", help="show the overlay in a window (needs a GUI OpenCV)")
    st.add_argument("--realtime", action="store_true", help="play files at their own frame rate")
    st.add_argument("--threads", type=_positive_int)
    _backend_options(st)
    st.set_defaults(func=cmd_stream)

    te = sub.add_parser("teacher", help="run the stage-1 teacher (slow, torch) and write its maps",
                        description="Teacher maps for photos: same outputs and JSON keys as 'assess'.")
    te.add_argument("paths", nargs="+", metavar="PATH")
    te.add_argument("--dir", type=Path, default=Path("models/teacher"), help="teacher weights folder")
    te.add_argument("--out", type=Path, help="write <stem>_overlay.png and <stem>.json here")
    te.add_argument("--json", action="store_true", help="print one JSON object per input (JSON Lines)")
    te.set_defaults(func=cmd_teacher)

    from . import bench

    bench.add_parser(sub)

    i = sub.add_parser("info", help="print a bundle's manifest as JSON")
    i.add_argument("model", nargs="?", help="bundle (default: the shipped bundle)")
    i.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: return the code instead of exiting
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except BackendUnavailableError as err:
        print(f"efiqa: error: {err}", file=sys.stderr)
        return EXIT_MISSING
    except EfiqaError as err:
        print(f"efiqa: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an unforeseen library failure: one line, not a traceback
        if os.environ.get("EFIQA_DEBUG"):
            raise
        where = getattr(args, "command", None) or "efiqa"
        print(f"efiqa: internal error in '{where}': {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
              " (set EFIQA_DEBUG=1 for the traceback; please report it)", file=sys.stderr)
        return EXIT_USAGE


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[EfiqaError]]:
    """Expand folders (recursively, sorted) to image files; a folder without images is an error."""
    from .imageio import IMAGE_SUFFIXES

    files: list[Path] = []
    errors: list[EfiqaError] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if found:
                files.extend(found)
            else:
                errors.append(ImageReadError("folder holds no image files", raw))
        else:
            files.append(p)
    return files, errors


def _error_record(err: EfiqaError) -> dict:
    return {"path": err.source, "error": {"type": type(err).__name__, "message": err.message}}


def cmd_assess(args: argparse.Namespace) -> int:
    from .assessor import QualityAssessor

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        print("efiqa: error: --threshold must lie in [0, 1]", file=sys.stderr)
        return EXIT_USAGE
    files, errors = collect_inputs(args.paths)
    qa = QualityAssessor(args.model, backend=args.backend, engine=args.engine, threads=args.threads,
                         threshold=args.threshold, backend_options=_options(args))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = len(errors)
    for err in errors:
        _report_error(err, args.json)
    used_stems: set[str] = set()
    progress = len(files) > 1 and sys.stderr.isatty()
    with qa:
        for path, res in zip(files, qa.iter_batch(files, batch_size=args.batch_size, progress=progress)):
            if isinstance(res, EfiqaError):
                failed += 1
                _report_error(res.with_source(str(path)), args.json)
                continue
            record = res.to_dict()
            if args.out:
                _write_outputs(args.out, path, res, record, used_stems)
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                worst = max(((k, v) for k, v in res.zones.items() if v is not None), key=lambda kv: kv[1],
                            default=("-", 0.0))
                verdict = "gradable" if res.gradable else "ungradable"
                print(f"{path}\tscore={res.score:.3f}\t{verdict}\tworst zone: {worst[0]} ({worst[1]:.2f})", flush=True)
    return EXIT_INPUTS if failed else EXIT_OK


def _report_error(err: EfiqaError, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_error_record(err)), flush=True)
    print(f"efiqa: {type(err).__name__}: {err}", file=sys.stderr)


def _write_outputs(out: Path, path: Path, res, record: dict, used: set[str]) -> None:
    import cv2

    from .imageio import read_image

    stem, n = path.stem, 1
    while stem in used:
        stem, n = f"{path.stem}_{n}", n + 1
    used.add(stem)
    cv2.imwrite(str(out / f"{stem}_overlay.png"), res.overlay(read_image(path)))
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _training_module(name: str, package: str = "efiqa.train"):
    """Import a torch-side module, or explain which extra is missing (exit 3)."""
    import importlib

    try:
        return importlib.import_module(f"{package}.{name}")
    except ImportError as exc:
        raise BackendUnavailableError(
            f"this command needs torch and the [train,build] extras ({exc.name} missing): "
            "pip install torch==2.13.0 && pip install 'efiqa[train,build]'") from None


def cmd_train_vessels(args: argparse.Namespace) -> int:
    vessels = _training_module("vessels")
    for name, robust in (("vessels", False), ("anatomy", True)):
        out = args.dir / f"{name}.pt"
        metrics = vessels.train(args.data, steps=args.steps, seed=args.seed, out=out, robust=robust)
        vessels.write_metrics(metrics, out.with_suffix(".metrics.json"))
        u, f = metrics["unet"], metrics["frangi"]
        print(f"{name}: U-Net AUROC {u['auroc']:.4f} F1 {u['best_f1']:.4f} | Frangi AUROC {f['auroc']:.4f} "
              f"F1 {f['best_f1']:.4f} (DRIVE 37-40, inside FOV) → {out}")
    return EXIT_OK


def cmd_train_teacher(args: argparse.Namespace) -> int:
    teacher = _training_module("teacher")
    if args.calibrate_only:
        config = teacher.finish(args.dir, args.data)
        print(f"teacher: clean-photo rule tau={config['tau']:.4f} phi={config['phi']:.3f} → {args.dir}")
        return EXIT_OK
    metrics = teacher.train(args.data, vessels_path=args.dir / "vessels.pt", steps=args.steps, batch=args.batch,
                            seed=args.seed, out=args.dir / "inpainter.pt", device=args.device)
    teacher.write_json(metrics, args.dir / "inpainter.metrics.json")
    config = teacher.finish(args.dir, args.data)
    teacher.write_json({**metrics, "calibration": config}, args.dir / "inpainter.metrics.json")
    print(f"teacher: final MSE {metrics['final_mse']:.4f}; clean-photo rule tau={config['tau']} "
          f"phi={config['phi']:.3f} → {args.dir}")
    return EXIT_OK


def cmd_train_student(args: argparse.Namespace) -> int:
    import numpy as np

    distill = _training_module("distill")  # first: exit 3 with one line where torch is missing
    teacher_mod = _training_module("teacher")
    import torch

    teacher = teacher_mod.Teacher.load(args.teacher)
    named = distill.photo_list(args.images, args.data)
    if not named:
        raise ImageReadError("no photos to distil from", " ".join(args.images or []))
    cfg, student = {**distill.DEFAULT, "size": args.size}, None
    if args.backbone:
        from efiqa.train.nets.student import Student

        student = Student.with_vit(str(args.backbone))
        cfg = {"size": 16 * student.backbone.patch, "features": "vit", "head": "linear", "target": "soft",
               "backbone_checkpoint": str(args.backbone.resolve())}
    sets = distill.cached_features([n for n, _ in named], [p for _, p in named], teacher, args.teacher,
                                   (cfg["size"],), args.augmentations, args.seed, args.cache, student=student,
                                   backbone_id=cfg.get("backbone_checkpoint", "lite0"))
    fs = sets[cfg["size"]]
    res = distill.train_adapter(fs, cfg["features"], cfg["head"], phi=teacher.config["phi"], epochs=args.epochs,
                                seed=args.seed, target=cfg["target"])
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(res.head.state_dict(), args.out / "adapter.pt")
    meta = {**cfg, **distill.clean_thresholds(res, fs), "phi": teacher.config["phi"], "epochs": args.epochs,
            "augmentations": args.augmentations,
            "seed": args.seed, "photos": [n for n, _ in named], "samples": len(fs.photo), "loss_history": res.history,
            "params": res.params, "positive_fraction": float(np.mean([(s >= teacher.config["phi"])[v].mean()
                                                                        for s, v in zip(fs.soft, fs.valid)]))}
    (args.out / "adapter.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"student adapter: {res.params} params, {len(fs.photo)} samples, final loss {res.history[-1]:.4f} → {args.out}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    distill = _training_module("distill")
    build = _training_module("student_bundle", "efiqa.build")
    student, meta = distill.load_student(args.adapter)
    path, err = build.export_student(student, meta, args.out)
    print(f"exported {path} (max |Δ| vs torch {err:.1e})")
    return EXIT_OK


EXIT_GATE_FAILED = 4


def cmd_calibrate(args: argparse.Namespace) -> int:
    calibset = _training_module("calibset", "efiqa.calibration")
    m = calibset.build(args.paths, args.out, args.model, size=args.size, progress=sys.stderr.isatty())
    counts = ", ".join(f"{k} {len(v)}" for k, v in m.strata.items())
    print(f"calibration set: {len(m.images)} photos ({counts}); {len(m.skipped)} skipped; sha256 {m.sha256[:16]}… "
          f"→ {args.out}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .bundle import load_bundle

    _require("onnx", "build")
    variants = _training_module("variants", "efiqa.build")
    if args.perturbations < 0:
        print("efiqa: error: --perturbations must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    bundle = load_bundle(args.model)
    calib, calib_sha, calib_images = None, None, set()
    if args.precision == "int8":
        if not args.calib:
            print("efiqa: error: --calib is required for int8", file=sys.stderr)
            return EXIT_USAGE
        calibset = _training_module("calibset", "efiqa.calibration")
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

    from .bundle import load_bundle

    trt_build = _training_module("trt_build", "efiqa.build")
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
            _require("onnx", "build")
            variants = _training_module("variants", "efiqa.build")
            calib = None
            if args.precision == "int8":
                if not args.calib:
                    print("efiqa: error: int8 needs --calib, or a verified int8 bundle via --model", file=sys.stderr)
                    return EXIT_USAGE
                calib, cm = _training_module("calibset", "efiqa.calibration").load(args.calib, bundle)
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


def _require(module: str, extra: str) -> None:
    """Raise :class:`BackendUnavailableError` naming the extra to install if ``module`` is missing."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise BackendUnavailableError(f"this command needs {module} (pip install 'efiqa[{extra}]')") from None


def cmd_stream(args: argparse.Namespace) -> int:
    import cv2

    from .assessor import QualityAssessor
    from .guidance import Guide
    from .draw import draw_stream_overlay
    from .stream import FrameSource, SourceError, run_stream

    try:
        source = FrameSource(args.source, realtime=args.realtime or None)
    except SourceError as err:
        print(f"efiqa: error: {err}", file=sys.stderr)
        return EXIT_INPUTS
    qa = QualityAssessor(args.model, backend=args.backend, engine=args.engine, threads=args.threads,
                         backend_options=_options(args))
    guide = Guide(qa)
    writer = None
    jsonl = args.jsonl.open("w", encoding="utf-8") if args.jsonl else None
    if args.captures:
        args.captures.mkdir(parents=True, exist_ok=True)

    def on_state(frame, state):
        nonlocal writer
        if jsonl:
            jsonl.write(json.dumps(state.to_dict()) + "\n")
        if args.out or args.display:
            ov = draw_stream_overlay(frame, state, guide.threshold)
            if args.out:
                if writer is None:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), source.fps,
                                             (ov.shape[1], ov.shape[0]))
                writer.write(ov)
            if args.display:
                try:
                    cv2.imshow("efiqa", ov)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        raise KeyboardInterrupt
                except cv2.error:
                    args.display = False
                    print("efiqa: warning: no GUI in this OpenCV build; --display ignored", file=sys.stderr)
        if state.captured and args.captures:
            cap = guide.captures[-1]
            stem = f"capture_{cap.frame_index:06d}"
            cv2.imwrite(str(args.captures / f"{stem}.png"), cap.frame)
            (args.captures / f"{stem}.json").write_text(json.dumps(cap.result.to_dict(), indent=1) + "\n")

    try:
        report = run_stream(source, guide, on_state=on_state, latest_wins=source.live or source.realtime)
    finally:
        qa.close()
        if writer is not None:
            writer.release()
        if jsonl:
            jsonl.close()
    r = report.to_dict()
    print(f"efiqa stream: {r['processed']} frames processed of {r['frames_read']} read, {r['dropped']} dropped, "
          f"{r['corrupt']} corrupt skipped, {r['fps']:.1f} frames/s, latency p50 {r['latency_ms_p50']:.0f} ms, "
          f"{r['captures']} captured; {r['ended']}", file=sys.stderr)
    return EXIT_OK if not r["ended"].startswith("source failed") else EXIT_INPUTS


def cmd_teacher(args: argparse.Namespace) -> int:
    teacher_mod = _training_module("teacher")
    from .imageio import read_image
    from .result import result_from_probabilities

    model = teacher_mod.Teacher.load(args.dir)
    files, errors = collect_inputs(args.paths)
    failed = len(errors)
    for err in errors:
        _report_error(err, args.json)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    from tqdm import tqdm

    for path in tqdm(files, desc="teacher", disable=len(files) < 2 or not sys.stderr.isatty(), leave=False):
        try:
            bgr = read_image(path)
            t = model(bgr, str(path))
        except EfiqaError as err:
            failed += 1
            _report_error(err.with_source(str(path)), args.json)
            continue
        res = result_from_probabilities(t.patch_fraction, t.fov_circle, t.crop, bgr.shape[:2],
                                        model.config.get("image_threshold", 0.5), str(path), model.config["phi"])
        record = res.to_dict()
        if args.out:
            _write_outputs(args.out, path, res, record, used)
        print(json.dumps(record) if args.json else f"{path}\tteacher score={res.score:.3f}", flush=True)
    return EXIT_INPUTS if failed else EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from .bundle import load_bundle

    b = load_bundle(args.model)
    print(b.manifest.to_json(), end="")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
