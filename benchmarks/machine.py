"""Stamp for benchmark results: machine, versions, commit, date."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path


def stamp() -> dict:
    import cv2
    import numpy
    import onnxruntime

    import efiqa
    from efiqa.bench import cpu_model

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=Path(__file__).parent).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit + ("-dirty" if dirty else ""),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": None,
        "python": platform.python_version(),
        "versions": {"efiqa": efiqa.__version__, "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
                     "numpy": numpy.__version__},
    }
