"""The second evaluation generator (soft-edged regions), the per-patch classical baseline and the
harness's generator switch: synthetic photos only, fast."""
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from efiqa.eval.metrics import auroc
from efiqa.eval.patch_baseline import patch_classical
from efiqa.eval.soft_regions import KINDS, degrade
from efiqa.fov import Fov

from .conftest import synthetic_fundus

H, W, CX, CY, R = 420, 500, 250.0, 210.0, 190.0
FOV = Fov(CX, CY, R)


@pytest.fixture(scope="module")
def img():
    # dark surround, orange disc, dark curved vessels, a little noise
    return synthetic_fundus(H, W, CX, CY, R, seed=5)


def _disc(radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.hypot(xx - CX, yy - CY) <= radius


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)


def test_kinds_cover_the_brief():
    assert {"blur", "motion_blur", "darkening", "haze", "overexposure", "shadow", "flare"} <= set(KINDS)


def test_independent_of_the_first_generator():
    import ast

    src = Path(__file__).resolve().parents[1] / "evaluation" / "soft_regions.py"
    tree = ast.parse(src.read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert imported and not [m for m in imported if "synth" in m], imported


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_per_seed(img, kind):
    a, b = degrade(img, FOV, kind, 2, seed=11), degrade(img, FOV, kind, 2, seed=11)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.weight, b.weight)
    c = degrade(img, FOV, kind, 2, seed=12)
    assert not np.array_equal(a.weight, c.weight)  # another seed, another region
    assert a.kind == kind and a.severity == 2
    assert a.image.shape == img.shape and a.image.dtype == np.uint8
    assert a.weight.shape == img.shape[:2] and a.weight.dtype == np.float32
    assert np.array_equal(a.mask, a.weight > 0.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_lies_inside_the_fov_and_is_a_region(img, kind, seed):
    d = degrade(img, FOV, kind, 2, seed=seed)
    assert d.weight.min() >= 0 and d.weight.max() <= 1
    assert not d.weight[~_disc(R)].any()          # no weight outside the FOV
    assert not d.mask[~_disc(R - 1)].any()
    share = d.mask.sum() / _disc(R).sum()
    assert 0.01 < share < 0.7, share                # a region, not nothing and not everything
    # soft: the weight fades over a noticeable width (plenty of pixels strictly between 0.1 and 0.9)
    ramp = ((d.weight > 0.1) & (d.weight < 0.9)).sum()
    assert ramp > 0.15 * d.mask.sum(), (ramp, d.mask.sum())


@pytest.mark.parametrize("kind", KINDS)
def test_change_is_inside_the_mask(img, kind):
    for seed in (3, 4):
        d = degrade(img, FOV, kind, 2, seed=seed)
        diff = _diff(d.image, img)
        assert (diff[d.weight == 0] == 0).all()     # untouched where the weight is 0
        inside = diff[d.mask].mean()
        outside = diff[~d.mask & _disc(R)].mean()
        assert inside > 5 * max(outside, 0.2), (inside, outside)


@pytest.mark.parametrize("kind", KINDS)
def test_severity_increases_the_change(img, kind):
    d = [degrade(img, FOV, kind, s, seed=6) for s in (1, 2, 3)]
    assert np.array_equal(d[0].weight, d[2].weight)  # the same region at every severity
    change = [_diff(x.image, img)[x.mask].mean() for x in d]
    assert change[0] < change[1] < change[2], change


def _detail(a: np.ndarray, sel: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(a[..., 1].astype(np.float32), cv2.CV_32F))[sel].mean())


@pytest.mark.parametrize("kind", KINDS)
def test_severity_one_is_visible(img, kind):
    d = degrade(img, FOV, kind, 1, seed=8)
    core = d.weight > 0.9
    assert core.sum() > 200
    if kind in ("blur", "motion_blur"):  # fine detail (vessel edges, grain) plainly reduced
        assert _detail(d.image, core) < 0.7 * _detail(img, core)
    else:  # brightness or colour plainly changed where the region is
        assert _diff(d.image, img)[core].mean() > 25


def test_darkening_and_shadow_darken_haze_overexposure_and_flare_brighten(img):
    for kind, sign in (("darkening", -1), ("shadow", -1), ("haze", 1), ("overexposure", 1), ("flare", 1)):
        d = degrade(img, FOV, kind, 2, seed=9)
        delta = d.image.astype(np.float32).mean(axis=2)[d.mask] - img.astype(np.float32).mean(axis=2)[d.mask]
        assert sign * delta.mean() > 15, (kind, delta.mean())


def test_shadow_enters_from_the_fov_edge(img):
    for seed in range(4):
        d = degrade(img, FOV, "shadow", 2, seed=seed)
        ring = _disc(R - 2) & ~_disc(0.85 * R)
        centre = _disc(0.3 * R)
        assert d.mask[ring].any()          # touches the rim
        assert not d.mask[centre].any()    # does not reach the centre


def test_haze_loses_contrast(img):
    d = degrade(img, FOV, "haze", 2, seed=10)
    core = d.weight > 0.9

    def contrast(a):  # fine structure (vessels, grain) relative to the local level
        g = a[..., 1].astype(np.float32)
        return float((g - cv2.GaussianBlur(g, (0, 0), 3))[core].std() / g[core].mean())

    assert contrast(d.image) < 0.6 * contrast(img)


def test_overexposure_clips_instead_of_wrapping(img):
    d = degrade(img, FOV, "overexposure", 3, seed=2)
    core = d.weight > 0.999
    assert core.sum() > 100
    assert (d.image[..., 2][core] == 255).mean() > 0.95      # red saturated at 255 ...
    assert (d.image.astype(int) >= img.astype(int)).all()  # ... and nothing wrapped round to dark


def test_rejects_bad_arguments(img):
    with pytest.raises(ValueError):
        degrade(img, FOV, "noise", 2)
    with pytest.raises(ValueError):
        degrade(img, FOV, "blur", 4)


# --- patch_classical ---------------------------------------------------------------------------------

def _cells(crop, region: np.ndarray) -> np.ndarray:
    """16×16: cells whose pixels are (almost) all inside ``region`` (crop geometry of the method)."""
    out = np.zeros((16, 16), bool)
    for i in range(16):
        for j in range(16):
            x0, y0, x1, y1 = (int(round(v)) for v in crop.cell_box(i, j, 16))
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
            if x1 > x0 and y1 > y0:
                out[i, j] = region[y0:y1, x0:x1].mean() > 0.9
    return out


@pytest.mark.parametrize("what", ["blur", "darken"])
def test_patch_classical_scores_the_damaged_region_higher(img, what):
    yy, xx = np.mgrid[0:H, 0:W]
    region = np.hypot(xx - (CX - 0.45 * R), yy - (CY + 0.1 * R)) <= 0.35 * R  # hand-made, not a generator's
    if what == "blur":
        changed = cv2.GaussianBlur(img, (0, 0), 4.0)
    else:
        changed = (img.astype(np.float32) * 0.3).astype(np.uint8)
    bad = np.where(region[..., None], changed, img)
    scores, crop, cov = patch_classical(bad)
    assert scores.shape == (16, 16) and cov.shape == (16, 16)
    valid = cov >= 0.5
    inside = _cells(crop, region) & valid
    assert inside.sum() >= 4
    outside = valid & _cells(crop, ~region)  # cells straddling the region's edge are left out
    assert auroc(scores[inside | outside], inside[inside | outside]) > 0.9
    assert scores[inside].mean() > 2 * scores[outside].mean()
    # on the undamaged photo, the same cells are not singled out
    clean, _, _ = patch_classical(img)
    assert clean[inside].mean() < scores[inside].mean() / 2


def test_patch_classical_is_fixed_and_label_free(img):
    a, crop_a, cov_a = patch_classical(img)
    b, _, _ = patch_classical(img.copy())
    assert np.array_equal(a, b)
    assert np.isfinite(a).all() and (a >= 0).all()
    assert (cov_a[0, 0] < 0.5) and cov_a[8, 8] == pytest.approx(1.0)


# --- the harness takes a generator -------------------------------------------------------------------

def _harness():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "evaluation.py"
    spec = importlib.util.spec_from_file_location("_efiqa_bench_evaluation", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_harness_runs_the_soft_generator_and_breaks_down_by_severity(img):
    ev = _harness()
    methods = {"patch_classical": patch_classical}
    recs = ev.run({"synthetic": img}, methods, severities=(1, 3), generator="soft", progress=False)
    assert {r.kind for r in recs} == {"clean", *KINDS}
    s = ev.summarise(recs, list(methods))
    assert set(s["per_kind"]) == set(KINDS)
    assert set(s["per_kind_severity"]["darkening"]) == {"1", "3"}
    assert 0 <= s["ranking"]["patch_classical"] <= 1
    assert s["overall"]["patch_classical"]["positives"] > 0
    ev.markdown_table(s, list(methods)), ev.severity_table(s, list(methods))
    # at a method's flag threshold: clean cells flagged, and degraded cells flagged (what that costs)
    for t, recall in ((-np.inf, 1.0), (np.inf, 0.0)):
        at = ev.summarise(recs, list(methods), flag_thresholds={"patch_classical": t})
        assert at["flag_recall"]["patch_classical"] == recall and at["clean_fpr"]["patch_classical"] == recall
    mid = float(np.median(np.concatenate([r.scores["patch_classical"][r.valid & r.truth] for r in recs if r.truth is not None
                                          and r.kind != "clean"])))
    at = ev.summarise(recs, list(methods), flag_thresholds={"patch_classical": mid})
    assert 0.4 <= at["flag_recall"]["patch_classical"] <= 0.6
    assert "degraded cells flagged" in ev.markdown_table(at, list(methods))
    # the default generator is still the first one, with its own kinds
    recs = ev.run({"synthetic": img}, methods, severities=(2,), progress=False, kinds=("blur",))
    assert [r.kind for r in recs] == ["clean", "blur"]
    with pytest.raises(ValueError):
        ev.run({"synthetic": img}, methods, generator="soft", kinds=("jpeg",), progress=False)
