import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from efiqa import EfiqaError, NotFundusError, QualityResult
from efiqa.imageio import read_image
from efiqa.result import ZONES

from .conftest import synthetic_fundus

JSON_KEYS = {"path", "score", "gradable", "grid", "map", "crop", "fov", "zones", "timings_ms", "reasons"}


def check_result(res: QualityResult, grid: int) -> None:
    assert res.map.shape == (grid, grid) and res.map.dtype == np.float32
    assert np.isfinite(res.map).all() and (res.map >= 0).all() and (res.map <= 1).all()
    assert 0.0 <= res.score <= 1.0
    # a decisive reason (too dark, clipped, glare) vetoes gradable whatever the score
    assert res.gradable == (res.score < res.threshold and not any(r.decisive for r in res.reasons))
    assert set(res.zones) == set(ZONES)
    assert res.coverage.shape == (grid, grid) and (res.coverage >= 0).all() and (res.coverage <= 1).all()
    assert res.crop.size > 0 and res.fov.r > 0


def test_example_photo(assessor, retina_file):
    res = assessor.assess(retina_file)
    check_result(res, assessor.manifest.grid)
    assert res.source == str(retina_file)
    assert set(res.timings_ms) == {"read", "preprocess", "inference", "postprocess", "total"}
    # the FOV fills the crop: the middle cells are fully covered, the corners not at all
    assert res.coverage[8, 8] == 1.0 and res.coverage[0, 0] == 0.0


def test_json_contract(assessor, retina_file):
    d = assessor.assess(retina_file).to_dict()
    assert set(d) == JSON_KEYS
    g = assessor.manifest.grid
    assert d["grid"] == [g, g] and len(d["map"]) == g and all(len(row) == g for row in d["map"])
    assert set(d["crop"]) == {"x0", "y0", "size"} and set(d["fov"]) == {"cx", "cy", "r", "source"}
    assert d["fov"]["source"] == "circle" and isinstance(d["reasons"], list)
    assert all({"code", "text", "decisive"} <= set(r) for r in d["reasons"])
    assert all(isinstance(v, int) for v in d["crop"].values())
    # crop is the square around the FOV circle
    assert abs(d["crop"]["size"] - 2 * d["fov"]["r"]) <= 1
    assert abs(d["crop"]["x0"] + d["crop"]["size"] / 2 - d["fov"]["cx"]) <= 1


def test_score_ignores_cells_outside_fov(assessor):
    """Score = coverage-weighted mean, over cells at least half inside the FOV, of the shipped bundle's
    score channel (its second output); the map is the first."""
    img = synthetic_fundus()
    res = assessor.assess(img)
    assert assessor.manifest.outputs == ["map", "score"]
    prob = 1 / (1 + np.exp(-assessor.backend.infer(assessor.preprocessor(img).tensor[None])[0]))
    w = np.where(res.coverage >= 0.5, res.coverage, 0)
    np.testing.assert_allclose(res.map, prob[0], atol=1e-6)
    assert res.score == pytest.approx(float((prob[1] * w).sum() / w.sum()), rel=1e-5)
    assert w.min() == 0 and res.score != pytest.approx(float((prob[1] * w).sum() / w.size), rel=1e-3)


def test_array_and_path_agree(assessor, retina_file):
    by_path = assessor.assess(retina_file)
    by_array = assessor.assess(read_image(retina_file))
    np.testing.assert_allclose(by_path.map, by_array.map, atol=1e-6)


def test_rgb_input(assessor, retina_file):
    bgr = read_image(retina_file)
    a = assessor.assess(bgr)
    b = assessor.assess(np.ascontiguousarray(bgr[..., ::-1]), color="rgb")
    np.testing.assert_allclose(a.map, b.map, atol=1e-6)


def test_threshold_override(retina_file):
    from efiqa import QualityAssessor

    with QualityAssessor(threshold=1.0) as lenient, QualityAssessor(threshold=0.0) as strict:
        assert lenient.assess(retina_file).gradable is True
        assert strict.assess(retina_file).gradable is False


def test_batch_matches_single_and_keeps_going(assessor, retina_file, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    black = np.zeros((300, 300, 3), np.uint8)
    items = [retina_file, bad, black, synthetic_fundus()]
    out = assessor.assess_batch(items, batch_size=3)
    assert isinstance(out[0], QualityResult) and isinstance(out[3], QualityResult)
    assert isinstance(out[1], EfiqaError) and str(bad) in str(out[1])
    assert isinstance(out[2], NotFundusError)
    np.testing.assert_allclose(out[0].map, assessor.assess(retina_file).map, atol=1e-5)


def test_overlay(assessor, retina_file):
    """Shading follows the map: a photo the model finds clean stays nearly clear, the same result
    with every cell degraded is shaded all over its FOV."""
    import dataclasses

    img = read_image(retina_file)
    res = assessor.assess(img)
    ov = res.overlay(img)
    assert ov.shape == (1024, 1024, 3) and ov.dtype == np.uint8
    bad = dataclasses.replace(res, map=np.ones_like(res.map))
    assert bad.flagged.sum() > 100
    drawn = np.abs(bad.overlay(img).astype(int) - cv2_resize(img, 1024)).mean()
    assert drawn > 20 and drawn > 3 * np.abs(ov.astype(int) - cv2_resize(img, 1024)).mean()


def cv2_resize(img, side):
    import cv2

    return cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA).astype(int)


# --- property tests: anything in, a valid result or an EfiqaError out -------------------------

_DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int16, np.int64, bool])
_SHAPES = st.one_of(
    st.tuples(st.integers(1, 300), st.integers(1, 300)),
    st.tuples(st.integers(1, 300), st.integers(1, 300), st.sampled_from([1, 2, 3, 4, 5])),
    st.tuples(st.integers(1, 4)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(arr=arrays(dtype=_DTYPES, shape=_SHAPES))
def test_random_arrays_never_crash(assessor, arr):
    try:
        res = assessor.assess(arr)
    except EfiqaError:
        return
    check_result(res, assessor.manifest.grid)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(64, 700), w=st.integers(64, 700), fx=st.floats(0.2, 0.8), fy=st.floats(0.2, 0.8),
       fr=st.floats(0.25, 0.8), seed=st.integers(0, 5), dtype=st.sampled_from(["u8", "u16", "f32"]))
def test_random_fundus_like_frames(assessor, h, w, fx, fy, fr, seed, dtype):
    img = synthetic_fundus(h, w, fx * w, fy * h, fr * min(h, w), seed)
    arr = {"u8": img, "u16": img.astype(np.uint16) * 257, "f32": img.astype(np.float32) / 255}[dtype]
    try:
        res = assessor.assess(arr)
    except EfiqaError:
        return
    check_result(res, assessor.manifest.grid)
    if res.fov.source == "circle":  # the FOV found lies where the disc was drawn
        assert abs(res.fov.cx - fx * w) < 0.1 * fr * min(h, w) + 3
    else:  # no dark surround found: the whole frame is taken, and the crop covers it
        assert res.crop.size == max(h, w)


def test_huge_jpeg_assessed_via_reduced_decode(assessor, tmp_path):
    import cv2

    img = synthetic_fundus(2000, 2000, 1000, 1000, 950)
    big = cv2.resize(img, (20000, 20000), interpolation=cv2.INTER_NEAREST)
    path = tmp_path / "huge.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 70])
    del big
    res = assessor.assess(path)
    check_result(res, assessor.manifest.grid)
    # found in the 1/8-scale decode, reported in original pixels
    assert abs(res.fov.r - 9500) < 150 and abs(res.fov.cx - 10000) < 150
    assert abs(res.crop.size - 19000) < 300
    assert res.image_shape == (20000, 20000)
    from efiqa.imageio import read_image as read

    assert res.overlay(read(path)).shape == (1024, 1024, 3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["good", "missing", "black", "tiny"]), min_size=0, max_size=7),
       batch_size=st.integers(1, 9))
def test_every_input_gets_exactly_one_answer_in_order(assessor, tmp_path_factory, kinds, batch_size):
    """N inputs → N outputs (results or errors), in input order, for any batch size and mix."""
    from efiqa.errors import EfiqaError

    inputs = []
    for i, kind in enumerate(kinds):
        if kind == "good":
            inputs.append(synthetic_fundus(240, 320, seed=3))  # cached by the generator
        elif kind == "missing":
            inputs.append(f"/no/such/photo_{i}.png")
        elif kind == "black":
            inputs.append(np.zeros((200, 200, 3), np.uint8))
        else:
            inputs.append(np.zeros((8, 8, 3), np.uint8))
    out = assessor.assess_batch(inputs, batch_size=batch_size)
    assert len(out) == len(inputs)
    for kind, item, res in zip(kinds, inputs, out):
        if kind == "good":
            assert not isinstance(res, EfiqaError)
        else:
            assert isinstance(res, EfiqaError)
            if kind == "missing":
                assert res.source == item  # the error names its own input: order is kept


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size_is_refused_before_any_work(assessor, bad):
    with pytest.raises(ValueError, match="batch_size"):
        assessor.assess_batch([synthetic_fundus(240, 320)], batch_size=bad)


def test_unknown_backend_option_is_refused():
    from efiqa import QualityAssessor

    with pytest.raises(ValueError, match="unknown backend option"):
        QualityAssessor(backend_options={"cuda_graphs": True})
    with QualityAssessor(backend_options={"providers": ["CPUExecutionProvider"]}) as qa:
        assert qa.backend.providers == ["CPUExecutionProvider"]


def test_deep_shadow_is_judged_not_refused(assessor):
    """A lid shadow over most of the field (lit part under half the circle): a poorly lit fundus
    photo, so an ungradable result with its reason, not a NotFundusError."""
    img = synthetic_fundus(600, 800, 400, 300, 270).astype(np.float32)
    img *= (0.1 + 0.9 * np.clip((350 - np.arange(800)) / 40, 0, 1))[None, :, None]
    res = assessor.assess(img.astype(np.uint8))
    check_result(res, assessor.manifest.grid)
    assert res.fov.source == "circle" and not res.gradable
    assert "too_dark" in [r.code for r in res.reasons]
