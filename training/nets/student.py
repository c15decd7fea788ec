"""The stage-2 student: frozen backbone + shallow adapter → (C, G, G) degradation logits (C = 1, or 2: map, score).

Input is float32 NCHW RGB in 0-255; normalisation happens inside the graph so that the exported
ONNX, the runtime and TensorRT all see the same contract (see the bundle manifest).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .adapter import make_head
from .efficientnet_lite import EfficientNetLite0

LITE0_MEAN = (127.0, 127.0, 127.0)
LITE0_STD = (128.0, 128.0, 128.0)
#: ImageNet statistics on the 0-255 scale, as DINOv2 / RETFound expect.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: Where each feature kind's channels sit in the ``all`` layout — per-cell mean and standard
#: deviation at strides 4 (0-47), 8 (48-127) and 16 (mean 128-239, std 240-351), mean at stride 32
#: (352-671) — so that distillation caches ``all`` once and slices every kind out of it.
CHANNELS = {"all": list(range(672)), "three-scale": list(range(352)),
            "two-scale": [*range(128, 240), *range(352, 672)], "s32": list(range(352, 672))}
FEATURES = {kind: len(index) for kind, index in CHANNELS.items()}
#: The map every student gives, whatever its input size or backbone: the paper's 16×16 patch grid.
GRID = 16


def area_weights(n: int, g: int) -> torch.Tensor:
    """(g, n) weights resampling ``n`` cells onto ``g`` by overlap: output cell i is the mean of
    the input cells it covers, weighted by how much of each it covers (rows sum to 1)."""
    lo = torch.arange(g, dtype=torch.float64)[:, None] / g
    edges = torch.arange(n + 1, dtype=torch.float64) / n
    overlap = (torch.minimum(lo + 1 / g, edges[None, 1:]) - torch.maximum(lo, edges[None, :-1])).clamp(min=0)
    return (overlap * g).float()


def to_grid(f: torch.Tensor, g: int = GRID) -> torch.Tensor:
    """(B, C, n, n) features on the g×g map grid: unchanged, average-pooled when n is a multiple
    of g, otherwise resampled by overlap with two constant matrix products (ONNX MatMul, which
    TensorRT runs as well)."""
    n = f.shape[-1]
    if n == g:
        return f
    if n % g == 0:
        return F.avg_pool2d(f, n // g)
    w = area_weights(n, g).to(f.dtype)
    return torch.matmul(w, torch.matmul(f, w.t()))


def cell_stats(f: torch.Tensor, g: int = GRID) -> torch.Tensor:
    """Mean and standard deviation of each channel over each cell of the g×g grid, (B, 2C, g, g).

    Fine-scale features averaged over a cell lose what marks noise, blur and compression (how much
    they vary inside it); the standard deviation keeps it."""
    mean = to_grid(f, g)
    var = (to_grid(f * f, g) - mean * mean).clamp(min=0)
    return torch.cat([mean, torch.sqrt(var)], dim=1)


class Student(nn.Module):
    """EfficientNet-Lite0 features on the 16×16 map grid → adapter. ``three-scale``: per-cell mean
    and standard deviation at strides 4, 8 and 16 (the backbone stops after stride 16: a third of
    its compute saved); ``two-scale``: means at strides 16 and 32; ``s32``: stride 32 alone;
    ``all``: every one of them (what distillation caches). At 512 px a stride-16 map is
    average-pooled ×2 and stride 32 kept as it is; other input sizes (and ViT token grids) are
    resampled onto the same grid."""

    def __init__(self, backbone: nn.Module | None = None, features: str = "three-scale", head: str = "linear",
                 mean: tuple[float, ...] = LITE0_MEAN, std: tuple[float, ...] = LITE0_STD) -> None:
        super().__init__()
        if features not in (*FEATURES, "vit"):
            raise ValueError(f"unknown features {features!r}; choose from {list(FEATURES)}")
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
            return to_grid(self.backbone((image - self.mean) / self.std))
        kind = self.feature_kind
        f4, f8, f16, *f32 = self.backbone((image - self.mean) / self.std, last_stride=16 if kind == "three-scale" else 32)
        if kind == "s32":
            return to_grid(f32[0])
        if kind == "two-scale":
            return torch.cat([to_grid(f16), to_grid(f32[0])], dim=1)
        fine = [cell_stats(f4), cell_stats(f8), cell_stats(f16)]
        return torch.cat(fine if kind == "three-scale" else [*fine, to_grid(f32[0])], dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.features(image))

    def freeze_backbone(self) -> "Student":
        self.backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        return self
