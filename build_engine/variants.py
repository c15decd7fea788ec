"""Precision variants of a bundle (FP16, INT8 Q/DQ), gated on map fidelity before they are written."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from efiqa.bundle import Bundle, write_bundle
from efiqa.preprocess import Preprocessor
from efiqa.result import MIN_COVERAGE, cell_coverage

from . import fp16
from .verify import Fidelity, compare, run_maps, worst_layers


def make_variant(bundle: Bundle, precision: str, calib: np.ndarray | None = None, method: str = "percentile",
                 exclude: list[str] | None = None, keep_first_last_fp32: bool = True,
                 keep_sensitive_fp32: bool = True) -> tuple[bytes, dict]:
    """(variant ONNX bytes, description). INT8 needs calibration tensors."""
    if precision == "fp16":
        return fp16.to_fp16(bundle.onnx_bytes), {"keep_fp32_ops": list(fp16.DEFAULT_KEEP_FP32)}
    if precision == "int8":
        if calib is None or not len(calib):
            raise ValueError("INT8 needs a calibration set (efiqa calibrate)")
        from efiqa.calibration.int8 import quantize

        data, kept = quantize(bundle.onnx_bytes, calib, bundle.manifest.input_name, method, exclude,
                              keep_first_last_fp32, keep_sensitive_fp32=keep_sensitive_fp32)
        return data, {"method": method, "float_nodes": kept, "sensitive_kept_fp32": keep_sensitive_fp32}
    raise ValueError(f"precision must be fp16 or int8, not {precision!r}")


#: Perturbed copies are made from the photo at this longest side (the runtime looks at 384-512 px;
#: perturbing a 3.5k-px original at full size took seconds a copy for nothing).
PERTURB_SIDE = 1024


def verification_tensors(bundle: Bundle, images: list, skip: set[str] | None = None, perturbations: int = 0,
                         seed: int = 0, progress: bool = False):
    """(tensors, valid-cell masks, names, decoded BGR photos) of photos preprocessed as the runtime
    does, each followed by ``perturbations`` label-free perturbed copies (``efiqa.train.augment``:
    illumination, blur, veil, noise, compression, shake), named ``photo#k``. The photos (originals
    only) let :func:`degraded_tensors` reuse them instead of decoding again. Raises
    :class:`~efiqa.errors.ImageReadError` when no photo is usable."""
    from tqdm import tqdm

    from efiqa.errors import EfiqaError, ImageReadError
    from efiqa.imageio import at_most, read_image
    from efiqa.train.augment import augment

    m = bundle.manifest
    pre = Preprocessor(m.input_size, color=m.color)
    rng = np.random.default_rng(seed)
    tensors, valid, names, photos = [], [], [], []
    for item in tqdm(images, desc="verification inputs", unit="photo", disable=not progress, leave=False):
        if skip and str(item) in skip:
            continue
        name = str(item) if not isinstance(item, np.ndarray) else f"array{len(photos)}"
        try:
            bgr = read_image(item) if not isinstance(item, np.ndarray) else item
        except EfiqaError:
            continue
        photos.append(bgr)
        small = at_most(bgr, PERTURB_SIDE) if perturbations else bgr
        for k in range(perturbations + 1):
            try:
                prep = pre(bgr if k == 0 else augment(small, rng), name)
            except EfiqaError:  # the original, or a perturbation that hid the FOV: not scored
                continue
            tensors.append(prep.tensor)
            valid.append(cell_coverage(prep.fov, prep.crop, prep.image_shape, m.grid) >= MIN_COVERAGE)
            names.append(name if k == 0 else f"{name}#{k}")
    if not tensors:
        raise ImageReadError("no usable verification photo", " ".join(map(str, images[:3])) or "(none given)")
    return np.stack(tensors), np.stack(valid), names, photos


def degraded_tensors(bundle: Bundle, images: list, severity: int = 2, seed: int = 0):  # paths or BGR arrays
    """Each verification photo once per evaluation degradation (``efiqa.eval.synth``), with its patch
    ground truth: (tensors, valid, truth). For the AUROC-change report only; nothing trains on it."""
    from efiqa.errors import EfiqaError
    from efiqa.fov import find_fov
    from efiqa.imageio import read_image
    from efiqa.eval.synth import DEGRADATIONS, degrade, patch_truth

    m = bundle.manifest
    pre = Preprocessor(m.input_size, color=m.color)
    tensors, valid, truth = [], [], []
    for k, item in enumerate(images):
        try:
            bgr = read_image(item) if not isinstance(item, np.ndarray) else item
            fov = find_fov(bgr)
        except EfiqaError:
            continue
        for j, kind in enumerate(DEGRADATIONS):
            d = degrade(bgr, fov, kind, severity, seed=seed + 100 * k + j)
            try:
                prep = pre(d.image)
            except EfiqaError:  # a degradation can hide the FOV: not scored
                continue
            tensors.append(prep.tensor)
            valid.append(cell_coverage(prep.fov, prep.crop, prep.image_shape, m.grid) >= MIN_COVERAGE)
            truth.append(patch_truth(d.mask, prep.crop, m.grid, fov=fov))
    if not tensors:
        return None
    return np.stack(tensors), np.stack(valid), np.stack(truth)


def gate(bundle: Bundle, variant: bytes, precision: str, tensors: np.ndarray, valid: np.ndarray,
         degraded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, gates: dict | None = None) -> Fidelity:
    """Compare the variant with FP32 on ``tensors``; with ``degraded`` (see :func:`degraded_tensors`)
    also report the patch AUROC of both against the evaluation ground truth, which the gate's
    ``max_auroc_drop`` then judges."""
    m = bundle.manifest
    int8 = precision == "int8"
    ref = run_maps(bundle.onnx_bytes, tensors, m.input_name)
    var = run_maps(variant, tensors, m.input_name, simulate_int8=int8)
    fid = compare(ref, var, valid, precision, m.patch_threshold, m.gradable_threshold, gates)
    if degraded is not None:
        from efiqa.eval.metrics import auroc  # numpy only

        dt, dv, y = degraded
        a = auroc(run_maps(bundle.onnx_bytes, dt, m.input_name)[:, 0][dv], y[dv])  # the map channel
        b = auroc(run_maps(variant, dt, m.input_name, simulate_int8=int8)[:, 0][dv], y[dv])
        fid.auroc = {"fp32": a, precision: b, "change": b - a, "frames": int(len(dt))}
        fid.judge()
    if not fid.passed:
        fid.worst_layers = worst_layers(bundle.onnx_bytes, variant, tensors, m.input_name, int8)
    return fid


def write_variant(bundle: Bundle, variant: bytes, precision: str, fidelity: Fidelity, out: str | Path,
                  calibration_sha256: str | None, info: dict) -> Path:
    m = replace(bundle.manifest, name=f"{bundle.manifest.name}-{precision}", precision=precision,
                variant_of=bundle.sha256, calibration_sha256=calibration_sha256,
                fidelity={**fidelity.to_dict(), **info}, provenance=dict(bundle.manifest.provenance))
    return write_bundle(out, variant, m)

