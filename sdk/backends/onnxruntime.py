"""ONNX Runtime backend: the default everywhere a TensorRT engine is not given."""
from __future__ import annotations

import numpy as np

from ..bundle import Bundle
from ..errors import BackendUnavailableError, ModelError
from .base import Backend


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, threads: int | None = None, providers: list[str] | None = None) -> None:
        super().__init__(bundle)
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - a runtime dependency
            raise BackendUnavailableError("onnxruntime is not installed (pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if bundle.manifest.precision == "int8":
            # ORT's extended optimisations fuse Q/DQ into int8 CPU kernels that saturate on AVX2
            # (measured: |Δp| up to 0.36 on the example photo); basic ones keep the Q/DQ arithmetic
            # TensorRT runs and the fidelity gate measured (|Δp| 0.008).
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        source = str(bundle.path)
        try:
            self.session = ort.InferenceSession(bundle.onnx_bytes, sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for invalid graphs
            raise ModelError(f"ONNX Runtime cannot load the model ({str(exc).splitlines()[0]})", source) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        m = bundle.manifest
        if [i.name for i in inputs] != [m.input_name] or m.output_name not in [o.name for o in outputs]:
            raise ModelError(
                f"model I/O {[i.name for i in inputs]}→{[o.name for o in outputs]} does not match the manifest "
                f"({m.input_name}→{m.output_name})", source)
        shape = inputs[0].shape
        if len(shape) != 4 or list(shape[1:]) != [3, m.input_size, m.input_size]:
            raise ModelError(f"model input shape {shape} does not match the manifest (N, 3, {m.input_size}, {m.input_size})",
                             source)
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.providers = self.session.get_providers()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        m = self.bundle.manifest
        if self._fixed_batch is None or batch.shape[0] == self._fixed_batch:
            return self.session.run([m.output_name], {m.input_name: batch})[0]
        step = self._fixed_batch
        return np.concatenate([self.session.run([m.output_name], {m.input_name: batch[i:i + step]})[0]
                               for i in range(0, batch.shape[0], step)])
