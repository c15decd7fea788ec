"""Stage 1a: the vessel extractor (a small U-Net trained on DRIVE's manual labels) and a classical
multi-scale vesselness baseline (Frangi) to beat.

    efiqa train vessels [--data DIR] [--steps N] [--out models/teacher/vessels.pt]
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from .augment import photometric
from .data import VESSEL_TRAIN, VESSEL_VAL, Photo, data_root, load_drive_label, load_photo
from efiqa.eval.metrics import auroc, best_f1, f1_at
from .nets.unet import UNet

#: Side of the FOV crop the extractor works at: vessel calibre as in DRIVE at native resolution.
SIZE = 512
BASE, LEVELS = 16, 4


def normalise(rgb: np.ndarray, fov_mask: np.ndarray) -> np.ndarray:
    """Per-photo, per-channel standardisation inside the FOV (camera colour and exposure removed)."""
    x = rgb.astype(np.float32)
    inside = x[fov_mask]
    mean = inside.mean(axis=0) if len(inside) else np.zeros(3, np.float32)
    std = inside.std(axis=0) + 1.0 if len(inside) else np.ones(3, np.float32)
    out = (x - mean) / std
    out[~fov_mask] = 0
    return out.transpose(2, 0, 1)


def build_model() -> UNet:
    return UNet(3, 1, BASE, LEVELS)


def load_model(path: str | Path) -> UNet:
    model = build_model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


@torch.no_grad()
def predict(model: UNet, photo: Photo) -> np.ndarray:
    """Vessel probability (S×S float32, 0 outside the FOV) for a photo in runtime geometry."""
    x = torch.from_numpy(normalise(photo.rgb, photo.fov_mask))[None]
    prob = torch.sigmoid(model.eval()(x))[0, 0].numpy()
    return np.where(photo.fov_mask, prob, 0).astype(np.float32)


def frangi_map(photo: Photo) -> np.ndarray:
    """Classical baseline: Frangi vesselness on the CLAHE-enhanced green channel, scales 1-4 px."""
    from skimage.filters import frangi

    green = photo.rgb[..., 1]
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(green)
    v = frangi(clahe.astype(np.float32) / 255.0, sigmas=(1, 1.5, 2, 3, 4), black_ridges=True)
    inner = cv2.erode(photo.fov_mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)  # FOV rim is no vessel
    v = np.where(inner, v, 0)
    return (v / (v.max() + 1e-12)).astype(np.float32)


def _augment(rgb: np.ndarray, label: np.ndarray, fov: np.ndarray, rng: np.random.Generator, patch: int,
             robust: bool = False):
    """Rotation (any angle), flip, ±15 % scale, colour perturbation, then a random patch.

    Two extractors come out of this, and the teacher needs both. The *visible-vessel* extractor
    (default) gets only mild colour/gamma jitter: it must lose vessels where a photo is blurred, hazy,
    dark or washed out. The *anatomy* extractor (``robust``) is trained on the same labels through
    the generic label-free perturbations of ``augment.photometric`` (smooth dark fields, partial blur,
    veils, noise, JPEG; never the evaluation generator), so it keeps finding the vessels that are
    there: what the photo should show."""
    s = rgb.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(0, 360), rng.uniform(0.85, 1.15))
    rgb = cv2.warpAffine(rgb, m, (s, s), flags=cv2.INTER_LINEAR)
    label = cv2.warpAffine(label.astype(np.uint8), m, (s, s), flags=cv2.INTER_NEAREST).astype(bool)
    fov = cv2.warpAffine(fov.astype(np.uint8), m, (s, s), flags=cv2.INTER_NEAREST).astype(bool)
    if rng.random() < 0.5:
        rgb, label, fov = rgb[:, ::-1], label[:, ::-1], fov[:, ::-1]
    x = rgb.astype(np.float32) / 255.0
    if robust:
        rgb = photometric(np.ascontiguousarray(x[..., ::-1]), rng, rng.uniform(0, 1))[..., ::-1]
    else:
        x = x ** rng.uniform(0.9, 1.1) * rng.uniform(0.9, 1.1, size=3)
        rgb = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    inside = np.argwhere(fov)
    cy, cx = inside[rng.integers(len(inside))]
    y0 = int(np.clip(cy - patch // 2, 0, s - patch))
    x0 = int(np.clip(cx - patch // 2, 0, s - patch))
    sl = (slice(y0, y0 + patch), slice(x0, x0 + patch))
    fov_p = np.ascontiguousarray(fov[sl])
    return normalise(np.ascontiguousarray(rgb[sl]), fov_p), np.ascontiguousarray(label[sl]), fov_p


def train(data: str | None = None, steps: int = 900, batch: int = 8, patch: int = 192, seed: int = 0,
          out: str | Path = "models/teacher/vessels.pt", progress: bool = True, robust: bool = False) -> dict:
    """Train on DRIVE 21-36, validate on 37-40; writes the weights and returns the metrics.
    ``robust``: the anatomy extractor (see :func:`_augment`)."""
    root = data_root(data)
    train_set = [(p, load_drive_label(n, p, root)) for n in VESSEL_TRAIN for p in [load_photo(n, SIZE, root)]]
    t0 = time.time()
    model = fit(train_set, steps=steps, batch=batch, patch=patch, seed=seed, progress=progress, robust=robust)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    metrics = evaluate(model, root)
    metrics.update({"robust": robust, "train_images": VESSEL_TRAIN, "steps": steps, "batch": batch, "patch": patch, "seed": seed,
                    "train_seconds": round(time.time() - t0, 1), "params": sum(p.numel() for p in model.parameters())})
    return metrics


def fit(train_set: list[tuple[Photo, np.ndarray]], steps: int, batch: int = 8, patch: int = 192, seed: int = 0,
        progress: bool = True, robust: bool = False) -> UNet:
    """BCE + soft Dice inside the FOV on augmented patches of (photo, vessel label) pairs."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    bar = tqdm(range(steps), desc="anatomy" if robust else "vessels", disable=not progress)
    for _ in bar:
        xs, ys, ms = zip(*(_augment(p.rgb, lab, p.fov_mask, rng, patch, robust)
                           for p, lab in (train_set[i] for i in rng.integers(len(train_set), size=batch))))
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys)[:, None].astype(np.float32))
        m = torch.from_numpy(np.stack(ms)[:, None].astype(np.float32))
        model.train()
        logits = model(x)
        bce = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * m).sum() / m.sum()
        prob = torch.sigmoid(logits) * m
        dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
        loss = bce + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval()


def evaluate(model: UNet, root: Path) -> dict:
    """Pixel AUROC and F1 inside the FOV on DRIVE 37-40, learned vs Frangi."""
    scores: dict[str, list] = {"unet": [], "frangi": []}
    labels = []
    for name in VESSEL_VAL:
        photo = load_photo(name, SIZE, root)
        lab = load_drive_label(name, photo, root)
        scores["unet"].append(predict(model, photo)[photo.fov_mask])
        scores["frangi"].append(frangi_map(photo)[photo.fov_mask])
        labels.append(lab[photo.fov_mask])
    y = np.concatenate(labels)
    res: dict = {"val_images": VESSEL_VAL, "size": SIZE}
    for k, v in scores.items():
        s = np.concatenate(v)
        f1, t = best_f1(s, y)
        res[k] = {"auroc": auroc(s, y), "best_f1": f1, "best_threshold": t}
    res["unet"]["f1_at_0.5"] = f1_at(np.concatenate(scores["unet"]), y, 0.5)
    return res


def write_metrics(metrics: dict, path: Path) -> None:
    path.write_text(json.dumps(metrics, indent=2) + "\n")
