"""Bundles shipped with efiqa. ``DEFAULT_BUNDLE`` is what ``QualityAssessor()`` loads; ``SHIPPED``
names every shipped bundle, so ``QualityAssessor("default")`` or ``efiqa assess --model default``
works from any directory."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLE = HERE / "default"
SHIPPED = {"default": DEFAULT_BUNDLE}
