"""Bundles shipped with efiqa. ``DEFAULT_BUNDLE`` is what ``QualityAssessor()`` loads; ``SHIPPED``
names every shipped bundle, so ``QualityAssessor("fast")`` or ``efiqa assess --model fast`` works
from any directory."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLE = HERE / "default"
#: default: 512-px input, the most accurate map; fast: 384-px input, about half the network time
SHIPPED = {"default": DEFAULT_BUNDLE, "fast": HERE / "fast"}
