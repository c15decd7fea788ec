"""``efiqa train vessels|teacher|student`` and ``efiqa teacher``: the label-free training stages.
Registered by the command line without importing torch; each command imports it when it runs (a
runtime-only install answers in one line with exit 3)."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from efiqa.cli_helpers import collect_inputs, report_error, training_module, write_outputs
from efiqa.errors import EfiqaError, ImageReadError
from efiqa.exit_codes import EXIT_INPUTS, EXIT_OK


def register(sub, parser_class) -> None:
    """Add ``train`` and ``teacher`` to the ``efiqa`` sub-commands."""
    t = sub.add_parser("train", help="train a stage (needs the [train] extra: torch)")
    tsub = t.add_subparsers(dest="stage", metavar="STAGE", parser_class=parser_class, required=True)
    tv = tsub.add_parser("vessels", help="stage 1a: the visible-vessel and anatomy extractors on DRIVE's manual labels")
    tv.add_argument("--data", help="fundus photographs folder (default: $EFIQA_DATA or ../shared/data/fundus)")
    tv.add_argument("--steps", type=int, default=900)
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("--dir", type=Path, default=Path("models/teacher"), help="receives vessels.pt and anatomy.pt")
    tv.set_defaults(func=cmd_train_vessels)

    tt = tsub.add_parser("teacher", help="stage 1b: masked vessel-inpainting teacher on the training pool")
    tt.add_argument("--data", help="fundus photographs folder (default: $EFIQA_DATA or ../shared/data/fundus)")
    tt.add_argument("--steps", type=int, default=1500)
    tt.add_argument("--batch", type=int, default=6)
    tt.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda (default: cpu)")
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one-cycle schedule)")
    tt.add_argument("--init", type=Path, metavar="INPAINTER_PT",
                    help="warm start: continue training these inpainter weights on the pool (e.g. the shipped prior)")
    tt.add_argument("--dir", type=Path, default=Path("models/teacher"), help="holds vessels.pt and anatomy.pt; receives the teacher")
    tt.add_argument("--calibrate-only", action="store_true",
                    help="keep inpainter.pt; only re-derive teacher.json and baseline.json from the clean photos")
    tt.set_defaults(func=cmd_train_teacher)

    tp = tsub.add_parser("prior", help="the authors' 64-channel inpainting prior on a lent GPU: maps here, "
                                        "train there, assemble here (efiqa.train.prior_gpu)",
                         description="efiqa train prior {maps,train,assemble} ...: 'efiqa train prior maps --help' "
                                     "and so on for each step's options (efiqa.train.prior_gpu).")
    tp.add_argument("args", nargs=argparse.REMAINDER, metavar="STEP ...")
    tp.set_defaults(func=lambda args: training_module("prior_gpu").main(args.args))

    ts = tsub.add_parser("student", help="stage 2: distil the teacher into an adapter on a frozen backbone",
                         description="Distil the teacher into the student adapter from unlabelled photos "
                                     "(adapting to a new camera needs only its photos).")
    ts.add_argument("--images", nargs="+", help="folders/files of unlabelled photos (default: the training pool, "
                         "the teacher-training photos + DATA/unlabelled/)")
    ts.add_argument("--data", help="fundus photographs folder for the default pool")
    ts.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    ts.add_argument("--backbone", type=Path, metavar="CHECKPOINT",
                    help="a foundation ViT checkpoint you have (DINOv2, RETFound, …; .pth/.safetensors) "
                         "instead of the default ImageNet EfficientNet-Lite0")
    ts.add_argument("--size", type=int, default=384, choices=(384, 512),
                    help="input side of the EfficientNet-Lite0 student: 384 (models/default) or 512 (~1.6x the "
                         "network time, no more accurate on our held-out photos); both give a 16x16 map")
    ts.add_argument("--augmentations", type=int, default=24, help="label-free perturbations per photo (and, in the "
                    "shipped configuration, 12 local defects per photo for the map head)")
    ts.add_argument("--epochs", type=int, default=20,
                    help="adapter epochs (two heads, map and score; the decision thresholds are set out of fold: "
                         "5 more adapters like each are trained, each without a fifth of the reference photos)")
    ts.add_argument("--seed", type=int, default=0)
    ts.add_argument("--keep-score-head", type=Path, metavar="STUDENT",
                    help="keep the score head of an earlier student (that folder's adapter.pt and adapter.json: "
                         "weights and gradable thresholds) instead of training one: a change to the map head alone "
                         "then leaves every photo's verdict as it was, on any machine")
    ts.add_argument("--out", type=Path, default=Path("models/student"), help="adapter weights + config")
    ts.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"), help="feature cache folder")
    ts.set_defaults(func=cmd_train_student)

    te = sub.add_parser("teacher", help="run the stage-1 teacher (slow, torch) and write its maps",
                        description="Teacher maps for photos: same outputs and JSON keys as 'assess'.")
    te.add_argument("paths", nargs="+", metavar="PATH")
    te.add_argument("--dir", type=Path, default=Path("models/teacher"), help="teacher weights folder")
    te.add_argument("--out", type=Path, help="write <stem>_overlay.png and <stem>.json here")
    te.add_argument("--json", action="store_true", help="print one JSON object per input (JSON Lines)")
    te.set_defaults(func=cmd_teacher)


def cmd_train_vessels(args: argparse.Namespace) -> int:
    vessels = training_module("vessels")
    for name, robust in (("vessels", False), ("anatomy", True)):
        out = args.dir / f"{name}.pt"
        metrics = vessels.train(args.data, steps=args.steps, seed=args.seed, out=out, robust=robust)
        vessels.write_metrics(metrics, out.with_suffix(".metrics.json"))
        u, f = metrics["unet"], metrics["frangi"]
        print(f"{name}: U-Net AUROC {u['auroc']:.4f} F1 {u['best_f1']:.4f} | Frangi AUROC {f['auroc']:.4f} "
              f"F1 {f['best_f1']:.4f} (DRIVE 37-40, inside FOV) → {out}")
    return EXIT_OK


def cmd_train_teacher(args: argparse.Namespace) -> int:
    teacher = training_module("teacher")
    if args.calibrate_only:
        config = teacher.finish(args.dir, args.data)
        print(f"teacher: clean-photo rule tau={config['tau']:.4f} phi={config['phi']:.3f} → {args.dir}")
        return EXIT_OK
    metrics = teacher.train(args.data, vessels_path=args.dir / "vessels.pt", steps=args.steps, batch=args.batch,
                            seed=args.seed, out=args.dir / "inpainter.pt", device=args.device,
                            init=args.init, lr=args.lr)
    teacher.write_json(metrics, args.dir / "inpainter.metrics.json")
    config = teacher.finish(args.dir, args.data)
    teacher.write_json({**metrics, "calibration": config}, args.dir / "inpainter.metrics.json")
    print(f"teacher: final MSE {metrics['final_mse']:.4f}; clean-photo rule tau={config['tau']} "
          f"phi={config['phi']:.3f} → {args.dir}")
    return EXIT_OK


def cmd_train_student(args: argparse.Namespace) -> int:
    import numpy as np

    distill = training_module("distill")  # first: exit 3 with one line where torch is missing
    teacher_mod = training_module("teacher")
    import torch

    teacher = teacher_mod.Teacher.load(args.teacher)
    named = distill.photo_list(args.images, args.data)
    if not named:
        raise ImageReadError("no photos to distil from", " ".join(args.images or []))
    cfg, student = {**distill.DEFAULT, "size": args.size}, None
    if args.backbone:
        from efiqa.train.nets.student import Student

        student = Student.with_vit(str(args.backbone))
        cfg = {"size": 16 * student.backbone.patch, "features": "vit", "head": "linear", "target": "soft", "members": 1,
               "backbone_checkpoint": str(args.backbone.resolve())}
    keep = distill.kept_score_head(args.keep_score_head, cfg) if args.keep_score_head else None  # before the long part
    sets = distill.cached_features([n for n, _ in named], [p for _, p in named], teacher, args.teacher,
                                   (cfg["size"],), args.augmentations, args.seed, args.cache, student=student,
                                   backbone_id=cfg.get("backbone_checkpoint", "lite0"),
                                   regions_too=bool(set(distill.REGION_TARGETS) & {cfg["target"], cfg.get("score_target")}),
                                   families=tuple(f for k, f in distill.EXTRA_FAMILIES.items() if cfg.get(k)))
    fs = sets[cfg["size"]]
    reference = distill.reference_photos([n for n, _ in named])
    res, thresholds = distill.train_student(fs, cfg, teacher.config["phi"], args.epochs, args.seed, reference,
                                            keep_score=keep)
    if keep:
        thresholds["score_head_kept_from"] = {"student": str(args.keep_score_head), "adapter_sha256": hashlib.sha256(
            (args.keep_score_head / "adapter.pt").read_bytes()).hexdigest()}
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(res.head.state_dict(), args.out / "adapter.pt")
    meta = {**cfg, **thresholds,
            "threshold_photos": sorted(named[i][0] for i in reference) if reference else "all",
            "phi": teacher.config["phi"], "epochs": args.epochs,
            "augmentations": args.augmentations,
            "seed": args.seed, "photos": [n for n, _ in named], "samples": len(fs.photo), "loss_history": res.history,
            "params": res.params, "positive_fraction": float(np.mean([(s >= teacher.config["phi"])[v].mean()
                                                                        for s, v in zip(fs.soft, fs.valid)
                                                                        if not np.isnan(s).any()]))}
    (args.out / "adapter.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"student adapter: {res.params} params, {len(fs.photo)} samples, final loss {res.history[-1]:.4f} → {args.out}")
    return EXIT_OK


def cmd_teacher(args: argparse.Namespace) -> int:
    teacher_mod = training_module("teacher")
    from efiqa.imageio import read_image
    from efiqa.result import result_from_probabilities

    model = teacher_mod.Teacher.load(args.dir)
    files, errors = collect_inputs(args.paths)
    failed = len(errors)
    for err in errors:
        report_error(err, args.json)
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
            report_error(err.with_source(str(path)), args.json)
            continue
        res = result_from_probabilities(t.patch_fraction, t.fov_circle, t.crop, bgr.shape[:2],
                                        model.config.get("image_threshold", 0.5), str(path), model.config["phi"])
        record = res.to_dict()
        if args.out:
            write_outputs(args.out, path, res, record, used)
        print(json.dumps(record) if args.json else f"{path}\tteacher score={res.score:.3f}", flush=True)
    return EXIT_INPUTS if failed else EXIT_OK


