"""TensorRT backend orchestration against test doubles (see tests/trt_double.py), plus the real
thing where TensorRT and a GPU exist."""
import sys

import numpy as np
import pytest

from efiqa import QualityAssessor
from efiqa.backends import create_backend
from efiqa.bundle import load_bundle
from efiqa.engine import EngineManifest
from efiqa.errors import BackendUnavailableError, EngineMismatchError, ModelError

from .conftest import synthetic_fundus
from .trt_double import FakeCuda, fake_tensorrt


@pytest.fixture()
def doubles(monkeypatch):
    cuda = FakeCuda()
    trt = fake_tensorrt(cuda)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr("efiqa.backends.tensorrt.load_cuda", lambda: cuda)
    return cuda, trt


@pytest.fixture()
def engine(tmp_path):
    bundle = load_bundle()
    path = tmp_path / "model.engine"
    path.write_bytes(bundle.onnx_bytes)  # the double's "engine" is the ONNX itself
    EngineManifest(bundle.sha256, "fp16", "10.3.0", "NVIDIA Jetson AGX Orin", "8.7", bundle.sha256,
                   max_batch=4).save(path)
    return bundle, path


def test_matches_onnxruntime_and_frees_everything(doubles, engine):
    cuda, _ = doubles
    bundle, path = engine
    x = np.stack([QualityAssessor(bundle).preprocessor(synthetic_fundus(seed=s)).tensor for s in range(6)])
    ref = create_backend("onnxruntime", bundle).infer(x)
    with create_backend("auto", bundle, engine=str(path)) as trt_backend:
        out = trt_backend.infer(x)  # 6 frames through a max-batch-4 engine: two chunks
        assert trt_backend.name == "tensorrt"
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert cuda.calls.count("execute_async_v3") == 2 and cuda.calls.count("h2d") == 2
    assert cuda.calls.count("malloc") == cuda.calls.count("free") == 2
    assert cuda.calls.count("malloc_host") == cuda.calls.count("free_host") == 2


def test_cuda_graph_captured_once_per_batch_size(doubles, engine):
    cuda, _ = doubles
    bundle, path = engine
    from efiqa.backends.tensorrt import TensorRTBackend

    s = bundle.manifest.input_size
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, s, s)).astype(np.float32)
    with TensorRTBackend(bundle, path, cuda_graph=True) as be:
        outs = [be.infer(x) for _ in range(3)]
    assert cuda.calls.count("begin_capture") == 1 and cuda.calls.count("launch_graph") == 3
    np.testing.assert_allclose(outs[0], outs[2])
    np.testing.assert_allclose(outs[0], create_backend("onnxruntime", bundle).infer(x), atol=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("compute_capability", "9.0", "compute capability 9.0"),
    ("tensorrt_version", "11.1.0", "TensorRT 11.1.0"),
    ("bundle_sha256", "0" * 64, "another model bundle"),
])
def test_mismatched_engine_is_refused_with_rebuild_command(doubles, engine, field, value, message):
    bundle, path = engine
    m = EngineManifest.load(path)
    setattr(m, field, value)
    m.save(path)
    with pytest.raises(EngineMismatchError, match=message) as exc:
        create_backend("tensorrt", bundle, engine=str(path))
    assert f"efiqa build --target tensorrt --precision fp16 --out {path}" in str(exc.value)


def test_engine_output_channels_must_match_the_manifest(doubles, engine):
    """A manifest that declares other output channels than the engine computes (a map-only reading of
    a two-head engine, or the reverse) is refused when the engine is opened."""
    import dataclasses

    from efiqa.bundle import Bundle

    bundle, path = engine
    flipped = ["map"] if bundle.manifest.outputs == ["map", "score"] else ["map", "score"]
    other = Bundle(dataclasses.replace(bundle.manifest, outputs=flipped), bundle.onnx_bytes, bundle.path)
    with pytest.raises(ModelError, match="engine output shape"):
        create_backend("tensorrt", other, engine=str(path))


def test_patch_version_difference_is_accepted(doubles, engine):
    bundle, path = engine
    m = EngineManifest.load(path)
    m.tensorrt_version = "10.3.7"
    m.save(path)
    create_backend("tensorrt", bundle, engine=str(path)).close()


def test_missing_manifest_and_corrupt_engine(doubles, engine):
    bundle, path = engine
    EngineManifest.path_for(path).unlink()
    with pytest.raises(ModelError, match="manifest"):
        create_backend("tensorrt", bundle, engine=str(path))
    EngineManifest(bundle.sha256, "fp16", "10.3.0", "NVIDIA Jetson AGX Orin", "8.7", bundle.sha256).save(path)
    path.write_bytes(b"not an engine")
    with pytest.raises(ModelError, match="deserialize"):
        create_backend("tensorrt", bundle, engine=str(path))


def test_without_tensorrt_the_error_is_clear(monkeypatch, engine):
    bundle, path = engine
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as if not installed
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        create_backend("tensorrt", bundle, engine=str(path))


def test_tensorrt_without_engine_is_clear():
    with pytest.raises(BackendUnavailableError, match="needs an engine"):
        create_backend("tensorrt", load_bundle())


def test_rtx_engine_runs_with_a_runtime_cache_kept_beside_it(monkeypatch, engine):
    """TensorRT for RTX compiles kernels on the first run; the second start loads them from
    <engine>.cache. The double records the cache calls (no GPU here)."""
    from efiqa.backends.tensorrt import runtime_cache_path

    bundle, path = engine
    cuda = FakeCuda(("NVIDIA GeForce RTX 4090", "8.9"))
    rtx = fake_tensorrt(cuda, version="1.7.1.116", rtx=True)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", rtx)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the runtime imports the engine's own library
    monkeypatch.setattr("efiqa.backends.tensorrt.load_cuda", lambda: cuda)
    EngineManifest(bundle.sha256, "fp16", "1.7.1.116", "", "8.6,8.9,12.0", bundle.sha256, max_batch=4,
                   target="tensorrt-rtx").save(path)
    s = bundle.manifest.input_size
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, s, s)).astype(np.float32)
    with create_backend("tensorrt", bundle, engine=str(path)) as be:
        first = be.infer(x)
    assert rtx.cache_log == ["create", "set", "serialize"] and runtime_cache_path(path).read_bytes() == b"kernels"
    rtx.cache_log.clear()
    with create_backend("tensorrt", bundle, engine=str(path)) as be:
        np.testing.assert_array_equal(be.infer(x), first)
    assert rtx.cache_log == ["create", "deserialize:kernels", "set", "serialize"]


def test_rtx_engine_on_full_tensorrt_machine_is_refused(doubles, engine, monkeypatch):
    bundle, path = engine
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    EngineManifest(bundle.sha256, "fp16", "1.7.1.116", "", "8.7", bundle.sha256, target="tensorrt-rtx").save(path)
    with pytest.raises(BackendUnavailableError, match="TensorRT for RTX is not installed"):
        create_backend("tensorrt", bundle, engine=str(path))


def test_construction_is_cheap_and_activation_acquires(doubles, engine):
    from efiqa.backends.tensorrt import TensorRTBackend

    cuda, _ = doubles
    bundle, path = engine
    be = TensorRTBackend(bundle, path)
    assert not be.is_active and cuda.calls == []  # nothing on the device yet
    with pytest.raises(RuntimeError, match="not active"):
        be.infer(np.zeros((1, *be.input_shape), np.float32))
    with be:
        assert be.is_active and cuda.calls.count("malloc") == 2
    assert not be.is_active and cuda.calls.count("free") == 2 and "destroy_stream" in cuda.calls


def test_failed_activation_releases_what_it_acquired(doubles, engine):
    cuda, _ = doubles
    bundle, path = engine
    real = cuda.malloc_host
    calls = []

    def fail_second(nbytes):
        calls.append(nbytes)
        if len(calls) == 2:
            raise BackendUnavailableError("CUDA cudaMallocHost failed: cudaErrorMemoryAllocation")
        return real(nbytes)

    cuda.malloc_host = fail_second
    with pytest.raises(BackendUnavailableError, match="cudaMallocHost"):
        create_backend("tensorrt", bundle, engine=str(path))
    assert cuda.calls.count("malloc") == cuda.calls.count("free") == 2
    assert cuda.calls.count("malloc_host") == cuda.calls.count("free_host") == 1 and not cuda.host


def test_backend_never_closed_warns_and_releases(doubles, engine):
    import gc

    cuda, _ = doubles
    bundle, path = engine
    be = create_backend("tensorrt", bundle, engine=str(path))
    with pytest.warns(ResourceWarning, match="never deactivated"):
        del be
        gc.collect()
    assert cuda.calls.count("malloc") == cuda.calls.count("free") == 2


@pytest.mark.parametrize("failure, graph", [("set_input_shape", False), ("execute_async_v3", False),
                                            ("execute_async_v3", True)])
def test_refused_shape_or_failed_execution_is_a_model_error(doubles, engine, failure, graph):
    from efiqa.backends.tensorrt import TensorRTBackend

    cuda, _ = doubles
    bundle, path = engine
    with TensorRTBackend(bundle, path, cuda_graph=graph) as be:
        setattr(be.context, failure, lambda *a: False)
        with pytest.raises(ModelError, match="refused input shape" if failure == "set_input_shape" else "execution failed"):
            be.infer(np.zeros((1, *be.input_shape), np.float32))
    if graph:
        assert cuda.calls.count("begin_capture") == cuda.calls.count("end_capture") == 1  # capture always ended
