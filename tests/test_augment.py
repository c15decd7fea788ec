import numpy as np
import pytest

pytest.importorskip("torch")

from efiqa.train.augment import augment  # noqa: E402

from .conftest import synthetic_fundus  # noqa: E402


def test_augment_is_seeded_and_keeps_shape():
    img = synthetic_fundus()
    a = augment(img, np.random.default_rng(3))
    b = augment(img, np.random.default_rng(3))
    assert np.array_equal(a, b) and a.shape == img.shape and a.dtype == np.uint8


def test_strength_zero_is_geometric_only():
    img = synthetic_fundus()
    out = augment(img, np.random.default_rng(1), strength=0.0)
    # no photometric change: the brightest FOV pixels stay about as bright
    assert abs(float(np.percentile(out, 99)) - float(np.percentile(img, 99))) < 8


def test_training_never_imports_the_evaluation_generator():
    """Distillation and the teacher must never see the evaluation degradations (or their masks)."""
    import ast
    import importlib
    import inspect

    for name in ("augment", "defects", "distill", "regions", "teacher", "vessels", "data", "baseline"):
        tree = ast.parse(inspect.getsource(importlib.import_module(f"efiqa.train.{name}")))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not any("synth" in m or "soft_regions" in m for m in imported), (name, imported)


def test_local_artefacts_change_part_of_the_frame_only():
    """Noise, blocks and shake over a random part of the photo: some of it keeps the original pixels."""
    from efiqa.train.augment import local_artefacts

    img = synthetic_fundus()
    changed = []
    for seed in range(12):
        out = local_artefacts(img, np.random.default_rng(seed), 1.0)
        diff = np.abs(out.astype(int) - img.astype(int)).max(axis=2) > 2
        changed.append(diff.mean())
    changed = np.array(changed)
    assert changed.max() > 0.05                 # some draws do change the photo ...
    assert (changed[changed > 0] < 0.95).all()  # ... never all of it
    assert np.array_equal(local_artefacts(img, np.random.default_rng(0), 0.0), img)


def test_cache_keys_follow_the_code_that_makes_labels_and_features(tmp_path, monkeypatch):
    """A change to the perturbations or the teacher's code must not reuse cached (stale) labels; a
    change to the student's code must not reuse features, but keeps the (slow) labels."""
    import inspect

    from efiqa.train import augment as augment_mod
    from efiqa.train import distill
    from efiqa.train import teacher as teacher_mod
    from efiqa.train.nets import student as student_mod

    (tmp_path / "teacher.json").write_text("{}")
    key = lambda: distill.label_cache_key(["a.jpg"], tmp_path, 24, 0)  # noqa: E731
    base = key()
    feat = distill.feature_cache_key(base)
    assert key() == base and distill.feature_cache_key(base) == feat
    assert distill.label_cache_key(["a.jpg"], tmp_path, 25, 0) != base
    assert distill.feature_cache_key(base, "vit.pth") != feat
    (tmp_path / "teacher.json").write_text('{"tau": 0.3}')
    assert key() != base
    (tmp_path / "teacher.json").write_text("{}")
    real = inspect.getsource
    for module in (augment_mod, teacher_mod, distill.perturbations):
        monkeypatch.setattr(inspect, "getsource", lambda m, module=module: real(m) + ("#" if m is module else ""))
        assert key() != base, module.__name__
        monkeypatch.setattr(inspect, "getsource", real)
    monkeypatch.setattr(distill, "ENHANCED", distill.ENHANCED + 0.1)
    assert key() != base
    monkeypatch.undo()
    monkeypatch.setattr(inspect, "getsource", lambda m: real(m) + ("#" if m is student_mod else ""))
    assert key() == base and distill.feature_cache_key(base) != feat


def test_enhancement_raises_local_contrast_and_keeps_the_photo():
    """CLAHE or unsharp mask: the same frame, more local contrast (vessels deeper), 8-bit out."""
    import cv2

    from efiqa.train.augment import enhancement

    img = synthetic_fundus()
    detail = lambda a: float(np.abs(cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.CV_32F)).mean())  # noqa: E731
    for seed in range(8):
        out = enhancement(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert detail(out) > 1.05 * detail(img), seed
        assert abs(float(out.mean()) - float(img.mean())) < 25, seed


def test_enhanced_share_has_its_own_stream(monkeypatch):
    """Enhancing a share of the perturbations leaves every other perturbation the image it was
    before enhancement existed (one stream for ``augment``), and the enhanced ones are exactly those
    the enhancement's own stream picks."""
    from efiqa.train import distill

    photos = [synthetic_fundus(), synthetic_fundus()[:, ::-1].copy()]
    rng = np.random.default_rng(0)
    before = [ph if k == 0 else augment(ph, rng) for ph in photos for k in range(6)]
    picked = np.random.default_rng([0, 1])
    chosen = []
    for n in range(len(before)):
        if n % 6 and picked.random() < distill.ENHANCED:
            chosen.append(n)
            enhancement_draws(picked)
    now = [img for _, _, img in distill.perturbations(photos, 6, 0)]
    assert [n for n, (a, b) in enumerate(zip(now, before)) if not np.array_equal(a, b)] == chosen
    assert chosen  # the seed enhances some
    monkeypatch.setattr(distill, "ENHANCED", 0.0)
    plain = [img for _, _, img in distill.perturbations(photos, 6, 0)]
    assert all(np.array_equal(a, b) for a, b in zip(plain, before))


def enhancement_draws(rng: np.random.Generator) -> None:
    """Consume the draws of one ``enhancement`` (they do not depend on the image)."""
    from efiqa.train.augment import enhancement

    enhancement(np.zeros((8, 8, 3), np.uint8), rng)
