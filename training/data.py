"""The development photographs (../shared/data/fundus, research-use licences: read by path,
never copied into the repository) and how this project splits them.

Every photo is brought to the runtime's geometry: the square around its FOV, resized to a fixed
side, so vessel calibre is normalised by FOV diameter rather than by image size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from efiqa.fov import Fov, find_fov
from efiqa.imageio import read_image
from efiqa.preprocess import Crop, Preprocessor

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fundus"

#: DRIVE ids whose manual vessel labels train the vessel extractor; 37-40 validate it.
VESSEL_TRAIN = [f"DRIVE/training/images/{i}_training.tif" for i in range(21, 37)]
VESSEL_VAL = [f"DRIVE/training/images/{i}_training.tif" for i in range(37, 41)]

#: Good-quality photos whose vessel maps train the inpainting teacher (by eye; see MODEL_CARD).
#: Excluded as not good enough, by eye: EyePACS 10_left (veiling glare on one side), 10_right
#: (under-exposed), 116_right (hazy, blurred), 373_left (dark, hazy lower half); 605_left shows
#: severe pathology and is kept out of the prior. "skimage:retina" is the CC0 example photo.
TEACHER_TRAIN = (
    VESSEL_TRAIN
    + [f"HRF/images/{i}_{g}.{'JPG' if g == 'dr' else 'jpg'}" for i in ("01", "02") for g in ("h", "dr", "g")]
    + ["EyePACS/images/15_right.jpeg", "EyePACS/images/16_left.jpeg", "EyePACS/images/9575_left.jpeg",
       "skimage:retina"]
)
#: Folder (under the data root) of unlabelled photos from further cameras (IDRiD, REFUGE, SCES; see its
#: README): every photo in it joins the label-free training pool.
UNLABELLED = "unlabelled"


def training_pool(root: Path) -> list[str]:
    """Every photo the label-free stages learn from: TEACHER_TRAIN plus each image under
    ``root/UNLABELLED`` (names relative to ``root``, sorted; the folder may be absent). No quality
    label is read; HELD_OUT, REAL_DEGRADED and DRIMDB-dev never enter it."""
    from efiqa.imageio import IMAGE_SUFFIXES

    folder = root / UNLABELLED
    extra = sorted(str(p.relative_to(root)) for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    return list(TEACHER_TRAIN) + extra


#: Held out from every training stage: clean originals for the evaluation degradations.
HELD_OUT = VESSEL_VAL + [f"HRF/images/03_{g}.{'JPG' if g == 'dr' else 'jpg'}" for g in ("h", "dr", "g")] + [
    "EyePACS/images/15_left.jpeg", "EyePACS/images/16_right.jpeg"]
#: Real photos of visibly reduced quality (by eye), never trained on: a qualitative check.
REAL_DEGRADED = ["EyePACS/images/10_left.jpeg", "EyePACS/images/10_right.jpeg", "EyePACS/images/116_right.jpeg",
                 "EyePACS/images/373_left.jpeg"]


def data_root(root: str | os.PathLike | None = None) -> Path:
    p = Path(root or os.environ.get("EFIQA_DATA") or DEFAULT_DATA)
    if not p.is_dir():
        raise FileNotFoundError(f"fundus photographs not found at {p}: set EFIQA_DATA or pass --data")
    return p


def resolve(name: str, root: Path) -> Path:
    if name == "skimage:retina":
        from efiqa.data import retina_path

        return retina_path()
    return root / name


@dataclass
class Photo:
    """A photo in runtime geometry: RGB crop S×S, FOV disc mask, and the original geometry."""

    name: str
    rgb: np.ndarray        # S×S×3 uint8, black outside the FOV
    fov_mask: np.ndarray   # S×S bool
    fov: Fov
    crop: Crop


def fov_disc(size: int, fov: Fov, crop: Crop) -> np.ndarray:
    s = size / crop.size
    m = np.zeros((size, size), np.uint8)
    if fov.source == "frame":
        m[:] = 1
    else:
        cv2.circle(m, (round((fov.cx - crop.x0) * s * 16), round((fov.cy - crop.y0) * s * 16)),
                   round(fov.r * s * 16), 1, -1, shift=4)
    return m.astype(bool)


def to_geometry(bgr: np.ndarray, size: int, name: str = "") -> Photo:
    """Crop/resize a BGR photo exactly as the runtime does (same FOV, same crop)."""
    prep = Preprocessor(size, color="rgb")(bgr, name)
    rgb = np.ascontiguousarray(prep.tensor.transpose(1, 2, 0)).astype(np.uint8)
    return Photo(name, rgb, fov_disc(size, prep.fov, prep.crop), prep.fov, prep.crop)


def load_photo(name: str, size: int, root: Path) -> Photo:
    return to_geometry(read_image(resolve(name, root)), size, name)


def load_drive_label(name: str, photo: Photo, root: Path) -> np.ndarray:
    """The manual vessel label of a DRIVE image, in the photo's crop geometry (bool S×S)."""
    idx = Path(name).stem.split("_")[0]
    label = read_image(root / f"DRIVE/training/1st_manual/{idx}_manual1.gif")[..., 0]
    pre = Preprocessor(photo.rgb.shape[0], color="bgr")
    sq = pre.crop_resize(cv2.cvtColor(label, cv2.COLOR_GRAY2BGR), photo.crop)[..., 0]
    return (sq > 127) & photo.fov_mask


__all__ = ["Photo", "data_root", "load_photo", "load_drive_label", "to_geometry", "find_fov", "fov_disc",
           "VESSEL_TRAIN", "VESSEL_VAL", "TEACHER_TRAIN", "UNLABELLED", "training_pool", "HELD_OUT", "REAL_DEGRADED"]
