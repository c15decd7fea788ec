"""Shared fixtures. Core tests use images the project generates itself (plus the CC0 example)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from efiqa.data import retina_path

SHARED_DATA = Path(os.environ.get("EFIQA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "fundus"))


def synthetic_fundus(h: int = 600, w: int = 800, cx: float | None = None, cy: float | None = None,
                     r: float | None = None, seed: int = 0) -> np.ndarray:
    """A fundus-like BGR photo: orange disc with dark vessels on black, circle possibly cut off."""
    return _synthetic_fundus(h, w, cx, cy, r, seed)[0].copy()


def synthetic_fundus_with_vessels(h: int = 600, w: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(photo, boolean vessel label) from the same generator."""
    img, ves = _synthetic_fundus(h, w, None, None, None, seed)
    return img.copy(), ves.copy()


@lru_cache(maxsize=32)
def _synthetic_fundus(h, w, cx, cy, r, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cx = w / 2 if cx is None else cx
    cy = h / 2 if cy is None else cy
    r = 0.45 * min(h, w) if r is None else r
    img = np.zeros((h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - cx, yy - cy) / r
    inside = d <= 1
    shade = np.clip(1.0 - 0.35 * d**2, 0, 1)
    img[..., 2] = np.where(inside, 200 * shade, 0)
    img[..., 1] = np.where(inside, 95 * shade, 0)
    img[..., 0] = np.where(inside, 45 * shade, 0)
    vessels = np.zeros((h, w), np.float32)
    for _ in range(8):  # vessels: smooth dark curves from the disc, about 35 % darker than the background
        a = rng.uniform(0, 2 * np.pi)
        pts = [(cx + 0.1 * r * np.cos(a), cy + 0.1 * r * np.sin(a))]
        for _ in range(12):
            a += rng.normal(0, 0.25)
            pts.append((pts[-1][0] + 0.08 * r * np.cos(a), pts[-1][1] + 0.08 * r * np.sin(a)))
        cv2.polylines(vessels, [np.int32(pts)], False, 1.0, max(1, int(r / 90)), cv2.LINE_AA)
    vessels = cv2.GaussianBlur(vessels, (0, 0), max(0.5, r / 300))
    img = (img * (1 - 0.35 * np.clip(vessels, 0, 1))[..., None]).astype(np.uint8)
    img[~inside] = 0
    noise = rng.normal(0, 2, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), (vessels > 0.3) & inside


@pytest.fixture(scope="session")
def retina_file() -> Path:
    return retina_path()


@pytest.fixture(scope="session")
def assessor():
    from efiqa import QualityAssessor

    with QualityAssessor(threads=2) as qa:
        yield qa


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real fundus photographs not found at {SHARED_DATA} (set EFIQA_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A 128-px student bundle: ImageNet backbone, random adapter (mechanics only): (model, path, export error)."""
    torch = pytest.importorskip("torch")
    from efiqa.build.export import export_bundle
    from efiqa.train.nets.efficientnet_lite import EfficientNetLite0
    from efiqa.train.nets.student import LITE0_MEAN, LITE0_STD, Student

    torch.manual_seed(1)
    model = Student(EfficientNetLite0().load_imagenet()).freeze_backbone().eval()
    path, err = export_bundle(model, tmp_path_factory.mktemp("b") / "tiny", name="tiny", backbone="lite0-random",
                              input_size=128, mean=LITE0_MEAN, std=LITE0_STD, provenance={"adapter": "random, torch seed 1"})
    return model, path, err
