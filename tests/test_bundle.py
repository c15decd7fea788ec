import json
import shutil
import zipfile

import pytest

from efiqa import QualityAssessor
from efiqa.bundle import MANIFEST, MODEL, default_bundle_path, load_bundle
from efiqa.errors import ModelError


@pytest.fixture()
def bundle_copy(tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), dst)
    return dst


def _edit_manifest(path, **changes):
    data = json.loads((path / MANIFEST).read_text())
    data.update(changes)
    (path / MANIFEST).write_text(json.dumps(data))


def test_default_bundle_loads_and_is_consistent():
    b = load_bundle()
    m = b.manifest
    assert m.format_version == 2 and m.input_size == 384 and m.grid == 16 and m.outputs == ["map", "score"]
    assert len(m.onnx_sha256) == 64


def test_shipped_bundles_load_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_bundle("default").manifest == load_bundle().manifest
    with pytest.raises(ModelError, match="no such model bundle"):
        load_bundle("fastest")


def test_zip_bundle(tmp_path, bundle_copy):
    z = tmp_path / "model.efiqa"
    with zipfile.ZipFile(z, "w") as f:
        f.write(bundle_copy / MANIFEST, MANIFEST)
        f.write(bundle_copy / MODEL, MODEL)
    assert load_bundle(z).manifest == load_bundle(bundle_copy).manifest


@pytest.mark.parametrize("mutate, message", [
    (lambda p: (p / MODEL).write_bytes((p / MODEL).read_bytes()[:-10] + b"0123456789"), "does not match its manifest"),
    (lambda p: (p / MANIFEST).unlink(), "manifest.json missing"),
    (lambda p: (p / MODEL).unlink(), "model.onnx missing"),
    (lambda p: (p / MANIFEST).write_text("{not json"), "cannot be read"),
    (lambda p: _edit_manifest(p, format_version=99), "format_version 99 is not supported"),
    (lambda p: _edit_manifest(p, grid="sixteen"), "positive integers"),
    (lambda p: _edit_manifest(p, std=[1, 0, 1]), "std positive"),
])
def test_broken_bundles_raise_model_error(bundle_copy, mutate, message):
    mutate(bundle_copy)
    with pytest.raises(ModelError, match=message) as exc:
        load_bundle(bundle_copy)
    assert str(bundle_copy) in str(exc.value)


def test_manifest_that_lies_about_shapes_is_refused(bundle_copy):
    _edit_manifest(bundle_copy, input_size=load_bundle(bundle_copy).manifest.input_size + 128)
    with pytest.raises(ModelError, match="input shape"):
        QualityAssessor(bundle_copy)


def test_manifest_that_lies_about_output_channels_is_refused(bundle_copy):
    """The shipped graph outputs a map and a score map: a manifest naming the map alone would have the
    runtime score photos on the map's mean, so the model is refused when opened."""
    _edit_manifest(bundle_copy, outputs=["map"])
    with pytest.raises(ModelError, match="output shape"):
        QualityAssessor(bundle_copy)
    _edit_manifest(bundle_copy, outputs=["score", "map"])
    with pytest.raises(ModelError, match="unknown outputs"):
        load_bundle(bundle_copy)


def test_manifest_that_lies_about_io_names_is_refused(bundle_copy):
    _edit_manifest(bundle_copy, input_name="pixels")
    with pytest.raises(ModelError, match="does not match the manifest"):
        QualityAssessor(bundle_copy)


def test_missing_bundle(tmp_path):
    with pytest.raises(ModelError, match="no such model bundle"):
        load_bundle(tmp_path / "nope")
