"""Real engine builds with TensorRT for RTX (ahead of time: no GPU needed to build). These parse and
build our graphs with NVIDIA's library itself — no test double — and read what the built engine
computes in from the builder's detailed layer report. Running an engine needs an RTX GPU: that
part stays in test_tensorrt_backend.py, against the double."""
import hashlib
import json
import sys

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed (pip install 'efiqa[rtx]')")
onnx = pytest.importorskip("onnx")

from efiqa.build.trt_build import build_engine, engine_layers, network_layer_types, parse_network  # noqa: E402
from efiqa.bundle import load_bundle  # noqa: E402
from efiqa.cli import main  # noqa: E402
from efiqa.engine import EngineManifest  # noqa: E402
from efiqa.errors import EngineMismatchError, ModelError  # noqa: E402

from .trt_double import FakeCuda  # noqa: E402


def tiny_onnx(size: int = 32) -> bytes:
    """image (N, 3, S, S) → 3×3 conv → ReLU → 1×1 conv → logits (N, 1, S, S)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.1, (1, 8, 1, 1)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2"], ["logits"], name="conv_b")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                            ["N", 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1, size, size])],
                              [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _build(onnx_bytes, out, precision="fp32", shape=(3, 32, 32), **kw):
    return build_engine(onnx_bytes, out, precision=precision, bundle_sha256="b" * 64,
                        onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(), input_name="image", input_shape=shape,
                        target="tensorrt-rtx", progress=False, **kw)


def test_tiny_graph_builds_with_manifest(tmp_path):
    built = _build(tiny_onnx(), tmp_path / "tiny.engine", compute_capabilities="86,120", max_batch=4)
    data = (tmp_path / "tiny.engine").read_bytes()
    assert len(data) == built.size_bytes > 1000
    m = EngineManifest.load(tmp_path / "tiny.engine")
    assert (m.target, m.precision, m.compute_capabilities, m.max_batch, m.gpu_name) == (
        "tensorrt-rtx", "fp32", ["8.6", "12.0"], 4, "")
    assert m.tensorrt_version == trt.__version__ and m.build_flags["strongly_typed"]
    assert m.onnx_sha256 == hashlib.sha256(tiny_onnx()).hexdigest()
    convs = [layer for layer in built.layers if "conv_a" in layer.onnx_nodes or "conv_b" in layer.onnx_nodes]
    assert convs and all(layer.input_dtypes[0] == "Float" for layer in convs)
    assert m.layer_precisions["convolution"] == {"Float": len([x for x in built.layers if x.kind == "correlation"])}


def test_broken_onnx_is_a_model_error_naming_the_file(tmp_path):
    data = bytearray(tiny_onnx())
    with pytest.raises(ModelError, match="cannot parse") as exc:
        _build(bytes(data[: len(data) // 2]), tmp_path / "x.engine", source="models/broken.onnx")
    assert exc.value.source == "models/broken.onnx" and not (tmp_path / "x.engine").exists()


def test_unknown_compute_capability_is_refused(tmp_path, capsys):
    assert main(["build", "--target", "tensorrt-rtx", "--compute-capability", "90", "--precision", "fp32",
                 "--out", str(tmp_path / "e")]) == 1
    assert "unknown compute capability 90" in capsys.readouterr().err and not (tmp_path / "e").exists()


@pytest.fixture(scope="module")
def shipped_variants():
    """The shipped student's FP32, FP16 and INT8 (Q/DQ) ONNX, as efiqa verify / build make them."""
    from efiqa.build.variants import make_variant

    bundle = load_bundle()
    s = bundle.manifest.input_size
    calib = np.random.default_rng(0).uniform(0, 255, (2, 3, s, s)).astype(np.float32)
    fp16, _ = make_variant(bundle, "fp16")
    int8, info = make_variant(bundle, "int8", calib)
    return bundle, {"fp32": bundle.onnx_bytes, "fp16": fp16, "int8": int8}, info


@pytest.mark.slow
def test_precision_lives_in_the_parsed_network(shipped_variants):
    _, graphs, _ = shipped_variants
    types = {p: network_layer_types(parse_network(trt, g)[1]) for p, g in graphs.items()}
    assert "QUANTIZE" not in types["fp32"] and "CAST" not in types["fp32"]
    assert types["fp16"].get("CAST", 0) >= 2  # float32 I/O around float16 inside
    assert types["int8"].get("QUANTIZE", 0) >= 10 and types["int8"].get("DEQUANTIZE", 0) >= 10


@pytest.mark.slow
def test_shipped_student_builds_in_every_precision(shipped_variants, tmp_path):
    """The built engines really compute in the precision asked for: the builder's report of each
    fused convolution's input datatype."""
    bundle, graphs, info = shipped_variants
    s = bundle.manifest.input_size
    convs = {}
    for precision, g in graphs.items():
        built = _build(g, tmp_path / f"{precision}.engine", precision, shape=(3, s, s))
        assert built.manifest.layer_precisions == EngineManifest.load(built.path).layer_precisions
        convs[precision] = {n: layer.input_dtypes[0] for layer in built.layers if layer.kind == "correlation"
                            for n in layer.onnx_nodes if n.startswith("node_Conv") or n.startswith("node_conv")}
    assert set(convs["fp32"].values()) == {"Float"} and len(convs["fp32"]) >= 30
    assert set(convs["fp16"].values()) == {"Half"}
    kept_float = set(info["float_nodes"])
    int8 = {n: d for n, d in convs["int8"].items()}
    quantised = [n for n in int8 if n not in kept_float]
    assert quantised and all(int8[n] == "Int8" for n in quantised), int8
    assert all(int8[n] == "Float" for n in kept_float if n in int8)


def test_engine_for_another_gpu_is_refused_at_runtime(tmp_path, monkeypatch):
    """A real TensorRT-RTX engine on a GPU it was not built for (an H200 is SM 9.0: no RTX target)."""
    from efiqa.backends import create_backend

    bundle = load_bundle()
    s = bundle.manifest.input_size
    engine = tmp_path / "m.engine"
    build_engine(bundle.onnx_bytes, engine, precision="fp32", bundle_sha256=bundle.root_sha256,
                 onnx_sha256=bundle.manifest.onnx_sha256, input_name="image", input_shape=(3, s, s),
                 target="tensorrt-rtx", compute_capabilities="86,89", progress=False)
    monkeypatch.setattr("efiqa.backends.tensorrt.load_cuda", lambda: FakeCuda(("NVIDIA H200", "9.0")))
    with pytest.raises(EngineMismatchError, match="compute capabilities 8.6, 8.9, this GPU is 9.0") as exc:
        create_backend("tensorrt", bundle, engine=str(engine))
    assert f"efiqa build --target tensorrt-rtx --precision fp32 --compute-capability 90 --out {engine}" in str(exc.value)


def test_cli_builds_an_rtx_engine(tmp_path, capsys):
    out = tmp_path / "student.engine"
    assert main(["build", "--target", "tensorrt-rtx", "--precision", "fp32", "--compute-capability", "89",
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "tensorrt-rtx" in line and "8.9" in line and "convolutions" in line
    m = json.loads(EngineManifest.path_for(out).read_text())
    assert m["bundle_sha256"] == load_bundle().root_sha256 and m["compute_capability"] == "8.9"


@pytest.mark.parametrize("blocked", [("tensorrt", "tensorrt_rtx"), ("onnx",)])
def test_build_without_its_libraries_exits_3_in_one_line(monkeypatch, tmp_path, capsys, blocked):
    for mod in blocked:
        monkeypatch.setitem(sys.modules, mod, None)
    code = main(["build", "--precision", "fp16", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and not (tmp_path / "e").exists()
    assert ("efiqa[rtx]" in err[0]) if "tensorrt" in blocked else ("efiqa[build]" in err[0])
