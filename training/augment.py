"""Label-free training augmentation for distillation (stage 2).

Generic photometric and geometric perturbations of whole photos, many spatially varying through
smooth random fields (illumination, blur, veil, noise, compression blocks, camera shake), so the
teacher sees regions of differing quality and labels them itself; and, for a share of them, the
contrast enhancement a camera or a user applies afterwards (:func:`enhancement`).
This is deliberately separate from (and simpler than) ``efiqa.eval.synth``, the evaluation generator,
which is never a training input and whose masks are never seen in training.
"""
from __future__ import annotations

import cv2
import numpy as np


def _smooth_field(h: int, w: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1] (bicubic up-sampled coarse noise)."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    f = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    f -= f.min()
    return f / max(float(f.max()), 1e-6)


def augment(bgr: np.ndarray, rng: np.random.Generator, strength: float | None = None) -> np.ndarray:
    """One random perturbation of a BGR photo; ``strength`` ∈ [0, 1] (random when None)."""
    return augment_pair(bgr, rng, strength)[1]


def augment_pair(bgr: np.ndarray, rng: np.random.Generator,
                 strength: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(reference, perturbed): :func:`augment`'s perturbation (the same draws) and the photo under
    the same rotation, flip and zoom but no photometric change, so that what the perturbation did to
    each pixel can be measured (``efiqa.train.regions``)."""
    s = rng.uniform(0, 1) if strength is None else strength
    h, w = bgr.shape[:2]
    img = bgr.astype(np.float32) / 255.0

    # geometry: rotation about a jittered centre, flip, mild zoom (the FOV moves within the frame)
    m = cv2.getRotationMatrix2D((w / 2 + rng.normal(0, 0.03) * w, h / 2 + rng.normal(0, 0.03) * h),
                                rng.uniform(-30, 30), rng.uniform(0.9, 1.1))
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    reference = np.ascontiguousarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return reference, local_artefacts(photometric(img, rng, s), rng, s)


def _patchy(h: int, w: int, rng: np.random.Generator, level: tuple[float, float] = (0.3, 0.7),
            gain: float = 4) -> np.ndarray:
    """A blend weight in [0, 1] over a random part of the frame (smooth field above a random
    ``level``, edge softness 1/``gain``), H×W×1."""
    a = _smooth_field(h, w, rng, int(rng.integers(2, 5)))
    return np.clip((a - rng.uniform(*level)) * gain, 0, 1)[..., None]


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def local_artefacts(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """Capture artefacts over part of an 8-bit photo: sensor noise, compression blocks, camera
    shake, a shaded region.

    :func:`photometric` applies noise and JPEG to the whole frame only, so the teacher never saw a
    noisy or blocky region beside a clean one to label; here they vary over the frame as blur and
    illumination already do. Photometric's illumination field darkens gradually across the whole
    frame; the shaded region here has a plateau and an edge. Generic perturbations through smooth random fields (no
    masks); the teacher labels the result. Kept out of :func:`photometric`, which also trained the
    anatomy extractor."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    if rng.random() < 0.3:
        noisy = out + rng.normal(0, s * rng.uniform(5, 35), out.shape).astype(np.float32)
        a = _patchy(h, w, rng)
        out = out * (1 - a) + noisy * a
    if rng.random() < 0.25:
        n = int(s * rng.uniform(3, 30) * max(h, w) / 1000) | 1
        if n >= 3:
            k = np.zeros((n, n), np.float32)
            k[n // 2, :] = 1.0
            k = cv2.warpAffine(k, cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0), (n, n))
            shaken = cv2.filter2D(out, -1, k / max(float(k.sum()), 1e-6))
            a = _patchy(h, w, rng)
            out = out * (1 - a) + shaken * a
    out8 = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.25 and s > 0.1:
        q = max(2, int(70 - 65 * s * rng.uniform(0.5, 1)))
        f = int(rng.integers(1, 3))  # coarser blocks on big frames
        small = cv2.resize(out8, (w // f, h // f), interpolation=cv2.INTER_AREA) if f > 1 else out8
        blocky = _jpeg(small, q)
        if f > 1:
            blocky = cv2.resize(blocky, (w, h), interpolation=cv2.INTER_NEAREST)
        a = _patchy(h, w, rng)
        out8 = np.clip(out8 * (1 - a) + blocky.astype(np.float32) * a, 0, 255).astype(np.uint8)
    # a shaded part of the frame (a lid, lashes, a small pupil): a soft-edged plateau
    if rng.random() < 0.2:
        a = _patchy(h, w, rng)
        out8 = np.clip(out8 * (1 - s * rng.uniform(0.3, 0.8) * a), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out8)


def enhancement(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A contrast enhancement applied after capture, by a camera's software or by the user, to an
    8-bit BGR photo: CLAHE of the luminance (random clip limit and tile grid) or an unsharp mask
    (random amount and radius). It adds no information: the teacher, which measures vessel contrast,
    labels it as it sees it (mostly as well shown), and the student learns not to read the look of an
    enhanced photo as a defect. Generic settings, not those of any evaluation."""
    h, w = img.shape[:2]
    if rng.random() < 0.6:
        tiles = int(rng.choice([4, 8, 16]))
        return clahe_luminance(img, float(rng.uniform(1, 4)), tiles)
    sigma = rng.uniform(2, 10) * max(h, w) / 1000
    return unsharp_mask(img, rng.uniform(0.5, 1.5), sigma)


def clahe_luminance(bgr: np.ndarray, clip: float, tiles: int) -> np.ndarray:
    """CLAHE of the Lab luminance of an 8-bit BGR photo (``clip`` limit, ``tiles``×``tiles`` grid)."""
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def unsharp_mask(bgr: np.ndarray, amount: float, sigma: float) -> np.ndarray:
    """An 8-bit photo plus ``amount`` times its detail above a Gaussian of ``sigma`` px."""
    f = bgr.astype(np.float32)
    return np.clip(f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma)), 0, 255).astype(np.uint8)


def photometric(img: np.ndarray, rng: np.random.Generator, s: float) -> np.ndarray:
    """The photometric half of :func:`augment` on a float [0, 1] image; returns 8-bit."""
    h, w = img.shape[:2]
    # photometric, global
    img = img ** rng.uniform(1 - 0.4 * s, 1 + 0.6 * s)
    img = img * rng.uniform(1 - 0.15 * s, 1 + 0.15 * s, size=3).astype(np.float32)
    # spatially varying illumination and sharpness (smooth fields, no masks)
    if rng.random() < 0.7:
        gain = 1 - s * rng.uniform(0.3, 0.9) * _smooth_field(h, w, rng, int(rng.integers(2, 5)))
        img = img * gain[..., None]
    if rng.random() < 0.6:
        sigma = s * rng.uniform(1, 10) * max(h, w) / 1000
        if sigma > 0.3:
            blurred = cv2.GaussianBlur(img, (0, 0), sigma)
            a = _patchy(h, w, rng, (0.2, 0.6), 3)
            img = img * (1 - a) + blurred * a
    if rng.random() < 0.3:  # veil: contrast loss toward a bright colour, smoothly varying
        a = s * rng.uniform(0.2, 0.6) * _smooth_field(h, w, rng, 3)[..., None]
        img = img * (1 - a) + a * np.array([0.65, 0.75, 0.85], np.float32)
    if rng.random() < 0.3:
        img = img + rng.normal(0, 0.04 * s, img.shape).astype(np.float32)
    out = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if rng.random() < 0.2:
        out = _jpeg(out, int(90 - 70 * s))
    return np.ascontiguousarray(out)
