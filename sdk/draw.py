"""Drawing results over photographs (kept apart from computing them)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .result import QualityResult


def draw_overlay(image: np.ndarray, result: "QualityResult", max_side: int = 1024, alpha: float = 0.45) -> np.ndarray:
    """Heat map (turbo: blue good … red degraded) blended inside the FOV, outline, score banner."""
    h, w = result.image_shape if result.image_shape[0] else image.shape[:2]
    k = min(1.0, max_side / max(h, w))
    size = (round(w * k), round(h * k))
    base = image.copy() if image.shape[1::-1] == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    bh, bw = base.shape[:2]
    crop, fov = result.crop, result.fov

    # Map (crop square) → display pixels: an affine warp of the upsampled map.
    side = max(64, round(crop.size * k))
    heat_sq = cv2.resize(result.map.astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    m = np.float32([[crop.size * k / side, 0, crop.x0 * k], [0, crop.size * k / side, crop.y0 * k]])
    heat = cv2.warpAffine(np.clip(heat_sq, 0, 1), m, (bw, bh), flags=cv2.INTER_LINEAR, borderValue=0.0)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    mask = np.zeros((bh, bw), np.uint8)
    centre = (round(fov.cx * k), round(fov.cy * k))
    if fov.source == "frame":
        mask[:] = 255
    else:
        cv2.circle(mask, centre, round(fov.r * k), 255, -1)
    blended = cv2.addWeighted(base, 1 - alpha, colour, alpha, 0)
    out = np.where(mask[..., None] > 0, blended, base)
    if fov.source != "frame":
        cv2.circle(out, centre, round(fov.r * k), (255, 255, 255), max(1, bw // 400), cv2.LINE_AA)

    verdict = "gradable" if result.gradable else "UNGRADABLE"
    text = f"score {result.score:.2f}  {verdict}"
    scale = max(0.5, bw / 1400)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(out, (0, 0), (tw + 20, th + 20), (0, 0, 0), -1)
    cv2.putText(out, text, (10, th + 10), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (80, 220, 80) if result.gradable else (60, 60, 255), 2, cv2.LINE_AA)
    return out
