"""The stage-2 student: frozen backbone + shallow adapter → G×G degradation logits.

Input is float32 NCHW RGB in 0-255; normalisation happens inside the graph so that the exported
ONNX, the runtime and TensorRT all see the same contract (see the bundle manifest).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .efficientnet_lite import EfficientNetLite0

LITE0_MEAN = (127.0, 127.0, 127.0)
LITE0_STD = (128.0, 128.0, 128.0)
#: ImageNet statistics on the 0-255 scale, as DINOv2 / RETFound expect.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
FEATURES = {"two-scale": 112 + 320, "s32": 320}


def make_head(kind: str, channels: int, hidden: int = 64) -> nn.Module:
    """``linear``: the paper's 1×1 conv. ``conv``: 1×1 to ``hidden``, ReLU, 3×3 to 1 (~30k params)."""
    if kind == "linear":
        return nn.Conv2d(channels, 1, 1)
    if kind == "conv":
        return nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 3, padding=1))
    raise ValueError(f"unknown head {kind!r}")


class Student(nn.Module):
    """EfficientNet-Lite0 features (stride-16 avg-pooled ×2 + stride-32, or stride-32 alone) → adapter."""

    def __init__(self, backbone: nn.Module | None = None, features: str = "two-scale", head: str = "linear",
                 mean: tuple[float, ...] = LITE0_MEAN, std: tuple[float, ...] = LITE0_STD) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else EfficientNetLite0()
        self.feature_kind = features
        self.adapter = make_head(head, self.channels)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def channels(self) -> int:
        return self.backbone.embed_dim if self.feature_kind == "vit" else FEATURES[self.feature_kind]

    @classmethod
    def with_vit(cls, checkpoint: str, head: str = "linear") -> "Student":
        """A student on a foundation ViT loaded from a local checkpoint (ImageNet normalisation)."""
        from .vit import from_checkpoint

        return cls(from_checkpoint(checkpoint), "vit", head, IMAGENET_MEAN, IMAGENET_STD)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        if self.feature_kind == "vit":
            return self.backbone((image - self.mean) / self.std)
        f16, f32 = self.backbone((image - self.mean) / self.std)
        if self.feature_kind == "s32":
            return f32
        return torch.cat([F.avg_pool2d(f16, 2), f32], dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.features(image))

    def freeze_backbone(self) -> "Student":
        self.backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        return self
