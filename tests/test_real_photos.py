"""Real photographs (skipped without ../shared): no real fundus photo refused, every DRIMDB outlier
refused or ungradable, preprocessed variants accepted. DRIMDB-dev labels are for checking only."""
import csv

import numpy as np
import pytest

from efiqa.errors import NotFundusError
from efiqa.fov import find_fov
from efiqa.imageio import at_most, read_image
from efiqa.eval.synth import PREPROCESSINGS, lid_shadow_gain, preprocessed


def _drimdb(shared_data, label):
    rows = list(csv.DictReader(open(shared_data / "DRIMDB-dev" / "labels.csv")))
    return [shared_data / "DRIMDB-dev" / r["image"] for r in rows if r["label"] == label]


@pytest.mark.parametrize("label", ["Good", "Bad"])
def test_no_drimdb_fundus_photo_refused(assessor, shared_data, label):
    paths = _drimdb(shared_data, label)
    assert len(paths) >= 20
    refused = []
    for res in assessor.assess_batch(paths):
        if isinstance(res, NotFundusError):
            refused.append(str(res))
        else:
            assert res.reasons is not None and res.fov.source in {"circle", "frame", "region", "dark"}
    assert not refused, refused


def test_drimdb_outliers_refused_or_ungradable(assessor, shared_data):
    paths = _drimdb(shared_data, "Outlier")
    assert len(paths) >= 5
    for p, res in zip(paths, assessor.assess_batch(paths)):
        assert isinstance(res, NotFundusError) or not res.gradable, (p, res.score)


def test_drimdb_verdicts_follow_labels(assessor, shared_data):
    """Good photos gradable and Bad ones ungradable, each with a reason (checking, not training)."""
    good = assessor.assess_batch(_drimdb(shared_data, "Good"))
    bad = assessor.assess_batch(_drimdb(shared_data, "Bad"))
    assert np.mean([r.gradable for r in good]) >= 0.95
    assert np.mean([not r.gradable for r in bad]) >= 0.95
    assert all(r.reasons for r in bad if not r.gradable)
    auc = np.mean([[b.score > g.score for g in good] for b in bad])
    assert auc >= 0.97


def test_nearly_black_photo_is_a_too_dark_result(assessor, shared_data):
    img = read_image(shared_data / "DRIVE/training/images/21_training.tif")
    res = assessor.assess((img * 0.08).astype(np.uint8))
    assert not res.gradable
    assert any(r.code == "too_dark" and r.decisive for r in res.reasons)
    assert "too_dark" in [r["code"] for r in res.to_dict()["reasons"]]


@pytest.mark.parametrize("gain", [0.1, 0.08])
def test_nearly_black_photo_with_a_deep_shadow_keeps_its_circle(shared_data, gain):
    """Nearly black and a lid's shadow (an eighth of the light) over 63 % of the field (below 0.2 r above its centre):
    brightened, the circle is found only near the surround's level, and whether the field has a
    camera's sharp edge must be judged on that circle, not on the lit part's outline, which runs
    along the shadow's soft edge (it was refused as "a glow, not a camera's field of view")."""
    img = at_most(read_image(shared_data / "EyePACS/images/16_right.jpeg"), 1600)
    ref = find_fov(img)
    shade = lid_shadow_gain(img.shape[:2], ref, np.radians(94), 0.2)  # an edge 0.2 r above the centre, tilted 4°
    dark = np.clip(img * (shade * gain)[..., None], 0, 255).astype(np.uint8)
    fov = find_fov(dark)
    assert fov.source == "circle"
    assert np.hypot(fov.cx - ref.cx, fov.cy - ref.cy) < 0.05 * ref.r and abs(fov.r - ref.r) < 0.05 * ref.r


@pytest.mark.parametrize("photo", ["DRIVE/training/images/21_training.tif", "HRF/images/01_h.jpg",
                                   "EyePACS/images/15_left.jpeg", "EyePACS/images/605_left.jpeg",
                                   "DRIMDB-dev/Good/drimdb_good (34).jpg",
                                   "DRIMDB-dev/Bad/drimdb_bad (7).jpg"])
def test_preprocessed_variants_accepted(shared_data, photo):
    img = at_most(read_image(shared_data / photo), 1600)
    ref = find_fov(img, photo)
    for kind in PREPROCESSINGS:
        find_fov(preprocessed(img, ref, kind), f"{photo} [{kind}]")  # raises NotFundusError if refused


def test_clipped_drimdb_masks_assessed_over_the_whole_frame(shared_data):
    """DRIMDB's field fills the frame but for its cut corners: no circle fits the bright region's
    outline at the usual threshold; nearer the surround's level the cut corners trace the camera's
    circle (r just under the half-diagonal; before, the field was taken as the frame-wide region):
    the whole frame is assessed, never a smaller circle."""
    img = read_image(shared_data / "DRIMDB-dev/Good/drimdb_good (34).jpg")
    fov = find_fov(img)
    h, w = img.shape[:2]
    assert fov.source == "circle"
    assert abs(fov.cx - w / 2) < 0.05 * w and abs(fov.cy - h / 2) < 0.05 * h
    assert 0.9 * np.hypot(w, h) / 2 <= fov.r < np.hypot(w, h) / 2  # through the cut corners


@pytest.mark.parametrize("photo", ["DRIVE/training/images/21_training.tif", "HRF/images/02_g.jpg",
                                   "EyePACS/images/16_left.jpeg"])
def test_background_subtracted_photo_is_not_called_glare(assessor, shared_data, photo):
    """Graham-style preprocessing clips its strongest edges to white: the publisher's processing,
    not an artefact of capture (8 of 39 dev photos were vetoed as glare before)."""
    img = at_most(read_image(shared_data / photo), 1600)
    res = assessor.assess(preprocessed(img, find_fov(img), "graham"))
    assert "artefact" not in [r.code for r in res.reasons]
