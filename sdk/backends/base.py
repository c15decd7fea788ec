"""The backend interface: a bundle goes in, logits come out. Callers never see which engine runs.

Life cycle follows polygraphy's runners: construct (cheap checks), use as a context manager or
call ``close()``; engine-specific work lives in ``_infer``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ..bundle import Bundle
from ..errors import ModelError


class Backend(ABC):
    """Runs a bundle's network on a batch of preprocessed frames."""

    name: str = "backend"

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        m = bundle.manifest
        self.input_shape = (3, m.input_size, m.input_size)
        self.output_shape = (1, m.grid, m.grid)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 → (N, 1, G, G) float32 logits."""
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise ValueError(f"{self.name}: batch shape {batch.shape} does not match (N, *{self.input_shape})")
        out = self._infer(np.ascontiguousarray(batch, dtype=np.float32))
        if out.shape != (batch.shape[0], *self.output_shape):
            raise ModelError(
                f"{self.name}: model returned shape {out.shape}, manifest promises {(batch.shape[0], *self.output_shape)}",
                str(self.bundle.path))
        return out

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:
        """Release engine resources (device memory, sessions)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
