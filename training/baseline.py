"""Classical per-patch quality baseline: local sharpness, contrast and luminance.

Label-free like the teacher: each cell's log-sharpness (mean |Laplacian| of the green channel),
log-contrast (std) and log-luminance are compared with their mean and spread over the cells of the
same clean training photos the teacher learns from. Badness = how far a cell falls below normal
sharpness and contrast, or away from normal luminance (in standard deviations).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .data import Photo

SIZE = 512


def cell_features(photo: Photo, grid: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """((grid², 3) features, (grid²,) FOV coverage) for a photo at SIZE."""
    g = photo.rgb[..., 1].astype(np.float32)
    lap = np.abs(cv2.Laplacian(cv2.GaussianBlur(g, (0, 0), 0.8), cv2.CV_32F, ksize=3))
    inner = cv2.erode(photo.fov_mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(np.float32)
    s = g.shape[0] // grid

    def pool(a):
        return a.reshape(grid, s, grid, s)

    n = pool(inner).sum(axis=(1, 3))
    safe = np.maximum(n, 1)
    mean = (pool(g * inner)).sum(axis=(1, 3)) / safe
    var = (pool(g * g * inner)).sum(axis=(1, 3)) / safe - mean**2
    sharp = (pool(lap * inner)).sum(axis=(1, 3)) / safe
    feats = np.stack([np.log(sharp + 0.5), np.log(np.sqrt(np.maximum(var, 0)) + 0.5), np.log(mean + 1.0)], axis=-1)
    return feats.reshape(-1, 3), (n / (s * s)).ravel()


@dataclass
class ClassicalBaseline:
    mean: list[float]
    std: list[float]

    @classmethod
    def fit(cls, photos: list[Photo]) -> "ClassicalBaseline":
        rows = []
        for p in photos:
            f, cov = cell_features(p)
            rows.append(f[cov >= 0.5])
        allf = np.concatenate(rows)
        return cls(allf.mean(axis=0).tolist(), (allf.std(axis=0) + 1e-6).tolist())

    def __call__(self, photo: Photo, grid: int = 16) -> np.ndarray:
        f, _ = cell_features(photo, grid)
        z = (f - np.asarray(self.mean)) / np.asarray(self.std)
        bad = np.maximum(0, -z[:, 0]) + np.maximum(0, -z[:, 1]) + np.abs(z[:, 2])
        return bad.reshape(grid, grid).astype(np.float32)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "ClassicalBaseline":
        return cls(**json.loads(path.read_text()))
