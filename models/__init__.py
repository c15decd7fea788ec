"""Bundles shipped with efiqa. ``DEFAULT_BUNDLE`` is what ``QualityAssessor()`` loads; ``SHIPPED``
names every shipped bundle, so ``QualityAssessor("default")`` or ``efiqa assess --model default``
works from any directory. ``default-fp16`` and ``default-int8`` are the default's precision
variants as ``efiqa verify`` wrote them (gated against it; inputs for ``efiqa build``)."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLE = HERE / "default"
SHIPPED = {"default": DEFAULT_BUNDLE, "default-fp16": HERE / "default-fp16", "default-int8": HERE / "default-int8"}
