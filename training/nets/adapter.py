"""The student's adapter: standardised backbone features on the map grid → one logit per cell.

Kept apart from the backbone (``student.py``) so that a change to the adapter does not invalidate the
cached backbone features distillation trains it on."""
from __future__ import annotations

import torch
from torch import nn

#: the adapter kinds :func:`make_head` builds
HEADS = ("linear", "conv")


class Standardise(nn.Module):
    """Fixed per-channel (x − mean) / std, set from the training features (part of the graph)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def fit(self, x: torch.Tensor) -> "Standardise":
        self.mean.copy_(x.mean(dim=(0, 2, 3), keepdim=True))
        self.std.copy_(x.std(dim=(0, 2, 3), keepdim=True) + 1e-3)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def make_head(kind: str, channels: int, hidden: int = 64) -> nn.Sequential:
    """Standardised features → ``linear``: the paper's 1×1 conv, or ``conv``: 1×1 to ``hidden``,
    ReLU, 3×3, ReLU, 3×3 to 1 (each cell sees its 5×5 neighbourhood; ~60k params on three-scale features)."""
    if kind == "linear":
        layers = [nn.Conv2d(channels, 1, 1)]
    elif kind == "conv":
        layers = [nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, hidden, 3, padding=1),
                  nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 3, padding=1)]
    else:
        raise ValueError(f"unknown head {kind!r}; choose from {list(HEADS)}")
    return nn.Sequential(Standardise(channels), *layers)
