"""Region-limited, realistic degradations of fundus photographs, with ground-truth masks.

**Evaluation and testing only.** EFIQA never trains on these (the method's point is that no
quality supervision is needed); benchmarks use them to measure where a map finds damage.

Each degradation takes an 8-bit BGR photo, its FOV, a severity (1 mild … 3 strong) and a numpy
Generator, and returns a :class:`Degraded` with a boolean mask of the pixels it really changed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from efiqa.fov import Fov


@dataclass
class Degraded:
    image: np.ndarray        # 8-bit BGR, same size as the input
    mask: np.ndarray         # bool H×W: where the photo is degraded
    kind: str
    severity: int


def _fov_mask(shape: tuple[int, int], fov: Fov) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, (round(fov.cx), round(fov.cy)), round(fov.r), 1, -1)
    return m.astype(bool)


def _blob(shape: tuple[int, int], fov: Fov, rng: np.random.Generator, size: tuple[float, float] = (0.25, 0.55)) -> np.ndarray:
    """Soft (0-1) irregular region inside the FOV: a rotated ellipse warped by low-frequency noise."""
    h, w = shape
    ang = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0.0, 0.6) * fov.r
    cx, cy = fov.cx + dist * np.cos(ang), fov.cy + dist * np.sin(ang)
    ax = rng.uniform(*size) * fov.r
    ay = ax * rng.uniform(0.5, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = rng.uniform(0, np.pi)
    u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / ax
    v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / ay
    noise = cv2.resize(rng.normal(0, 1, (6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    d = np.sqrt(u * u + v * v) * (1 + 0.15 * noise)
    soft = np.clip((1.15 - d) / 0.3, 0, 1)
    return soft * _fov_mask(shape, fov)


def _band(shape: tuple[int, int], fov: Fov, rng: np.random.Generator, depth: tuple[float, float]) -> np.ndarray:
    """Soft region entering from one side of the FOV (eyelid, lash shadow, vignetting)."""
    h, w = shape
    ang = rng.uniform(0, 2 * np.pi)
    nx, ny = np.cos(ang), np.sin(ang)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    proj = ((xx - fov.cx) * nx + (yy - fov.cy) * ny) / fov.r  # 1 at the FOV edge on that side
    edge = 1 - rng.uniform(*depth)
    soft = np.clip((proj - edge) / 0.25 + 0.5, 0, 1)
    return soft * _fov_mask(shape, fov)


def _blend(img: np.ndarray, other: np.ndarray, soft: np.ndarray) -> np.ndarray:
    a = soft[..., None].astype(np.float32)
    return np.clip(img.astype(np.float32) * (1 - a) + other.astype(np.float32) * a, 0, 255).astype(np.uint8)


def blur(img, fov, severity, rng):
    soft = _blob(img.shape[:2], fov, rng)
    sigma = fov.r * (0.004, 0.008, 0.016)[severity - 1]
    out = _blend(img, cv2.GaussianBlur(img, (0, 0), sigma), soft)
    return out, soft > 0.5


def motion_blur(img, fov, severity, rng):
    soft = _blob(img.shape[:2], fov, rng)
    n = max(3, int(fov.r * (0.012, 0.024, 0.045)[severity - 1])) | 1
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0 / n
    rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), rng.uniform(0, 180), 1.0)
    k = cv2.warpAffine(k, rot, (n, n))
    k /= k.sum()
    out = _blend(img, cv2.filter2D(img, -1, k), soft)
    return out, soft > 0.5


def haze(img, fov, severity, rng):
    """Cataract-like veiling glare: a bright, low-contrast veil over part of the fundus."""
    soft = _blob(img.shape[:2], fov, rng, (0.35, 0.7))
    strength = (0.35, 0.55, 0.75)[severity - 1]
    veil = cv2.GaussianBlur(img, (0, 0), fov.r * 0.05).astype(np.float32)
    veil = 0.5 * veil + 0.5 * np.array([170, 190, 215], np.float32)  # whitish-yellow glare (BGR)
    out = _blend(img, veil, soft * strength)
    return out, soft > 0.5


def underexposure(img, fov, severity, rng):
    soft = _blob(img.shape[:2], fov, rng, (0.3, 0.6))
    gain = (0.35, 0.2, 0.1)[severity - 1]
    dark = img.astype(np.float32) * gain
    out = _blend(img, dark, soft)
    return out, soft > 0.5


def overexposure(img, fov, severity, rng):
    soft = _blob(img.shape[:2], fov, rng, (0.25, 0.5))
    gain = (1.8, 2.5, 3.5)[severity - 1]
    bright = np.clip(img.astype(np.float32) * gain + 30 * severity, 0, 255)
    out = _blend(img, bright, soft)
    return out, soft > 0.5


def uneven_illumination(img, fov, severity, rng):
    """Vignetting from one side: a smooth fall-off to dark over a third to a half of the FOV."""
    soft = _band(img.shape[:2], fov, rng, (0.6, 0.9))
    floor = (0.3, 0.18, 0.08)[severity - 1]
    gain = 1 - (1 - floor) * soft
    out = np.clip(img.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)
    return out, soft > 0.5


def lash_shadow(img, fov, severity, rng):
    """Eyelid/lash shadow: a dark, slightly blurred band with streaks entering from one side."""
    h, w = img.shape[:2]
    soft = _band((h, w), fov, rng, (0.35, 0.6))
    streaks = np.zeros((h, w), np.float32)
    for _ in range(int(12 * severity)):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        ang = rng.uniform(0, np.pi)
        ln = fov.r * rng.uniform(0.1, 0.3)
        cv2.line(streaks, (int(x0), int(y0)), (int(x0 + ln * np.cos(ang)), int(y0 + ln * np.sin(ang))), 1.0,
                 max(2, int(fov.r / 150)))
    streaks = cv2.GaussianBlur(streaks, (0, 0), fov.r / 200) * soft
    floor = (0.35, 0.2, 0.08)[severity - 1]
    gain = 1 - (1 - floor) * np.clip(soft * 0.85 + streaks * 0.5, 0, 1)
    shaded = cv2.GaussianBlur(img, (0, 0), fov.r * 0.004)
    out = _blend(img, shaded.astype(np.float32) * gain[..., None], np.clip(soft * 1.5, 0, 1))
    return out, soft > 0.5


def flare(img, fov, severity, rng):
    """A bright reflection crescent near the FOV edge."""
    h, w = img.shape[:2]
    ang = rng.uniform(0, 2 * np.pi)
    d = fov.r * rng.uniform(0.55, 0.8)
    cx, cy = fov.cx + d * np.cos(ang), fov.cy + d * np.sin(ang)
    rad = fov.r * rng.uniform(0.25, 0.4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ring = np.abs(np.hypot(xx - cx, yy - cy) - rad) / (fov.r * (0.05 + 0.03 * severity))
    # keep the half of the ring facing the FOV edge: a crescent, as a reflection off the cornea looks
    facing = ((xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)) / rad
    soft = np.clip(1.2 - ring, 0, 1) * np.clip(facing * 2 + 0.5, 0, 1) * _fov_mask((h, w), fov)
    glow = np.clip(img.astype(np.float32) + np.array([180, 200, 230], np.float32) * (0.4 + 0.25 * severity), 0, 255)
    out = _blend(img, glow, soft)
    return out, soft > 0.5


def noise(img, fov, severity, rng):
    soft = _blob(img.shape[:2], fov, rng)
    sigma = (12, 22, 40)[severity - 1]
    noisy = img.astype(np.float32) + rng.normal(0, sigma, img.shape).astype(np.float32)
    out = _blend(img, noisy, soft)
    return out, soft > 0.5


def jpeg_blocking(img, fov, severity, rng):
    soft = _blob(img.shape[:2], fov, rng)
    q = (12, 6, 2)[severity - 1]
    # block size scales with the photo so the artefact survives resizing to the model input
    k = max(1, round(fov.r / 300))
    small = cv2.resize(img, (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA) if k > 1 else img
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, q])
    blocky = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if k > 1:
        blocky = cv2.resize(blocky, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    out = _blend(img, blocky, (soft > 0.5).astype(np.float32))
    return out, soft > 0.5


DEGRADATIONS: dict[str, Callable] = {
    "blur": blur, "motion_blur": motion_blur, "haze": haze, "underexposure": underexposure,
    "overexposure": overexposure, "uneven_illumination": uneven_illumination, "lash_shadow": lash_shadow,
    "flare": flare, "noise": noise, "jpeg": jpeg_blocking,
}


def degrade(img: np.ndarray, fov: Fov, kind: str, severity: int = 2, seed: int = 0) -> Degraded:
    """Apply one degradation; deterministic for a given ``seed``."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(DEGRADATIONS)}")
    if severity not in (1, 2, 3):
        raise ValueError("severity must be 1, 2 or 3")
    rng = np.random.default_rng(seed)
    out, mask = DEGRADATIONS[kind](img, fov, severity, rng)
    return Degraded(out, mask & _fov_mask(img.shape[:2], fov), kind, severity)


def patch_truth(mask: np.ndarray, crop, grid: int, min_fraction: float = 0.5, fov=None) -> np.ndarray:
    """G×G boolean: a cell is degraded when at least ``min_fraction`` of its pixels are — its
    in-frame pixels, or with ``fov`` (a :class:`efiqa.fov.Fov`) its pixels inside that circle, so a
    rim cell whose retina is all degraded counts as degraded whatever share of it is black border."""
    h, w = mask.shape
    inside = _fov_mask(mask.shape, fov) if fov is not None else np.ones(mask.shape, bool)
    out = np.zeros((grid, grid), bool)
    for i in range(grid):
        for j in range(grid):
            x0, y0, x1, y1 = crop.cell_box(i, j, grid)
            xs, xe = max(0, int(round(x0))), min(w, int(round(x1)))
            ys, ye = max(0, int(round(y0))), min(h, int(round(y1)))
            if xe > xs and ye > ys:
                cell, keep = mask[ys:ye, xs:xe], inside[ys:ye, xs:xe]
                out[i, j] = keep.any() and cell[keep].mean() >= min_fraction
    return out


@dataclass
class Sequence:
    """A scripted capture session: frames, their times, and what happens when."""

    frames: list[np.ndarray]
    fps: float
    events: list[tuple[float, float, str]]  # (start_s, end_s, label)

    def label_at(self, t: float) -> str:
        for start, end, label in self.events:
            if start <= t < end:
                return label
        return "good"


def alignment_sequence(photo: np.ndarray, fps: float = 10.0, size: int = 480, seed: int = 0) -> Sequence:
    """An operator aligning a camera on ``photo``: the view drifts in from off-centre while out of
    focus, focus clears, a lash shadow passes, exposure dips and steadies, then a good steady view.

    Events: "no_fundus" (0-0.6 s), "off_centre" (0.6-1.5 s), "defocus" (1.5-2.5 s), "lash_shadow"
    (2.5-3.2 s), "dark" (3.2-3.8 s), "good" (3.8-6 s).
    """
    from efiqa.fov import find_fov

    rng = np.random.default_rng(seed)
    fov = find_fov(photo)
    side = int(2.2 * fov.r)
    canvas = np.zeros((side, side, 3), np.uint8)
    x0, y0 = int(fov.cx - side / 2), int(fov.cy - side / 2)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(photo.shape[1], x0 + side), min(photo.shape[0], y0 + side)
    canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = photo[sy0:sy1, sx0:sx1]
    base = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    events = [(0.0, 0.6, "no_fundus"), (0.6, 1.5, "off_centre"), (1.5, 2.5, "defocus"), (2.5, 3.2, "lash_shadow"),
              (3.2, 3.8, "dark"), (3.8, 6.0, "good")]
    frames = []
    n = int(6.0 * fps)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(n):
        t = i / fps
        img = base.astype(np.float32)
        if t < 0.6:  # nothing but a dim, blurred glow: no fundus in view
            img = cv2.GaussianBlur(img, (0, 0), 25) * 0.05
        elif t < 1.5:  # drifting in from the side, out of focus
            shift = (1.5 - t) / 0.9 * 0.45 * size
            m = np.float32([[1, 0, shift], [0, 1, 0.4 * shift]])
            img = cv2.warpAffine(cv2.GaussianBlur(img, (0, 0), 6), m, (size, size))
        elif t < 2.5:  # centred, focus clearing
            sigma = 6 * (2.5 - t) / 1.0
            if sigma > 0.3:
                img = cv2.GaussianBlur(img, (0, 0), sigma)
        elif t < 3.2:  # a lash shadow sweeping down across the upper half
            pos = (t - 2.5) / 0.7
            edge = size * (0.05 + 0.5 * pos)
            shade = np.clip((edge - yy) / (0.08 * size), 0, 1) * (0.85 + 0.1 * rng.random())
            img = img * (1 - shade[..., None])
        elif t < 3.8:  # exposure dips, then steadies
            img = img * (0.22 + 0.1 * (t - 3.2))
        noise = rng.normal(0, 1.5, img.shape).astype(np.float32)
        frames.append(np.clip(img + noise, 0, 255).astype(np.uint8))
    return Sequence(frames, fps, events)


#: How publishers and users commonly preprocess fundus photos before sharing them (not damage: the
#: runtime must accept every one of these as a fundus photograph).
PREPROCESSINGS = ("clahe", "graham", "graham_masked", "thumb256", "dark", "fov_crop")


def preprocessed(img: np.ndarray, fov: Fov, kind: str) -> np.ndarray:
    """One preprocessed variant of an 8-bit BGR fundus photo whose FOV is ``fov``.

    ``clahe``: CLAHE on the L channel of Lab (clip 2, 8×8 tiles); ``graham``: Ben Graham's
    background subtraction ``4·img − 4·GaussianBlur(img, σ = r/30) + 128``; ``graham_masked``: the same
    with everything beyond 0.9 r set to 128 (as in the Kaggle winner's code); ``thumb256``: 256 px on
    the long side; ``dark``: ``img·0.08`` (nearly black); ``fov_crop``: cropped to the FOV's bounding
    square (clipped to the frame).
    """
    if kind == "clahe":
        lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[..., 0])
        return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    if kind in ("graham", "graham_masked"):
        out = cv2.addWeighted(img, 4, cv2.GaussianBlur(img, (0, 0), max(fov.r / 30, 0.5)), -4, 128)
        if kind == "graham_masked":
            keep = np.zeros(img.shape[:2], np.uint8)
            cv2.circle(keep, (round(fov.cx), round(fov.cy)), round(0.9 * fov.r), 1, -1)
            out[keep == 0] = 128
        return out
    if kind == "thumb256":
        k = 256 / max(img.shape[:2])
        return cv2.resize(img, (max(1, round(img.shape[1] * k)), max(1, round(img.shape[0] * k))),
                          interpolation=cv2.INTER_AREA)
    if kind == "dark":
        return (img.astype(np.float32) * 0.08).astype(np.uint8)
    if kind == "fov_crop":
        h, w = img.shape[:2]
        x0, x1 = max(0, round(fov.cx - fov.r)), min(w, round(fov.cx + fov.r))
        y0, y1 = max(0, round(fov.cy - fov.r)), min(h, round(fov.cy + fov.r))
        return img[y0:y1, x0:x1].copy()
    raise ValueError(f"unknown preprocessing {kind!r}; choose from {', '.join(PREPROCESSINGS)}")


def lid_shadow_gain(shape: tuple[int, int], fov: Fov, angle: float, offset: float) -> np.ndarray:
    """H×W gain of a lid's deep shadow: beyond a straight edge across the FOV (its normal at
    ``angle`` radians points into the shadow; the edge ``offset`` × r from the centre on the lit
    side, softened over 0.15 r) the photo keeps an eighth of its light."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    along = ((xx - fov.cx) * np.cos(angle) + (yy - fov.cy) * np.sin(angle)) / fov.r
    lit = np.clip((-offset - along) / 0.15 + 0.5, 0, 1)
    return 0.125 + 0.875 * lit


def eyepiece(img: np.ndarray, radius: float, dark: float | None = None) -> np.ndarray:
    """A (non-fundus) picture inside a centred black circle (``radius`` × the short side), its right
    half fading to ``dark`` of the light where given: what a microscope or telescope eyepiece shows."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gain = (((xx - w / 2) ** 2 + (yy - h / 2) ** 2) <= (radius * min(h, w)) ** 2).astype(np.float32)
    if dark is not None:
        gain *= dark + (1 - dark) * np.clip((w / 2 - xx) / (0.1 * w), 0, 1)
    return np.clip(img * gain[..., None], 0, 255).astype(np.uint8)
