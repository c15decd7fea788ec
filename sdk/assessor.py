"""``QualityAssessor``: the one public entry point of the runtime."""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Union

import numpy as np

from .backends import create_backend
from .bundle import Bundle, load_bundle
from .errors import EfiqaError, ImageReadError
from .fov import Fov
from .imageio import load_image, to_bgr8
from .preprocess import Prepared, Preprocessor
from .reasons import explain
from .result import QualityResult, build_result

ImageLike = Union[str, os.PathLike, np.ndarray]


class QualityAssessor:
    """Fundus photograph → spatial quality map.

    >>> qa = QualityAssessor()                 # shipped bundle, ONNX Runtime on the CPU
    >>> result = qa.assess("photo.jpg")        # or an 8-bit BGR array
    >>> result.score, result.gradable, result.map.shape

    ``model`` is a bundle folder or ``.efiqa`` zip (default: the shipped one); ``backend`` is
    ``auto``, ``onnxruntime`` or ``tensorrt`` (``auto`` = TensorRT when ``engine`` is given).
    ``threshold`` overrides the manifest's gradable threshold. ``backend_options`` go to the backend:
    ``providers`` (ONNX Runtime execution providers, in order) and ``cuda_graph`` (TensorRT).
    """

    def __init__(self, model: str | os.PathLike | Bundle | None = None, backend: str = "auto", *,
                 engine: str | os.PathLike | None = None, threads: int | None = None,
                 threshold: float | None = None, backend_options: dict | None = None) -> None:
        self.bundle = model if isinstance(model, Bundle) else load_bundle(model)
        m = self.bundle.manifest
        options = dict(backend_options or {})
        unknown = set(options) - {"providers", "cuda_graph"}
        if unknown:
            raise ValueError(f"unknown backend option(s) {', '.join(sorted(unknown))}: use providers, cuda_graph")
        self.backend = create_backend(backend, self.bundle, engine=str(engine) if engine else None, threads=threads,
                                      **options)
        self.threshold = float(m.gradable_threshold if threshold is None else threshold)
        self.preprocessor = Preprocessor(
            m.input_size, None if m.normalize_in_graph else tuple(m.mean), None if m.normalize_in_graph else tuple(m.std),
            color=m.color)

    @property
    def manifest(self):
        return self.bundle.manifest

    def assess(self, image: ImageLike, *, color: str = "bgr", fov: Fov | None = None) -> QualityResult:
        """Assess one photograph (a path, or an array in ``color`` channel order).

        Raises an :class:`EfiqaError` subclass for anything that is not a fundus photo or not an
        image; a fundus photo too dark or too poor to grade is a result (``gradable`` false, ``reasons``).
        ``fov`` skips FOV detection (a stream whose geometry does not move can reuse it).
        """
        t0 = time.perf_counter()
        bgr, source, factor = self._load(image, color)
        t1 = time.perf_counter()
        local = self.preprocessor(bgr, source, fov=fov if factor == 1 else None)
        prep = local.rescaled(factor)
        t2 = time.perf_counter()
        logits = self.backend.infer(prep.tensor[None])[0]
        t3 = time.perf_counter()
        result = explain(build_result(logits, prep.fov, prep.crop, prep.image_shape, self.threshold, source,
                                      self.manifest.patch_threshold), local)
        t4 = time.perf_counter()
        result.timings_ms = _timings(t0, t1, t2, t3, t4)
        return result

    def assess_batch(self, images: Iterable[ImageLike], *, batch_size: int = 8, color: str = "bgr",
                     progress: bool = False) -> list[QualityResult | EfiqaError]:
        """Assess many photographs; a bad one yields its :class:`EfiqaError` in place, the rest go on."""
        return list(self.iter_batch(images, batch_size=batch_size, color=color, progress=progress))

    def iter_batch(self, images: Iterable[ImageLike], *, batch_size: int = 8, color: str = "bgr",
                   progress: bool = False) -> Iterator[QualityResult | EfiqaError]:
        """Like :meth:`assess_batch`, yielding results in input order as batches complete: exactly one
        result or error per input. ``batch_size`` must be at least 1."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number ≥ 1, not {batch_size!r}")
        items = list(images)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), unit="img", desc="assess", leave=False)
        try:
            for start in range(0, len(items), batch_size):
                chunk = items[start:start + batch_size]
                yield from self._run_chunk(chunk, color)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()

    def _run_chunk(self, chunk: list[ImageLike], color: str) -> list[QualityResult | EfiqaError]:
        out: list[QualityResult | EfiqaError | None] = [None] * len(chunk)
        ready: list[tuple[int, Prepared, str | None, float, float, Prepared]] = []
        for i, image in enumerate(chunk):
            t0 = time.perf_counter()
            try:
                bgr, source, factor = self._load(image, color)
                t1 = time.perf_counter()
                local = self.preprocessor(bgr, source)
                ready.append((i, local.rescaled(factor), source, t1 - t0, time.perf_counter() - t1, local))
            except EfiqaError as err:
                out[i] = err.with_source(_name(image))
        if ready:
            t0 = time.perf_counter()
            logits = self.backend.infer(np.stack([p.tensor for _, p, *_ in ready]))
            per_image = (time.perf_counter() - t0) / len(ready)
            for k, (i, prep, source, read_s, pre_s, local) in enumerate(ready):
                t3 = time.perf_counter()
                res = explain(build_result(logits[k], prep.fov, prep.crop, prep.image_shape, self.threshold,
                                           source, self.manifest.patch_threshold), local)
                post_s = time.perf_counter() - t3
                res.timings_ms = {"read": read_s * 1e3, "preprocess": pre_s * 1e3, "inference": per_image * 1e3,
                                  "postprocess": post_s * 1e3,
                                  "total": (read_s + pre_s + per_image + post_s) * 1e3}
                out[i] = res
        return out  # type: ignore[return-value]

    def _load(self, image: ImageLike, color: str) -> tuple[np.ndarray, str | None, int]:
        """(8-bit BGR, source name, decode reduction factor)."""
        if isinstance(image, (str, os.PathLike)):
            bgr, factor = load_image(image)
            return bgr, str(image), factor
        if isinstance(image, np.ndarray):
            return to_bgr8(image, color=color), None, 1
        raise ImageReadError(f"expected a path or a numpy array, got {type(image).__name__}")

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "QualityAssessor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name(image: ImageLike) -> str:
    return str(image) if isinstance(image, (str, os.PathLike)) else "<array>"


def _timings(t0: float, t1: float, t2: float, t3: float, t4: float) -> dict[str, float]:
    return {"read": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, "inference": (t3 - t2) * 1e3,
            "postprocess": (t4 - t3) * 1e3, "total": (t4 - t0) * 1e3}
