"""TensorRT engine manifests: what an ``.engine`` was built from and for (DESIGN §3).

Engines do not port between GPUs or TensorRT versions, so the runtime refuses one whose manifest
does not match this device and library, saying how to rebuild it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import EngineMismatchError, ModelError


@dataclass
class EngineManifest:
    bundle_sha256: str
    precision: str                     # fp32 | fp16 | int8
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    onnx_sha256: str                   # the (precision variant) ONNX the engine was parsed from
    calibration_sha256: str | None = None
    max_batch: int = 1
    build_flags: dict = field(default_factory=dict)
    format_version: int = 1

    @staticmethod
    def path_for(engine: str | Path) -> Path:
        return Path(str(engine) + ".json")

    def save(self, engine: str | Path) -> Path:
        p = self.path_for(engine)
        p.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return p

    @classmethod
    def load(cls, engine: str | Path) -> "EngineManifest":
        p = cls.path_for(engine)
        if not p.is_file():
            raise ModelError(f"engine manifest {p.name} missing next to the engine; rebuild with 'efiqa build'",
                             str(engine))
        try:
            data = json.loads(p.read_text())
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (json.JSONDecodeError, TypeError) as exc:
            raise ModelError(f"engine manifest is malformed ({exc})", str(engine)) from None

    def check(self, engine: str | Path, bundle_sha256: str, tensorrt_version: str, gpu_name: str,
              compute_capability: str) -> None:
        """Raise :class:`EngineMismatchError` naming every mismatch and the command that fixes it."""
        problems = []
        if self.bundle_sha256 != bundle_sha256:
            problems.append("it was built from another model bundle")
        if _major_minor(self.tensorrt_version) != _major_minor(tensorrt_version):
            problems.append(f"it was built with TensorRT {self.tensorrt_version}, this machine has {tensorrt_version}")
        if self.compute_capability != compute_capability:
            problems.append(f"it was built for compute capability {self.compute_capability} ({self.gpu_name}), "
                            f"this GPU is {compute_capability} ({gpu_name})")
        if problems:
            raise EngineMismatchError(
                "engine does not match: " + "; ".join(problems)
                + f". Rebuild it here: efiqa build --precision {self.precision} --out {engine}", str(engine))


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])
