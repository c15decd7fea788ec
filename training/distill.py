"""Stage 2: distil the teacher's patch maps into a shallow adapter on a frozen backbone.

1. Each unlabelled photo is perturbed many times (``augment``: photometric + geometric, label-free).
2. The teacher labels every perturbed photo per patch: ``soft`` = its mean share of missing
   vasculature (a value in [0, 1)), ``binary`` = its clean-photo rule (fraction ≥ ``phi``).
3. Frozen backbone features of the same perturbed photo, in runtime geometry, are cached.
4. The adapter learns the teacher's labels from features (BCE: soft targets, or binary ones with
   positive weighting), AdamW, seeded.
5. Decision thresholds of the student come from its own outputs on the unperturbed photos (the
   same 5 % false-positive budget as the teacher's rule), so no label is needed anywhere.

    efiqa train student --images DIR... [--augmentations 24] [--epochs 20]
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from efiqa.preprocess import Preprocessor

from .augment import augment
from .nets.efficientnet_lite import EfficientNetLite0
from .nets.student import FEATURES, Student, make_head
from .teacher import Teacher

#: The shipped configuration, chosen by ``benchmarks/student_variants.py`` (label-free criterion).
DEFAULT = {"size": 512, "features": "two-scale", "head": "conv", "target": "soft"}
#: Input sizes of the shipped Lite0 bundles (``models/default`` and the faster ``models/fast``): their
#: features are cached together, so the teacher labels each perturbed photo once for both.
SIZES = (512, 384)
TARGETS = ("soft", "binary")


@dataclass
class FeatureSet:
    """Cached distillation data for one input size and feature kind."""

    size: int
    two_scale: np.ndarray | None = None                             # (N, C, g, g) float16 backbone features
    soft: list[np.ndarray] = field(default_factory=list)            # teacher fraction (g, g)
    score: list[np.ndarray] = field(default_factory=list)           # teacher mean anomaly score (g, g)
    valid: list[np.ndarray] = field(default_factory=list)           # coverage ≥ 0.5 (g, g)
    photo: list[int] = field(default_factory=list)                  # source photo index per sample

    def features(self, kind: str) -> np.ndarray:
        """The stride-32 features are the last 320 channels of the two-scale ones."""
        if kind == "s32":
            return self.two_scale[:, FEATURES["two-scale"] - FEATURES["s32"]:]
        return self.two_scale


def _to_grid(a: np.ndarray, g: int) -> np.ndarray:
    return a if a.shape[0] == g else cv2.resize(a, (g, g), interpolation=cv2.INTER_AREA)


@torch.no_grad()
def build_features(photos: list[np.ndarray], teacher: Teacher, sizes: tuple[int, ...] = (512,),
                   augmentations: int = 24, seed: int = 0, progress: bool = True,
                   student: Student | None = None) -> dict[int, FeatureSet]:
    """Teacher labels + frozen backbone features for ``augmentations`` perturbations of each photo
    (the first unperturbed). ``student`` picks the backbone (default: ImageNet EfficientNet-Lite0)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    backbone = (student or Student(EfficientNetLite0().load_imagenet())).freeze_backbone().eval()
    sets = {s: FeatureSet(s) for s in sizes}
    feats: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
    pre = {s: Preprocessor(s) for s in sizes}
    jobs = [(i, k) for i in range(len(photos)) for k in range(augmentations)]
    for i, k in tqdm(jobs, desc="teacher labels + features", disable=not progress):
        img = photos[i] if k == 0 else augment(photos[i], rng)
        try:
            t = teacher(img)
        except Exception:  # an augmentation can push a photo past FOV detection; skip it
            continue
        for s in sizes:
            prep = pre[s](img, fov=t.fov_circle)
            feat = backbone.features(torch.from_numpy(prep.tensor[None]))[0].numpy().astype(np.float16)
            feats[s].append(feat)
            g = feat.shape[-1]  # the backbone's grid: 16 for Lite0 at 512 or a /16 ViT at 256
            fs = sets[s]
            fs.soft.append(_to_grid(t.patch_fraction, g))
            fs.score.append(_to_grid(t.patch_score, g))
            fs.valid.append(_to_grid(t.coverage, g) >= 0.5)
            fs.photo.append(i)
    for s in sizes:
        sets[s].two_scale = np.stack(feats[s])
    return sets


@dataclass
class AdapterResult:
    head: torch.nn.Module
    feature_kind: str
    size: int
    history: list[float]
    params: int


def train_adapter(fs: FeatureSet, feature_kind: str = "two-scale", head: str = "linear", phi: float = 0.9,
                  epochs: int = 20, lr: float = 1e-3, batch: int = 32, seed: int = 0,
                  train_photos: set[int] | None = None, target: str = "soft") -> AdapterResult:
    """BCE on the teacher's labels: ``soft`` (its mean share of missing vasculature per patch) or
    ``binary`` (its rule, fraction ≥ phi, positives weighted by the negative/positive ratio)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {TARGETS}")
    torch.manual_seed(seed)
    idx = np.array([n for n, p in enumerate(fs.photo) if train_photos is None or p in train_photos])
    x = torch.from_numpy(fs.features(feature_kind)[idx].astype(np.float32))
    labels = np.stack(fs.score)[idx] if target == "soft" else (np.stack(fs.soft)[idx] >= phi)
    y = torch.from_numpy(labels.astype(np.float32))[:, None]
    v = torch.from_numpy(np.stack(fs.valid)[idx].astype(np.float32))[:, None]
    pos = float((y * v).sum())
    neg = float(((1 - y) * v).sum())
    pos_weight = torch.tensor(1.0 if target == "soft" else neg / max(pos, 1.0))
    model = make_head(head, x.shape[1])
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
    last = model if isinstance(model, torch.nn.Conv2d) else model[-1]
    with torch.no_grad():
        last.bias -= torch.log(pos_weight)
    return AdapterResult(model.eval(), feature_kind, fs.size, history, sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def predict(result: AdapterResult, fs: FeatureSet, photos: set[int] | None = None,
            samples: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(student outputs, teacher fractions, teacher scores, valid) for the samples of ``photos``
    (or the sample indices ``samples``)."""
    idx = samples if samples is not None else np.array([n for n, p in enumerate(fs.photo) if p in photos])
    x = torch.from_numpy(fs.features(result.feature_kind)[idx].astype(np.float32))
    prob = torch.sigmoid(result.head(x))[:, 0].numpy()
    return prob, np.stack(fs.soft)[idx], np.stack(fs.score)[idx], np.stack(fs.valid)[idx]


def clean_thresholds(result: AdapterResult, fs: FeatureSet, fp_budget: float = 0.05) -> dict:
    """Label-free decision thresholds from the student's outputs on the *unperturbed* photos (the
    first sample of each): a patch or a photo is flagged above the (1 − budget) quantile."""
    # build_features puts each photo's unperturbed sample first
    first = np.array([n for n, p in enumerate(fs.photo) if n == 0 or fs.photo[n - 1] != p])
    prob, _, _, valid = predict(result, fs, samples=first)
    patch = float(np.quantile(prob[valid], 1 - fp_budget))
    image = float(np.quantile([p[v].mean() for p, v in zip(prob, valid)], 1 - fp_budget))
    return {"patch_threshold": patch, "gradable_threshold": image, "fp_budget": fp_budget,
            "clean_photos": int(len(first))}


def assemble(result: AdapterResult, checkpoint: str | None = None) -> Student:
    """The full student (frozen backbone + trained adapter) for export; ``checkpoint`` for a ViT."""
    if result.feature_kind == "vit":
        student = Student.with_vit(checkpoint)
    else:
        student = Student(EfficientNetLite0().load_imagenet(), features=result.feature_kind)
    student.freeze_backbone()
    student.adapter = result.head
    return student.eval()


def load_student(folder: str | Path = "models/student") -> tuple[Student, dict]:
    """The full student from the output of ``efiqa train student`` (adapter.pt + adapter.json)."""
    folder = Path(folder)
    meta = json.loads((folder / "adapter.json").read_text())
    state = torch.load(folder / "adapter.pt", map_location="cpu", weights_only=True)
    channels = next(v for k, v in state.items() if k.endswith("weight")).shape[1]
    head = make_head(meta["head"], channels)
    head.load_state_dict(state)
    return assemble(AdapterResult(head, meta["features"], meta["size"], [], 0), meta.get("backbone_checkpoint")), meta


def photo_list(images: list[str] | None, data: str | None) -> list[tuple[str, np.ndarray]]:
    """Unlabelled photos: every image under ``images`` folders/files, or the project's teacher set."""
    from efiqa.imageio import IMAGE_SUFFIXES, read_image

    from .data import TEACHER_TRAIN, data_root, resolve

    if images:
        paths: list[Path] = []
        for raw in images:
            p = Path(raw)
            paths.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p])
        names = [str(p) for p in paths]
    else:
        root = data_root(data)
        paths = [resolve(n, root) for n in TEACHER_TRAIN]
        names = list(TEACHER_TRAIN)
    return [(n, working_copy(read_image(p))) for n, p in zip(names, paths)]


def working_copy(bgr: np.ndarray, side: int = 1400) -> np.ndarray:
    """The photo shrunk to ``side`` px on its long edge (geometry is relative; this only saves time)."""
    k = side / max(bgr.shape[:2])
    return bgr if k >= 1 else cv2.resize(bgr, (round(bgr.shape[1] * k), round(bgr.shape[0] * k)),
                                         interpolation=cv2.INTER_AREA)


def feature_cache_key(names: list[str], teacher_dir: Path, augmentations: int, seed: int,
                      backbone_id: str = "lite0") -> str:
    """What the cached labels and features depend on: the photos, the teacher's files, the settings
    and the code that crops, perturbs, labels the photos and lays features on the map grid (a change
    to it must not reuse stale labels)."""
    import hashlib
    import inspect

    from efiqa import fov as fov_mod
    from efiqa import preprocess as preprocess_mod

    from . import augment as augment_mod
    from . import teacher as teacher_mod
    from .nets import student as student_mod

    key = hashlib.sha256()
    for n in names:
        key.update(n.encode())
    for f in ("vessels.pt", "anatomy.pt", "inpainter.pt", "teacher.json"):
        p = Path(teacher_dir) / f
        key.update(p.read_bytes() if p.exists() else b"")
    for module in (augment_mod, teacher_mod, student_mod, preprocess_mod, fov_mod):
        key.update(inspect.getsource(module).encode())
    key.update(repr((augmentations, seed, backbone_id)).encode())
    return key.hexdigest()[:16]


def cached_features(names: list[str], photos: list[np.ndarray], teacher: Teacher, teacher_dir: Path,
                    sizes: tuple[int, ...], augmentations: int, seed: int, cache_dir: Path | None,
                    progress: bool = True, student: Student | None = None,
                    backbone_id: str = "lite0") -> dict[int, FeatureSet]:
    """:func:`build_features`, memoised on disk under :func:`feature_cache_key`."""
    import pickle

    key = feature_cache_key(names, teacher_dir, augmentations, seed, backbone_id)
    path = cache_dir / f"distill_{key}.pkl" if cache_dir else None
    cached: dict[int, FeatureSet] = pickle.loads(path.read_bytes()) if path and path.exists() else {}
    if all(s in cached for s in sizes):
        return {s: cached[s] for s in sizes}
    sets = build_features(photos, teacher, sizes, augmentations, seed, progress, student)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({**cached, **sets}, protocol=pickle.HIGHEST_PROTOCOL))
    return sets
