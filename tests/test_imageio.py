import struct
import zlib

import cv2
import numpy as np
import pytest

from efiqa.errors import ImageReadError
from efiqa.imageio import MAX_PIXELS, read_image, to_bgr8

from .conftest import synthetic_fundus


def _write(path, img, ext=".png"):
    ok, buf = cv2.imencode(ext, img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def test_reads_jpeg_as_bgr8(retina_file):
    img = read_image(retina_file)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[:2] == (1411, 1411)


@pytest.mark.parametrize("name, content, message", [
    ("missing.jpg", None, "no such file"),
    ("", None, "is a directory"),
    ("empty.jpg", b"", "empty file"),
    ("notes.png", b"hello, not an image\n" * 5, "not an image"),
])
def test_bad_files_are_named_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError) as exc:
        read_image(path)
    assert message in str(exc.value)
    assert str(path) in str(exc.value)


def test_truncated_jpeg(tmp_path, retina_file):
    data = retina_file.read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(bad)


def test_truncated_png(tmp_path):
    good = _write(tmp_path / "ok.png", synthetic_fundus())
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(bad)


def test_one_pixel_image(tmp_path):
    path = _write(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageReadError, match="smaller than"):
        read_image(path)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(path, w, h):
    """A PNG that claims w×h pixels but holds almost no data: decoding it would be the mistake."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize("side", [8000, 20000])
def test_huge_png_is_refused_before_decoding(tmp_path, side):
    path = _png_header_only(tmp_path / "huge.png", side, side)
    with pytest.raises(ImageReadError, match="over the 50 MP limit"):
        read_image(path)


@pytest.mark.slow
def test_huge_jpeg_is_decoded_downscaled(tmp_path):
    img = np.zeros((20000, 20000), np.uint8)
    cv2.circle(img, (10000, 10000), 9000, 160, -1)
    path = _write(tmp_path / "huge.jpg", img, ".jpg")
    del img
    out = read_image(path)
    assert out.shape[0] * out.shape[1] <= MAX_PIXELS
    assert out.shape[:2] == (2500, 2500)  # libjpeg decodes at 1/8 scale, no full-size buffer
    assert abs(int(out[1250, 1250, 0]) - 160) <= 2 and out[10, 10, 0] == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_to_bgr8_layouts_and_depths(dtype, channels):
    base = synthetic_fundus(200, 240).astype(np.float64) / 255.0
    if channels is None:
        arr = base[..., 1]
    elif channels == 1:
        arr = base[..., 1:2]
    elif channels == 3:
        arr = base
    else:
        arr = np.concatenate([base, np.ones_like(base[..., :1])], axis=2)
    if dtype == np.uint8:
        arr = np.round(arr * 255).astype(np.uint8)
    elif dtype == np.uint16:
        arr = np.round(arr * 65535).astype(np.uint16)
    else:
        arr = arr.astype(dtype)
    out = to_bgr8(arr)
    assert out.shape == (200, 240, 3) and out.dtype == np.uint8
    expect = np.round(base * 255)
    if channels in (None, 1):
        expect = np.repeat(expect[..., 1:2], 3, axis=2)
    assert np.abs(out.astype(float) - expect).max() <= 1


def test_rgb_order_is_swapped():
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[..., 0] = 200  # red in RGB
    assert to_bgr8(arr, color="rgb")[0, 0].tolist() == [0, 0, 200]
    assert to_bgr8(arr, color="bgr")[0, 0].tolist() == [200, 0, 0]


@pytest.mark.parametrize("arr, message", [
    (np.zeros((64, 64), bool), "unsupported pixel type"),
    (np.zeros((64, 64, 2), np.uint8), "unsupported image shape"),
    (np.full((64, 64), 3.0, np.float32), r"\[0, 1\]"),
    (np.full((64, 64), np.nan, np.float32), "NaN"),
    (np.zeros((8, 8, 3), np.uint8), "smaller than"),
])
def test_bad_arrays(arr, message):
    with pytest.raises(ImageReadError, match=message):
        to_bgr8(arr)
