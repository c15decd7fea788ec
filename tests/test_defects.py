import numpy as np
import pytest

pytest.importorskip("torch")

from efiqa.train import defects, distill, regions  # noqa: E402
from efiqa.fov import find_fov  # noqa: E402

from .conftest import synthetic_fundus  # noqa: E402


def test_a_defect_is_seeded_and_spoils_part_of_the_frame_only():
    img = synthetic_fundus()
    a = defects.defect_pair(img, np.random.default_rng(4))
    b = defects.defect_pair(img, np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2])) and a[2] == b[2]
    seen, changed = set(), []
    for seed in range(40):
        reference, out, kind = defects.defect_pair(img, np.random.default_rng(seed))
        assert reference.shape == out.shape == img.shape and out.dtype == np.uint8 and kind in defects.DEFECTS
        seen.add(kind)
        changed.append((np.abs(out.astype(int) - reference.astype(int)).max(axis=2) > 2).mean())
    changed = np.array(changed)
    assert seen == set(defects.DEFECTS)          # every kind is drawn
    assert changed.max() > 0.05 and (changed < 0.95).all()   # some draws spoil a good part, none the whole frame


@pytest.mark.parametrize("kind", sorted(defects.DEFECTS))
def test_each_kind_destroys_detail_where_it_is_applied(kind):
    """At full strength over the whole frame every kind loses band-pass detail (the map head's target)."""
    img = synthetic_fundus()
    out = np.clip(defects.DEFECTS[kind](img.astype(np.float32), np.random.default_rng(0), 1.0), 0, 255).astype(np.uint8)
    loss = regions.degradation(img, out, find_fov(img), 16)
    assert loss.max() > 0.05, kind


def test_glow_brightens_and_clips():
    img = synthetic_fundus().astype(np.float32)
    out = defects.DEFECTS["glow"](img, np.random.default_rng(0), 1.0)
    assert (out >= img).all() and (np.clip(out, 0, 255) == 255).mean() > (img == 255).mean()


def test_defect_pairs_come_after_the_perturbations_from_a_stream_of_their_own(monkeypatch):
    photos = [synthetic_fundus(seed=s) for s in range(2)]
    monkeypatch.setattr(distill, "DEFECTS_PER_PHOTO", 2)
    pairs, total = distill.sample_pairs("defects", photos, 3, 0)
    got = list(pairs)
    assert total == 4 and [(i, k) for i, k, _, _ in got] == [(0, 1000), (0, 1001), (1, 1000), (1, 1001)]
    # their own stream: the first photo's first defect is the stream's first draw, whatever the
    # number of perturbations (which draw from theirs)
    reference, img, _ = defects.defect_pair(photos[0], np.random.default_rng([0, 2]))
    assert np.array_equal(got[0][2], reference) and np.array_equal(got[0][3], img)
    other, _ = distill.sample_pairs("defects", photos, 7, 0)
    assert all(np.array_equal(a[3], b[3]) for a, b in zip(got, other))
    # the defects labelled by their FOV alone: more, from a stream and indices of their own
    monkeypatch.setattr(distill, "FOV_DEFECTS_PER_PHOTO", 3)
    more, count = distill.sample_pairs("fov-defects", photos, 3, 0)
    more = list(more)
    assert count == 6 and [(i, k) for i, k, _, _ in more] == [(i, 2000 + j) for i in range(2) for j in range(3)]
    reference, img, _ = defects.defect_pair(photos[0], np.random.default_rng([0, 3]))
    assert np.array_equal(more[0][2], reference) and np.array_equal(more[0][3], img)
    with pytest.raises(ValueError, match="unknown sample family"):
        distill.sample_pairs("eval", photos, 3, 0)
    with pytest.raises(ValueError, match="at most 1000 perturbations"):
        distill.sample_pairs("perturbations", photos, 1001, 0)
