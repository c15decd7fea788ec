import cv2
import numpy as np
import pytest

from efiqa.errors import NotFundusError
from efiqa.fov import find_fov
from efiqa.eval.synth import eyepiece
from efiqa.imageio import read_image, to_bgr8

from .conftest import synthetic_fundus, synthetic_fundus_with_vessels


@pytest.mark.parametrize("h, w, cx, cy, r", [
    (600, 800, 400, 300, 270),    # whole circle, dark surround
    (600, 900, 450, 300, 380),    # circle cut off at top and bottom (common on EyePACS cameras)
    (700, 700, 300, 380, 330),    # off-centre, cut off on two sides
    (3000, 4000, 2100, 1500, 1700),  # large frame
])
def test_circle_recovered(h, w, cx, cy, r):
    fov = find_fov(synthetic_fundus(h, w, cx, cy, r))
    assert fov.source == "circle"
    assert abs(fov.cx - cx) < 0.01 * r and abs(fov.cy - cy) < 0.01 * r
    assert abs(fov.r - r) < 0.015 * r


def test_frame_filling_fundus_has_no_border():
    big = synthetic_fundus(1200, 1200, 600, 600, 580)
    inner = big[350:850, 300:900]  # a crop inside the FOV: no dark surround anywhere
    fov = find_fov(inner)
    assert fov.source == "frame"
    assert (fov.cx, fov.cy) == (300.0, 250.0)


def test_black_frame_is_not_fundus():
    with pytest.raises(NotFundusError, match="black"):
        find_fov(np.zeros((480, 640, 3), np.uint8), "black.png")


def test_uniform_grey_frame_is_not_fundus():
    with pytest.raises(NotFundusError):
        find_fov(np.full((480, 640, 3), 128, np.uint8))


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket", "camera", "moon", "page"])
def test_natural_photographs_are_flagged(name):
    skdata = pytest.importorskip("skimage.data")
    img = to_bgr8(getattr(skdata, name)(), color="rgb")
    with pytest.raises(NotFundusError):
        find_fov(img, name)


def test_example_retina(retina_file):
    fov = find_fov(read_image(retina_file))
    assert fov.source == "circle"
    assert abs(fov.cx - 703) < 5 and abs(fov.cy - 702) < 5 and abs(fov.r - 695) < 7


def test_real_photographs(shared_data):
    """Every development photo (3 cameras) gives a circle inside a plausible range."""
    paths = sorted(shared_data.rglob("images/*"))
    assert len(paths) >= 30
    for p in paths:
        img = read_image(p)
        fov = find_fov(img, str(p))
        h, w = img.shape[:2]
        assert fov.source == "circle", p
        assert 0.35 * min(h, w) < fov.r < 0.75 * max(h, w), p
        assert 0 < fov.cx < w and 0 < fov.cy < h, p


def test_drive_fov_matches_its_mask(shared_data):
    """DRIVE ships FOV masks: our circle must overlap them closely."""
    for idx in (21, 30, 40):
        img = read_image(shared_data / f"DRIVE/training/images/{idx}_training.tif")
        mask = read_image(shared_data / f"DRIVE/training/mask/{idx}_training_mask.gif")[..., 0] > 127
        fov = find_fov(img)
        disc = np.zeros(mask.shape, np.uint8)
        cv2.circle(disc, (round(fov.cx), round(fov.cy)), round(fov.r), 1, -1)
        iou = (disc.astype(bool) & mask).sum() / (disc.astype(bool) | mask).sum()
        assert iou > 0.95, (idx, iou)


@pytest.mark.parametrize("kind", ["noise", "jpeg", "uneven_illumination", "underexposure", "overexposure",
                                  "lash_shadow", "flare"])
def test_damaged_fundus_is_still_a_fundus(retina_file, kind):
    """Damage lowers quality; it does not make a photo 'not a fundus', nor move its circle. Dark
    sectors (vignetting, lid shadow) and clipped bright areas were refused before the circle was fitted
    by RANSAC to the FOV edge alone (benchmarks/fov_robustness.py: 15.6 % of damaged photos refused)."""
    from efiqa.eval.synth import degrade

    img = cv2.resize(read_image(retina_file), (700, 700), interpolation=cv2.INTER_AREA)
    fov = find_fov(img)
    for severity in (2, 3):
        for seed in range(2):
            got = find_fov(degrade(img, fov, kind, severity, seed=seed).image)
            assert got.source == "circle"
            assert np.hypot(got.cx - fov.cx, got.cy - fov.cy) < 0.03 * fov.r, (severity, seed)
            assert abs(got.r - fov.r) < 0.03 * fov.r, (severity, seed)


@pytest.mark.parametrize("dark", [0.25, 0.1])
def test_dark_sector_stays_inside_the_fov(dark):
    """Half of the disc nearly black (a lid or a badly aimed flash): the circle is still the whole FOV."""
    img = synthetic_fundus(600, 800, 400, 300, 270).astype(np.float32)
    ramp = np.clip((np.arange(800) - 300) / 60, 0, 1)  # a soft shadow edge, as a lid casts
    img *= (dark + (1 - dark) * ramp)[None, :, None]
    fov = find_fov(img.astype(np.uint8))
    assert abs(fov.cx - 400) < 3 and abs(fov.cy - 300) < 3 and abs(fov.r - 270) < 4


@pytest.mark.parametrize("edge, dark", [(330, 0.1), (330, 0.08)])
def test_deep_shadow_over_most_of_the_fov_is_still_a_fundus(edge, dark):
    """A shadow over most of the field (its lit part covers under half of the circle, the rest
    below the fifth-of-the-way-up threshold) got a square around the lit part only, or was refused
    as "not a circular field of view" (benchmarks/fov_robustness.py, deep_shadow); the field is now
    looked for again nearer the surround's level, so the whole circle is judged."""
    img = synthetic_fundus(600, 800, 400, 300, 270).astype(np.float32)
    ramp = np.clip((edge + 20 - np.arange(800)) / 40, 0, 1)  # lit left of ``edge``, a soft edge
    img *= (dark + (1 - dark) * ramp)[None, :, None]
    fov = find_fov(img.astype(np.uint8))
    assert fov.source == "circle"
    assert np.hypot(fov.cx - 400, fov.cy - 300) < 0.05 * 270 and abs(fov.r - 270) < 0.05 * 270


def test_nearly_black_shadow_is_judged_not_refused():
    """Shaded to a twentieth (the shadow barely above the surround, under the lower threshold too),
    the lit arc is too short to trust. A known limit: only the lit region is assessed (its square,
    not the whole circle); the photo is still judged, not refused."""
    img = synthetic_fundus(600, 800, 400, 300, 270).astype(np.float32)
    img *= (0.05 + 0.95 * np.clip((350 - np.arange(800)) / 40, 0, 1))[None, :, None]
    assert find_fov(img.astype(np.uint8)).source in ("circle", "region")


@pytest.mark.parametrize("name, radius", [("grass", 0.45), ("brick", 0.6), ("astronaut", 0.45),
                                          ("immunohistochemistry", 0.45)])
def test_vignetted_natural_photo_with_a_dark_side_is_not_fundus(name, radius):
    """A natural picture inside a black circle with a dark side: the second look near the surround's
    level finds the circle, but what it holds is not retina (colour, edges), so it stays refused."""
    import skimage.data

    with pytest.raises(NotFundusError):
        find_fov(eyepiece(to_bgr8(getattr(skimage.data, name)(), color="rgb"), radius, dark=0.12))


@pytest.mark.parametrize("name, radius", [("brick", 0.45), ("brick", 0.6), ("camera", 0.6)])
def test_grey_picture_seen_through_an_eyepiece_is_not_fundus(name, radius):
    """A grey picture evenly lit inside a black circle (a microscope's or telescope's eyepiece): the
    circle is perfect, but without a fundus camera's colours at most 8 % strong edges pass (damaged
    fundus photos reach 6.5 %, benchmarks/fov_robustness.py); these hold 10-12 %, which the 15 %
    allowed for red-dominated fields (CLAHE-enhanced photos reach 11 %) let through."""
    import skimage.data

    with pytest.raises(NotFundusError, match="sharp structure"):
        find_fov(eyepiece(to_bgr8(getattr(skimage.data, name)(), color="rgb"), radius))


@pytest.mark.parametrize("sigma", [20, 60])
def test_nearly_black_glow_is_not_a_fov(sigma):
    """A blurred round glow in a nearly black frame is round but has no camera's sharp edge."""
    img = np.zeros((600, 800, 3), np.float32)
    cv2.circle(img, (400, 300), 250, (60, 90, 200), -1)
    img = cv2.GaussianBlur(img, (0, 0), sigma) * 0.07
    with pytest.raises(NotFundusError, match="glow"):
        find_fov(img.astype(np.uint8))


def test_bright_square_is_not_a_fov():
    """A bright, red, vessel-free square on black has a straight outline: no circle fits it."""
    img = np.zeros((600, 800, 3), np.uint8)
    img[150:450, 250:550] = (40, 90, 200)
    with pytest.raises(NotFundusError, match="circular"):
        find_fov(img)


@pytest.mark.parametrize("tone", [(255, 255, 255), (45, 95, 200)])
def test_flat_disc_is_not_a_photograph(tone):
    """A FOV mask (DRIVE ships one per photo) or a drawn disc has a perfect circle and, in white, the
    look of a fully clipped photo; one flat tone inside it is not a photograph."""
    img = np.zeros((584, 565, 3), np.uint8)
    cv2.circle(img, (282, 292), 270, tone, -1, lineType=cv2.LINE_AA)
    with pytest.raises(NotFundusError, match="flat tone"):
        find_fov(img, "mask.gif")


def test_fundus_clipped_but_for_its_vessels_is_still_a_fundus():
    """A white disc: refused; the same disc with darker vessels in it is a (clipped) fundus."""
    ves = synthetic_fundus_with_vessels()[1]
    img = np.zeros(ves.shape + (3,), np.uint8)
    cv2.circle(img, (400, 300), 270, (255, 255, 255), -1)
    with pytest.raises(NotFundusError, match="flat tone"):
        find_fov(img)
    img[ves & (img[..., 0] > 0)] = (150, 170, 230)
    assert find_fov(img).source == "circle"


def test_photo_clipped_to_white_throughout_is_over_exposed_not_refused(shared_data):
    """White all over its field, vessels included, but its edge keeps the fundus colours where it
    falls off to the surround (a mask's edge is grey): a bad photo to score, not a refusal."""
    img = np.zeros((600, 800, 3), np.uint8)
    cv2.circle(img, (400, 300), 272, (40, 120, 255), 4)
    cv2.circle(img, (400, 300), 270, (255, 255, 255), -1)
    assert find_fov(img).source == "circle"
    path = shared_data / "EyePACS/images/10_left.jpeg"   # its field all 255 at 6× its brightness
    if not path.is_file():
        pytest.skip(f"{path} not found")
    assert find_fov(np.clip(read_image(path).astype(np.float32) * 6, 0, 255).astype(np.uint8)).source == "circle"


def test_drive_masks_are_not_photographs(shared_data):
    masks = sorted((shared_data / "DRIVE/training/mask").glob("*.gif"))
    if not masks:
        pytest.skip("no DRIVE masks under the shared data")
    for path in masks:
        with pytest.raises(NotFundusError, match="flat tone"):
            find_fov(read_image(path), path.name)


def test_over_exposed_dark_fundus_keeps_its_circle(shared_data):
    """REFUGE g0001 is a dark photo whose circle the frame cuts: an over-exposed patch clipped the
    95th-percentile brightness to 255, the blob threshold (a fifth of the way up to it) cut off the
    dim periphery, and the circle came out ~18 % small or was refused as "too much sharp structure".
    The bright level is now capped at twice the field's median."""
    from efiqa.eval.synth import degrade

    path = shared_data / "unlabelled/REFUGE/g0001.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    img = read_image(path)
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    fov = find_fov(img)
    for severity, seed in ((2, 1), (2, 3), (3, 2)):
        got = find_fov(degrade(img, fov, "overexposure", severity, seed=seed).image)
        assert got.source == "circle"
        assert np.hypot(got.cx - fov.cx, got.cy - fov.cy) < 0.03 * fov.r and abs(got.r - fov.r) < 0.03 * fov.r
