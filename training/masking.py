"""Grid masking for the inpainting teacher (VUAD recipe, DESIGN §4).

Training: the map is cut into an N×N grid, N drawn from 4…32; each cell is zeroed with
probability r, r drawn per image from [r_low, 1], where r_low starts at 0.8 and widens to 0 by
half-way through training. Inference: complementary masks, so every cell is reconstructed once
from unmasked context.
"""
from __future__ import annotations

import cv2
import numpy as np

N_RANGE = (4, 32)


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


def complementary_masks(size: int, n: int) -> list[np.ndarray]:
    """Four masks over an n×n grid, each hiding one cell of every 2×2 block; together they hide every cell once."""
    i, j = np.mgrid[0:n, 0:n]
    group = (i % 2) * 2 + (j % 2)
    return [cv2.resize((group != g).astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
            for g in range(4)]
