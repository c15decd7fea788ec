"""``efiqa`` command line: the runtime commands (assess, stream, info, bench) live here; training
and toolchain commands are registered from their own packages (``efiqa.train.commands``,
``efiqa.build.commands``). Exit codes: :mod:`efiqa.exit_codes`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ._version import __version__
from .errors import BackendUnavailableError, EfiqaError

from .cli_helpers import collect_inputs, positive_int, report_error, write_outputs
from .exit_codes import EXIT_INPUTS, EXIT_MISSING, EXIT_OK, EXIT_USAGE


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
    a.add_argument("--threads", type=positive_int, help="CPU threads for ONNX Runtime")
    _backend_options(a)
    a.add_argument("--batch-size", type=positive_int, default=4, help="frames per inference call (default 4)")
    a.set_defaults(func=cmd_assess)

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
    st.add_argument("--threads", type=positive_int)
    _backend_options(st)
    st.set_defaults(func=cmd_stream)

    from efiqa.build.commands import register as register_toolchain
    from efiqa.train.commands import register as register_training

    from . import bench

    register_training(sub, _Parser)
    register_toolchain(sub, _Parser)
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
        report_error(err, args.json)
    used_stems: set[str] = set()
    progress = len(files) > 1 and sys.stderr.isatty()
    with qa:
        for path, res in zip(files, qa.iter_batch(files, batch_size=args.batch_size, progress=progress)):
            if isinstance(res, EfiqaError):
                failed += 1
                report_error(res.with_source(str(path)), args.json)
                continue
            record = res.to_dict()
            if args.out:
                write_outputs(args.out, path, res, record, used_stems)
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                worst = max(((k, v) for k, v in res.zones.items() if v is not None), key=lambda kv: kv[1],
                            default=("-", 0.0))
                verdict = "gradable" if res.gradable else "ungradable"
                print(f"{path}\tscore={res.score:.3f}\t{verdict}\tworst zone: {worst[0]} ({worst[1]:.2f})", flush=True)
    return EXIT_INPUTS if failed else EXIT_OK


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


def cmd_info(args: argparse.Namespace) -> int:
    from .bundle import load_bundle

    b = load_bundle(args.model)
    print(b.manifest.to_json(), end="")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
