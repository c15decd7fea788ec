"""Example data shipped with efiqa."""
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def retina_path() -> Path:
    """A real colour fundus photograph (CC0; see ``sdk/data/README.md``)."""
    return _HERE / "retina.jpg"
