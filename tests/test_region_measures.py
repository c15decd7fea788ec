"""The study of the map head's lost-detail measure (benchmarks/region_measures.py): its baseline is
the shipped measure, its candidates measure what the rule says, and its gate applies the rule."""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import region_measures as rm  # noqa: E402

from efiqa.train import regions  # noqa: E402
from efiqa.train.augment import augment_pair  # noqa: E402

from .conftest import synthetic_fundus  # noqa: E402


def _texture(seed: int = 0) -> np.ndarray:
    """A 384 px grey BGR texture with band-pass detail well above the floor everywhere."""
    t = cv2.GaussianBlur(np.random.default_rng(seed).normal(0, 1, (384, 384)).astype(np.float32), (0, 0), 1.5)
    return np.repeat(np.clip(128 + 40 * t / t.std(), 0, 255)[..., None], 3, axis=2).astype(np.uint8)


def test_the_baseline_is_the_shipped_measure():
    ref, out = augment_pair(synthetic_fundus(), np.random.default_rng(3), strength=0.8)
    assert np.array_equal(rm.pixel_measures(ref, out)["cs"], regions.detail_loss(ref, out))


def test_kept_counts_a_contrast_loss_in_proportion_and_not_a_sharpening():
    img = _texture()
    f = img.astype(np.float32)
    for alpha in (0.8, 0.5):
        washed = np.clip(128 + alpha * (f - 128), 0, 255).astype(np.uint8)
        m = rm.pixel_measures(img, washed)
        assert abs(float(m["kept"].mean()) - (1 - alpha)) < 0.02
        assert m["cs"].mean() < m["kept"].mean()
    sharp = np.clip(f + 0.5 * (f - cv2.GaussianBlur(f, (0, 0), 2)), 0, 255).astype(np.uint8)
    m = rm.pixel_measures(img, sharp)
    assert m["kept"].mean() < 0.01 < m["cs"].mean()  # one-sided: added amplitude is not lost detail


def test_kept2_sees_coarse_detail_lost_where_the_fine_scale_keeps_it():
    """Large-calibre detail washed out, fine detail kept: the coarse scale counts it, the fine one hardly."""
    def texture(sigma: float, seed: int) -> np.ndarray:
        t = cv2.GaussianBlur(np.random.default_rng(seed).normal(0, 1, (384, 384)).astype(np.float32), (0, 0), sigma)
        return t / t.std()

    fine, coarse = texture(1.0, 1), texture(6.0, 2)

    def image(coarse_share: float) -> np.ndarray:
        g = np.clip(128 + coarse_share * 30 * coarse + 15 * fine, 0, 255)
        return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)

    m = rm.pixel_measures(image(1.0), image(0.4))
    assert m["kept2"].mean() > 2 * m["kept"].mean()


def _row(measure: str, overall: float, sev1: float, noise: float, ranking: float = 0.99) -> dict:
    return {"measure": measure, "overall": overall, "ranking": ranking, "per_severity": {"1": sev1},
            "per_kind": {"noise": noise, "haze": overall}}


def test_the_gate_applies_the_rule():
    base = [_row("cs", 0.86, 0.77, 0.85)]
    # kept: every clause passes; kept2: higher overall, but a kind 0.05 worse
    rows = base + [_row("kept", 0.885, 0.80, 0.84), _row("kept2", 0.89, 0.80, 0.80)]
    verdict = rm.gate({str(n): r for n, r in enumerate(rows)})
    assert verdict["passed"] == ["kept"] and verdict["chosen"] == "kept"
    assert not verdict["checks"]["kept2"]["no_kind_worse"]
    rows = base + [_row("kept", 0.87, 0.80, 0.85), _row("kept2", 0.89, 0.78, 0.85)]  # gains below 0.02
    verdict = rm.gate({str(n): r for n, r in enumerate(rows)})
    assert verdict["chosen"] is None and not verdict["checks"]["kept"]["overall_gain"]
    assert not verdict["checks"]["kept2"]["severity_1_gain"]
    rows = base + [_row("kept", 0.89, 0.80, 0.85), _row("kept2", 0.89, 0.80, 0.85)]  # a tie: the simpler
    assert rm.gate({str(n): r for n, r in enumerate(rows)})["chosen"] == "kept"
    rows = base + [_row("kept", 0.89, 0.80, 0.85, ranking=0.975), _row("kept2", 0.88, 0.80, 0.85)]
    verdict = rm.gate({str(n): r for n, r in enumerate(rows)})
    assert not verdict["checks"]["kept"]["ranking"] and verdict["chosen"] == "kept2"
