"""Grid masking for the inpainting teacher (the VUAD recipe of the authors' code).

Training: the map is cut into an N×N grid, N drawn from 4…32; each cell is zeroed with
probability r, r drawn per image from [r_low, 1], where r_low starts at 0.8 and widens to 0 by
half-way through training; a sample is masked at all with probability ``APPLY_P`` (the rest teach
the identity on intact maps). Inference hides its own cells (``teacher.hole_patterns``).

Fill (our addition, measured against the recipe's zeros in the model card): a hidden cell is
zeroed, set to a constant grey, or replaced by a smeared copy of the map. A vessel extractor does
not go to zero where a photo is blurred, hazy or noisy: it leaves a grey, smeared response. Hiding
cells behind such fills teaches the inpainter that this texture carries no vessel information.
Nothing here looks at a photo or a quality label.
"""
from __future__ import annotations

import cv2
import numpy as np

N_RANGE = (4, 32)
APPLY_P = 0.5
FILLS = ("zero", "grey", "smear")
BLOB_P = 0.5  # share of masked samples hidden by soft free-form blobs instead of the grid


def ratio_range(progress: float, start_low: float = 0.8, widen_until: float = 0.5) -> tuple[float, float]:
    """The [low, high] range the masking ratio is drawn from at training ``progress`` ∈ [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    low = start_low * max(0.0, 1.0 - p / widen_until)
    return low, 1.0


def random_grid_mask(size: int, rng: np.random.Generator, progress: float) -> np.ndarray:
    """Float32 size×size, 1 = kept, 0 = masked, for one training sample."""
    n = int(rng.integers(N_RANGE[0], N_RANGE[1] + 1))
    low, high = ratio_range(progress)
    r = rng.uniform(low, high)
    cells = (rng.random((n, n)) >= r).astype(np.float32)
    return cv2.resize(cells, (size, size), interpolation=cv2.INTER_NEAREST)


def fill(vmap: np.ndarray, keep: np.ndarray, rng: np.random.Generator, fills: tuple[str, ...] = FILLS) -> np.ndarray:
    """The map with its hidden cells (keep == 0) replaced by one fill drawn from ``fills``."""
    kind = fills[int(rng.integers(len(fills)))]
    if kind == "zero":
        content = np.zeros_like(vmap)
    elif kind == "grey":
        content = np.full_like(vmap, rng.uniform(0.15, 0.6))
    elif kind == "smear":
        sm = cv2.GaussianBlur(vmap, (0, 0), rng.uniform(2.0, 6.0))
        content = np.clip(sm * rng.uniform(1.0, 3.0), 0, 1).astype(vmap.dtype)
    else:
        raise ValueError(f"unknown fill {kind!r}; one of {FILLS}")
    return (keep * vmap + (1 - keep) * content).astype(vmap.dtype)


def blob_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """Float32 size×size keep-map in [0, 1]: 1-3 random ellipses (5-40 % of the area in all), feathered.

    Free-form, soft-edged hiding (as in free-form image inpainting): vessels fade out instead of
    ending at a grid line, so the inpainter learns to redraw vasculature that fades away."""
    m = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        c = (int(rng.uniform(0.15, 0.85) * size), int(rng.uniform(0.15, 0.85) * size))
        axes = (int(rng.uniform(0.08, 0.3) * size), int(rng.uniform(0.08, 0.3) * size))
        cv2.ellipse(m, c, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), rng.uniform(0.02, 0.06) * size)
    strength = rng.uniform(0.7, 1.0)
    return (1.0 - strength * np.clip(soft * 1.5, 0, 1)).astype(np.float32)
