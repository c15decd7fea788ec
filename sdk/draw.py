"""Drawing results over photographs (kept apart from computing them)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from .guidance import GuidanceState
    from .result import QualityResult


SHADE = (255, 120, 0)     # BGR: blue, the colour a fundus photo does not have
OUTLINE = (255, 0, 255)   # BGR: magenta outline of flagged cells


def draw_overlay(image: np.ndarray, result: "QualityResult", max_side: int = 1024, alpha: float = 0.45) -> np.ndarray:
    """Degradation shading inside the FOV, flagged cells outlined, FOV outline, score banner and
    up to three reasons (decisive ones first) as a legend under it.

    Fundus photos are red and orange, so the map is drawn in blue: below half of the bundle's
    patch threshold the photo stays clear, above it the shading fades in, and cells at or above
    the threshold (``result.flagged``) get a magenta outline."""
    h, w = result.image_shape if result.image_shape[0] else image.shape[:2]
    k = min(1.0, max_side / max(h, w))
    size = (round(w * k), round(h * k))
    base = image.copy() if image.shape[1::-1] == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    bh, bw = base.shape[:2]
    crop, fov = result.crop, result.fov

    # Map cells → display pixels: one affine warp straight from the G×G grid (cell centres → display
    # pixel centres; bilinear for the shading, nearest for the flagged cells). Opacity: 0 below half
    # the threshold, ``alpha`` at it.
    g = result.map.shape[0]
    cell = crop.size * k / g
    m = np.float32([[cell, 0, crop.x0 * k + cell / 2 - 0.5], [0, cell, crop.y0 * k + cell / 2 - 0.5]])
    rel = result.map.astype(np.float32) / max(result.patch_threshold, 1e-6)
    opacity = np.clip(rel * (2 * alpha) - alpha, 0.0, alpha).astype(np.float32)
    inv = cv2.invertAffineTransform(m)
    a = cv2.warpAffine(opacity, inv, (bw, bh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_REPLICATE)
    flagged = cv2.warpAffine(result.flagged.astype(np.uint8), inv, (bw, bh),
                             flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    mask = np.zeros((bh, bw), np.uint8)
    centre = (round(fov.cx * k), round(fov.cy * k))
    if fov.source != "circle":
        mask[:] = 1
    else:
        cv2.circle(mask, centre, round(fov.r * k), 1, -1)
    a = cv2.multiply(a, mask, dtype=cv2.CV_32F)
    shade = np.empty_like(base)
    shade[:] = SHADE
    out = cv2.blendLinear(base, shade, cv2.subtract(1.0, a), a)
    contours, _ = cv2.findContours(flagged & mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, OUTLINE, max(2, bw // 300), cv2.LINE_AA)
    if fov.source == "circle":
        cv2.circle(out, centre, round(fov.r * k), (255, 255, 255), max(1, bw // 400), cv2.LINE_AA)

    verdict = "gradable" if result.gradable else "UNGRADABLE"
    text = f"score {result.score:.2f}  {verdict}"
    scale = max(0.5, bw / 1400)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(out, (0, 0), (tw + 20, th + 20), (0, 0, 0), -1)
    cv2.putText(out, text, (10, th + 10), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (80, 220, 80) if result.gradable else (60, 60, 255), 2, cv2.LINE_AA)
    # legend: the reasons, most important first (decisive ones), one line each
    y = th + 20
    for reason in sorted(result.reasons, key=lambda r: not r.decisive)[:3]:
        line = reason.text + (" (ungradable)" if reason.decisive else "")
        (lw, lh), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, 1)
        cv2.rectangle(out, (0, y), (lw + 20, y + lh + 12), (0, 0, 0), -1)
        cv2.putText(out, line, (10, y + lh + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255), 1, cv2.LINE_AA)
        y += lh + 12
    return out


def draw_stream_overlay(frame: np.ndarray, state: "GuidanceState", threshold: float, max_side: int = 960) -> np.ndarray:
    """Heat map + FOV circle (via the still overlay), score bar, hints, capture marker."""
    from dataclasses import replace

    h, w = frame.shape[:2]
    k = min(1.0, max_side / max(h, w))
    if state.result is not None:
        res = state.result if state.map is None else replace(state.result, map=state.map.astype(np.float32),
                                                             score=float(state.score))
        out = res.overlay(frame, max_side=max_side)
    else:
        out = cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA) if k < 1 else frame.copy()
    oh, ow = out.shape[:2]
    bar_w = max(12, ow // 40)
    cv2.rectangle(out, (ow - bar_w - 10, 10), (ow - 10, oh - 10), (40, 40, 40), -1)
    if state.score is not None:
        level = int((oh - 20) * min(max(state.score, 0.0), 1.0))
        colour = (80, 220, 80) if state.score < threshold else (60, 60, 255)
        cv2.rectangle(out, (ow - bar_w - 10, oh - 10 - level), (ow - 10, oh - 10), colour, -1)
        ty = oh - 10 - int((oh - 20) * threshold)
        cv2.line(out, (ow - bar_w - 16, ty), (ow - 4, ty), (255, 255, 255), 2)
    scale = max(0.45, ow / 1800)
    for i, hint in enumerate(state.hints[:4]):
        cv2.putText(out, hint.text, (10, oh - 15 - i * int(30 * scale * 1.6)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 2, cv2.LINE_AA)
    if state.ready_to_capture:
        cv2.putText(out, "READY", (10, int(60 * scale * 1.6)), cv2.FONT_HERSHEY_SIMPLEX, scale * 1.4, (80, 255, 80), 3)
    if state.captured:
        cv2.rectangle(out, (2, 2), (ow - 3, oh - 3), (80, 255, 80), 8)
    return out
