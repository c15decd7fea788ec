"""The student's adapter: standardised backbone features on the map grid → one logit per cell, or
two (:class:`MapAndScore`: a map head and a score head on the same features).

Kept apart from the backbone (``student.py``) so that a change to the adapter does not invalidate the
cached backbone features distillation trains it on."""
from __future__ import annotations

import torch
from torch import nn

#: the adapter kinds :func:`make_head` builds
HEADS = ("linear", "conv", "context")


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


class ContextHead(nn.Module):
    """The ``conv`` head whose first layer also sees the photo: 1×1(x) + 1×1'(mean of x over the
    grid), then ReLU, 3×3, ReLU, 3×3 to 1. A cell's 5×5 neighbourhood may lie wholly inside a
    spread-out defect; the photo's mean is the reference it lacks (``benchmarks/results/context_head_rule.md``)."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Standardise(channels), nn.Conv2d(channels, hidden, 1),
                                     nn.Conv2d(channels, hidden, 1, bias=False),
                                     nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU()),
                                     nn.Conv2d(hidden, 1, 3, padding=1)])

    def __getitem__(self, i: int) -> nn.Module:  # as a head's Sequential: [0] the standardisation, [-1] the output
        return self.layers[i]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std, local, context, middle, out = self.layers
        x = std(x)
        return out(middle(local(x) + context(x.mean(dim=(2, 3), keepdim=True))))


def make_head(kind: str, channels: int, hidden: int = 64) -> nn.Module:
    """Standardised features → ``linear``: the paper's 1×1 conv, or ``conv``: 1×1 to ``hidden``,
    ReLU, 3×3, ReLU, 3×3 to 1 (each cell sees its 5×5 neighbourhood; ~60k params on three-scale
    features), or ``context``: that and the photo's mean features (:class:`ContextHead`)."""
    if kind == "context":
        return ContextHead(channels, hidden)
    if kind == "linear":
        layers = [nn.Conv2d(channels, 1, 1)]
    elif kind == "conv":
        layers = [nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, hidden, 3, padding=1),
                  nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 3, padding=1)]
    else:
        raise ValueError(f"unknown head {kind!r}; choose from {list(HEADS)}")
    return nn.Sequential(Standardise(channels), *layers)


class Ensemble(nn.Module):
    """The mean logit of adapters trained alike but from different seeds. Where their errors differ,
    the mean follows the teacher more closely than one of them does (measured label-free:
    ``benchmarks/adapter_ensemble.py``); a conv head costs ~15 M multiply-adds at 384 px beside the
    backbone's ~720 M."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def combine(heads: list[nn.Module]) -> nn.Module:
    """One head as it is (the single-head state-dict layout); several as an :class:`Ensemble`."""
    if not heads:
        raise ValueError("an adapter needs at least one member")
    return heads[0] if len(heads) == 1 else Ensemble(heads)


def make_adapter(kind: str, channels: int, members: int = 1, score_head: bool = False) -> nn.Module:
    """One head (:func:`make_head`) or, for ``members`` > 1, an :class:`Ensemble` of that many;
    ``score_head``: a :class:`MapAndScore` of such a map head and one single score head (members
    count the map head's alone: ``distill.train_student``)."""
    if score_head:
        return MapAndScore(make_adapter(kind, channels, members), make_head(kind, channels))
    return combine([make_head(kind, channels) for _ in range(members)])


class MapAndScore(nn.Module):
    """Two adapters on the same features, output as channels (map, score): the map head says
    *where* a photo lost detail, the score head (its mean) *whether* it can be graded. They are
    trained on different targets (``distill.DEFAULT``); the graph's output is (N, 2, G, G)."""

    def __init__(self, map_head: nn.Module, score_head: nn.Module) -> None:
        super().__init__()
        self.map, self.score = map_head, score_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.map(x), self.score(x)], dim=1)
