"""EFIQA Edge runtime: spatial fundus image quality maps, no torch required.

The one entry point is :class:`QualityAssessor`; see ``efiqa --help`` for the command line.
"""
from ._version import __version__
from .assessor import QualityAssessor
from .bundle import Bundle, Manifest, load_bundle
from .errors import (BackendUnavailableError, EfiqaError, EngineMismatchError, ImageReadError, ModelError,
                     NotFundusError)
from .fov import Fov
from .preprocess import Crop
from .result import QualityResult

__all__ = [
    "__version__", "QualityAssessor", "QualityResult", "Bundle", "Manifest", "load_bundle", "Fov", "Crop",
    "EfiqaError", "ImageReadError", "NotFundusError", "ModelError", "EngineMismatchError", "BackendUnavailableError",
]
