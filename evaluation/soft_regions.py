"""A second, independent generator of region-limited degradations: soft-edged regions.

**Evaluation and testing only** (like :mod:`efiqa.eval.synth`, which this module neither imports nor
imitates). A benchmark that scores maps against a single hand-made generator may only measure how
well a method learnt that generator's shapes; this one draws its regions differently, so that
agreement between the two is evidence about the maps rather than about one family of masks.

Design:

* **Regions are continuous weights, not masks.** Each degradation is computed on the whole photo
  and blended in with a per-pixel weight ``w`` in [0, 1]; the ground-truth mask is ``w > 0.5``.
* **Blob regions** (blur, motion_blur, darkening, haze, overexposure): the probabilistic union
  ``1 − Π(1 − g_i)`` of one to three anisotropic, rotated Gaussian bumps whose centres lie inside
  0.7 r of the FOV centre (r = FOV radius), plus a faint low-frequency random field; the union is
  passed through a smoothstep ramp between 0.2 and 0.8, so the edge fades over about a bump's σ.
* **shadow**: the inside of a large circle (an eyelid's arc, radius 1.3-2.2 r) whose edge cuts
  0.3-0.55 r into the FOV from a random side, softened over 0.08-0.2 r and slightly wavy.
* **flare**: one coloured Gaussian glow centred 0.55-0.85 r from the FOV centre, added to the photo.
* Every weight is multiplied by a FOV fade that is 0 outside the FOV (and 1 from 0.98 r inwards).
* Severities 1-3 only scale the amounts (blur σ and streak length as fractions of r, gains,
  offsets, veil opacity, glow strength); with the same seed the region is the same at every
  severity, so the change grows with severity. Severity 1 is chosen to be plainly visible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from efiqa.fov import Fov

KINDS = ("blur", "motion_blur", "darkening", "haze", "overexposure", "shadow", "flare")


@dataclass
class SoftDegraded:
    image: np.ndarray    # 8-bit BGR, same size as the input
    weight: np.ndarray   # float32 H×W in [0, 1]: how much of the degradation each pixel received
    mask: np.ndarray     # bool H×W: weight > 0.5 (the ground truth)
    kind: str
    severity: int


# --- regions -------------------------------------------------------------------------------------

def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _grid(shape: tuple[int, int], fov: Fov) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates relative to the FOV centre, in units of the FOV radius (float32)."""
    h, w = shape
    r = max(fov.r, 1.0)
    x = (np.arange(w, dtype=np.float32) - np.float32(fov.cx)) / np.float32(r)
    y = (np.arange(h, dtype=np.float32) - np.float32(fov.cy)) / np.float32(r)
    return np.broadcast_to(x[None, :], shape), np.broadcast_to(y[:, None], shape)


def fov_fade(shape: tuple[int, int], fov: Fov) -> np.ndarray:
    """1 inside 0.98 r, falling to 0 at the FOV edge and 0 beyond it."""
    x, y = _grid(shape, fov)
    d = np.sqrt(x * x + y * y)
    return _smoothstep((1.0 - d) / 0.02).astype(np.float32)


def _low_freq(shape: tuple[int, int], rng: np.random.Generator, cells: int = 5) -> np.ndarray:
    """A smooth random field (about unit spread) drawn on a coarse lattice and upsampled."""
    h, w = shape
    coarse = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def bumps(shape: tuple[int, int], fov: Fov, rng: np.random.Generator,
          sigma: tuple[float, float] = (0.16, 0.34)) -> np.ndarray:
    """Soft weight (0-1): union of 1-3 anisotropic Gaussian bumps inside the FOV, ramped."""
    x, y = _grid(shape, fov)
    n = int(rng.integers(1, 4))
    keep_out = np.ones(shape, np.float32)   # Π(1 − g_i)
    for _ in range(n):
        rad, ang = 0.7 * np.sqrt(rng.uniform(0, 1)), rng.uniform(0, 2 * np.pi)
        mx, my = rad * np.cos(ang), rad * np.sin(ang)
        sa = rng.uniform(*sigma)
        sb = sa * rng.uniform(0.5, 1.0)           # anisotropy
        t = rng.uniform(0, np.pi)
        c, s = np.float32(np.cos(t)), np.float32(np.sin(t))
        u = ((x - mx) * c + (y - my) * s) / np.float32(sa)
        v = (-(x - mx) * s + (y - my) * c) / np.float32(sb)
        keep_out *= 1.0 - np.exp(-0.5 * (u * u + v * v))
    field = 1.0 - keep_out + 0.06 * _low_freq(shape, rng)
    return (_smoothstep((field - 0.2) / 0.6) * fov_fade(shape, fov)).astype(np.float32)


def eyelid(shape: tuple[int, int], fov: Fov, rng: np.random.Generator) -> np.ndarray:
    """Soft weight (0-1): a large disc (the lid's arc) entering the FOV from one side."""
    x, y = _grid(shape, fov)
    ang = rng.uniform(0, 2 * np.pi)
    big = rng.uniform(1.3, 2.2)                    # lid arc radius / r
    depth = rng.uniform(0.3, 0.55)                 # how far the arc's edge reaches into the FOV
    width = rng.uniform(0.08, 0.2)                 # fade width / r
    d = 1.0 + big - depth                          # arc centre's distance from the FOV centre
    mx, my = d * np.cos(ang), d * np.sin(ang)
    inside = big - np.sqrt((x - mx) ** 2 + (y - my) ** 2)   # > 0 inside the lid disc
    inside = inside + 0.025 * _low_freq(shape, rng, 9)      # a slightly irregular lid margin
    return (_smoothstep(inside / width + 0.5) * fov_fade(shape, fov)).astype(np.float32)


def glow(shape: tuple[int, int], fov: Fov, rng: np.random.Generator) -> np.ndarray:
    """Glow profile (0-1): one Gaussian spot near the FOV rim, slightly elongated along it."""
    x, y = _grid(shape, fov)
    ang = rng.uniform(0, 2 * np.pi)
    rad = rng.uniform(0.55, 0.85)
    mx, my = rad * np.cos(ang), rad * np.sin(ang)
    sa, sb = rng.uniform(0.16, 0.26), rng.uniform(0.1, 0.16)   # along / across the rim
    c, s = np.float32(np.cos(ang)), np.float32(np.sin(ang))
    across = ((x - mx) * c + (y - my) * s) / np.float32(sb)
    along = (-(x - mx) * s + (y - my) * c) / np.float32(sa)
    g = np.exp(-0.5 * (along * along + across * across))
    # the glow's bright core saturates: a flat top over ~1 σ, then the Gaussian's tail
    return (np.clip(g / 0.6, 0, 1) * fov_fade(shape, fov)).astype(np.float32)


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur (float32), computed on a reduced copy for speed."""
    h, w = img.shape[:2]
    k = min(1.0, 8.0 / max(sigma, 1e-6))   # keep at least 8 px of σ on the reduced copy
    if k >= 1.0:
        return cv2.GaussianBlur(img, (0, 0), max(sigma, 0.5)).astype(np.float32)
    small = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigma * k)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# --- degradations ----------------------------------------------------------------------------------
# Each: (img, fov, severity, rng) -> (the fully degraded photo as float32, weight).

def _blur(img, fov, sev, rng):
    w = bumps(img.shape[:2], fov, rng)
    sigma = max(fov.r * (0.007, 0.013, 0.024)[sev - 1], 0.8)
    return cv2.GaussianBlur(img, (0, 0), sigma).astype(np.float32), w


def _motion_blur(img, fov, sev, rng):
    w = bumps(img.shape[:2], fov, rng)
    length = max(fov.r * (0.025, 0.045, 0.08)[sev - 1], 3.0)
    ang = rng.uniform(0, np.pi)
    n = int(np.ceil(length)) | 1
    k = np.zeros((n + 2, n + 2), np.float32)
    c = (n + 1) / 2.0
    dx, dy = 0.5 * length * np.cos(ang), 0.5 * length * np.sin(ang)
    # an anti-aliased streak drawn at 1/16 px precision (not a rotated row)
    cv2.line(k, (round((c - dx) * 16), round((c - dy) * 16)), (round((c + dx) * 16), round((c + dy) * 16)), 1.0, 1,
             cv2.LINE_AA, shift=4)
    k /= k.sum()
    return cv2.filter2D(img.astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT), w


def _darkening(img, fov, sev, rng):
    w = bumps(img.shape[:2], fov, rng, (0.18, 0.36))
    gain = (0.5, 0.3, 0.14)[sev - 1]
    return img.astype(np.float32) * gain, w


def _haze(img, fov, sev, rng):
    """A whitish, slightly uneven veil: the region loses contrast and turns pale."""
    shape = img.shape[:2]
    w = bumps(shape, fov, rng, (0.2, 0.4))
    tint = np.array([195, 210, 228], np.float32) + rng.uniform(-10, 10, 3).astype(np.float32)  # BGR, warm white
    unevenness = 1.0 + 0.06 * _low_freq(shape, rng, 4)
    veil = tint[None, None, :] * unevenness[..., None]
    local = _smooth(img, fov.r * 0.08)
    target = 0.75 * veil + 0.25 * local              # the veil keeps a trace of the local colour
    opacity = (0.45, 0.62, 0.8)[sev - 1]
    return img.astype(np.float32) * (1 - opacity) + target * opacity, w


def _overexposure(img, fov, sev, rng):
    w = bumps(img.shape[:2], fov, rng, (0.15, 0.3))
    gain, offset = ((1.7, 30.0), (2.3, 55.0), (3.0, 85.0))[sev - 1]
    return np.minimum(img.astype(np.float32) * gain + offset, 255.0), w


def _shadow(img, fov, sev, rng):
    w = eyelid(img.shape[:2], fov, rng)
    floor = (0.5, 0.3, 0.12)[sev - 1]
    soft = cv2.GaussianBlur(img, (0, 0), max(fov.r * 0.003, 0.6)).astype(np.float32)  # lids shade out of focus
    return soft * floor, w


FLARE_COLOURS = np.array([[120, 210, 255], [90, 170, 255], [255, 230, 170], [170, 255, 220]], np.float32)  # BGR


def _flare(img, fov, sev, rng):
    g = glow(img.shape[:2], fov, rng)
    colour = FLARE_COLOURS[int(rng.integers(len(FLARE_COLOURS)))]
    strength = (0.5, 0.8, 1.15)[sev - 1]
    # additive: pixel = img + glow·colour·strength; as a blend this is "full glow" with weight g
    full = np.minimum(img.astype(np.float32) + colour[None, None, :] * strength, 255.0)
    return full, g


DEGRADATIONS: dict[str, Callable] = {
    "blur": _blur, "motion_blur": _motion_blur, "darkening": _darkening, "haze": _haze,
    "overexposure": _overexposure, "shadow": _shadow, "flare": _flare,
}
assert tuple(DEGRADATIONS) == KINDS


def degrade(img: np.ndarray, fov: Fov, kind: str, severity: int = 2, seed: int = 0) -> SoftDegraded:
    """Degrade a soft region of an 8-bit BGR photo; deterministic for a given ``seed``.

    The region (``weight``) depends on the seed and the kind only, never on the severity.
    """
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose from {', '.join(KINDS)}")
    if severity not in (1, 2, 3):
        raise ValueError("severity must be 1, 2 or 3")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("expected an 8-bit BGR image (H×W×3 uint8)")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    full, weight = DEGRADATIONS[kind](img, fov, severity, rng)
    a = weight[..., None]
    out = img.astype(np.float32) * (1.0 - a) + full * a
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return SoftDegraded(out, weight, weight > 0.5, kind, severity)
