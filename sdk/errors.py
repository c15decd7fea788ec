"""One exception family for everything the runtime refuses.

Every error names the input it is about (``source``) so a batch can report it on one line, and
carries a stable ``code`` that the CLI prints in JSON.
"""
from __future__ import annotations


class EfiqaError(Exception):
    """Base class: a problem with an input, a model or the environment, never a bug."""

    code = "efiqa_error"

    def __init__(self, message: str, source: str | None = None) -> None:
        self.message = message
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)

    def with_source(self, source: str) -> "EfiqaError":
        """Return the same error, naming ``source`` if it does not name one yet."""
        if self.source is None:
            self.source = source
            self.args = (f"{source}: {self.message}",)
        return self


class ImageReadError(EfiqaError):
    """The file or array is not a usable image (missing, empty, truncated, wrong type, too big)."""

    code = "image_read_error"


class NotFundusError(EfiqaError):
    """The image decodes but shows no fundus field of view (black frame, natural photograph, ...)."""

    code = "not_fundus"


class ModelError(EfiqaError):
    """A model bundle is missing, malformed, or does not match its manifest."""

    code = "model_error"


class EngineMismatchError(ModelError):
    """A TensorRT engine was built for another GPU, TensorRT version or bundle."""

    code = "engine_mismatch"


class BackendUnavailableError(EfiqaError):
    """The requested inference backend cannot run here (library or device missing)."""

    code = "backend_unavailable"
