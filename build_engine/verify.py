"""Fidelity gate: a precision variant against the FP32 bundle, on photos disjoint from the
calibration set. A variant that fails is not deployable; the worst layers are named.

INT8 Q/DQ graphs run in ONNX Runtime with graph optimisations disabled: ORT's fused int8 CPU
kernels are lossy on AVX2, while plain Q→DQ→float op simulates TensorRT's int8 arithmetic.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

#: Default gates. FP16: map r ≥ 0.999. INT8: r ≥ 0.98, ≥ 99 % of gradable decisions unchanged and a
#: patch AUROC (against the evaluation ground truth, where measured) at most 0.01 lower. Both need
#: ≥ 200 verification inputs: on 13 photos one flipped decision is an 8 % disagreement.
GATES = {"fp16": {"min_pearson": 0.999, "min_agreement": 0.0, "max_auroc_drop": 0.01, "min_frames": 200},
         "int8": {"min_pearson": 0.98, "min_agreement": 0.99, "max_auroc_drop": 0.01, "min_frames": 200}}


@dataclass
class Fidelity:
    precision: str
    pearson: float
    max_abs_dp: float
    mean_abs_dp: float
    patch_agreement: float      # patch decisions at the manifest patch threshold
    gradable_agreement: float   # image decisions at the manifest gradable threshold
    frames: int
    passed: bool
    gates: dict
    worst_layers: list[tuple[str, float]] = field(default_factory=list)
    auroc: dict | None = None   # patch AUROC vs evaluation ground truth: fp32 and variant
    agreement_ci95: tuple[float, float] = (0.0, 1.0)  # Wilson interval of gradable_agreement
    flipped: int = 0            # gradable decisions that changed
    failures: list[str] = field(default_factory=list)  # why it failed, one line per gate missed
    score_pearson: float | None = None  # Pearson r of the score channel (two-head bundles)

    def to_dict(self) -> dict:
        return asdict(self)

    def judge(self) -> "Fidelity":
        """Set ``passed`` and ``failures`` from the gates and what was measured."""
        g, f = self.gates, []
        if self.frames < g.get("min_frames", 0):
            f.append(f"{self.frames} verification inputs < {g['min_frames']} (add photos or --perturbations)")
        if self.pearson < g["min_pearson"]:
            f.append(f"map Pearson r {self.pearson:.4f} < {g['min_pearson']}")
        if self.score_pearson is not None and self.score_pearson < g["min_pearson"]:
            f.append(f"score map Pearson r {self.score_pearson:.4f} < {g['min_pearson']}")
        if self.gradable_agreement < g["min_agreement"]:
            f.append(f"gradable decisions kept {self.gradable_agreement:.2%} < {g['min_agreement']:.0%} "
                     f"({self.flipped} of {self.frames} flipped)")
        if self.auroc is not None and -self.auroc["change"] > g.get("max_auroc_drop", 1.0):
            f.append(f"patch AUROC drops by {-self.auroc['change']:.4f} > {g['max_auroc_drop']}")
        self.failures, self.passed = f, not f
        return self


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion (sound near 0 and 1, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def session(onnx_bytes: bytes, simulate_int8: bool = False):
    from efiqa.backends.onnxruntime import make_session

    return make_session(onnx_bytes, providers=["CPUExecutionProvider"], optimize=not simulate_int8)


def run_maps(onnx_bytes: bytes, tensors: np.ndarray, input_name: str, simulate_int8: bool = False,
             batch: int = 4) -> np.ndarray:
    """Probabilities (N, C, G, G): every output channel (map[, score])."""
    s = session(onnx_bytes, simulate_int8)
    outs = [s.run(None, {input_name: tensors[i:i + batch].astype(np.float32)})[0]
            for i in range(0, len(tensors), batch)]
    logits = np.concatenate(outs)
    return 1 / (1 + np.exp(-logits))


def compare(ref: np.ndarray, var: np.ndarray, valid: np.ndarray, precision: str, patch_threshold: float,
            gradable_threshold: float, gates: dict | None = None) -> Fidelity:
    """Outputs (N, C, G, G) of FP32 and variant (:func:`run_maps`); ``valid`` (N, G, G) marks in-FOV
    cells. The map's Pearson r, differences and patch decisions are read on channel 0; the gradable
    decisions on the score channel (the last: channel 1 of a two-head bundle, else the map), whose
    own Pearson r (``score_pearson``, two heads only) the same ``min_pearson`` gates."""
    if ref.ndim != 4 or ref.shape != var.shape:
        raise ValueError(f"expected two (N, C, G, G) arrays of one shape, got {ref.shape} and {var.shape}")
    g = {**GATES.get(precision, GATES["int8"]), **(gates or {})}
    score_ref, score_var = ref[:, -1], var[:, -1]
    score_r = _pearson(score_ref[valid], score_var[valid]) if ref.shape[1] > 1 else None
    ref, var = ref[:, 0], var[:, 0]
    a, b = ref[valid], var[valid]
    d = np.abs(a - b)
    r = _pearson(a, b)
    patch_agree = float(np.mean((a >= patch_threshold) == (b >= patch_threshold)))
    score_ref = np.array([m[v].mean() for m, v in zip(score_ref, valid)])
    score_var = np.array([m[v].mean() for m, v in zip(score_var, valid)])
    same = (score_ref < gradable_threshold) == (score_var < gradable_threshold)
    fid = Fidelity(precision, r, float(d.max()), float(d.mean()), patch_agree, float(np.mean(same)), len(ref),
                   False, g, agreement_ci95=wilson(int(same.sum()), len(same)), flipped=int((~same).sum()),
                   score_pearson=score_r)
    return fid.judge()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() > 1e-4 and b.std() > 1e-4:
        return float(np.corrcoef(a, b)[0, 1])
    return 1.0 if np.abs(a - b).max() < 1e-3 else 0.0  # (near-)constant: judged by the differences alone


def worst_layers(ref_bytes: bytes, var_bytes: bytes, tensors: np.ndarray, input_name: str,
                 simulate_int8: bool, top: int = 5) -> list[tuple[str, float]]:
    """Tensors that both graphs compute, ranked by relative error (polygraphy marks every output)."""
    from polygraphy import constants
    from polygraphy.backend.onnx import ModifyOutputs, OnnxFromBytes
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    def outputs(model_bytes: bytes, int8: bool) -> dict[str, np.ndarray]:
        import onnx

        marked = ModifyOutputs(OnnxFromBytes(model_bytes), outputs=constants.MARK_ALL)()
        sess = session(onnx._serialize(marked) if hasattr(onnx, "_serialize") else marked.SerializeToString(), int8)
        runner = OnnxrtRunner(lambda: sess)
        with runner:
            return dict(runner.infer({input_name: tensors[:1].astype(np.float32)}))

    ref = outputs(ref_bytes, False)
    var = outputs(var_bytes, simulate_int8)
    errs = []
    for name, a in ref.items():
        b = var.get(name)
        if b is None or a.shape != b.shape or not np.issubdtype(a.dtype, np.floating):
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        errs.append((name, float(np.abs(a64 - b64).mean() / (np.abs(a64).mean() + 1e-9))))
    return sorted(errs, key=lambda e: -e[1])[:top]
