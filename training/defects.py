"""Label-free local defects for distillation (stage 2): one capture defect over one part of the frame.

:mod:`efiqa.train.augment` stacks several photometric changes on each photo, most of them over the
whole frame, and none brightens part of it. A head trained on what those perturbations destroyed
(``efiqa.train.regions``) learns regions poorly: trained on the same measure of lost detail over
copies whose defects sit in one region of an otherwise untouched photo, the same head finds such
regions far better (``benchmarks/results/target_form.md``). This module makes such copies from the
project's own generic defects (defocus, camera shake, a veil, shading, over-exposure that clips,
sensor noise, compression blocks), each blended in through a smooth random field over part of the
frame. It is deliberately separate from the evaluation generators (``efiqa.eval.synth``,
``efiqa.eval.soft_regions``), which are never a training input and whose masks are never seen in
training: the regions here are :func:`augment._patchy` fields, the amounts after :mod:`augment`'s
(each defect over the whole blend field at one strength, where augment varies some across it).
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .augment import _jpeg, _patchy


def _blur(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    sigma = max(0.3, s * rng.uniform(1, 10) * max(img.shape[:2]) / 1000)
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _shake(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    n = max(3, int(s * rng.uniform(3, 30) * max(img.shape[:2]) / 1000) | 1)
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0
    k = cv2.warpAffine(k, cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0), (n, n))
    return cv2.filter2D(img, -1, k / max(float(k.sum()), 1e-6))


def _veil(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    a = s * rng.uniform(0.2, 0.6)
    return img * (1 - a) + a * np.array([166, 191, 217], np.float32)  # augment's veil colour, a warm white (BGR)


def _shade(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    return img * (1 - s * rng.uniform(0.3, 0.9))


def _glow(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Over-exposure: a gain and a lift; what passes 255 clips (the channel's detail is gone)."""
    return img * (1 + s * rng.uniform(0.5, 2.0)) + s * rng.uniform(0, 0.25) * 255


def _noise(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    return img + rng.normal(0, s * rng.uniform(5, 35), img.shape).astype(np.float32)


def _blocks(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    q = max(2, int(70 - 65 * s * rng.uniform(0.5, 1)))
    return _jpeg(np.clip(img, 0, 255).astype(np.uint8), q).astype(np.float32)


#: name → defect of a whole float BGR frame (0-255), given the draws and a strength in [0, 1]
DEFECTS: dict[str, Callable[[np.ndarray, np.random.Generator, float], np.ndarray]] = {
    "blur": _blur, "shake": _shake, "veil": _veil, "shade": _shade, "glow": _glow, "noise": _noise, "blocks": _blocks}


def geometry(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo under a random rotation about a jittered centre, mild zoom and flip: the geometry of
    :func:`augment.augment_pair` (whose code stays as it is: its source keys the shipped labels)."""
    h, w = bgr.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2 + rng.normal(0, 0.03) * w, h / 2 + rng.normal(0, 0.03) * h),
                                rng.uniform(-30, 30), rng.uniform(0.9, 1.1))
    out = cv2.warpAffine(bgr, m, (w, h), flags=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def defect_pair(bgr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(reference, defective, kind): the photo under a random geometry, and the same with one
    :data:`DEFECTS` kind (uniform) of random strength blended in over a random part of the frame."""
    reference = geometry(bgr, rng)
    kind = list(DEFECTS)[int(rng.integers(len(DEFECTS)))]
    img = reference.astype(np.float32)
    a = _patchy(*img.shape[:2], rng)
    out = img * (1 - a) + DEFECTS[kind](img, rng, float(rng.uniform(0, 1))) * a
    return reference, np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8)), kind
