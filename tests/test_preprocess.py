import numpy as np
import pytest

from efiqa.fov import Fov
from efiqa.preprocess import Crop, Preprocessor

from .conftest import synthetic_fundus


def test_crop_is_square_around_circle():
    c = Crop.around(Fov(400.0, 300.0, 250.0), (600, 800))
    assert (c.x0, c.y0, c.size) == (150, 50, 500)
    assert c.cell_box(0, 0, 16) == (150, 50, 150 + 500 / 16, 50 + 500 / 16)
    assert c.cell_box(15, 15, 16)[2:] == (650, 550)


def test_frame_crop_covers_whole_image():
    c = Crop.around(Fov(400.0, 300.0, 500.0, "frame"), (600, 800))
    assert (c.x0, c.y0, c.size) == (0, -100, 800)


def test_marker_lands_in_the_right_cell():
    """A bright square at known original pixels shows up in the matching input cell."""
    img = synthetic_fundus(600, 900, 450, 300, 380)
    x, y = 450 + 150, 300 - 100  # a point inside the FOV
    img[y - 6:y + 6, x - 6:x + 6] = (255, 255, 255)
    pre = Preprocessor(256, color="bgr")
    prep = pre(img)
    c = prep.crop
    s = 256 / c.size
    u, v = (x - c.x0) * s, (y - c.y0) * s
    t = prep.tensor
    assert t.shape == (3, 256, 256) and t.dtype == np.float32
    assert t[:, round(v), round(u)].min() > 240  # the marker, white in all channels
    # the padded band above the frame (circle cut off at the top) is black
    top_pad = round((0 - c.y0) * s)
    assert top_pad > 5 and t[:, : top_pad - 1].max() == 0


def test_outside_fov_is_zeroed_and_rgb_order():
    img = synthetic_fundus(400, 400, 200, 200, 150)
    img[:20, :20] = (0, 0, 255)  # red text-like label in the corner, outside the FOV
    prep = Preprocessor(128)(img)
    assert prep.tensor[:, :3, :3].max() == 0
    centre = prep.tensor[:, 64, 64]
    assert centre[0] > centre[1] > centre[2]  # R > G > B in RGB order


def test_mean_std_applied_when_graph_does_not_normalise():
    img = synthetic_fundus(400, 400)
    raw = Preprocessor(128)(img).tensor
    norm = Preprocessor(128, mean=(10, 20, 30), std=(2, 4, 8))(img).tensor
    np.testing.assert_allclose(norm[1], (raw[1] - 20) / 4, rtol=1e-6)


@pytest.mark.parametrize("size", [64, 256, 512, 1800, 2400])
def test_fast_resize_matches_area(size):
    """Every path of crop_resize (2800 px → S: big, moderate and mild reductions) stays within a
    grey level of a one-step area resize on average."""
    import cv2

    img = synthetic_fundus(3000, 3000, 1500, 1500, 1400, seed=3)
    pre = Preprocessor(size, color="bgr")
    crop = Crop(100, 100, 2800)
    fast = pre.crop_resize(img, crop).astype(float)
    ref = cv2.resize(img[100:2900, 100:2900], (size, size), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(fast - ref).mean() < 1.0


def test_tensor_is_chw_float_of_the_square():
    img = synthetic_fundus(300, 280, seed=2)
    prep = Preprocessor(96, color="rgb")(img)
    assert prep.tensor.shape == (3, 96, 96) and prep.tensor.dtype == np.float32 and prep.tensor.flags.c_contiguous
    bgr = Preprocessor(96, color="bgr")(img).tensor
    np.testing.assert_array_equal(prep.tensor, bgr[::-1])
