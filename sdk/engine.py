"""TensorRT engine manifests: what an ``.engine`` was built from and for.

Engines do not port freely, so the runtime refuses one whose manifest does not fit this device
and library, saying how to rebuild it. Two targets:

- ``tensorrt`` (TensorRT 10/11: Jetson's JetPack, data-centre and workstation GPUs): built on the
  machine that runs it, for exactly its compute capability;
- ``tensorrt-rtx`` (TensorRT for RTX): built ahead of time, on any machine, for a list of compute
  capabilities (RTX-class GPUs: Turing/Ampere/Ada/Blackwell, not Jetson or Hopper); kernels are
  specialised on the first run and kept in a runtime cache beside the engine.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import EngineMismatchError, ModelError

TARGETS = ("tensorrt", "tensorrt-rtx")
#: Python module of each target's library.
TARGET_MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
#: Human name of each target's library.
TARGET_LIBRARIES = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT for RTX"}


@dataclass
class EngineManifest:
    bundle_sha256: str
    precision: str                     # fp32 | fp16 | int8
    tensorrt_version: str              # version of the target's library (TensorRT or TensorRT for RTX)
    gpu_name: str                      # the build GPU (tensorrt); "" for ahead-of-time builds
    compute_capability: str            # tensorrt: the one it runs on; tensorrt-rtx: the list, comma-separated
    onnx_sha256: str                   # the (precision variant) ONNX the engine was parsed from
    calibration_sha256: str | None = None
    max_batch: int = 1
    build_flags: dict = field(default_factory=dict)
    target: str = "tensorrt"
    #: What the built engine computes in, per layer kind and input datatype (from the builder's
    #: layer report), e.g. {"convolution": {"Int8": 30, "Float": 6}}; empty where not reported.
    layer_precisions: dict = field(default_factory=dict)
    format_version: int = 1

    @staticmethod
    def path_for(engine: str | Path) -> Path:
        return Path(str(engine) + ".json")

    @property
    def compute_capabilities(self) -> list[str]:
        return [c.strip() for c in self.compute_capability.split(",") if c.strip()]

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
            m = cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (json.JSONDecodeError, TypeError) as exc:
            raise ModelError(f"engine manifest is malformed ({exc})", str(engine)) from None
        if m.target not in TARGETS:
            raise ModelError(f"engine manifest names an unknown target {m.target!r}", str(engine))
        return m

    def rebuild_command(self, engine: str | Path, compute_capability: str | None = None) -> str:
        cmd = f"efiqa build --target {self.target} --precision {self.precision}"
        if self.target == "tensorrt-rtx":
            cmd += f" --compute-capability {_sm(compute_capability) if compute_capability else _sm_list(self)}"
        return cmd + f" --out {engine}"

    def check(self, engine: str | Path, bundle_sha256: str, tensorrt_version: str, gpu_name: str,
              compute_capability: str, target: str = "tensorrt") -> None:
        """Raise :class:`EngineMismatchError` naming every mismatch and the command that fixes it."""
        problems = []
        lib = TARGET_LIBRARIES[self.target]
        if self.target != target:
            problems.append(f"it is a {lib} engine and this runtime uses {TARGET_LIBRARIES[target]}")
        if self.bundle_sha256 != bundle_sha256:
            problems.append("it was built from another model bundle")
        if self.target == target and _major_minor(self.tensorrt_version) != _major_minor(tensorrt_version):
            problems.append(f"it was built with {lib} {self.tensorrt_version}, this machine has {tensorrt_version}")
        if self.target == "tensorrt-rtx":
            if compute_capability not in self.compute_capabilities:
                problems.append(f"it was built for compute capabilities {', '.join(self.compute_capabilities)}, "
                                f"this GPU is {compute_capability} ({gpu_name})")
        elif self.compute_capability != compute_capability:
            problems.append(f"it was built for compute capability {self.compute_capability} ({self.gpu_name}), "
                            f"this GPU is {compute_capability} ({gpu_name})")
        if problems:
            raise EngineMismatchError(
                "engine does not match: " + "; ".join(problems)
                + f". Rebuild it here: {self.rebuild_command(engine, compute_capability)}", str(engine))


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _sm(cc: str) -> str:
    """"8.6" → "86" (the form --compute-capability takes)."""
    return cc.replace(".", "")


def _sm_list(m: EngineManifest) -> str:
    return ",".join(_sm(c) for c in m.compute_capabilities)
