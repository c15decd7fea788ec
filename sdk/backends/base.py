"""The backend interface: a bundle goes in, logits come out. Callers never see which engine runs.

Life cycle follows polygraphy's runners: construction only checks (cheap, no device resources);
``activate()`` (or ``with backend:``) acquires sessions, device memory and streams, rolling back
whatever it had acquired if a step fails; ``deactivate()`` releases them. A backend that is
garbage-collected while still active releases its resources and warns (``ResourceWarning``).
:func:`efiqa.backends.create_backend` returns an activated backend.
"""
from __future__ import annotations

import warnings
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
        self.output_shape = (len(m.outputs), m.grid, m.grid)
        self.is_active = False

    def activate(self) -> "Backend":
        """Acquire what inference needs; a no-op when already active."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        """Release what :meth:`activate` acquired; a no-op when not active."""
        if self.is_active:
            self.is_active = False
            self._deactivate()

    close = deactivate

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 → (N, C, G, G) float32 logits, C the manifest's ``outputs`` (map[, score])."""
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise ValueError(f"{self.name}: batch shape {batch.shape} does not match (N, *{self.input_shape})")
        if not self.is_active:
            raise RuntimeError(f"{self.name} backend is not active: use 'with backend:' or call activate()")
        out = self._infer(np.ascontiguousarray(batch, dtype=np.float32))
        if out.shape != (batch.shape[0], *self.output_shape):
            raise ModelError(
                f"{self.name}: model returned shape {out.shape}, manifest promises {(batch.shape[0], *self.output_shape)}",
                str(self.bundle.path))
        return out

    def _activate(self) -> None:
        """Acquire resources; on failure release what was acquired, then raise."""

    def _deactivate(self) -> None:
        """Release resources."""

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def __del__(self) -> None:
        if getattr(self, "is_active", False):
            warnings.warn(f"{self.name} backend was never deactivated: releasing it now (use 'with' or close())",
                          ResourceWarning, stacklevel=2)
            try:
                self.deactivate()
            except Exception:  # noqa: BLE001 - nothing sensible to do during garbage collection
                pass
