"""Reading photographs from disk and normalising arrays to 8-bit BGR.

Pillow only probes the header (format and size, no pixels), so a huge or broken file is refused
before any memory is spent on it; OpenCV decodes.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageReadError

#: Largest image decoded at full resolution (pixels). Larger JPEGs are decoded at 1/2, 1/4 or 1/8
#: scale by libjpeg itself; larger images of other formats are refused.
MAX_PIXELS = 50_000_000
#: Smallest side accepted: below this no field of view can be found or mapped.
MIN_SIDE = 32

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2", ".ppm", ".pgm"}
)
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an 8-bit BGR array, or raise :class:`ImageReadError` naming the file."""
    return load_image(path)[0]


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Like :func:`read_image`, also returning the decode reduction (1, 2, 4 or 8).

    A reduction above 1 means a huge JPEG was decoded at that fraction of its size; multiply
    pixel coordinates in the array by it to get coordinates in the original file.
    """
    source = str(path)
    p = Path(path)
    if not p.exists():
        raise ImageReadError("no such file", source)
    if p.is_dir():
        raise ImageReadError("is a directory, not an image file", source)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot be read ({exc.strerror or exc})", source) from None
    if not data:
        raise ImageReadError("empty file (0 bytes)", source)
    fmt, size = _probe(data, source)
    if fmt == "JPEG" and not _jpeg_complete(data):
        raise ImageReadError("truncated JPEG (no end-of-image marker): the file is incomplete", source)
    if size is None:  # over Pillow's decompression-bomb limit: only a JPEG can still be read, at 1/8
        width, height, factor = 0, 0, 8
        if fmt != "JPEG":
            raise ImageReadError(
                f"image dimensions are far over the {MAX_PIXELS / 1e6:.0f} MP limit; refusing to decode", source)
    else:
        width, height = size
        if min(width, height) < MIN_SIDE:
            raise ImageReadError(f"image is {width}x{height}, smaller than {MIN_SIDE} px on a side", source)
        factor = 1
        while width * height / factor**2 > MAX_PIXELS and factor < 8:
            factor *= 2
        if width * height / factor**2 > MAX_PIXELS or (factor > 1 and fmt != "JPEG"):
            raise ImageReadError(
                f"image is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
                f"{MAX_PIXELS / 1e6:.0f} MP limit; downscale it first", source)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[factor] if factor > 1 else cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(f"cannot be decoded as {fmt} ({exc.err})", source) from None
    if img is None:
        raise ImageReadError(f"cannot be decoded as {fmt} (corrupt or truncated data)", source)
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageReadError(f"image is over the {MAX_PIXELS / 1e6:.0f} MP limit even at 1/8 scale", source)
    return to_bgr8(img, color="bgr", source=source), factor


def _probe(data: bytes, source: str) -> tuple[str, tuple[int, int] | None]:
    """(format, (width, height)) from the header alone; size None when absurdly large."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return str(im.format), im.size
    except Image.DecompressionBombError:
        return ("JPEG" if data[:3] == b"\xff\xd8\xff" else "image"), None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageReadError("not an image file (unrecognised or corrupt header)", source) from None


def _jpeg_complete(data: bytes) -> bool:
    # Entropy-coded JPEG data byte-stuffs 0xFF, so FF D9 near the end can only be the EOI marker.
    return b"\xff\xd9" in data[-4096:]


def at_most(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` reduced (area interpolation) so its long side is at most ``side``; unchanged if it is."""
    f = side / max(image.shape[:2])
    return image if f >= 1 else cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)


def to_bgr8(image: np.ndarray, color: str = "bgr", source: str | None = None) -> np.ndarray:
    """Convert an array of any supported layout and depth to contiguous 8-bit BGR.

    Accepted: H×W, H×W×1, H×W×3 and H×W×4 arrays of uint8, uint16 (full 16-bit range) or float
    (values in [0, 1]). ``color`` names the channel order of 3- and 4-channel input.
    """
    if not isinstance(image, np.ndarray):
        raise ImageReadError(f"expected a numpy array, got {type(image).__name__}", source)
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb', not {color!r}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageReadError(f"unsupported image shape {image.shape}; expected HxW, HxWx3 or HxWx4", source)
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageReadError(f"image is {w}x{h}, smaller than {MIN_SIDE} px on a side", source)
    if h * w > MAX_PIXELS:
        raise ImageReadError(f"image is {w}x{h}, over the {MAX_PIXELS / 1e6:.0f} MP limit", source)

    if image.dtype == np.uint8:
        img8 = image
    elif image.dtype == np.uint16:
        img8 = (image.astype(np.float32) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
    elif image.dtype in (np.float16, np.float32, np.float64):
        if not np.isfinite(image).all():
            raise ImageReadError("float image contains NaN or infinity", source)
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageReadError(f"float image values must lie in [0, 1], found [{lo:.3g}, {hi:.3g}]", source)
        img8 = (image.astype(np.float32) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageReadError(f"unsupported pixel type {image.dtype}; use uint8, uint16 or float", source)

    if img8.ndim == 2:
        return cv2.cvtColor(img8, cv2.COLOR_GRAY2BGR)
    if img8.shape[2] == 4:
        return cv2.cvtColor(img8, cv2.COLOR_RGBA2BGR if color == "rgb" else cv2.COLOR_BGRA2BGR)
    if color == "rgb":
        return cv2.cvtColor(img8, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(img8)
