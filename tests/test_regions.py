"""The training perturbations' degraded regions (efiqa.train.regions) and the union target."""
import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from efiqa.fov import find_fov  # noqa: E402
from efiqa.train import distill, regions  # noqa: E402
from efiqa.train.augment import augment_pair  # noqa: E402

from .conftest import synthetic_fundus  # noqa: E402


def left_half_cells(d: np.ndarray) -> tuple[float, float]:
    """Mean of the map's left-half and right-half cells, the two columns at the seam left out."""
    g = d.shape[1] // 2
    return float(d[:, :g - 1].mean()), float(d[:, g + 1:].mean())


@pytest.mark.parametrize("spoil", ["blur", "noise", "dark", "jpeg"])
def test_degradation_is_where_the_photo_was_spoilt(spoil):
    """Each kind of damage, on the left half only, raises the left half's cells and leaves the right's near 0."""
    img = synthetic_fundus()
    w = img.shape[1]
    f = img.astype(np.float32)
    spoilt = {"blur": lambda: cv2.GaussianBlur(f, (0, 0), 4),
              "noise": lambda: f + np.random.default_rng(0).normal(0, 20, f.shape),
              "dark": lambda: f * 0.25,
              "jpeg": lambda: cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 5])[1],
                                           cv2.IMREAD_COLOR).astype(np.float32)}[spoil]()
    out = img.copy()
    out[:, : w // 2] = np.clip(spoilt, 0, 255).astype(np.uint8)[:, : w // 2]
    d = regions.degradation(img, out, find_fov(img))
    left, right = left_half_cells(d)
    assert left > 0.1 and right < 0.02, (left, right)


def test_an_unchanged_photo_has_no_degradation_and_more_damage_scores_higher():
    img = synthetic_fundus()
    fov = find_fov(img)
    assert regions.degradation(img, img, fov).max() == 0
    means = [regions.degradation(img, cv2.GaussianBlur(img, (0, 0), s), fov).mean() for s in (1, 3, 8)]
    assert means[0] < means[1] < means[2]


def test_pairs_share_geometry_and_their_images_are_the_perturbations():
    """augment_pair draws what augment draws; the reference is the same photo moved alike, unspoilt."""
    img = synthetic_fundus()
    ref, out = augment_pair(img, np.random.default_rng(5), strength=0.0)
    assert ref.shape == img.shape
    # no photometric change at strength 0: the pair differs only by rounding, the geometry is shared
    assert np.abs(ref.astype(int) - out.astype(int)).mean() < 1.5
    photos = [img, img[:, ::-1].copy()]
    pairs = list(distill.perturbation_pairs(photos, 4, 0))
    assert all(np.array_equal(r, photos[i]) and np.array_equal(x, photos[i]) for i, k, r, x in pairs if k == 0)
    assert all(not np.array_equal(r, x) for i, k, r, x in pairs if k > 0)


def test_an_enhanced_perturbation_has_its_reference_enhanced_alike(monkeypatch):
    """With a perturbation that changes nothing, every enhanced image must equal its reference: the
    reference gets the very settings the image got (a twin of the enhancement stream), so an
    enhancement is never counted as damage; and the enhancement stream itself stays as it was."""
    photos = [synthetic_fundus(), synthetic_fundus(seed=1)]
    monkeypatch.setattr(distill, "augment_pair", lambda photo, rng: (photo.copy(), photo.copy()))
    monkeypatch.setattr(distill, "ENHANCED", 1.0)
    pairs = [(r, x) for _, k, r, x in distill.perturbation_pairs(photos, 6, 0) if k > 0]
    assert all(np.array_equal(r, x) for r, x in pairs)
    assert not any(np.array_equal(x, photos[0]) or np.array_equal(x, photos[1]) for _, x in pairs)  # enhanced
    assert len({x.tobytes() for _, x in pairs}) == len(pairs)  # each with settings of its own


def test_union_and_region_targets_need_region_maps_and_learn_them():
    """A head trained on the union, or on the region map alone (the shipped map head's target), learns
    a cell the teacher calls clean but the region map calls spoilt; the region target ignores the
    teacher's label where the union follows it."""
    rng = np.random.default_rng(0)
    n, c, g = 64, 8, 4
    x = rng.normal(size=(n, c, g, g)).astype(np.float16)
    zeros = [np.zeros((g, g), np.float32) for _ in range(n)]
    region = [(x[i, 0] > 0.5).astype(np.float32) * 0.9 for i in range(n)]
    fs = distill.FeatureSet(16, x, zeros, zeros, [np.ones((g, g), bool)] * n, list(range(n)), [1] * n)
    for target in ("union", "region", "root"):
        with pytest.raises(ValueError, match="region maps"):
            distill.train_adapter(fs, "all", "linear", target=target, epochs=1)
    fs.region = region
    spoilt = np.stack(region) > 0

    def gap(target: str) -> float:
        res = distill.train_adapter(fs, "all", "linear", target=target, epochs=30, lr=1e-2)
        prob, *_ = distill.predict(res, fs, samples=np.arange(n))
        return float(prob[spoilt].mean() - prob[~spoilt].mean())

    assert gap("union") > 0.15 and gap("region") > 0.15 and gap("root") > 0.15 and abs(gap("soft")) < 0.02
    # the teacher flags other cells: the union learns them too, the region target does not
    fs.score = [(x[i, 1] > 0.5).astype(np.float32) * 0.9 for i in range(n)]
    flagged = np.stack(fs.score) > 0

    def teacher_gap(target: str) -> float:
        res = distill.train_adapter(fs, "all", "linear", target=target, epochs=30, lr=1e-2)
        prob, *_ = distill.predict(res, fs, samples=np.arange(n))
        return float(prob[flagged & ~spoilt].mean() - prob[~flagged & ~spoilt].mean())

    assert teacher_gap("union") > 0.15 and abs(teacher_gap("region")) < 0.05 and abs(teacher_gap("root")) < 0.05


def test_root_target_learns_the_square_root_of_the_region_map():
    """The shipped map head's target: a cell that lost a quarter of its detail is taught as 0.5."""
    rng = np.random.default_rng(1)
    n, c, g = 64, 8, 4
    x = rng.normal(size=(n, c, g, g)).astype(np.float16)
    x[:, 0] = np.sign(x[:, 0])  # a feature that says which cells are spoilt, so a linear head can fit both levels
    zeros = [np.zeros((g, g), np.float32) for _ in range(n)]
    region = [(x[i, 0] > 0).astype(np.float32) * 0.25 for i in range(n)]
    fs = distill.FeatureSet(16, x, zeros, zeros, [np.ones((g, g), bool)] * n, list(range(n)), [1] * n, region=region)
    spoilt = np.stack(region) > 0

    def spoilt_mean(target: str) -> float:
        res = distill.train_adapter(fs, "all", "linear", target=target, epochs=120, lr=1e-2)
        prob, *_ = distill.predict(res, fs, samples=np.arange(n))
        return float(prob[spoilt].mean())

    root = spoilt_mean("root")
    assert root == pytest.approx(0.5, abs=0.05) and spoilt_mean("region") < root - 0.15
