"""Why a photo (or a zone of it) is poor: reason codes from cheap frame statistics and the map.

One implementation for both the still-photo verdict (``QualityResult.reasons``) and the live
guidance hints (:func:`efiqa.guidance.frame_hints`). Frame statistics are measured at the scale of
a 256-px copy of the frame, inside the FOV (0.95 r for a circle, the whole photo otherwise); for a
result, from the runtime's preprocessed crop (:func:`prepared_stats`), never the full-size photo:

==================== ==================================================================== =========
code                 when                                                                 decisive
==================== ==================================================================== =========
too_dark             median brightness (brightest channel) < ``DARK_LUMINANCE``            < ``DARK_DECISIVE`` or no FOV visible
overexposed          > ``CLIPPED`` of pixels with green ≥ 240 (clipped, washed out; a       > ``CLIPPED_DECISIVE``
                     saturated red channel alone is common in good photos)
blurred              mean |Laplacian| of green < ``SHARPNESS_BLURRED`` (fine detail gone)  no
hazy                 vessel-scale contrast of green / its level < ``HAZY_CONTRAST``         no
shadow               one side's median < ``SHADOW_RATIO`` × the sides' median               no
uneven_illumination  one side's median < ``UNEVEN_RATIO`` × the sides' median               no
artefact             > ``SPECULAR`` of pixels (inside 0.85 r) white-clipped in every channel  yes
fov_off_centre       circle centre > ``OFF_CENTRE`` r from the frame centre                 no
fov_cut_off          the frame cuts one side of the circle ``CUT_ASYMMETRY`` r more than its
                     opposite (a symmetric crop by the camera's sensor is normal)           no
zone_degraded        a zone's mean map value ≥ the bundle's patch threshold                no
low_detail           ungradable by the score with no frame-statistics cause                 no
==================== ==================================================================== =========

A *decisive* reason makes the photo ungradable whatever its score (the network cannot be trusted
on a frame that shows nothing, or whose colours are clipped away).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .fov import Fov

if TYPE_CHECKING:
    from .preprocess import Prepared
    from .result import QualityResult

#: Thresholds at 256 px. Luminance: FOV median of the brightest channel (well-exposed photos
#: 200-210, an under-exposed EyePACS photo 52). Sharpness: mean |Laplacian| of green (sharp photos
#: 5-10, a hazy one 2.3, defocused frames about 3).
DARK_LUMINANCE = 60
DARK_DECISIVE = 40
CLIPPED, CLIPPED_DECISIVE = 0.05, 0.3
SHARPNESS_BLURRED = 4.0
HAZY_CONTRAST = 0.04
SHADOW_RATIO = 0.5
UNEVEN_RATIO = 0.7
SPECULAR = 0.004
GREY_TOLERANCE = 24
OFF_CENTRE = 0.2
CUT_ASYMMETRY = 0.25

ZONE_TEXT = {"centre": "centre/macula", "superior": "upper (superior) field", "inferior": "lower (inferior) field",
             "left": "left side", "right": "right side"}


@dataclass(frozen=True)
class Reason:
    """Why a photo or zone is poor: a stable ``code`` for software, ``text`` for people."""

    code: str
    text: str
    zone: str | None = None
    #: on its own makes the photo ungradable
    decisive: bool = False

    def to_dict(self) -> dict:
        return {"code": self.code, "text": self.text, **({"zone": self.zone} if self.zone else {}),
                "decisive": self.decisive}


@dataclass
class FrameStats:
    """Cheap statistics of one frame inside its FOV (see the module docstring)."""

    luminance: float
    clipped: float
    specular: float
    sharpness: float
    contrast: float
    sides: dict[str, float] = field(default_factory=dict)


def frame_stats(bgr: np.ndarray, fov: Fov) -> FrameStats | None:
    """Statistics of an 8-bit BGR frame inside ``fov`` (in the frame's pixels); None if the FOV is empty."""
    h, w = bgr.shape[:2]
    k = 256 / max(h, w)
    small = cv2.resize(bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    return _stats(small, Fov(fov.cx * k, fov.cy * k, fov.r * k, fov.source), np.ones(small.shape[:2], bool))


def prepared_stats(prep: "Prepared") -> FrameStats | None:
    """:func:`frame_stats` from the runtime's preprocessed crop instead of the whole frame: the crop
    (already small) is brought to the same 256-px-frame scale, so the thresholds hold, without
    touching the full-size photo again (on multi-megapixel frames that was the slow part)."""
    h, w = prep.image_shape
    c = prep.crop
    s = 256 / max(h, w)  # pixels per original pixel at the scale the thresholds were set at
    side = max(8, round(c.size * s))
    planes = [cv2.resize(prep.tensor[i], (side, side), interpolation=cv2.INTER_AREA) for i in range(3)]
    small = np.clip(cv2.merge(planes), 0, 255).astype(np.uint8)  # green is channel 1 in RGB and BGR alike
    k = side / c.size
    f = prep.fov
    yy, xx = np.ogrid[0:side, 0:side]
    in_image = (xx >= -c.x0 * k) & (xx < (w - c.x0) * k) & (yy >= -c.y0 * k) & (yy < (h - c.y0) * k)
    return _stats(small, Fov((f.cx - c.x0) * k, (f.cy - c.y0) * k, f.r * k, f.source), in_image)


def _stats(small: np.ndarray, fov: Fov, in_image: np.ndarray) -> FrameStats | None:
    """Statistics of a 256-px-scale 8-bit image; ``fov`` in its pixels; ``in_image``: pixels of the photo."""
    yy, xx = np.ogrid[0:small.shape[0], 0:small.shape[1]]
    u, v = xx - fov.cx, yy - fov.cy
    inside = (u * u + v * v <= (0.95 * fov.r) ** 2) & in_image if fov.source == "circle" else in_image
    if inside.sum() < 50:
        return None
    b, g, r = cv2.split(small)
    lum_img = cv2.max(cv2.max(b, g), r)  # brightest channel (OpenCV: much faster than numpy's axis-2 max)
    lum = lum_img[inside]
    green = small[..., 1].astype(np.float32)
    sharp = float(np.abs(cv2.Laplacian(green, cv2.CV_32F))[inside].mean())
    detail = green - cv2.GaussianBlur(green, (0, 0), 6)
    level = float(np.median(green[inside]))
    contrast = float(np.std(cv2.GaussianBlur(detail, (0, 0), 1)[inside])) / max(level, 10.0)
    sides = {"superior": (v < 0) & (np.abs(v) >= np.abs(u)), "inferior": (v > 0) & (np.abs(v) >= np.abs(u)),
             "left": (u < 0) & (np.abs(u) > np.abs(v)), "right": (u > 0) & (np.abs(u) > np.abs(v))}
    levels = {z: float(np.median(lum_img[m & inside])) for z, m in sides.items() if (m & inside).sum() > 50}
    # glare away from the FOV edge (its rim: flare, and the bright ring background subtraction leaves)
    core = (u * u + v * v <= (0.85 * fov.r) ** 2) & in_image if fov.source == "circle" else inside
    # a background-subtracted photo (Graham-style: every channel's median near grey 128) clips its
    # strongest edges to white by construction: that is the publisher's processing, not glare
    subtracted = all(abs(float(np.median(c[inside])) - 128) < GREY_TOLERANCE for c in (b, g, r))
    specular = float(np.mean(cv2.min(cv2.min(b, g), r)[core] > 230)) if core.any() and not subtracted else 0.0
    return FrameStats(float(np.median(lum)), float(np.mean(small[..., 1][inside] >= 240)), specular,
                      sharp, contrast, levels)


def geometry_reasons(fov: Fov, shape: tuple[int, ...]) -> list[Reason]:
    """Off-centre or one-sidedly cut FOV circle. Cropping by the camera's sensor that takes about as
    much from the top as from the bottom (or left and right) is the camera's design, not a fault."""
    if fov.source != "circle":
        return []
    h, w = shape[:2]
    r = max(fov.r, 1.0)
    off = math.hypot(fov.cx - w / 2, fov.cy - h / 2) / r
    if off > OFF_CENTRE:
        return [Reason("fov_off_centre", "Field of view is off-centre")]
    lost = {"top": max(0.0, r - fov.cy), "bottom": max(0.0, r - (h - fov.cy)),
            "left": max(0.0, r - fov.cx), "right": max(0.0, r - (w - fov.cx))}
    asym = max(abs(lost["top"] - lost["bottom"]), abs(lost["left"] - lost["right"])) / r
    if asym > CUT_ASYMMETRY:
        side = max(lost, key=lost.get)
        return [Reason("fov_cut_off", f"Field of view is cut off at the {side}")]
    return []


def frame_reasons(bgr: np.ndarray, fov: Fov, stats: FrameStats | None = None) -> list[Reason]:
    """Geometry, exposure, focus, haze, illumination and artefact reasons of one frame."""
    return geometry_reasons(fov, bgr.shape) + stat_reasons(frame_stats(bgr, fov) if stats is None else stats,
                                                           fov.source)


def stat_reasons(st: FrameStats | None, source: str) -> list[Reason]:
    """Exposure, focus, haze, illumination and artefact reasons from frame statistics."""
    reasons: list[Reason] = []
    if st is None:
        return reasons
    dark = st.luminance < DARK_LUMINANCE
    if dark or source == "dark":
        reasons.append(Reason("too_dark", f"Too dark (median brightness {st.luminance:.0f}/255)",
                              decisive=st.luminance < DARK_DECISIVE or source == "dark"))
    over = st.clipped > CLIPPED
    if over:
        reasons.append(Reason("overexposed", f"Overexposed: {st.clipped:.0%} of the field clipped or washed out",
                              decisive=st.clipped > CLIPPED_DECISIVE))
    elif st.specular > SPECULAR:
        reasons.append(Reason("artefact", f"Artefact: white glare or reflections over {st.specular:.1%} of the field",
                              decisive=True))
    if not dark:
        if st.sharpness < SHARPNESS_BLURRED:
            reasons.append(Reason("blurred", "Blurred: fine detail is missing"))
        if st.contrast < HAZY_CONTRAST and not over:
            reasons.append(Reason("hazy", "Hazy: low contrast over the field (media opacity or veiling glare)"))
        if len(st.sides) == 4:
            zone, low = min(st.sides.items(), key=lambda kv: kv[1])
            mid = float(np.median(list(st.sides.values())))
            if low < SHADOW_RATIO * mid:
                reasons.append(Reason("shadow", f"Shadow over the {ZONE_TEXT[zone]}", zone))
            elif low < UNEVEN_RATIO * mid:
                reasons.append(Reason("uneven_illumination", f"Uneven illumination: the {ZONE_TEXT[zone]} is dark",
                                      zone))
    return reasons


def map_reasons(res: "QualityResult", frame: list[Reason] | None = None) -> list[Reason]:
    """Zones the map flags, and a generic cause when the score alone (the score head's mean, or the
    map's for a map-only bundle) makes the photo ungradable."""
    out = [Reason("zone_degraded", f"Poor quality in the {ZONE_TEXT[zone]}", zone)
           for zone, value in sorted(((z, v) for z, v in res.zones.items() if v is not None), key=lambda kv: -kv[1])
           if value >= res.patch_threshold]
    causes = {"too_dark", "overexposed", "blurred", "hazy", "shadow", "uneven_illumination", "artefact"}
    if res.score >= res.threshold and not any(r.code in causes for r in frame or []):
        out.append(Reason("low_detail", "Vessels not clearly visible over much of the field"))
    return out


def explain(res: "QualityResult", prep: "Prepared") -> "QualityResult":
    """Fill ``res.reasons`` from the preprocessed frame ``prep`` (statistics of its crop) and the map;
    a decisive reason makes ``res.gradable`` false. Returns ``res``."""
    frame = geometry_reasons(prep.fov, prep.image_shape) + stat_reasons(prepared_stats(prep), prep.fov.source)
    res.reasons = frame + map_reasons(res, frame)
    if any(r.decisive for r in res.reasons):
        res.gradable = False
    return res
