"""Stage 1: masking schedule, geometry, and a tiny end-to-end training run on generated photos."""
import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from efiqa.errors import ModelError  # noqa: E402
from efiqa.preprocess import Preprocessor  # noqa: E402
from efiqa.train import masking  # noqa: E402
from efiqa.train.nets.adapter import make_head  # noqa: E402
from efiqa.train import teacher as teacher_mod  # noqa: E402
from efiqa.train import vessels as vessel_mod  # noqa: E402
from efiqa.train.data import to_geometry  # noqa: E402
from efiqa.eval.metrics import auroc, best_f1  # noqa: E402

from .conftest import synthetic_fundus, synthetic_fundus_with_vessels  # noqa: E402


def test_ratio_schedule_starts_high_and_widens():
    assert masking.ratio_range(0.0) == (0.8, 1.0)
    assert masking.ratio_range(0.25) == pytest.approx((0.4, 1.0))
    assert masking.ratio_range(0.5) == (0.0, 1.0) and masking.ratio_range(1.0) == (0.0, 1.0)


def test_random_masks_follow_the_ratio():
    rng = np.random.default_rng(0)
    early = np.mean([1 - masking.random_grid_mask(64, rng, 0.0).mean() for _ in range(200)])
    late = np.mean([1 - masking.random_grid_mask(64, rng, 1.0).mean() for _ in range(200)])
    assert 0.85 < early < 0.95  # r ~ U[0.8, 1]
    assert 0.4 < late < 0.6     # r ~ U[0, 1]


def test_random_mask_is_a_grid():
    rng = np.random.default_rng(3)
    m = masking.random_grid_mask(256, rng, 1.0)
    assert set(np.unique(m)) <= {0.0, 1.0}
    # constant along rows inside each cell: the number of distinct row patterns is the grid size N ≤ 32
    assert len({tuple(r) for r in m}) <= 32


@pytest.mark.parametrize("kind", masking.FILLS)
def test_fill_changes_hidden_cells_only(kind):
    rng = np.random.default_rng(1)
    v = (rng.random((64, 64)) > 0.8).astype(np.float32)
    keep = np.ones((64, 64), np.float32)
    keep[16:32, 16:48] = 0
    out = masking.fill(v, keep, rng, (kind,))
    np.testing.assert_array_equal(out[keep > 0], v[keep > 0])
    hidden = out[keep == 0]
    assert hidden.min() >= 0 and hidden.max() <= 1
    if kind == "zero":
        assert np.all(hidden == 0)
    elif kind == "grey":
        assert len(np.unique(hidden)) == 1 and 0.15 <= hidden[0] <= 0.6
    else:  # smeared: no crisp vessel pixels left, but not empty either
        assert 0 < hidden.std() < v[keep == 0].std()
    with pytest.raises(ValueError):
        masking.fill(v, keep, rng, ("paint",))


def test_blob_masks_are_soft_free_form_and_sized():
    rng = np.random.default_rng(2)
    ms = [masking.blob_mask(128, rng) for _ in range(50)]
    assert all(m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1 for m in ms)
    hidden = np.array([1 - m.mean() for m in ms])
    assert 0.02 < hidden.min() and hidden.max() < 0.6
    # feathered: neighbouring pixels never jump from kept to hidden
    assert max(np.abs(np.diff(m, axis=1)).max() for m in ms) < 0.35  # a hard mask jumps by up to 1


def test_teacher_geometry_is_the_runtime_geometry():
    img = synthetic_fundus(600, 900, 450, 300, 380)
    photo = to_geometry(img, 512)
    prep = Preprocessor(512)(img)
    assert photo.crop == prep.crop and photo.fov == prep.fov
    np.testing.assert_array_equal(photo.rgb.transpose(2, 0, 1), prep.tensor.astype(np.uint8))


def test_pool_cells():
    a = np.zeros((64, 64), np.float32)
    a[:16, :16] = 0.5
    fov = np.ones((64, 64), bool)
    fov[:, 56:] = False
    score, frac, cov = teacher_mod.pool_cells(a, fov, 4, 0.1)
    assert score[0, 0] == pytest.approx(0.5) and frac[0, 0] == 1.0 and frac[1, 1] == 0.0
    assert cov[0, 3] == pytest.approx(0.5) and cov[0, 0] == 1.0


def test_metrics():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert best_f1(np.array([0.1, 0.9]), np.array([0, 1]))[0] == 1.0



def test_inference_hides_every_pixel_twice_from_its_context():
    pats = teacher_mod.hole_patterns(64, 16)
    assert len(pats) == 4 and np.all(sum(pats) == 2)
    # an inpainter that only sees the visible part: whatever is hidden must come from elsewhere
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.full_like(x, 0.5)

    vmap = np.ones((256, 256), np.float32)
    out = teacher_mod.expected_vessels(Spy(), vmap)
    assert np.allclose(out, 0.5) and len(seen) == 4
    for x, hole in zip(seen, teacher_mod.hole_patterns(256)):
        assert hole.mean() == 0.5 and float(x[0, 0].numpy()[hole > 0].max()) == 0.0


def test_missing_vasculature_scores_the_share_of_expected_vessels_not_seen():
    fov = np.zeros((192, 192), bool)
    fov[8:184, 8:184] = True
    expected = np.full((192, 192), 0.3, np.float32)
    seen = expected.copy()
    seen[40:110, 40:110] = 0  # vessels gone in one region
    a = teacher_mod.missing_vasculature(expected, seen, fov)
    assert np.all(a[~fov] == 0) and np.all((a >= 0) & (a < 1))
    assert a[75, 75] == pytest.approx(0.3 / (0.3 + teacher_mod.EXPECTED_FLOOR), abs=1e-3)
    assert a[150, 150] == pytest.approx(0, abs=1e-3)  # seen as expected: nothing missing
    more = seen.copy()
    more[140:160, 140:160] = 1.0  # more vessels than expected is not a degradation
    assert teacher_mod.missing_vasculature(expected, more, fov)[150, 150] == 0


def test_vessel_anomaly_is_two_sided_and_relative():
    """Missing expected vessels and unexplained visible structure both score; agreement scores 0."""
    fov = np.zeros((192, 192), bool)
    fov[8:184, 8:184] = True
    expected = np.full((192, 192), 0.3, np.float32)
    seen = expected.copy()
    seen[40:110, 40:110] = 0      # vessels gone
    seen[120:175, 120:175] = 0.9  # three times the structure anatomy explains (block edges, streaks)
    a = teacher_mod.vessel_anomaly(expected, seen, fov)
    assert np.all(a[~fov] == 0) and np.all((a >= 0) & (a < 1))
    floor = teacher_mod.EXPECTED_FLOOR
    assert a[75, 75] == pytest.approx(0.3 / (0.3 + floor), abs=1e-3)
    assert a[147, 147] == pytest.approx(0.6 / (0.9 + floor), abs=1e-2)
    assert a[40, 150] == pytest.approx(0, abs=1e-3)
    # where the photo shows less, it is exactly the share missing
    m = teacher_mod.missing_vasculature(expected, seen, fov)
    assert a[75, 75] == pytest.approx(m[75, 75])


def _synthetic_photo_and_label():
    img, ves = synthetic_fundus_with_vessels(seed=1)
    photo = to_geometry(img, vessel_mod.SIZE)
    label = Preprocessor(vessel_mod.SIZE, color="bgr").crop_resize(
        np.repeat(ves[..., None].astype(np.uint8) * 255, 3, axis=2), photo.crop)[..., 0] > 127
    return photo, label & photo.fov_mask


@pytest.mark.parametrize("kernel", teacher_mod.DEPTH_KERNELS)
def test_visibility_follows_vessel_contrast_not_the_extractor(kernel):
    """A shadow that keeps vessels traceable (the extractor standardises the photo) still takes their
    contrast: the visible map drops with the measured depth; clean vessels count fully."""
    photo, label = _synthetic_photo_and_label()
    depth = teacher_mod.vessel_depth(photo.rgb, kernel)
    ref = float(np.median(depth[label]))
    assert ref > 5 * float(np.median(depth[~label]))  # vessels are darker than their surround
    vmap = label.astype(np.float32)                    # a perfect extractor
    clean = teacher_mod.visible_vessels(vmap, depth, ref)
    assert np.median(clean[label]) == pytest.approx(1.0)
    dark = teacher_mod.visible_vessels(vmap, teacher_mod.vessel_depth((photo.rgb * 0.15).astype(np.uint8), kernel), ref)
    assert np.median(dark[label]) < 0.35
    assert np.all(clean <= vmap) and np.all(dark >= 0)


@pytest.mark.parametrize("kernel", teacher_mod.DEPTH_KERNELS)
def test_washed_out_vessels_lose_visibility_even_where_their_depth_grows(kernel):
    """Over-exposure (gain + offset, clipped) deepens a vessel in grey levels, so depth alone calls it
    more visible than before; its Weber contrast and the brightness term take it away (v3.5). A
    darkening keeps the Weber contrast: depth still catches it."""
    photo, label = _synthetic_photo_and_label()
    depth, contrast = teacher_mod.vessel_depth(photo.rgb, kernel), teacher_mod.vessel_contrast(photo.rgb, kernel)
    d_ref, c_ref = float(np.median(depth[label])), float(np.median(contrast[label]))
    bright = np.clip(photo.rgb.astype(np.float32) * 1.8 + 90, 0, 255).astype(np.uint8)
    assert np.median(teacher_mod.vessel_depth(bright, kernel)[label]) > d_ref   # depth alone is fooled
    clean = teacher_mod.visibility(photo.rgb, kernel, d_ref, c_ref)[label].mean()
    depth_only = teacher_mod.visibility(bright, kernel, d_ref)[label].mean()
    with_contrast = teacher_mod.visibility(bright, kernel, d_ref, c_ref)[label].mean()
    assert depth_only >= clean - 0.01
    assert with_contrast < clean - 0.05
    dark = (photo.rgb * 0.15).astype(np.uint8)
    assert np.median(teacher_mod.visibility(dark, kernel, d_ref, c_ref)[label]) < 0.35


def test_brightness_visibility_marks_a_region_brighter_than_the_rest_of_the_photo():
    photo, _ = _synthetic_photo_and_label()
    out = photo.rgb.astype(np.float32)
    s = out.shape[0]
    region = np.zeros(out.shape[:2], bool)
    region[s // 4: s // 2, s // 4: s // 2] = True
    out[region] = np.clip(out[region] * 2.6, 0, 255)
    vis = teacher_mod.brightness_visibility(out.astype(np.uint8), photo.fov_mask)
    inner = cv2.erode(region.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool) & photo.fov_mask
    rest = cv2.erode((~region & photo.fov_mask).astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    assert np.median(vis[inner]) < 0.2 and np.median(vis[rest]) == pytest.approx(1.0)
    assert np.all((vis >= 0) & (vis <= 1))


def test_brightness_visibility_marks_an_under_exposed_region_and_v35_does_not(monkeypatch):
    """Teacher v3.6: a region at 0.2× the photo's brightness keeps its Weber contrast on paper but is
    under-exposed; the exposure term fades it (0 below 0.3× the median), the rest stays visible."""
    photo, _ = _synthetic_photo_and_label()
    out = photo.rgb.astype(np.float32)
    s = out.shape[0]
    region = np.zeros(out.shape[:2], bool)
    region[s // 4: s // 2, s // 4: s // 2] = True
    out[region] *= 0.2
    dark = out.astype(np.uint8)
    inner = cv2.erode(region.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool) & photo.fov_mask
    rest = cv2.erode((~region & photo.fov_mask).astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    vis = teacher_mod.brightness_visibility(dark, photo.fov_mask)
    assert np.median(vis[inner]) < 0.2 and np.median(vis[rest]) == pytest.approx(1.0)
    monkeypatch.setattr(teacher_mod, "UNDEREXPOSED", None)   # v3.5: only the washed-out side
    assert np.median(teacher_mod.brightness_visibility(dark, photo.fov_mask)[inner]) == pytest.approx(1.0)


def test_fine_depth_scale_sees_blur_first():
    """Why two scales: a slight blur takes more of the thin-vessel contrast (fine kernel) than of
    the all-calibre contrast (coarse kernel), so the fine scale flags it earlier."""
    photo, label = _synthetic_photo_and_label()
    blurred = cv2.GaussianBlur(photo.rgb, (0, 0), 1.5)
    fine, coarse = teacher_mod.DEPTH_KERNELS
    kept = {k: float(np.median(teacher_mod.vessel_depth(blurred, k)[label]) /
                     np.median(teacher_mod.vessel_depth(photo.rgb, k)[label])) for k in (fine, coarse)}
    assert kept[fine] < kept[coarse] < 1.0


@pytest.mark.slow
def test_tiny_end_to_end_training(tmp_path, monkeypatch):
    """Seconds, not minutes: a few steps of each stage on generated photos, then teacher inference."""
    from efiqa.train.distill import teacher_labels

    torch.manual_seed(0)
    pairs = []
    for seed in range(3):
        img, ves = synthetic_fundus_with_vessels(seed=seed)
        photo = to_geometry(img, vessel_mod.SIZE)
        label = Preprocessor(vessel_mod.SIZE, color="bgr").crop_resize(
            np.repeat(ves[..., None].astype(np.uint8) * 255, 3, axis=2), photo.crop)[..., 0] > 127
        pairs.append((photo, label & photo.fov_mask))
    vnet = vessel_mod.fit(pairs, steps=3, batch=2, patch=64, progress=False)
    maps = [teacher_mod.vessel_map(vnet, p) for p, _ in pairs]
    assert maps[0][0].shape == (teacher_mod.MAP_SIZE, teacher_mod.MAP_SIZE)
    inpainter, loss = teacher_mod.fit(maps, steps=2, batch=2, progress=False)
    assert np.isfinite(loss)
    rec = teacher_mod.hole_recovery(inpainter, maps, radii=(8,))
    assert set(rec) == {"hard", "soft"} and all(np.isfinite(v["8"]) and v["8"] >= 0 for v in rec.values())
    teacher = teacher_mod.Teacher(vnet, vnet, inpainter)
    out = teacher(synthetic_fundus(seed=5))
    g = teacher_mod.GRID
    assert out.patch_score.shape == out.patch_fraction.shape == out.coverage.shape == (g, g)
    assert np.all((out.patch_fraction >= 0) & (out.patch_fraction <= 1))
    assert np.all(out.anomaly[~out.fov] == 0)
    # the labels keep the networks' parts: judged again they give the same labels, and a study can
    # judge them under another rule (module constants are read when judging, not when the parts are made)
    kept = []
    labels = teacher_labels([synthetic_fundus(seed=6)], teacher, augmentations=2, progress=False,
                            keep=lambda i, k, parts: kept.append(parts))
    assert len(kept) == len(labels.samples) == 2
    assert all(np.array_equal(teacher.judge(p).patch_score, s) for p, s in zip(kept, labels.score))
    monkeypatch.setattr(teacher_mod, "VISIBLE_K", 3.0)
    assert not np.array_equal(teacher.judge(kept[0]).patch_score, labels.score[0])
    monkeypatch.undo()
    clean = [(str(s), synthetic_fundus(seed=s)) for s in range(2)]
    cfg = teacher_mod.calibrate(teacher, clean)
    assert cfg["tau"] > 0 and 0 <= cfg["phi"] <= 1 and 0 <= cfg["clean_fpr_recipe_rule"] <= 1
    # the rule flags about the budgeted share of the clean photos' own patches (ties can add a little)
    outs = [teacher(img) for _, img in clean]
    flagged = np.concatenate([teacher_mod.pool_cells(o.anomaly, o.fov, g, cfg["tau"])[1][o.coverage >= 0.5]
                              >= cfg["phi"] for o in outs])
    assert flagged.mean() <= cfg["fp_budget"] + 0.05

    # stage 2 on the same tiny teacher: labels + features of perturbed photos, then the adapter
    from efiqa.train import distill

    teacher.config["phi"] = float(np.quantile(out.patch_fraction, 0.7))  # make both classes appear
    photos = [synthetic_fundus(seed=s) for s in range(2)]
    cache = tmp_path / "cache"
    names = ["a", "b"]
    sets = distill.cached_features(names, photos, teacher, tmp_path, (128,), 2, 0, cache, progress=False)
    fs = sets[128]
    assert len(fs.photo) == 4 and fs.features("three-scale").shape == (4, 352, 16, 16)  # the 16×16 map grid
    assert fs.features("two-scale").shape == (4, 432, 16, 16) and fs.features("s32").shape == (4, 320, 16, 16)
    assert fs.soft[0].shape == (16, 16)
    # another input size (or backbone) reuses the cached labels: the teacher is not run again, and the
    # regenerated perturbations give the same features as the first pass
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(teacher_mod.Teacher, "__call__", lambda *a: pytest.fail("labels not reused"))
        again = distill.cached_features(names, photos, teacher, tmp_path, (128, 64), 2, 0, cache, progress=False)
    np.testing.assert_array_equal(again[128].data, fs.data)
    assert again[64].data.shape == (4, 672, 16, 16) and again[64].photo == fs.photo
    # region maps only where asked for (the union target), cached beside the labels: 0 on each photo as it is
    assert fs.region is None and not list(cache.glob("regions_*"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(teacher_mod.Teacher, "__call__", lambda *a: pytest.fail("labels not reused"))
        withr = distill.cached_features(names, photos, teacher, tmp_path, (128,), 2, 0, cache, progress=False,
                                        regions_too=True)[128]
    assert len(list(cache.glob("regions_*"))) == 1 and len(withr.region) == 4
    assert all(r.shape == (16, 16) and (r.max() == 0) == (k == 0) for r, k in zip(withr.region, withr.perturbation))
    # two heads (the shipped configuration): the map head learns `target` and the score head
    # `score_target`, each exactly as a single head of that target would; the patch threshold is set on
    # the map head, the gradable threshold on the score head; both survive the adapter.pt round trip
    cfg = {"features": "two-scale", "head": "linear", "target": "union", "score_target": "soft", "members": 1}
    both, both_th = distill.train_student(withr, cfg, teacher.config["phi"], epochs=1)
    one = {"feature_kind": "two-scale", "head": "linear", "phi": teacher.config["phi"], "epochs": 1, "members": 1}
    heads = {t: distill.train_adapter(withr, target=t, **one) for t in ("union", "soft")}
    x2 = torch.from_numpy(withr.features("two-scale").astype(np.float32))
    with torch.no_grad():
        out2 = both.head(x2)
        torch.testing.assert_close(out2, torch.cat([heads["union"].head(x2), heads["soft"].head(x2)], 1), rtol=0, atol=0)
    assert out2.shape == (4, 2, 16, 16) and not torch.equal(out2[:, 0], out2[:, 1])
    by = {t: distill.decision_thresholds(heads[t], withr, {**one, "target": t}) for t in heads}
    assert both_th["patch_threshold"] == by["union"]["patch_threshold"] != by["soft"]["patch_threshold"]
    assert both_th["gradable_threshold"] == by["soft"]["gradable_threshold"]
    assert both_th["threshold_method"].startswith("the patch threshold set on the map head") and both.params == 2 * heads["soft"].params
    folder2 = tmp_path / "two_heads"
    folder2.mkdir()
    torch.save(both.head.state_dict(), folder2 / "adapter.pt")
    (folder2 / "adapter.json").write_text(json.dumps({**cfg, "size": 128}))
    loaded2, _ = distill.load_student(folder2)
    with torch.no_grad():
        torch.testing.assert_close(loaded2.adapter(x2), out2)
        assert loaded2(torch.zeros(1, 3, 128, 128)).shape == (1, 2, 16, 16)
    # an earlier student's score head kept as it is, weights and gradable threshold (here one set apart
    # from what training gives: +1 on its logit, threshold 0.123), beside a map head trained as above;
    # a score head of another target is refused
    kept_folder = tmp_path / "kept"
    kept_folder.mkdir()
    earlier = {k: v + 1.0 if k == "score.1.bias" else v for k, v in both.head.state_dict().items()}
    torch.save(earlier, kept_folder / "adapter.pt")
    (kept_folder / "adapter.json").write_text(json.dumps({**cfg, "size": 128, **both_th, "gradable_threshold": 0.123}))
    kept, kept_th = distill.train_student(withr, cfg, teacher.config["phi"], epochs=1,
                                          keep_score=distill.kept_score_head(kept_folder, cfg))
    with torch.no_grad():
        torch.testing.assert_close(kept.head(x2), out2 + torch.tensor([0.0, 1.0]).view(1, 2, 1, 1), rtol=0, atol=1e-5)
    assert kept_th["gradable_threshold"] == 0.123 and kept_th["patch_threshold"] == both_th["patch_threshold"]
    assert "kept" in kept_th["threshold_method"] and kept.params == both.params
    with pytest.raises(ModelError, match="score_target"):
        distill.kept_score_head(kept_folder, {**cfg, "score_target": "binary"})
    with pytest.raises(ModelError, match="adapter folder"):
        distill.kept_score_head(tmp_path / "nowhere", cfg)
    with pytest.raises(ModelError, match="no score head"):
        distill.kept_score_head(kept_folder, {**cfg, "score_target": None})
    # members count the map head's alone: two map heads averaged, the score head the single one above
    duo, duo_th = distill.train_student(withr, {**cfg, "members": 2}, teacher.config["phi"], epochs=1)
    assert duo_th["gradable_threshold"] == both_th["gradable_threshold"]
    pair = distill.train_adapter(withr, target="union", **{**one, "members": 2})
    assert len(duo.head.map.members) == 2 and isinstance(duo.head.score, torch.nn.Sequential)
    assert duo.params == pair.params + heads["soft"].params
    assert duo_th["patch_threshold"] == distill.decision_thresholds(
        pair, withr, {**one, "target": "union", "members": 2})["patch_threshold"]
    with torch.no_grad():
        out3 = duo.head(x2)
        torch.testing.assert_close(out3, torch.cat([pair.head(x2), heads["soft"].head(x2)], 1), rtol=0, atol=0)
    torch.save(duo.head.state_dict(), folder2 / "adapter.pt")
    (folder2 / "adapter.json").write_text(json.dumps({**cfg, "members": 2, "size": 128}))
    with torch.no_grad():
        torch.testing.assert_close(distill.load_student(folder2)[0].adapter(x2), out3)
    # local defects (the map head's extra samples): labelled, measured and cached apart, after the
    # perturbations; the score head never sees them, so it is the one trained without them, weight for weight
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distill, "DEFECTS_PER_PHOTO", 1)
        more = distill.cached_features(names, photos, teacher, tmp_path, (128,), 2, 0, cache, progress=False,
                                       regions_too=True, families=("defects",))[128]
    assert more.perturbation == withr.perturbation + [distill.DEFECT_OFFSET] * 2 and more.photo == withr.photo + [0, 1]
    np.testing.assert_array_equal(more.data[:4], withr.data)
    assert len(list(cache.glob("labels_*"))) == 2 and all(r.max() > 0 for r in more.region[4:])
    with pytest.MonkeyPatch.context() as mp:  # both families' labels reused, the defects regenerated alike
        mp.setattr(distill, "DEFECTS_PER_PHOTO", 1)
        mp.setattr(teacher_mod.Teacher, "__call__", lambda *a: pytest.fail("labels not reused"))
        mp.setattr(teacher_mod.Teacher, "parts", lambda *a: pytest.fail("labels not reused"))
        twice = distill.cached_features(names, photos, teacher, tmp_path, (128, 64), 2, 0, cache, progress=False,
                                        regions_too=True, families=("defects",))
    np.testing.assert_array_equal(twice[128].data, more.data)
    assert twice[64].perturbation == more.perturbation
    only = distill.perturbations_only(more)
    np.testing.assert_array_equal(only.data, withr.data)
    assert only.perturbation == withr.perturbation and distill.perturbations_only(withr) is withr
    with_defects, with_th = distill.train_student(more, cfg, teacher.config["phi"], epochs=1)
    for a, b in zip(with_defects.head.score.state_dict().values(), both.head.score.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert with_th["gradable_threshold"] == both_th["gradable_threshold"]
    assert not torch.equal(with_defects.head.map[-1].weight, both.head.map[-1].weight)
    # more defects labelled by their FOV alone: the teacher's own crop and coverage, without its networks
    # (checked on the teacher-labelled defects); no teacher maps, so only the region targets learn them
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distill, "DEFECTS_PER_PHOTO", 1)
        by_fov = distill.fov_labels(photos, 2, 0, progress=False, family="defects")
        by_teacher = distill.teacher_labels(photos, teacher, 2, 0, progress=False, family="defects")
    assert by_fov.samples == by_teacher.samples and by_fov.fov == by_teacher.fov
    for a, b in zip(by_fov.coverage, by_teacher.coverage):
        np.testing.assert_array_equal(a, b)
    assert all(np.isnan(x).all() for x in by_fov.score + by_fov.soft)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distill, "DEFECTS_PER_PHOTO", 1)
        mp.setattr(distill, "FOV_DEFECTS_PER_PHOTO", 2)
        mp.setattr(teacher_mod.Teacher, "parts", lambda *a: pytest.fail("the teacher's networks run"))
        most = distill.cached_features(names, photos, teacher, tmp_path, (128,), 2, 0, cache, progress=False,
                                       regions_too=True, families=("defects", "fov-defects"))[128]
    assert most.perturbation[:6] == more.perturbation and most.perturbation[6:] == [2000, 2001] * 2
    np.testing.assert_array_equal(most.data[:6], more.data)
    assert all(np.isnan(x).all() for x in most.score[6:]) and all(r.max() > 0 for r in most.region[6:])
    with pytest.raises(ValueError, match="needs the teacher's labels"):
        distill.train_adapter(most, target="union", **one)
    rooted, _ = distill.train_student(most, {**cfg, "target": "root"}, teacher.config["phi"], epochs=1)
    for a, b in zip(rooted.head.score.state_dict().values(), both.head.score.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert np.isfinite(rooted.history).all()
    assert fs.score[0].shape == (16, 16) and np.all((np.stack(fs.score) >= 0) & (np.stack(fs.score) < 1))
    res = distill.train_adapter(fs, "two-scale", "conv", phi=teacher.config["phi"], epochs=2, batch=2, target="binary")
    prob, frac, score, valid = distill.predict(res, fs, {0, 1})
    assert prob.shape == frac.shape == score.shape == (4, 16, 16) and np.all((prob >= 0) & (prob <= 1))
    res = distill.train_adapter(fs, "two-scale", "linear", epochs=2, batch=2)  # soft target, the default
    th = distill.clean_thresholds(res, fs)
    assert th["clean_photos"] == 2 and 0 < th["patch_threshold"] < 1 and 0 < th["gradable_threshold"] < 1
    # out of fold: each photo scored by an adapter trained without it (two folds: one photo each)
    small = {"feature_kind": "two-scale", "head": "linear", "epochs": 1, "batch": 2}
    trained_on, scored = [], []
    real_train, real_predict = distill.train_adapter, distill.predict
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distill, "train_adapter", lambda fs_, train_photos=None, **kw:
                   trained_on.append(set(train_photos)) or real_train(fs_, train_photos=train_photos, **kw))
        mp.setattr(distill, "predict", lambda res_, fs_, photos=None, samples=None:
                   scored.append({fs_.photo[n] for n in samples}) or real_predict(res_, fs_, photos, samples))
        oof = distill.crossfit_thresholds(fs, small, folds=2)
    assert oof["clean_photos"] == 2 and 0 < oof["patch_threshold"] < 1 and oof["threshold_method"] == "out-of-fold (2 folds)"
    assert len(trained_on) == len(scored) == 2 and all(not (t & s) for t, s in zip(trained_on, scored))
    assert set().union(*scored) == {0, 1}          # every reference photo scored once, never by its own adapter
    with pytest.raises(ValueError, match="no reference photo"):
        distill.crossfit_thresholds(fs, small, reference={7})
    # the shipped rule: patches out of fold, photos the lower (stricter) of in-sample and out of fold
    shipped = distill.decision_thresholds(res, fs, small)
    assert shipped["patch_threshold_point"] == pytest.approx(oof["patch_threshold"])
    assert shipped["patch_confidence"] == distill.CONFIDENCE and "upper 95% bound" in shipped["threshold_method"]
    assert shipped["patch_threshold"] > shipped["patch_threshold_point"]   # two photos: the worse one's quantile
    assert shipped["gradable_threshold"] == min(th["gradable_threshold"], shipped["gradable_threshold_out_of_fold"])
    # one photo: nothing to leave out, so in-sample and said so (no adapter trained for it)
    idx = [n for n, p in enumerate(fs.photo) if p == 0]
    one = distill.FeatureSet(fs.size, fs.data[idx], *([getattr(fs, f)[n] for n in idx]
                                                      for f in ("soft", "score", "valid", "photo", "perturbation")))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distill, "train_adapter", lambda *a, **kw: pytest.fail("no adapter needed for one photo"))
        alone = distill.decision_thresholds(res, one, small)
        with pytest.raises(ValueError, match="at least two photos"):
            distill.crossfit_thresholds(one, small)
    assert alone["threshold_method"] == "in-sample (one photo)" and alone["clean_photos"] == 1
    with pytest.raises(ValueError, match="unknown target"):
        distill.train_adapter(fs, target="regression")
    student = distill.assemble(res)
    with torch.no_grad():
        assert student(torch.zeros(1, 3, 128, 128)).shape == (1, 1, 16, 16)
    # an ensemble: members trained from seeds 0, 1, 2 (the first is the single head of seed 0), the
    # map their mean logit; it survives the adapter.pt / adapter.json round trip
    train = {"feature_kind": "two-scale", "head": "conv", "epochs": 1, "batch": 2}
    alone = [distill.train_adapter(fs, seed=s, **train) for s in range(3)]
    ens = distill.train_adapter(fs, seed=0, members=3, **train)
    assert isinstance(alone[0].head, torch.nn.Sequential)   # one head keeps the single-head layout
    assert len(ens.head.members) == 3 and ens.params == 3 * alone[0].params
    for a, b in zip(ens.head.members[0].state_dict().values(), alone[0].head.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(alone[1].head[1].weight, alone[0].head[1].weight)
    x = torch.from_numpy(fs.features("two-scale")[:2].astype(np.float32))
    with torch.no_grad():   # the mean logit of the three heads trained on their own
        torch.testing.assert_close(ens.head(x), torch.stack([a.head(x) for a in alone]).mean(0))
    folder = tmp_path / "student"
    folder.mkdir()
    torch.save(ens.head.state_dict(), folder / "adapter.pt")
    (folder / "adapter.json").write_text(json.dumps({"head": "conv", "features": "two-scale", "size": 128, "members": 3}))
    loaded, _ = distill.load_student(folder)
    with torch.no_grad():
        torch.testing.assert_close(loaded.adapter(x), ens.head(x))
    with pytest.raises(ValueError, match="at least one member"):
        distill.train_adapter(fs, members=0, **train)
    # a candidate head under study (benchmarks/adapter_ground_truth.py): a callable channels → module,
    # standardised from the training features and its output bias set like a named kind's
    built = []
    narrow = distill.train_adapter(fs, "two-scale", lambda c: built.append(c) or make_head("conv", c, hidden=4),
                                   epochs=1, batch=2, target="binary")
    assert built == [fs.features("two-scale").shape[1]] and narrow.head[1].out_channels == 4
    assert not torch.equal(narrow.head[0].std, torch.ones_like(narrow.head[0].std))


def test_training_pool_is_the_teacher_set_plus_every_unlabelled_photo_and_nothing_held_out(tmp_path):
    from efiqa.train.data import HELD_OUT, REAL_DEGRADED, TEACHER_TRAIN, training_pool

    assert training_pool(tmp_path) == list(TEACHER_TRAIN)  # no unlabelled/ folder: the teacher set alone
    for rel in ("unlabelled/B/2.JPG", "unlabelled/A/1.png", "unlabelled/README.md", "DRIMDB-dev/Bad/x.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    pool = training_pool(tmp_path)
    assert pool == list(TEACHER_TRAIN) + ["unlabelled/A/1.png", "unlabelled/B/2.JPG"]
    assert not set(pool) & set(HELD_OUT + REAL_DEGRADED)


def test_visible_map_fades_a_washed_out_region_only_with_v35_references():
    """teacher.json without ``vessel_contrast`` keeps v3.4's depth-only map; with it, vessels in a
    region much brighter than the rest of the photo count as (mostly) not visible, elsewhere they stay."""
    photo, label = _synthetic_photo_and_label()
    prob = label.astype(np.float32)
    kernels = teacher_mod.DEPTH_KERNELS
    depth = [float(np.median(teacher_mod.vessel_depth(photo.rgb, k)[label])) for k in kernels]
    contrast = [float(np.median(teacher_mod.vessel_contrast(photo.rgb, k)[label])) for k in kernels]
    old = teacher_mod.visible_at_scales(prob, photo.rgb, depth)
    for k, ref, got in zip(kernels, depth, old):
        want = teacher_mod.to_map(teacher_mod.visible_vessels(prob, teacher_mod.vessel_depth(photo.rgb, k), ref))
        np.testing.assert_array_equal(got, want)
    s = photo.rgb.shape[0]
    bright = photo.rgb.astype(np.float32)
    bright[: s // 2, : s // 2] = np.clip(bright[: s // 2, : s // 2] * 2.6, 0, 255)
    bright = bright.astype(np.uint8)
    fov = teacher_mod.map_fov(photo)
    v34 = teacher_mod.visible_at_scales(prob, bright, depth)
    v35 = teacher_mod.visible_at_scales(prob, bright, depth, contrast, fov)
    m = teacher_mod.MAP_SIZE
    region, rest = (slice(m // 16, m // 2 - m // 16),) * 2, (slice(m // 2 + m // 16, m - m // 16),) * 2
    for a, b in zip(v34, v35):
        assert b[region].sum() < 0.3 * a[region].sum()
        assert b[rest].sum() > 0.9 * a[rest].sum()


def test_upper_quantile_keeps_new_photos_within_the_budget_where_the_point_estimate_does_not():
    """Photos differ (a per-photo offset), so a threshold at the pooled point quantile of 26 photos
    over-flags most new sets of photos; the photo-bootstrap bound far fewer (with 26 photos the
    bootstrap is optimistic: about 1 in 6 here, not the nominal 1 in 20)."""
    from efiqa.train import distill

    rng = np.random.default_rng(0)

    def photos(n):
        return [rng.normal(rng.normal(0, 1), 1, 200) for _ in range(n)]

    budget, over_point, over_bound = 0.05, 0, 0
    trials = 40
    for t in range(trials):
        ref, new = photos(26), np.concatenate(photos(400))
        point = np.quantile(np.concatenate(ref), 1 - budget)
        bound = distill.upper_quantile(ref, 1 - budget, 0.95, draws=300, seed=t)
        assert bound > point
        over_point += (new >= point).mean() > budget
        over_bound += (new >= bound).mean() > budget
    assert over_point / trials > 0.5 and over_bound <= over_point / 3
    with pytest.raises(ValueError, match="at least two photos"):   # a photo with no cells does not count
        distill.upper_quantile([np.ones(5), np.array([])], 0.95, 0.95)
