"""What every ``efiqa`` sub-command shares: argument types, input expansion, error reports, output
files and optional imports that fail with one line naming the extra to install."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .errors import BackendUnavailableError, EfiqaError, ImageReadError


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a batch of 0 or -1 frames would silently drop inputs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


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


def error_record(err: EfiqaError) -> dict:
    return {"path": err.source, "error": {"type": type(err).__name__, "message": err.message}}


def report_error(err: EfiqaError, as_json: bool) -> None:
    if as_json:
        print(json.dumps(error_record(err)), flush=True)
    print(f"efiqa: {type(err).__name__}: {err}", file=sys.stderr)


def write_outputs(out: Path, path: Path, res, record: dict, used: set[str]) -> None:
    import cv2

    from .imageio import read_image

    stem, n = path.stem, 1
    while stem in used:
        stem, n = f"{path.stem}_{n}", n + 1
    used.add(stem)
    cv2.imwrite(str(out / f"{stem}_overlay.png"), res.overlay(read_image(path)))
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


#: How to install the training side (torch pinned: a bare "torch" pulls a multi-GB CUDA build).
TRAIN_INSTALL = "pip install torch==2.13.0 && pip install 'efiqa[train,build]'"


def require(module: str, extra: str, install: str | None = None):
    """Import ``module``, or raise :class:`BackendUnavailableError` naming what is missing and how to
    install it (``install``, default ``pip install 'efiqa[extra]'``): the CLI's one line, exit 3."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        how = install or f"pip install 'efiqa[{extra}]'"
        raise BackendUnavailableError(f"this command needs {exc.name or module} ({how})") from None


def training_module(name: str):
    """A torch-side module: ``name`` in ``efiqa.train``, or a full module name."""
    return require(name if "." in name else f"efiqa.train.{name}", "train,build", TRAIN_INSTALL)
