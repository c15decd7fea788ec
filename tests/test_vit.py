"""The ViT loading path, mechanics only: random weights saved in the layouts users will bring."""
import pytest

torch = pytest.importorskip("torch")

from efiqa.train.nets.vit import ViT, from_checkpoint  # noqa: E402


@pytest.mark.parametrize("registers, layerscale, patch, size", [(0, True, 14, 224), (4, True, 14, 224),
                                                                 (0, False, 16, 256)])
def test_checkpoint_round_trip_gives_identical_tokens(tmp_path, registers, layerscale, patch, size):
    torch.manual_seed(0)
    vit = ViT(192, 3, 3, patch, registers, layerscale, pos_grid=size // patch).eval()
    for p in vit.parameters():
        torch.nn.init.normal_(p, std=0.02)
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {f"module.{k}": v for k, v in vit.state_dict().items()}}, path)  # wrapped + prefixed
    loaded = from_checkpoint(path)
    assert loaded.registers == registers and loaded.blocks[0].layerscale == layerscale and loaded.patch == patch
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        out = loaded(x)
        assert torch.allclose(out, vit(x), atol=1e-6)
    assert out.shape == (2, 192, size // patch, size // patch)  # a 16×16 grid: the runtime's


def test_position_embeddings_are_interpolated(tmp_path):
    vit = ViT(96, 2, 3, 16, pos_grid=14).eval()
    with torch.no_grad():
        assert vit(torch.rand(1, 3, 256, 256)).shape == (1, 96, 16, 16)


def test_safetensors_checkpoint(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    vit = ViT(96, 2, 3, 14, pos_grid=16).eval()
    safetensors.save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert from_checkpoint(tmp_path / "w.safetensors").embed_dim == 96


def test_wrong_checkpoint_is_refused_clearly(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="not a ViT checkpoint"):
        from_checkpoint(tmp_path / "x.pth")
    vit = ViT(96, 2, 3, 14, pos_grid=16)
    sd = vit.state_dict()
    del sd["blocks.1.attn.qkv.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="lacks 1 backbone tensors"):
        from_checkpoint(tmp_path / "partial.pth")


@pytest.mark.slow
def test_train_student_and_export_with_a_user_vit(tmp_path):
    """One command each: distil onto a (random, tiny) ViT checkpoint, export, run in the runtime."""
    import cv2

    from efiqa import QualityAssessor
    from efiqa.bundle import load_bundle
    from efiqa.cli import main

    from .conftest import synthetic_fundus

    teacher = __import__("pathlib").Path("models/teacher")
    if not (teacher / "inpainter.pt").exists():
        pytest.skip("trained teacher weights not present")
    vit = ViT(96, 2, 3, 16, registers=2, pos_grid=14)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    photos = tmp_path / "photos"
    photos.mkdir()
    for s in range(2):
        cv2.imwrite(str(photos / f"p{s}.png"), synthetic_fundus(400, 400, seed=s))
    assert main(["train", "student", "--images", str(photos), "--teacher", str(teacher), "--backbone",
                 str(tmp_path / "vit.pth"), "--augmentations", "2", "--epochs", "1", "--out", str(tmp_path / "st"),
                 "--cache", str(tmp_path / "cache")]) == 0
    assert main(["export", "--adapter", str(tmp_path / "st"), "--out", str(tmp_path / "bundle")]) == 0
    m = load_bundle(tmp_path / "bundle").manifest
    assert (m.input_size, m.grid, m.name) == (256, 16, "efiqa-vit-student")
    res = QualityAssessor(tmp_path / "bundle").assess(synthetic_fundus(seed=3))
    assert res.map.shape == (16, 16)


def test_train_the_lite0_student_at_another_size(tmp_path, monkeypatch):
    """`--size 512` distils a 512-px student with the same 16×16 map; a second size reuses the
    teacher's cached labels and adds its own features."""
    import pickle

    from efiqa.train import distill

    monkeypatch.setattr(distill, "DEFECTS_PER_PHOTO", 1)  # the shipped configuration, one local defect per photo
    monkeypatch.setattr(distill, "FOV_DEFECTS_PER_PHOTO", 1)  # and one labelled by its FOV alone

    import cv2

    from efiqa.bundle import load_bundle
    from efiqa.cli import main

    from .conftest import synthetic_fundus

    teacher = __import__("pathlib").Path("models/teacher")
    if not (teacher / "inpainter.pt").exists():
        pytest.skip("trained teacher weights not present")
    photos = tmp_path / "photos"
    photos.mkdir()
    for s in range(2):
        cv2.imwrite(str(photos / f"p{s}.png"), synthetic_fundus(400, 400, seed=s))
    common = ["--images", str(photos), "--teacher", str(teacher), "--augmentations", "2", "--epochs", "1",
              "--cache", str(tmp_path / "cache")]
    assert main(["train", "student", "--size", "512", "--out", str(tmp_path / "st"), *common]) == 0
    assert main(["train", "student", "--out", str(tmp_path / "st384"), *common]) == 0
    # one labelling pass for both sizes, per family of samples (the perturbations, the local defects
    # the teacher labelled, those labelled by their FOV)
    features = sorted((tmp_path / "cache").glob("features_*.pkl"))
    assert len(features) == 3 and all(sorted(pickle.loads(f.read_bytes())) == [384, 512] for f in features)
    assert len(list((tmp_path / "cache").glob("labels_*.pkl"))) == 3
    assert main(["export", "--adapter", str(tmp_path / "st"), "--out", str(tmp_path / "bundle")]) == 0
    m = load_bundle(tmp_path / "bundle").manifest
    assert (m.input_size, m.grid, m.name) == (512, 16, "efiqa-lite0-student")
