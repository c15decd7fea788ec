import numpy as np
import pytest

from efiqa.fov import find_fov
from efiqa.preprocess import Crop
from efiqa.eval.synth import DEGRADATIONS, degrade, patch_truth

from .conftest import synthetic_fundus


@pytest.fixture(scope="module")
def photo():
    img = synthetic_fundus(500, 600, 300, 250, 230, seed=2)
    return img, find_fov(img)


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_degradation_is_local_deterministic_and_masked(photo, kind):
    img, fov = photo
    a = degrade(img, fov, kind, severity=3, seed=7)
    b = degrade(img, fov, kind, severity=3, seed=7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.image.shape == img.shape and a.image.dtype == np.uint8
    frac = a.mask.sum() / (np.pi * fov.r**2)  # share of the FOV
    assert 0.01 < frac < 0.8, frac  # a region, not nothing and not everything
    diff = np.abs(a.image.astype(int) - img.astype(int)).max(axis=2)
    assert diff[a.mask].mean() > 3 * max(diff[~a.mask].mean(), 0.5)  # the change is where the mask says
    # nothing changes far outside the FOV
    yy, xx = np.mgrid[0:500, 0:600]
    assert diff[np.hypot(xx - 300, yy - 250) > 240].max() == 0


def test_severity_orders_the_damage(photo):
    img, fov = photo
    d = [np.abs(degrade(img, fov, "underexposure", s, seed=1).image.astype(int) - img).mean() for s in (1, 2, 3)]
    assert d[0] < d[1] < d[2]


def test_patch_truth_geometry():
    mask = np.zeros((400, 400), bool)
    mask[:, 200:] = True  # right half degraded
    truth = patch_truth(mask, Crop(0, 0, 400), 4)
    assert truth.tolist() == [[False, False, True, True]] * 4
    # a rim cell: the FOV covers under half of it. All its retina degraded: degraded with the FOV,
    # not without; all its black border degraded: the other way round
    from efiqa.fov import Fov

    fov = Fov(200, 200, 200)
    yy, xx = np.mgrid[:400, :400]
    circle = (xx - 200) ** 2 + (yy - 200) ** 2 <= 200 ** 2
    corner = (xx < 100) & (yy < 100)
    assert 0.2 < circle[:100, :100].mean() < 0.5
    retina, border = circle & corner, ~circle & corner
    with_fov = patch_truth(retina, Crop(0, 0, 400), 4, fov=fov)
    assert not patch_truth(retina, Crop(0, 0, 400), 4)[0, 0] and with_fov[0, 0] and with_fov.sum() == 1
    assert patch_truth(border, Crop(0, 0, 400), 4)[0, 0] and not patch_truth(border, Crop(0, 0, 400), 4, fov=fov).any()
