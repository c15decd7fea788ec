"""Quality results: the G×G map and what is derived from it (score, gradable, zones)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .fov import Fov
from .preprocess import Crop

if TYPE_CHECKING:
    from .reasons import Reason

#: Zones of the fundus, by position relative to the FOV centre as displayed (superior = top).
ZONES = ("centre", "superior", "inferior", "left", "right")
#: Cells whose area is less than this fraction inside the FOV do not count towards scores.
MIN_COVERAGE = 0.5


@dataclass
class QualityResult:
    """Where a photograph is degraded, and how much.

    ``map[i, j]`` ∈ [0, 1] is how degraded cell (i, j) is (for the shipped student: the estimated
    chance that the cell lost its fine detail or does not show the vasculature anatomy expects);
    row 0 is the top of ``crop``. Cells at or above ``patch_threshold`` are flagged. ``score`` is the
    photo's in-FOV mean degradation: of the bundle's score channel where it has one (the shipped
    student's: the estimated share of the expected vessels the photo does not show), else of the map. ``coverage[i, j]`` is the fraction of the cell inside
    the FOV; cells below ``MIN_COVERAGE`` are ignored by ``score``, ``zones`` and ``flagged``.
    ``gradable`` is ``score < threshold`` unless a decisive reason (too dark, clipped, glare) vetoes it.
    """

    map: np.ndarray
    score: float
    gradable: bool
    zones: dict[str, float | None]  # None: a zone with no cell inside the FOV
    fov: Fov
    crop: Crop
    coverage: np.ndarray
    threshold: float
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    #: (height, width) of the original photo, the frame of ``fov`` and ``crop``.
    image_shape: tuple[int, int] = (0, 0)
    #: the bundle's per-patch decision threshold (its manifest's ``patch_threshold``)
    patch_threshold: float = 0.5
    #: why the photo or a zone of it is poor (:mod:`efiqa.reasons`); a decisive one makes
    #: ``gradable`` false whatever the score
    reasons: list["Reason"] = field(default_factory=list)

    @property
    def grid(self) -> tuple[int, int]:
        return (int(self.map.shape[0]), int(self.map.shape[1]))

    @property
    def flagged(self) -> np.ndarray:
        """(G, G) bool: in-FOV cells at or above ``patch_threshold``."""
        return (self.map >= self.patch_threshold) & (self.coverage >= MIN_COVERAGE)

    def to_dict(self) -> dict:
        """The JSON contract of ``efiqa assess --json`` (one object per input).

        ``reasons``: list of ``{"code", "text", "zone"?, "decisive"}`` (see :mod:`efiqa.reasons`);
        ``fov.source``: ``circle``, ``frame``, ``region`` or ``dark`` (see :class:`efiqa.fov.Fov`).
        """
        return {
            "path": self.source,
            "score": round(float(self.score), 6),
            "gradable": bool(self.gradable),
            "grid": list(self.grid),
            "map": [[round(float(v), 5) for v in row] for row in self.map],
            "crop": self.crop.to_dict(),
            "fov": self.fov.to_dict(),
            "zones": {k: (None if v is None else round(float(v), 6)) for k, v in self.zones.items()},
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
            "reasons": [r.to_dict() for r in self.reasons],
        }

    def overlay(self, image: np.ndarray, max_side: int = 1024) -> np.ndarray:
        """The photo (8-bit BGR, any scale of the original) with the map as a heat map, FOV outline and score.
        A convenience kept for the public API: drawing lives in :mod:`efiqa.draw` (imported only here,
        only when called), which reads results and is never read by them."""
        from .draw import draw_overlay

        return draw_overlay(image, self, max_side=max_side)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)


def build_result(logits: np.ndarray, fov: Fov, crop: Crop, image_shape: tuple[int, int], threshold: float,
                 source: str | None = None, patch_threshold: float = 0.5) -> QualityResult:
    """Turn one image's logits into a :class:`QualityResult`: a (G, G) map, or the bundle's
    (C, G, G) outputs, channel 0 the map and channel 1 (where there is one) the score map."""
    logits = np.asarray(logits, np.float32)
    if logits.ndim not in (2, 3) or (logits.ndim == 3 and logits.shape[0] not in (1, 2)):
        raise ValueError(f"expected (G, G) or (1|2, G, G) logits, got shape {logits.shape}")
    channels = logits if logits.ndim == 3 else logits[None]
    return result_from_probabilities(sigmoid(channels[0]), fov, crop, image_shape, threshold, source, patch_threshold,
                                     score_map=sigmoid(channels[1]) if len(channels) > 1 else None)


def result_from_probabilities(prob: np.ndarray, fov: Fov, crop: Crop, image_shape: tuple[int, int],
                              threshold: float, source: str | None = None, patch_threshold: float = 0.5,
                              score_map: np.ndarray | None = None) -> QualityResult:
    """Build a :class:`QualityResult` from a (G, G) map of values in [0, 1]. The score is the in-FOV
    mean of ``score_map`` (a second head's, trained for the photo verdict) or, without one, of the map."""
    prob = np.asarray(prob, np.float32)
    grid = prob.shape[0]
    cov, zone_idx = _geometry(grid, _key(fov, crop, image_shape))
    weight = np.where(cov >= MIN_COVERAGE, cov, 0.0)
    total = float(weight.sum())
    scored = prob if score_map is None else np.asarray(score_map, np.float32)
    score = float((scored * weight).sum() / total) if total > 0 else float(scored.mean())
    zones: dict[str, float | None] = {}
    for z, name in enumerate(ZONES):
        w = weight * (zone_idx == z)
        zones[name] = float((prob * w).sum() / w.sum()) if w.sum() > 0 else None
    return QualityResult(prob, score, score < threshold, zones, fov, crop, cov.astype(np.float32), threshold,
                         source=source, image_shape=(int(image_shape[0]), int(image_shape[1])),
                         patch_threshold=float(patch_threshold))


def cell_coverage(fov: Fov, crop: Crop, image_shape: tuple[int, int], grid: int) -> np.ndarray:
    """(grid, grid) fraction of each map cell inside the FOV and the photo: what ``coverage`` holds."""
    return _geometry(grid, _key(fov, crop, image_shape))[0].astype(np.float32)


def _key(fov: Fov, crop: Crop, image_shape: tuple[int, int]) -> tuple:
    # Geometry rounded to crop-pixel/64 so a stream with a steady FOV hits the cache.
    q = crop.size / 64.0
    return (round((fov.cx - crop.x0) / q), round((fov.cy - crop.y0) / q), round(fov.r / q),
            fov.source != "circle", round(-crop.x0 / q), round(-crop.y0 / q),
            round((image_shape[1] - crop.x0) / q), round((image_shape[0] - crop.y0) / q))


@lru_cache(maxsize=64)
def _geometry(grid: int, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell FOV coverage and zone index, from 8×8 sample points per cell (units of crop/64)."""
    cx, cy, r, frame, fx0, fy0, fx1, fy1 = key
    n = 8 * grid
    t = (np.arange(n) + 0.5) * (64.0 / n)
    xx, yy = np.meshgrid(t, t)
    inside = (xx >= fx0) & (xx < fx1) & (yy >= fy0) & (yy < fy1)
    if not frame:
        inside &= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    cov = inside.reshape(grid, 8, grid, 8).mean(axis=(1, 3))
    centres = (np.arange(grid) + 0.5) * (64.0 / grid)
    u, v = np.meshgrid((centres - cx) / max(r, 1e-6), (centres - cy) / max(r, 1e-6))
    zone = np.where(np.abs(v) >= np.abs(u), np.where(v < 0, 1, 2), np.where(u < 0, 3, 4))
    zone = np.where(u * u + v * v < (1.0 / 3.0) ** 2, 0, zone)
    return cov, zone
