"""How much of a photo's fine detail one training perturbation destroyed, per map cell.

The teacher judges vessel visibility, and vessels stay traceable under mild blur, haze, noise or
compression: it does not see those regions (``benchmarks/results/feature_ceiling.md``). The
training perturbations (:mod:`efiqa.train.augment`) know what they did, so each perturbed photo is
compared with the same photo under the same rotation, flip and zoom but no photometric change
(:func:`augment.augment_pair`): the SSIM contrast-structure term of their band-pass green channels,
in local windows, at the student's input size. Detail lost (blur, darkening, haze, clipping) lowers
the contrast term; detail added or replaced (noise, compression blocks, shake) lowers the structure
term. ``1 − cs`` pooled over each cell inside the FOV is the cell's degradation.

Label-free: the reference is the photo itself, the perturbations are the project's own, never an
evaluation generator's. The constants follow from vessel calibre and cell size at the analysis size,
set before any result and tuned on nothing.
"""
from __future__ import annotations

import cv2
import numpy as np

from efiqa.fov import Fov
from efiqa.preprocess import Crop, Preprocessor

from .teacher import pool_cells

#: side of the FOV square the maps are measured on: the student's input (detail it cannot see is not asked of it)
ANALYSIS = 384
#: band-pass (difference of Gaussians, px at ANALYSIS): vessel calibres, without the illumination
BAND = (1.0, 4.0)
#: local window (Gaussian σ, px at ANALYSIS): a quarter of a map cell (384 / 16 = 24 px)
WINDOW = 6.0
#: grey levels of band-pass detail below which a window is not judged (SSIM's stabilising constant is its square)
FLOOR = 2.0


def _band(bgr: np.ndarray) -> np.ndarray:
    g = bgr[..., 1].astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), BAND[0]) - cv2.GaussianBlur(g, (0, 0), BAND[1])


def _local(a: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), WINDOW)


def detail_loss(reference: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """Per pixel ``1 − cs`` ∈ [0, 1] of two aligned 8-bit BGR images of the same size: 0 where the
    perturbed image keeps the reference's band-pass detail, towards 1 where it is lost or replaced."""
    x, y = _band(reference), _band(perturbed)
    sxx, syy, sxy = _local(x * x), _local(y * y), _local(x * y)
    c = FLOOR ** 2
    cs = (2 * sxy + c) / (sxx + syy + c)  # band-pass detail is locally zero-mean: raw moments are the (co)variances
    return np.clip(1 - cs, 0, 1)


def degradation(reference: np.ndarray, perturbed: np.ndarray, fov: Fov, grid: int = 16) -> np.ndarray:
    """The grid×grid mean :func:`detail_loss` inside ``fov``, on the square the runtime crops around
    it (cells with no FOV pixel: 0)."""
    crop = Crop.around(fov, perturbed.shape)
    pre = Preprocessor(ANALYSIS)
    loss = detail_loss(pre.crop_resize(reference, crop), pre.crop_resize(perturbed, crop))
    s = ANALYSIS / crop.size
    inside = np.zeros((ANALYSIS, ANALYSIS), np.float32)
    cv2.circle(inside, (round((fov.cx - crop.x0) * s), round((fov.cy - crop.y0) * s)), round(fov.r * s), 1.0, -1)
    if fov.source == "frame":
        inside[:] = 1.0
    return pool_cells(loss, inside, grid, 0.0)[0]  # the teacher's per-cell mean over in-FOV pixels
