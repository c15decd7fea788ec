"""Calibration sets for INT8: the user's unlabelled photos, preprocessed exactly as the runtime
does, stratified so dark, blurred and good frames are all represented (strata from simple frame
statistics and the FP32 model's own score), with a manifest and a sha256 of the set.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from efiqa.assessor import QualityAssessor
from efiqa.errors import EfiqaError, ImageReadError, ModelError
from efiqa.imageio import IMAGE_SUFFIXES, read_image
from efiqa.result import build_result

STRATA = ("dark", "bright", "blurred", "degraded", "good")


@dataclass
class CalibrationManifest:
    bundle_sha256: str
    input_size: int
    images: list[str]
    strata: dict[str, list[str]]
    skipped: dict[str, str]
    sha256: str  # of the preprocessed tensors, in order

    def save(self, folder: Path) -> Path:
        p = folder / "calibration.json"
        p.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return p


def find_images(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        else:
            raise ImageReadError("no such file or folder", str(p))
    return out


def _frame_stats(tensor: np.ndarray) -> tuple[float, float]:
    """(median FOV luminance, mean |Laplacian|) of a preprocessed (3, S, S) tensor."""
    grey = tensor.mean(axis=0).astype(np.float32)
    inside = grey > 0
    if inside.sum() < 100:
        return 0.0, 0.0
    return float(np.median(grey[inside])), float(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[inside].mean())


def _strata(stats: dict[str, tuple[float, float, float]], threshold: float) -> dict[str, list[str]]:
    """dark/bright by luminance; blurred = well below the set's typical sharpness; then the model's verdict."""
    out: dict[str, list[str]] = {s: [] for s in STRATA}
    sharp_ref = float(np.median([v[1] for v in stats.values()])) if stats else 0.0
    for name, (lum, sharp, score) in stats.items():
        if lum < 40:
            out["dark"].append(name)
        elif lum > 200:
            out["bright"].append(name)
        elif sharp < 0.6 * sharp_ref:
            out["blurred"].append(name)
        else:
            out["degraded" if score >= threshold else "good"].append(name)
    return out


def build(paths: list[str | Path], out: str | Path, model: str | Path | None = None, size: int = 200,
          seed: int = 0, progress: bool = True) -> CalibrationManifest:
    """Preprocess, stratify and sample up to ``size`` photos; writes ``tensors.npy`` + ``calibration.json``."""
    from tqdm import tqdm

    files = find_images(paths)
    if not files:
        raise ImageReadError("no images to calibrate with (calibration without data is an error)",
                             " ".join(map(str, paths)))
    tensors: dict[str, np.ndarray] = {}
    stats: dict[str, tuple[float, float, float]] = {}
    skipped: dict[str, str] = {}
    with QualityAssessor(model, backend="onnxruntime") as qa:  # released even when a photo fails
        for f in tqdm(files, desc="calibration set", disable=not progress):
            try:
                prep = qa.preprocessor(read_image(f), str(f))
                logits = qa.backend.infer(prep.tensor[None])[0]
                score = build_result(logits, prep.fov, prep.crop, prep.image_shape, qa.threshold).score
            except EfiqaError as err:
                skipped[str(f)] = f"{type(err).__name__}: {err.message}"
                continue
            tensors[str(f)] = prep.tensor.astype(np.uint8)  # runtime tensors hold whole grey levels
            stats[str(f)] = (*_frame_stats(prep.tensor), score)
    if not tensors:
        raise ImageReadError("none of the images could be used for calibration", " ".join(map(str, paths)))
    strata = _strata(stats, qa.threshold)
    chosen = _sample(strata, size, np.random.default_rng(seed))
    stack = np.stack([tensors[c] for c in chosen])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "tensors.npy", stack)
    manifest = CalibrationManifest(qa.bundle.sha256, qa.manifest.input_size, chosen,
                                   {k: [c for c in v if c in chosen] for k, v in strata.items()}, skipped,
                                   hashlib.sha256(stack.tobytes()).hexdigest())
    manifest.save(out)
    return manifest


def _sample(strata: dict[str, list[str]], size: int, rng: np.random.Generator) -> list[str]:
    """Round-robin over strata so rare kinds of frame are not crowded out by the common one."""
    pools = {k: list(rng.permutation(v)) for k, v in strata.items() if v}
    chosen: list[str] = []
    while len(chosen) < size and any(pools.values()):
        for k in list(pools):
            if pools[k] and len(chosen) < size:
                chosen.append(str(pools[k].pop()))
    return sorted(chosen)


def load(folder: str | Path, bundle=None) -> tuple[np.ndarray, CalibrationManifest]:
    """(float32 tensors, manifest) of a calibration set; with ``bundle``, also checks that the set was
    made for it (same FP32 bundle, same input size). Unreadable sets are :class:`ModelError`."""
    folder = Path(folder)
    try:
        m = json.loads((folder / "calibration.json").read_text())
        raw = np.load(folder / "tensors.npy")
        manifest = CalibrationManifest(**m)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(f"not a readable calibration set (efiqa calibrate makes one): {exc}", str(folder)) from None
    if hashlib.sha256(raw.tobytes()).hexdigest() != manifest.sha256:
        raise ImageReadError("calibration tensors do not match their manifest sha256", str(folder))
    if bundle is not None:
        if manifest.bundle_sha256 != bundle.sha256:
            raise ModelError(f"calibration set was made for another bundle ({manifest.bundle_sha256[:12]}…, not "
                             f"{bundle.sha256[:12]}…): rerun efiqa calibrate with this model", str(folder))
        if raw.shape[1:] != (3, bundle.manifest.input_size, bundle.manifest.input_size):
            raise ModelError(f"calibration tensors are {raw.shape[1:]}, the bundle takes "
                             f"(3, {bundle.manifest.input_size}, {bundle.manifest.input_size})", str(folder))
    return raw.astype(np.float32), manifest
