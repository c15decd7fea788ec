"""Stage 2: distil the teacher's patch maps into a shallow adapter on a frozen backbone.

1. Each unlabelled photo is perturbed many times (``augment``: photometric + geometric, label-free),
   and, for the map head, spoilt by one local defect at a time (``defects``: over part of the frame).
2. The teacher labels every perturbed photo per patch: ``soft`` = its mean share of missing
   vasculature (a value in [0, 1)), ``binary`` = its clean-photo rule (fraction ≥ ``phi``).
3. Frozen backbone features of the same perturbed photo, in runtime geometry (cropped on the FOV
   the teacher found). Labels and features are cached apart: a change to the student's code
   recomputes features (minutes) from the same seeded perturbations, not labels (the slow part).
4. The adapter learns the teacher's labels from features (BCE: soft targets, or binary ones with
   positive weighting), AdamW, seeded.
5. Decision thresholds of the student come from its own outputs on the unperturbed reference photos
   (the same 5 % false-positive budget as the teacher's rule), no label needed: the patch threshold
   with each photo scored by an adapter trained without it (out of fold), as a new photo would be, at
   the upper 95 % bound of a photo bootstrap; the gradable threshold the lower of the out-of-fold and
   the in-sample point estimates (:func:`decision_thresholds`).

    efiqa train student --images DIR... [--augmentations 24] [--epochs 20]
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from efiqa.errors import EfiqaError
from efiqa.fov import Fov
from efiqa.preprocess import Preprocessor

from . import defects, regions
from .augment import augment_pair, enhancement
from .nets.efficientnet_lite import EfficientNetLite0
from .nets.adapter import MapAndScore, combine, make_adapter, make_head
from .nets.student import CHANNELS, Student
from .teacher import Teacher, TeacherOutput, TeacherParts

#: The shipped configuration, chosen label-free by ``benchmarks/student_variants.py`` (size, features, head).
#: Two heads on the same features (``benchmarks/results/two_heads_rule.md``): the map head learns
#: ``target`` (``root``: the square root of how much detail a perturbation or a local defect destroyed
#: in the cell; ``benchmarks/results/root_region_rule.md``) over the perturbations, with ``defects``
#: the local defects the teacher labelled and with ``fov_defects`` more labelled by their FOV alone
#: (``benchmarks/results/fov_defects_rule.md``); the score head ``score_target`` (the teacher's own
#: labels: whether the vasculature can be read) over the perturbations only, its mean the photo's score; a configuration without
#: ``score_target`` has one head for both.
#: ``members``: the map head's (the score head is always one): the mean logit of that many heads from
#: neighbouring seeds. The mean of three over both heads (picked label-free by
#: ``benchmarks/adapter_ensemble.py``) failed its pre-registered held-out check
#: (``benchmarks/results/accuracy_ensemble.md``); three map heads alone failed their study gate
#: (``benchmarks/results/map_ensemble.md``).
DEFAULT = {"size": 384, "features": "three-scale", "head": "conv", "target": "root", "score_target": "soft",
           "members": 1, "defects": True, "fov_defects": True}
#: ``soft``: the teacher's mean anomaly per cell; ``binary``: its rule (fraction ≥ phi); ``union``: the
#: chance that either the teacher flags the cell or the perturbation destroyed its detail,
#: 1 − (1 − soft)(1 − region) (:mod:`regions`: the teacher does not see mild blur, haze or noise);
#: ``region``: how much detail the perturbation or local defect destroyed in the cell, alone
#: (``benchmarks/results/defect_targets_rule.md``: beside it the teacher's label of a clean cell,
#: median 0.27, likely drowned a defect's mark); ``root``: its square root (the shipped map head's:
#: the same order of cells, a scale the head learns better, ``benchmarks/results/root_region.md``)
TARGETS = ("soft", "binary", "union", "region", "root")
#: the targets made from the perturbations' region maps
REGION_TARGETS = ("union", "region", "root")
#: the targets that need no teacher label: they alone train on the FOV-labelled samples (NaN teacher maps)
FOV_ONLY_TARGETS = ("region", "root")
#: local defects per photo (:mod:`defects`) beside the perturbations, for the map head only (``DEFAULT["defects"]``)
DEFECTS_PER_PHOTO = 12
#: their perturbation indices start here (after the perturbations': at most this many per photo)
DEFECT_OFFSET = 1000
#: the local defects' random stream: ``default_rng([seed, DEFECT_STREAM])`` (the perturbations' are
#: ``[seed]`` and ``[seed, 1]``)
DEFECT_STREAM = 2
#: more local defects per photo, labelled by their FOV alone (:func:`fov_labels`: no teacher network,
#: so many more for the time; ``benchmarks/results/fov_defects_rule.md``), for the targets made from
#: the region maps alone (``DEFAULT["fov_defects"]``; 72, ``fov_defects_72_rule.md``); their indices and random stream
FOV_DEFECTS_PER_PHOTO = 72
FOV_DEFECT_OFFSET = 2000
FOV_DEFECT_STREAM = 3
assert DEFECT_OFFSET + DEFECTS_PER_PHOTO <= FOV_DEFECT_OFFSET, "the two defect families' indices must not overlap"
#: the sample families beside the perturbations (:func:`sample_pairs`), as ``DEFAULT``'s keys name them
EXTRA_FAMILIES = {"defects": "defects", "fov_defects": "fov-defects"}
#: share of the perturbed photos contrast-enhanced after their perturbation (CLAHE, unsharp mask)
ENHANCED = 0.2


@dataclass
class Labels:
    """The teacher's view of every perturbed photo it could read: which (photo, perturbation) pairs,
    the FOV it found in each (the student's crop must match) and its G×G maps."""

    samples: list[tuple[int, int]] = field(default_factory=list)
    fov: list[Fov] = field(default_factory=list)
    soft: list[np.ndarray] = field(default_factory=list)      # fraction of the cell flagged (g, g)
    score: list[np.ndarray] = field(default_factory=list)     # mean anomaly score (g, g)
    coverage: list[np.ndarray] = field(default_factory=list)  # in-FOV share of the cell (g, g)
    #: perturbed photos the teacher refused (a perturbation can hide the FOV), "photo#k: reason"
    skipped: list[str] = field(default_factory=list)

    def add(self, photo: int, perturbation: int, t: TeacherOutput) -> None:
        """Record the teacher's output for one perturbed photo."""
        self.samples.append((photo, perturbation))
        self.fov.append(t.fov_circle)
        self.soft.append(t.patch_fraction)
        self.score.append(t.patch_score)
        self.coverage.append(t.coverage)


@dataclass
class FeatureSet:
    """Distillation data for one input size: backbone features beside the teacher's labels."""

    size: int
    data: np.ndarray                                          # (N, C, g, g) float16 backbone features
    soft: list[np.ndarray]                                    # teacher fraction (g, g)
    score: list[np.ndarray]                                   # teacher mean anomaly score (g, g)
    valid: list[np.ndarray]                                   # coverage ≥ 0.5 (g, g)
    photo: list[int]                                          # source photo index per sample
    perturbation: list[int]                                   # its perturbation index (0: the photo as it is;
                                                              # from DEFECT_OFFSET: a local defect)
    region: list[np.ndarray] | None = None                    # detail the perturbation destroyed (g, g); 0 unperturbed

    def features(self, kind: str) -> np.ndarray:
        """A Lite0 feature kind's channels out of the cached ``all`` layout (``CHANNELS``); other
        backbones (a ViT) have one kind, all channels."""
        return self.data[:, CHANNELS[kind]] if kind in CHANNELS and kind != "all" else self.data


def perturbations(photos: list[np.ndarray], augmentations: int, seed: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(photo index, perturbation index, image) — the first of each photo unperturbed; a share
    ``ENHANCED`` of the others contrast-enhanced afterwards (:func:`augment.enhancement`), drawn from a
    stream of its own so that adding it left every other draw as it was. The same seed gives the
    same images, so features can be recomputed without labelling again."""
    for i, k, _, img in perturbation_pairs(photos, augmentations, seed):
        yield i, k, img


def perturbation_pairs(photos: list[np.ndarray], augmentations: int,
                       seed: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """:func:`perturbations` with each image's reference: the photo under the same rotation, flip
    and zoom, no photometric change (:func:`augment.augment_pair`; an enhancement is not a defect, so
    an enhanced image's reference is enhanced with the same settings)."""
    rng, enhance_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    for i, photo in enumerate(photos):
        for k in range(augmentations):
            if k == 0:
                yield i, k, photo, photo
                continue
            reference, img = augment_pair(photo, rng)
            if enhance_rng.random() < ENHANCED:  # the reference enhanced alike: the same draws, a twin of the stream
                reference, img = enhancement(reference, copy.deepcopy(enhance_rng)), enhancement(img, enhance_rng)
            yield i, k, reference, img


def defect_pairs(photos: list[np.ndarray], count: int, seed: int, stream: int = DEFECT_STREAM,
                 offset: int = DEFECT_OFFSET) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(photo index, ``offset`` + j, reference, image) for ``count`` local defects of each photo
    (:func:`defects.defect_pair`), from a random stream of their own, ``[seed, stream]``."""
    rng = np.random.default_rng([seed, stream])
    for i, photo in enumerate(photos):
        for j in range(count):
            reference, img, _ = defects.defect_pair(photo, rng)
            yield i, offset + j, reference, img


def sample_pairs(family: str, photos: list[np.ndarray], augmentations: int,
                 seed: int) -> tuple[Iterator[tuple[int, int, np.ndarray, np.ndarray]], int]:
    """A family of training samples (``perturbations``: :func:`perturbation_pairs`; ``defects``:
    :func:`defect_pairs`; ``fov-defects``: more of them, from a stream of their own) and how many it yields."""
    if family == "perturbations":
        if augmentations > DEFECT_OFFSET:
            raise ValueError(f"at most {DEFECT_OFFSET} perturbations per photo (the local defects' indices follow)")
        return perturbation_pairs(photos, augmentations, seed), len(photos) * augmentations
    if family == "defects":
        return defect_pairs(photos, DEFECTS_PER_PHOTO, seed), len(photos) * DEFECTS_PER_PHOTO
    if family == "fov-defects":
        return (defect_pairs(photos, FOV_DEFECTS_PER_PHOTO, seed, FOV_DEFECT_STREAM, FOV_DEFECT_OFFSET),
                len(photos) * FOV_DEFECTS_PER_PHOTO)
    raise ValueError(f"unknown sample family {family!r}")


def teacher_labels(photos: list[np.ndarray], teacher: Teacher, augmentations: int = 24, seed: int = 0,
                   progress: bool = True, keep: Callable[[int, int, TeacherParts], None] | None = None,
                   family: str = "perturbations") -> Labels:
    """The teacher's labels for ``augmentations`` perturbations of each photo, or for a ``family``'s
    samples (:func:`sample_pairs`) (the slow part).
    ``keep(photo, perturbation, parts)``: handed the networks' output of each labelled photo, so a
    study can judge them again under other visibility rules without running the networks again."""
    from tqdm import tqdm

    labels = Labels()
    pairs, total = sample_pairs(family, photos, augmentations, seed)
    for i, k, _, img in tqdm(pairs, total=total, desc=f"teacher labels ({family})", disable=not progress):
        try:
            parts = teacher.parts(img)
        except EfiqaError as err:  # a perturbation can push a photo past FOV detection: counted, not trained on
            labels.skipped.append(f"{i}#{k}: {type(err).__name__}: {err.message}")
            continue
        if keep is not None:
            keep(i, k, parts)
        labels.add(i, k, teacher.judge(parts))
    if labels.skipped:
        print(f"teacher labels ({family}): skipped {len(labels.skipped)} of {total} perturbed photos "
              f"(e.g. {labels.skipped[0]})", file=sys.stderr)
    return labels


def fov_labels(photos: list[np.ndarray], augmentations: int = 24, seed: int = 0, progress: bool = True,
               family: str = "fov-defects") -> Labels:
    """A family's samples labelled by their FOV alone: the crop and in-FOV share per cell that the
    teacher finds (:meth:`Teacher.parts` and :meth:`Teacher.judge`'s own steps), without its networks
    (fast). Their teacher maps are NaN: only targets made from the region maps can learn from them."""
    from tqdm import tqdm

    from .data import to_geometry
    from .teacher import GRID, map_fov, pool_cells
    from .vessels import SIZE

    labels = Labels()
    pairs, total = sample_pairs(family, photos, augmentations, seed)
    for i, k, _, img in tqdm(pairs, total=total, desc=f"FOV labels ({family})", disable=not progress):
        try:
            photo = to_geometry(img, SIZE)
        except EfiqaError as err:  # as the teacher refuses it: counted, not trained on
            labels.skipped.append(f"{i}#{k}: {type(err).__name__}: {err.message}")
            continue
        fov = map_fov(photo)
        coverage = pool_cells(np.zeros(fov.shape, np.float32), fov, GRID, 0.0)[2]
        labels.samples.append((i, k))
        labels.fov.append(photo.fov)
        labels.soft.append(np.full_like(coverage, np.nan))
        labels.score.append(np.full_like(coverage, np.nan))
        labels.coverage.append(coverage)
    if labels.skipped:
        print(f"FOV labels ({family}): skipped {len(labels.skipped)} of {total} (e.g. {labels.skipped[0]})", file=sys.stderr)
    return labels


@torch.no_grad()
def backbone_features(photos: list[np.ndarray], labels: Labels, sizes: tuple[int, ...], augmentations: int = 24,
                      seed: int = 0, student: Student | None = None, progress: bool = True,
                      family: str = "perturbations") -> dict[int, np.ndarray]:
    """Frozen backbone features (``student``'s; default: ImageNet Lite0, all kinds) of the labelled
    perturbations, each cropped on the FOV the teacher found: {size: (N, C, g, g) float16}."""
    from tqdm import tqdm

    # the default gives every Lite0 feature kind at once (``all``): one cache serves them all
    backbone = (student or Student(EfficientNetLite0().load_imagenet(), features="all")).freeze_backbone().eval()
    row = {s: n for n, s in enumerate(labels.samples)}
    pre = {s: Preprocessor(s) for s in sizes}
    feats: dict[int, list[np.ndarray]] = {s: [None] * len(row) for s in sizes}
    pairs, total = sample_pairs(family, photos, augmentations, seed)
    for i, k, _, img in tqdm(pairs, total=total, desc=f"backbone features ({family})", disable=not progress):
        n = row.get((i, k))
        if n is None:
            continue
        for s in sizes:
            prep = pre[s](img, fov=labels.fov[n])
            feats[s][n] = backbone.features(torch.from_numpy(prep.tensor[None]))[0].numpy().astype(np.float16)
    return {s: np.stack(f) for s, f in feats.items()}


def region_maps(photos: list[np.ndarray], labels: Labels, augmentations: int = 24, seed: int = 0,
                progress: bool = True, family: str = "perturbations") -> list[np.ndarray]:
    """How much detail each labelled perturbation destroyed per cell (:func:`regions.degradation`,
    G×G, in the order of ``labels.samples``), on the crop of the FOV the teacher found."""
    from tqdm import tqdm

    row = {s: n for n, s in enumerate(labels.samples)}
    maps: list[np.ndarray] = [None] * len(row)
    pairs, total = sample_pairs(family, photos, augmentations, seed)
    for i, k, reference, img in tqdm(pairs, total=total, desc=f"degraded regions ({family})", disable=not progress):
        n = row.get((i, k))
        if n is not None:
            maps[n] = (np.zeros_like(labels.score[n]) if k == 0
                       else regions.degradation(reference, img, labels.fov[n], labels.score[n].shape[0]))
    return maps


def feature_sets(labels: Labels, features: dict[int, np.ndarray],
                 region: list[np.ndarray] | None = None) -> dict[int, FeatureSet]:
    """Labels (and ``region`` maps, :func:`region_maps`) on each backbone's grid (the map grid, 16×16,
    for every shipped student)."""
    sets = {}
    for s, data in features.items():
        g = data.shape[-1]
        sets[s] = FeatureSet(s, data, [_to_grid(a, g) for a in labels.soft], [_to_grid(a, g) for a in labels.score],
                             [_to_grid(a, g) >= 0.5 for a in labels.coverage], [i for i, _ in labels.samples],
                             [k for _, k in labels.samples], None if region is None else [_to_grid(a, g) for a in region])
    return sets


def _to_grid(a: np.ndarray, g: int) -> np.ndarray:
    return a if a.shape[0] == g else cv2.resize(a, (g, g), interpolation=cv2.INTER_AREA)


@dataclass
class AdapterResult:
    head: torch.nn.Module
    feature_kind: str
    size: int
    history: list[float]
    params: int


def train_adapter(fs: FeatureSet, feature_kind: str = "three-scale", head: str | Callable[[int], torch.nn.Module] = "linear",
                  phi: float = 0.9,
                  epochs: int = 20, lr: float = 1e-3, batch: int = 32, seed: int = 0,
                  train_photos: set[int] | None = None, target: str = "soft", members: int = 1) -> AdapterResult:
    """A head trained by BCE on ``target`` (see :data:`TARGETS`): the teacher's ``soft`` labels (its
    mean share of missing vasculature per patch) or its rule ``binary`` (fraction ≥ phi, positives
    weighted by the negative/positive ratio); ``union`` (the teacher's soft label or the degraded
    region; soft, unweighted like ``soft``); or, with no teacher label at all, the degraded region alone, ``region``, or its
    square root, ``root`` (:data:`FOV_ONLY_TARGETS`).
    ``members`` > 1: an ensemble (:func:`adapter.combine`) of heads trained alike from seeds ``seed``,
    ``seed`` + 1, … (its first member is the single head of the same seed, so runs with neighbouring
    seeds share members); ``history``: their mean loss per epoch. ``head``: a kind of
    :func:`adapter.make_head` or a callable channels → module (a candidate under study) whose first
    layer is a :class:`adapter.Standardise` and whose last has the output bias."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {TARGETS}")
    idx = np.array([n for n, p in enumerate(fs.photo) if train_photos is None or p in train_photos])
    x = torch.from_numpy(fs.features(feature_kind)[idx].astype(np.float32))
    if target in REGION_TARGETS and fs.region is None:
        raise ValueError(f"the {target} target needs the perturbations' region maps (cached_features gives them)")
    labels = (np.stack(fs.score)[idx] if target == "soft" else
              1 - (1 - np.stack(fs.score)[idx]) * (1 - np.stack(fs.region)[idx]) if target == "union" else
              np.stack(fs.region)[idx] if target == "region" else
              np.sqrt(np.stack(fs.region)[idx]) if target == "root" else
              np.stack(fs.soft)[idx] >= phi)
    if target not in FOV_ONLY_TARGETS and np.isnan(np.stack(fs.score if target != "binary" else fs.soft)[idx]).any():
        raise ValueError(f"the {target} target needs the teacher's labels, and some samples were labelled by their "
                         "FOV alone (fov-defects): train it on the others")
    y = torch.from_numpy(labels.astype(np.float32))[:, None]
    v = torch.from_numpy(np.stack(fs.valid)[idx].astype(np.float32))[:, None]
    pos = float((y * v).sum())
    neg = float(((1 - y) * v).sum())
    pos_weight = torch.tensor(neg / max(pos, 1.0) if target == "binary" else 1.0)  # soft targets: unweighted
    fits = [_fit_head(head, x, y, v, pos_weight, epochs, lr, batch, seed + m) for m in range(members)]
    model = combine([h for h, _ in fits])
    history = [float(np.mean(losses)) for losses in zip(*(h for _, h in fits))]
    return AdapterResult(model.eval(), feature_kind, fs.size, history, sum(p.numel() for p in model.parameters()))


def _fit_head(head: str | Callable[[int], torch.nn.Module], x: torch.Tensor, y: torch.Tensor, v: torch.Tensor,
              pos_weight: torch.Tensor, epochs: int, lr: float, batch: int, seed: int) -> tuple[torch.nn.Module, list[float]]:
    """One head trained on (features, targets, valid cells) from ``seed``; its loss per epoch."""
    torch.manual_seed(seed)
    model = head(x.shape[1]) if callable(head) else make_head(head, x.shape[1])
    model[0].fit(x)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for b in range(0, len(x), batch):
            j = perm[b:b + batch]
            logits = model(x[j])
            loss = (F.binary_cross_entropy_with_logits(logits, y[j], pos_weight=pos_weight, reduction="none")
                    * v[j]).sum() / v[j].sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(j)
        history.append(total / len(x))
    # Positive weighting w shifts the optimal logit by log(w); take it back out of the last bias so the
    # exported probabilities estimate how likely the teacher is to flag the patch.
    with torch.no_grad():
        model[-1].bias -= torch.log(pos_weight)
    return model, history


@torch.no_grad()
def predict(result: AdapterResult, fs: FeatureSet, photos: set[int] | None = None,
            samples: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(student outputs, teacher fractions, teacher scores, valid) for the samples of ``photos``
    (or the sample indices ``samples``); the outputs of a single head (of a :class:`MapAndScore`, its
    map head's channel 0: thresholds and studies score each head on its own)."""
    idx = samples if samples is not None else np.array([n for n, p in enumerate(fs.photo) if p in photos])
    x = torch.from_numpy(fs.features(result.feature_kind)[idx].astype(np.float32))
    prob = torch.sigmoid(result.head(x))[:, 0].numpy()
    return prob, np.stack(fs.soft)[idx], np.stack(fs.score)[idx], np.stack(fs.valid)[idx]


def _unperturbed(fs: FeatureSet, photos: set[int] | None = None) -> np.ndarray:
    """Sample indices of each photo's unperturbed copy (none for a photo the teacher refused as it is)."""
    return np.array([n for n, (p, k) in enumerate(zip(fs.photo, fs.perturbation))
                     if k == 0 and (photos is None or p in photos)], dtype=int)


#: The confidence the shipped patch threshold aims at of keeping new clean photos' flagged cells
#: within the budget (the bootstrap reaches less with few photos: see :func:`upper_quantile`).
CONFIDENCE = 0.95


def upper_quantile(cells: list[np.ndarray], q: float, confidence: float, draws: int = 2000, seed: int = 0) -> float:
    """One-sided upper ``confidence`` bound of the ``q`` quantile of cells pooled over photos
    (``cells``: one array per photo), by resampling whole photos: a photo's cells rise and fall
    together, so photos, not cells, are the independent draws. New photos over-run a threshold at the
    point estimate about half the time or more; at this bound far less often, though more than
    1 − ``confidence`` with few photos (the percentile bootstrap is optimistic; see the test)."""
    cells = [c for c in cells if c.size]
    if len(cells) < 2:
        raise ValueError("a bound over photos needs at least two photos with cells")
    rng = np.random.default_rng(seed)
    bounds = [np.quantile(np.concatenate([cells[i] for i in rng.integers(0, len(cells), len(cells))]), q)
              for _ in range(draws)]
    return float(np.quantile(bounds, confidence))


def _quantile_thresholds(prob: np.ndarray, valid: np.ndarray, fp_budget: float,
                         confidence: float | None = None, seed: int = 0) -> dict:
    """(1 − budget) quantiles of the cells and of the photos' mean scores; with ``confidence``, the
    patch threshold is :func:`upper_quantile`'s bound and the point estimate is kept beside it."""
    point = float(np.quantile(prob[valid], 1 - fp_budget))
    image = float(np.quantile([p[v].mean() for p, v in zip(prob, valid)], 1 - fp_budget))
    out = {"patch_threshold": point, "gradable_threshold": image, "fp_budget": fp_budget,
           "clean_photos": int(len(prob))}
    if confidence is not None and sum(bool(v.any()) for v in valid) > 1:
        out.update(patch_threshold=upper_quantile([p[v] for p, v in zip(prob, valid)], 1 - fp_budget, confidence,
                                                  seed=seed),
                   patch_threshold_point=point, patch_confidence=confidence)
    return out


def clean_thresholds(result: AdapterResult, fs: FeatureSet, fp_budget: float = 0.05,
                     reference: set[int] | None = None) -> dict:
    """Label-free decision thresholds from the student's outputs on the *unperturbed* photos
    (perturbation 0 of each; ``reference``: only these photo indices): a patch or a photo is flagged
    above the (1 − budget) quantile. In-sample: the adapter saw these photos, so on new photos it
    flags more than the budget (see :func:`crossfit_thresholds`)."""
    prob, _, _, valid = predict(result, fs, samples=_unperturbed(fs, reference))
    return _quantile_thresholds(prob, valid, fp_budget)


def crossfit_thresholds(fs: FeatureSet, train: dict, fp_budget: float = 0.05, reference: set[int] | None = None,
                        folds: int = 5, seed: int = 0, confidence: float | None = None) -> dict:
    """The same quantiles, but each reference photo is scored by an adapter trained without it (and
    without its perturbations): up to ``folds`` adapters, each also given ``train`` (keyword
    arguments of :func:`train_adapter` other than ``seed`` and ``train_photos``). An adapter's
    outputs on photos it was fitted to sit lower than on photos it has never seen, so in-sample
    quantiles under-state what a new clean photo scores; out-of-fold outputs measure that case.
    ``confidence``: the patch threshold is the upper bound of :func:`upper_quantile` instead of the
    point estimate. Needs at least two photos (one to leave out, one to train on). With ``members``
    in ``train``, each fold's adapter is an ensemble of that many heads, like the map head it sets
    the threshold of."""
    ref = sorted(reference if reference is not None else set(fs.photo))
    everyone = set(fs.photo)
    if not set(ref) & set(fs.photo[n] for n in _unperturbed(fs)):
        raise ValueError("no reference photo has an unperturbed sample to set thresholds on")
    if len(everyone) < 2:
        raise ValueError("out-of-fold thresholds need at least two photos")
    order = np.random.default_rng(seed).permutation(ref)
    probs, valids, trained = [], [], 0
    for f in range(folds):
        held = set(int(p) for p in order[f::folds])
        scored = _unperturbed(fs, held)
        if not len(scored):
            continue
        res = train_adapter(fs, train_photos=everyone - held, seed=seed, **train)
        prob, _, _, valid = predict(res, fs, samples=scored)
        probs.append(prob)
        valids.append(valid)
        trained += 1
    return {**_quantile_thresholds(np.concatenate(probs), np.concatenate(valids), fp_budget, confidence, seed),
            "threshold_method": f"out-of-fold ({trained} folds)"}


def decision_thresholds(result: AdapterResult, fs: FeatureSet, train: dict, fp_budget: float = 0.05,
                        reference: set[int] | None = None, seed: int = 0, confidence: float = CONFIDENCE) -> dict:
    """The shipped rule. Patches: out of fold (:func:`crossfit_thresholds`), at the upper
    ``confidence`` bound of the budget's quantile, aiming to keep new clean photos' flagged cells
    within the budget (26 reference photos leave the point estimate loose: a threshold at it
    over-flags about every other set of new photos). Photos: the stricter (lower) of the out-of-fold
    point estimate and the in-sample
    quantile (:func:`clean_thresholds`), on purpose: for capture guidance a bad photo called gradable
    (a missed retake, a patient recalled) costs more than a good one retaken; the out-of-fold value
    is recorded beside it. With a single photo there is nothing to leave out: in-sample, and said so."""
    inside = clean_thresholds(result, fs, fp_budget, reference)
    if len(set(fs.photo)) < 2:
        return {**inside, "threshold_method": "in-sample (one photo)"}
    oof = crossfit_thresholds(fs, train, fp_budget, reference, seed=seed, confidence=confidence)
    return {**oof, "gradable_threshold": min(inside["gradable_threshold"], oof["gradable_threshold"]),
            "gradable_threshold_out_of_fold": oof["gradable_threshold"],
            "threshold_method": f"patch: {oof['threshold_method']}"
                                + (f", upper {confidence:.0%} bound (photo bootstrap)" if "patch_confidence" in oof else "")
                                + "; gradable: the lower of in-sample and out-of-fold"}


def kept_score_head(folder: str | Path, cfg: dict) -> tuple[torch.nn.Module, dict]:
    """An earlier student's score head to keep as it is (``efiqa train student --keep-score-head``):
    the module, weight for weight, and its gradable thresholds and loss history from its
    ``adapter.json``. A rule that changes the map head alone then leaves every verdict as it was;
    retraining the score head would not, where another CPU's last bits steer the training apart
    (``benchmarks/results/student_reproduction.json``). ``ModelError`` for a folder that is no student's,
    or one trained on other features or for another target."""
    from efiqa.errors import ModelError

    folder = Path(folder)
    if not (folder / "adapter.json").is_file() or not (folder / "adapter.pt").is_file():
        raise ModelError("not a student's adapter folder (adapter.json and adapter.pt)", str(folder))
    if not cfg.get("score_target"):
        raise ModelError("this student has one head for map and score: there is no score head to keep", str(folder))
    adapter, meta = load_adapter(folder)
    for key in ("features", "score_target"):
        if meta.get(key) != cfg.get(key):
            raise ModelError(f"its score head was trained with {key} {meta.get(key)!r}, this student's is "
                             f"{cfg.get(key)!r}", str(folder))
    kept = ("gradable_threshold", "gradable_threshold_out_of_fold", "score_loss_history")
    return adapter.score.eval(), {k: meta[k] for k in kept if k in meta}


def train_student(fs: FeatureSet, cfg: dict, phi: float, epochs: int = 20, seed: int = 0,
                  reference: set[int] | None = None,
                  keep_score: tuple[torch.nn.Module, dict] | None = None) -> tuple[AdapterResult, dict]:
    """The student's adapter as ``cfg`` (:data:`DEFAULT`'s keys) says, with its decision thresholds
    (:func:`decision_thresholds`). ``members``: the map head's (the score head is one head). With
    ``score_target``, two heads (:class:`MapAndScore`): the patch
    threshold is set on the map head, the gradable threshold on the score head, each as a single
    head's would be; ``history`` is the map head's (the score head's is in the thresholds dict as
    ``score_loss_history``). The score head learns from the perturbations only, never the local
    defects (:func:`perturbations_only`): whether a photo can be read stays the teacher's call on
    whole perturbed photos. ``keep_score``: an earlier student's score head and its thresholds
    (:func:`kept_score_head`), kept instead of training one."""
    base = {"feature_kind": cfg["features"], "head": cfg["head"], "phi": phi, "epochs": epochs}
    train = {**base, "target": cfg["target"], "members": cfg["members"]}
    res = train_adapter(fs, seed=seed, **train)
    thresholds = decision_thresholds(res, fs, train, reference=reference, seed=seed)
    if not cfg.get("score_target"):
        return res, thresholds
    method = "the patch threshold set on the map head, the gradable threshold on the score head, each by one rule"
    if keep_score is None:
        score_train, scored = {**base, "target": cfg["score_target"]}, perturbations_only(fs)
        score = train_adapter(scored, seed=seed, **score_train)
        by_score = decision_thresholds(score, scored, score_train, reference=reference, seed=seed)
        kept = {k: by_score[k] for k in ("gradable_threshold", "gradable_threshold_out_of_fold") if k in by_score}
        score_head, score_params, kept["score_loss_history"] = score.head, score.params, score.history
    else:
        (score_head, kept), method = keep_score, method + " (the score head and its threshold kept from an earlier student)"
        score_params = sum(p.numel() for p in score_head.parameters())
    thresholds.update(kept, threshold_method=f"{method} ({thresholds['threshold_method']})")
    both = AdapterResult(MapAndScore(res.head, score_head).eval(), res.feature_kind, res.size, res.history,
                         res.params + score_params)
    return both, thresholds


def assemble(result: AdapterResult, checkpoint: str | None = None) -> Student:
    """The full student (frozen backbone + trained adapter) for export; ``checkpoint`` for a ViT."""
    if result.feature_kind == "vit":
        student = Student.with_vit(checkpoint)
    else:
        student = Student(EfficientNetLite0().load_imagenet(), features=result.feature_kind)
    student.freeze_backbone()
    student.adapter = result.head
    return student.eval()


def load_adapter(folder: str | Path) -> tuple[torch.nn.Module, dict]:
    """The adapter ``efiqa train student`` wrote (adapter.pt, laid out as its adapter.json says) and that json."""
    folder = Path(folder)
    meta = json.loads((folder / "adapter.json").read_text())
    state = torch.load(folder / "adapter.pt", map_location="cpu", weights_only=True)
    channels = next(v for k, v in state.items() if k.endswith("weight")).shape[1]
    head = make_adapter(meta["head"], channels, meta.get("members", 1), score_head=bool(meta.get("score_target")))
    head.load_state_dict(state)
    return head, meta


def load_student(folder: str | Path = "models/student") -> tuple[Student, dict]:
    """The full student from the output of ``efiqa train student`` (adapter.pt + adapter.json)."""
    head, meta = load_adapter(folder)
    return assemble(AdapterResult(head, meta["features"], meta["size"], [], 0), meta.get("backbone_checkpoint")), meta


def reference_photos(names: list[str]) -> set[int] | None:
    """Which photos set the student's decision thresholds: those of the pool judged good by eye
    (``data.TEACHER_TRAIN``), where the pool has them; otherwise (a user's own photos) all. The
    unlabelled cameras' photos train the adapter but are not known to be flawless (every IDRiD photo
    shows diabetic retinopathy), and a 5 % budget over them would call clearly bad photos gradable."""
    from .data import TEACHER_TRAIN

    chosen = {i for i, n in enumerate(names) if n in TEACHER_TRAIN}
    return chosen or None


def photo_list(images: list[str] | None, data: str | None) -> list[tuple[str, np.ndarray]]:
    """Unlabelled photos: every image under ``images`` folders/files, or the training pool
    (``data.training_pool``: the teacher-training photos and everything under ``unlabelled/``)."""
    from efiqa.imageio import IMAGE_SUFFIXES, read_image

    from .data import data_root, resolve, training_pool

    if images:
        paths: list[Path] = []
        for raw in images:
            p = Path(raw)
            paths.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p])
        names = [str(p) for p in paths]
    else:
        root = data_root(data)
        names = training_pool(root)
        paths = [resolve(n, root) for n in names]
    return [(n, working_copy(read_image(p))) for n, p in zip(names, paths)]


def working_copy(bgr: np.ndarray, side: int = 1400) -> np.ndarray:
    """The photo shrunk to ``side`` px on its long edge (geometry is relative; this only saves time)."""
    k = side / max(bgr.shape[:2])
    return bgr if k >= 1 else cv2.resize(bgr, (round(bgr.shape[1] * k), round(bgr.shape[0] * k)),
                                         interpolation=cv2.INTER_AREA)


def _code_key(parts: tuple, sources: tuple) -> str:
    """A digest of ``parts`` and of the source code of ``sources`` (modules or functions)."""
    import inspect

    key = hashlib.sha256(repr(parts).encode())
    for source in sources:
        key.update(inspect.getsource(source).encode())
    return key.hexdigest()[:16]


def label_cache_key(names: list[str], teacher_dir: Path, augmentations: int, seed: int) -> str:
    """What the teacher's labels depend on: the photos, the teacher's files, the settings and the
    code that perturbs, crops and labels the photos (a change to it must not reuse stale labels)."""
    from efiqa import fov as fov_mod
    from efiqa import preprocess as preprocess_mod

    from . import augment as augment_mod
    from . import data as data_mod
    from . import teacher as teacher_mod
    from . import vessels as vessels_mod
    from .nets import unet as unet_mod

    files = [Path(teacher_dir) / f for f in ("vessels.pt", "anatomy.pt", "inpainter.pt", "teacher.json")]
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else "" for f in files]
    return _code_key((names, digests, augmentations, seed, ENHANCED),
                     (perturbations, perturbation_pairs, augment_mod, teacher_mod, data_mod, vessels_mod, unet_mod, preprocess_mod, fov_mod))


def defect_cache_key(names: list[str], teacher_dir: Path, seed: int) -> str:
    """What the teacher's labels of the local defects depend on (as :func:`label_cache_key`)."""
    return label_cache_key(names, teacher_dir, DEFECTS_PER_PHOTO, seed) + _code_key(
        ("defects", DEFECT_OFFSET, DEFECT_STREAM), (defects, defect_pairs, sample_pairs))


def fov_defect_cache_key(names: list[str], seed: int) -> str:
    """What the FOV-labelled defects depend on: the photos, the settings and the code that makes,
    crops and labels them (the teacher's files not among them)."""
    from efiqa import fov as fov_mod
    from efiqa import preprocess as preprocess_mod

    from . import augment as augment_mod
    from . import data as data_mod
    from .teacher import GRID, MAP_SIZE, map_fov, pool_cells
    from .vessels import SIZE

    return _code_key((names, "fov-defects", FOV_DEFECTS_PER_PHOTO, FOV_DEFECT_OFFSET, FOV_DEFECT_STREAM, seed,
                      SIZE, GRID, MAP_SIZE),
                     (defects, defect_pairs, sample_pairs, fov_labels, map_fov, pool_cells, augment_mod, data_mod,
                      fov_mod, preprocess_mod))


def feature_cache_key(label_key: str, backbone_id: str = "lite0") -> str:
    """Features depend on the labelled perturbations and on the code and weights of the backbone."""
    from efiqa import preprocess as preprocess_mod

    from .nets import efficientnet_lite as lite_mod
    from .nets import student as student_mod
    from .nets import vit as vit_mod

    return _code_key((label_key, backbone_id), (student_mod, lite_mod, vit_mod, preprocess_mod))


def cached_features(names: list[str], photos: list[np.ndarray], teacher: Teacher, teacher_dir: Path,
                    sizes: tuple[int, ...], augmentations: int, seed: int, cache_dir: Path | None,
                    progress: bool = True, student: Student | None = None,
                    backbone_id: str = "lite0", regions_too: bool = False,
                    families: tuple[str, ...] = ()) -> dict[int, FeatureSet]:
    """Teacher labels, frozen backbone features and (``regions_too``: for the ``REGION_TARGETS``) the
    perturbations' region maps for ``augmentations`` perturbations of each photo, memoised on disk
    (``cache_dir``; None: not cached) in three parts: the teacher's labels (slow; kept while only the
    student's code changes), the backbone's features per input size and the region maps.
    ``families``: followed, in this order, by the same (with region maps) for other sample families
    (:func:`sample_pairs`: ``defects``, ``DEFECTS_PER_PHOTO`` local defects of each photo labelled by
    the teacher; ``fov-defects``, ``FOV_DEFECTS_PER_PHOTO`` more labelled by their FOV alone), each
    cached apart."""
    sets = _cached_family("perturbations", names, photos, teacher, label_cache_key(names, teacher_dir, augmentations, seed),
                          sizes, augmentations, seed, cache_dir, progress, student, backbone_id, regions_too)
    keys = {"defects": lambda: defect_cache_key(names, teacher_dir, seed), "fov-defects": lambda: fov_defect_cache_key(names, seed)}
    for family in families:
        if family not in keys:
            raise ValueError(f"unknown sample family {family!r}; choose from {list(keys)}")
        more = _cached_family(family, names, photos, teacher, keys[family](), sizes, augmentations, seed, cache_dir,
                              progress, student, backbone_id, True)
        sets = {s: concatenate(sets[s], more[s]) for s in sizes}
    return sets


def concatenate(a: FeatureSet, b: FeatureSet) -> FeatureSet:
    """Two feature sets of one input size as one (``b``'s samples after ``a``'s)."""
    region = None if a.region is None or b.region is None else a.region + b.region
    return FeatureSet(a.size, np.concatenate([a.data, b.data]), a.soft + b.soft, a.score + b.score, a.valid + b.valid,
                      a.photo + b.photo, a.perturbation + b.perturbation, region)


def perturbations_only(fs: FeatureSet) -> FeatureSet:
    """``fs`` without its local defects (what the score head learns from); where they all follow
    the perturbations (:func:`cached_features`), the features are a view, not a copy."""
    keep = [n for n, k in enumerate(fs.perturbation) if k < DEFECT_OFFSET]
    if len(keep) == len(fs.perturbation):
        return fs
    pick = lambda xs: None if xs is None else [xs[n] for n in keep]  # noqa: E731
    data = fs.data[:len(keep)] if keep == list(range(len(keep))) else fs.data[keep]
    return FeatureSet(fs.size, data, pick(fs.soft), pick(fs.score), pick(fs.valid), pick(fs.photo),
                      pick(fs.perturbation), pick(fs.region))


def _cached_family(family: str, names: list[str], photos: list[np.ndarray], teacher: Teacher, lkey: str,
                   sizes: tuple[int, ...], augmentations: int, seed: int, cache_dir: Path | None, progress: bool,
                   student: Student | None, backbone_id: str, regions_too: bool) -> dict[int, FeatureSet]:
    """:func:`cached_features` of one family of samples, its labels keyed by ``lkey``."""
    lpath = cache_dir / f"labels_{lkey}.pkl" if cache_dir else None
    fpath = cache_dir / f"features_{feature_cache_key(lkey, backbone_id)}.pkl" if cache_dir else None
    labels = _load(lpath)
    if labels is None:
        labels = (fov_labels(photos, augmentations, seed, progress, family) if family == "fov-defects" else
                  teacher_labels(photos, teacher, augmentations, seed, progress, family=family))
        _store(lpath, labels)
    rpath = cache_dir / f"regions_{_code_key((lkey,), (regions, region_maps))}.pkl" if cache_dir else None
    region = _load(rpath) if regions_too else None
    if regions_too and region is None:
        region = region_maps(photos, labels, augmentations, seed, progress, family)
        _store(rpath, region)
    features = _load(fpath) or {}
    missing = tuple(s for s in sizes if s not in features)
    if missing:
        features.update(backbone_features(photos, labels, missing, augmentations, seed, student, progress, family))
        _store(fpath, features)
    return feature_sets(labels, {s: features[s] for s in sizes}, region)


def _load(path: Path | None):
    import pickle

    return pickle.loads(path.read_bytes()) if path and path.exists() else None


def _store(path: Path | None, value) -> None:
    import pickle

    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
