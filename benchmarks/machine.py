"""Stamp for benchmark results: machine, versions, commit, date."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path


def cpu_isa() -> str:
    """The CPU's family and model and its widest vector extension (from /proc/cpuinfo; "unknown" elsewhere).
    Float results of the same code and versions can differ in the last bits between, say, AVX2 and
    AVX-512 kernels, and training amplifies them: a bit-for-bit comparison needs the same ISA."""
    try:
        info = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return "unknown"
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    if "flags" not in fields:  # not x86: ARM names its extensions "Features" and its core "CPU part"
        features = set(fields.get("Features", "").split())
        widest = next((n.upper() for n in ("sve2", "sve", "asimd") if n in features), "unknown")
        return f"{platform.machine()} part {fields.get('CPU part', '?')}, {widest.replace('ASIMD', 'NEON')}"
    flags = set(fields["flags"].split())
    widest = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")) if flag in flags),
                  "SSE")
    return f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {widest}"


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
        "cpu_isa": cpu_isa(),
        "cores": os.cpu_count(),
        "gpu": None,
        "python": platform.python_version(),
        "versions": {"efiqa": efiqa.__version__, "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
                     "numpy": numpy.__version__},
    }
