"""Bundles shipped with efiqa. ``DEFAULT_BUNDLE`` is what ``QualityAssessor()`` loads."""
from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parent / "default"
