"""Shared by the teacher-selection scripts (``teacher_dev.py``, ``teacher_exposure.py``): the six
*training* photos they judge on (never held-out ones), the teacher under test and the table they print."""
from __future__ import annotations

import sys

import numpy as np
import torch

from efiqa.imageio import read_image
from efiqa.train import teacher as T
from efiqa.train.data import TEACHER_TRAIN, data_root, resolve
from efiqa.train.distill import working_copy

#: DRIVE 21, 25, HRF 01_h, 02_h, EyePACS 15_right, 16_left
DEV = [TEACHER_TRAIN[i] for i in (0, 4, 16, 19, 22, 23)]


def setup() -> tuple[T.Teacher, dict[str, np.ndarray]]:
    """(the teacher in ``sys.argv[1]`` or models/teacher, {name: photo} of the DEV photos)."""
    torch.set_num_threads(2)
    root = data_root()
    teacher = T.Teacher.load(sys.argv[1] if len(sys.argv) > 1 else "models/teacher")
    return teacher, {n: working_copy(read_image(resolve(n, root))) for n in DEV}


def print_table(s: dict, names: list[str], width: int = 12) -> None:
    """Patch AUROC per kind, overall, per severity and ranking, one column per method."""
    print(" " * 22, " ".join(f"{m[:width]:>{width}s}" for m in names))
    rows = [(k, v) for k, v in s["per_kind"].items()] + [("overall", s["overall"])] + \
        [(f"severity {sev}", v) for sev, v in s["per_severity"].items()]
    for label, v in rows:
        print(f"{label:22s}", " ".join(f"{v[m]['auroc']:{width}.3f}" for m in names))
    print(f"{'ranking':22s}", " ".join(f"{s['ranking'].get(m, float('nan')):{width}.3f}" for m in names))
