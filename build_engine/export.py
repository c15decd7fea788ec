"""Student (torch) → ONNX → bundle. Checked against torch before anything is written."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from efiqa.bundle import Manifest, write_bundle

OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def export_onnx(model: torch.nn.Module, input_size: int, *, dynamic_batch: bool = True) -> bytes:
    """Export with the dynamo exporter (opset 18); batch dynamic by default, H×W static."""
    model = model.eval()
    example = torch.rand(2, 3, input_size, input_size) * 255  # batch 1 would be specialised by torch.export
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=OPSET,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=dynamic_shapes, verbose=False, optimize=True)
    buf = io.BytesIO()
    program.save(buf)
    return buf.getvalue()


def check_against_torch(model: torch.nn.Module, onnx_bytes: bytes, input_size: int, *, batch: int = 2,
                        tolerance: float = 1e-4, seed: int = 0) -> float:
    """Max |Δlogit| between torch and ONNX Runtime on random frames; raises if over ``tolerance``."""
    from efiqa.backends.onnxruntime import make_session

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, input_size, input_size, generator=g) * 255
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    sess = make_session(onnx_bytes, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    err = float(np.abs(got - ref).max())
    if err > tolerance:
        raise RuntimeError(f"ONNX export differs from torch by {err:.2e} (> {tolerance:.0e})")
    return err


def export_bundle(model: torch.nn.Module, out_dir: str | Path, *, name: str, backbone: str, input_size: int,
                  mean: tuple[float, ...], std: tuple[float, ...], provenance: dict, card: str | None = None,
                  gradable_threshold: float = 0.5, patch_threshold: float = 0.5) -> tuple[Path, float]:
    """Export ``model`` and write a bundle folder; returns (path, max |Δ| vs torch)."""
    onnx_bytes = export_onnx(model, input_size)
    err = check_against_torch(model, onnx_bytes, input_size)
    with torch.no_grad():
        channels, grid = model.eval()(torch.zeros(1, 3, input_size, input_size)).shape[1::2]
    outputs = {1: ["map"], 2: ["map", "score"]}.get(int(channels))
    if outputs is None:
        raise ValueError(f"the model outputs {channels} channels; a bundle holds a map, or a map and a score map")
    manifest = Manifest(name=name, backbone=backbone, input_size=input_size, grid=int(grid), onnx_sha256="", outputs=outputs,
                        input_name=INPUT_NAME, output_name=OUTPUT_NAME, mean=list(mean), std=list(std),
                        normalize_in_graph=True, gradable_threshold=gradable_threshold,
                        patch_threshold=patch_threshold, provenance={**provenance, "export_max_abs_diff": err})
    return write_bundle(out_dir, onnx_bytes, manifest, card), err
