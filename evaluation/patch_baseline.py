"""``patch_classical``: a fixed, per-photo classical heuristic on the maps' grid (evaluation only).

No training and no labels: every cell of a photo is compared with *the same photo's* other cells
(unlike :mod:`efiqa.train.baseline`, which is fitted to the cells of clean training photos).

Per cell of the G×G grid over the runtime crop (pixels inside the FOV, eroded by 3 px so the FOV
rim's step does not count as detail):

* **detail deficit** ``max(0, median_c(log D) − log D)``, ``D`` = mean |Laplacian| of the green
  channel after a light Gaussian denoise (σ 1 px at 512 px): how far the cell's detail falls below the
  photo's median cell (a log ratio);
* **luminance deviation** ``|log((L + 1) / (L_med + 1))|``, ``L`` = the cell's mean luminance (Rec. 601
  luma), ``L_med`` = the median luminance of the photo's in-FOV pixels.

Each term is divided by its robust spread over the photo's cells (1.4826 × the median absolute
deviation of log D and of log L, at least ``MIN_SPREAD``) and the two are added: higher = worse.
"""
from __future__ import annotations

import cv2
import numpy as np

#: floor of the robust spreads (log units): a very uniform photo does not turn tiny differences into large scores
MIN_SPREAD = 0.05
#: cells with at least this FOV coverage define the photo's reference (median) and spreads
REFERENCE_COVERAGE = 0.5
DENOISE_SIGMA = 1.0   # px, at the 512-px working geometry
RIM_ERODE = 7         # px kernel: the FOV rim is not detail


def cell_stats(rgb: np.ndarray, fov_mask: np.ndarray, grid: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(detail D, mean luminance L, FOV coverage — each G×G — and the photo's median in-FOV luminance)."""
    size = rgb.shape[0]
    if rgb.shape[1] != size or size % grid:
        raise ValueError(f"expected a square photo whose side is a multiple of {grid}, got {rgb.shape[:2]}")
    rgbf = rgb.astype(np.float32)
    green = rgbf[..., 1]
    lum = 0.299 * rgbf[..., 0] + 0.587 * rgbf[..., 1] + 0.114 * rgbf[..., 2]
    lap = np.abs(cv2.Laplacian(cv2.GaussianBlur(green, (0, 0), DENOISE_SIGMA), cv2.CV_32F, ksize=3))
    fov = fov_mask.astype(bool)
    inner = cv2.erode(fov.astype(np.uint8), np.ones((RIM_ERODE, RIM_ERODE), np.uint8)).astype(np.float32)
    s = size // grid

    def pool(a: np.ndarray) -> np.ndarray:
        return a.reshape(grid, s, grid, s).sum(axis=(1, 3))

    n = pool(inner)
    safe = np.maximum(n, 1.0)
    detail = pool(lap * inner) / safe
    mean_lum = pool(lum * inner) / safe
    coverage = pool(fov.astype(np.float32)) / float(s * s)
    median_lum = float(np.median(lum[fov])) if fov.any() else float(np.median(lum))
    empty = n < 1
    detail[empty], mean_lum[empty] = np.nan, np.nan   # no pixel to judge (outside the FOV)
    return detail, mean_lum, coverage.astype(np.float32), median_lum


def _spread(values: np.ndarray) -> float:
    if values.size == 0:
        return MIN_SPREAD
    return max(1.4826 * float(np.median(np.abs(values - np.median(values)))), MIN_SPREAD)


def patch_scores(photo, grid: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(G×G badness, higher = worse; G×G FOV coverage) of a photo in runtime geometry (a
    :class:`efiqa.train.data.Photo` or anything with ``.rgb`` S×S×3 uint8 RGB and ``.fov_mask``)."""
    detail, mean_lum, coverage, median_lum = cell_stats(photo.rgb, photo.fov_mask, grid)
    log_d = np.log(detail + 0.5)
    log_l = np.log((mean_lum + 1.0) / (median_lum + 1.0))
    ref = (coverage >= REFERENCE_COVERAGE) & np.isfinite(log_d)
    if not ref.any():
        ref = np.isfinite(log_d)
    if not ref.any():
        return np.zeros((grid, grid), np.float32), coverage
    deficit = np.maximum(0.0, np.median(log_d[ref]) - log_d)
    score = deficit / _spread(log_d[ref]) + np.abs(log_l) / _spread(log_l[ref])
    return np.nan_to_num(score, nan=0.0).astype(np.float32), coverage


def patch_classical(bgr: np.ndarray, size: int = 512, grid: int = 16):
    """Harness method: 8-bit BGR photo → (G×G scores, Crop, G×G coverage), in the runtime's crop."""
    from efiqa.train.data import to_geometry  # evaluation code may read training's geometry helper

    photo = to_geometry(bgr, size)
    scores, coverage = patch_scores(photo, grid)
    return scores, photo.crop, coverage
