"""Model bundles: ``model.onnx`` + ``manifest.json`` in a folder or a ``.efiqa`` zip.

The manifest is the contract between the build toolchain (which writes it) and the runtime
(which checks it before running anything).
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

#: The newest manifest format. 2 added ``outputs`` (a score channel beside the map): a runtime that
#: knows only version 1 refuses such a bundle instead of reading its map's mean as the score. A
#: map-only bundle is still written as version 1 (older runtimes read it as they always did).
FORMAT_VERSION = 2
#: Read by this runtime; a version-1 manifest has one output, the map.
READABLE_VERSIONS = (1, 2)
#: The output channels a bundle may declare, in order: the map alone, or the map and the score map
#: (whose in-FOV mean is the photo's score).
OUTPUTS = (["map"], ["map", "score"])
MANIFEST = "manifest.json"
MODEL = "model.onnx"


@dataclass
class Manifest:
    """What a bundle's ONNX graph expects and produces (docs/ARCHITECTURE.md, Contracts)."""

    name: str
    backbone: str
    input_size: int
    grid: int
    onnx_sha256: str
    input_name: str = "image"
    output_name: str = "logits"
    #: Input is float32 NCHW with values 0-255 in this channel order.
    color: str = "rgb"
    layout: str = "NCHW"
    #: Per-channel mean/std (0-255 scale); ``normalize_in_graph`` says the ONNX applies them itself.
    mean: list[float] = field(default_factory=lambda: [127.0, 127.0, 127.0])
    std: list[float] = field(default_factory=lambda: [128.0, 128.0, 128.0])
    normalize_in_graph: bool = True
    #: The output is the logit that a patch is degraded, shape (N, len(outputs), grid, grid).
    output_meaning: str = "logit_degraded"
    #: Its channels: ``map`` (where, per cell) and optionally ``score`` (the photo's score is the
    #: in-FOV mean of this channel; without it, of the map).
    outputs: list[str] = field(default_factory=lambda: ["map"])
    #: Image score (coverage-weighted in-FOV mean probability of the ``score`` channel, else of the map)
    #: at or above which the image is ungradable.
    gradable_threshold: float = 0.5
    patch_threshold: float = 0.5
    provenance: dict[str, Any] = field(default_factory=dict)
    #: Arithmetic inside the ONNX (fp32, fp16 casts, or int8 Q/DQ); I/O stays float32.
    precision: str = "fp32"
    #: For a precision variant: the FP32 bundle it derives from, its calibration set and fidelity gate.
    variant_of: str | None = None
    calibration_sha256: str | None = None
    fidelity: dict[str, Any] | None = None

    @property
    def format_version(self) -> int:
        """The oldest format that describes this bundle: 1 for a map alone, else 2."""
        return 1 if self.outputs == ["map"] else FORMAT_VERSION

    def to_json(self) -> str:
        data = {**asdict(self), "format_version": self.format_version}
        if self.format_version == 1:
            del data["outputs"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Manifest":
        if not isinstance(data, dict):
            raise ModelError("manifest.json is not a JSON object", source)
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ModelError(
                f"manifest format_version {version!r} is not supported by this runtime (reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}); re-export the bundle with a matching efiqa version", source)
        if version == 1 and "outputs" in data:
            raise ModelError("manifest format_version 1 has no outputs entry (version 2 has)", source)
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("name", "backbone", "input_size", "grid", "onnx_sha256") if k not in data]
        if missing:
            raise ModelError(f"manifest.json lacks {', '.join(missing)}", source)
        try:
            m = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ModelError(f"manifest.json is malformed ({exc})", source) from None
        if m.precision not in ("fp32", "fp16", "int8"):
            raise ModelError(f"unknown precision {m.precision!r}", source)
        if m.color not in ("rgb", "bgr") or m.layout != "NCHW":
            raise ModelError(f"unsupported input colour/layout {m.color}/{m.layout}", source)
        if not (isinstance(m.input_size, int) and isinstance(m.grid, int) and m.input_size > 0 and m.grid > 0):
            raise ModelError("input_size and grid must be positive integers", source)
        if m.outputs not in OUTPUTS:
            raise ModelError(f"unknown outputs {m.outputs!r}; expected one of {list(OUTPUTS)}", source)
        if len(m.mean) != 3 or len(m.std) != 3 or min(m.std) <= 0:
            raise ModelError("mean and std must have three entries, std positive", source)
        return m


@dataclass
class Bundle:
    """A loaded, checked bundle: its manifest and the ONNX model bytes."""

    manifest: Manifest
    onnx_bytes: bytes
    path: Path

    @property
    def sha256(self) -> str:
        return self.manifest.onnx_sha256

    @property
    def root_sha256(self) -> str:
        """The FP32 bundle this one is (or derives from): what a TensorRT engine is tied to."""
        return self.manifest.variant_of or self.sha256


def default_bundle_path() -> Path:
    """The bundle shipped with the package (``models/default``)."""
    from .models import DEFAULT_BUNDLE

    return DEFAULT_BUNDLE


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Load and verify a bundle folder or ``.efiqa`` zip; ``None`` loads the shipped default, and
    the name of a shipped bundle (``"default"``) that bundle."""
    from .models import SHIPPED

    p = Path(path) if path is not None else default_bundle_path()
    if not p.exists() and str(path) in SHIPPED:
        p = SHIPPED[str(path)]
    source = str(p)
    if not p.exists():
        raise ModelError("no such model bundle", source)
    try:
        if p.is_dir():
            if not (p / MANIFEST).is_file():
                raise ModelError(f"not a bundle: {MANIFEST} missing", source)
            if not (p / MODEL).is_file():
                raise ModelError(f"not a bundle: {MODEL} missing", source)
            manifest_text = (p / MANIFEST).read_text(encoding="utf-8")
            onnx_bytes = (p / MODEL).read_bytes()
        elif zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                names = set(z.namelist())
                if MANIFEST not in names or MODEL not in names:
                    raise ModelError(f"not a bundle: the zip must hold {MANIFEST} and {MODEL}", source)
                manifest_text = z.read(MANIFEST).decode("utf-8")
                onnx_bytes = z.read(MODEL)
        else:
            raise ModelError("not a bundle (expected a folder or a .efiqa zip)", source)
        data = json.loads(manifest_text)
    except ModelError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, zipfile.BadZipFile) as exc:
        raise ModelError(f"bundle cannot be read ({exc})", source) from None
    manifest = Manifest.from_dict(data, source)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != manifest.onnx_sha256:
        raise ModelError(
            f"{MODEL} does not match its manifest (sha256 {digest[:12]}… vs {manifest.onnx_sha256[:12]}…): "
            "the bundle is corrupt or was edited", source)
    return Bundle(manifest, onnx_bytes, p)


def write_bundle(out_dir: str | Path, onnx_bytes: bytes, manifest: Manifest, card: str | None = None) -> Path:
    """Write a bundle folder; the manifest's sha256 is set from ``onnx_bytes``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest.onnx_sha256 = hashlib.sha256(onnx_bytes).hexdigest()
    (out / MODEL).write_bytes(onnx_bytes)
    (out / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    if card is not None:
        (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return out
