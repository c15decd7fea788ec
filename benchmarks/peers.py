"""Speed of the peers' networks vs our student, in ONNX Runtime on this machine, same run.

Random weights (compute is what is measured, not accuracy). Needs torchvision, which does not
import beside this project's torch 2.13 — run it in a separate environment:

    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        onnx onnxruntime onnxscript numpy
    /tmp/benchvenv/bin/python benchmarks/peers.py [--runs 5]

Exports are cached under benchmarks/.cache/peers/. FLOPs and parameters are counted from each
ONNX graph (2 × multiply-accumulates of Conv, Gemm and MatMul). Writes benchmarks/results/peers.json.
Ensembles are timed as (members × one member), stated per row.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "peers"
ROOT = HERE.parent

# name: (builder, input size, members, note)
PEERS = {
    "MCF-Net (3× DenseNet121 @224)": ("densenet121", 224, 3, "RGB/HSV/LAB branches"),
    "QuickQual (DenseNet121 @512 + SVM)": ("densenet121", 512, 1, "SVM cost negligible"),
    "AutoMorph M1 (8× EfficientNet-B4 @512)": ("efficientnet_b4", 512, 8, ""),
    "fundus_image_toolbox (ResNet34/50/101/152 + EfficientNet-B0/B1/B3 @512)":
        (["resnet34", "resnet50", "resnet101", "resnet152", "efficientnet_b0", "efficientnet_b1", "efficientnet_b3"],
         512, 1, "one of each published architecture; the published ensemble has 10 members, so this is a lower bound"),
    "EFIQA reference student (ViT-L/16 @256 + linear adapter)": ("vit_l16", 256, 1, "DINOv3 ViT-L/16 shape"),
    "RETFound (ViT-L/16 @224)": ("vit_l16", 224, 1, ""),
    "RETFound-Green (ViT-S/14 @392)": ("vit_s14", 392, 1, ""),
}


def _our_vit():
    spec = importlib.util.spec_from_file_location("vit", ROOT / "training" / "nets" / "vit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(name: str, size: int):
    import torch
    import torchvision

    if name == "vit_l16":
        vit = _our_vit().ViT.preset("vit_large", patch=16, pos_grid=size // 16, layerscale=True)
        return torch.nn.Sequential(vit, torch.nn.Conv2d(1024, 1, 1))
    if name == "vit_s14":
        return _our_vit().ViT.preset("vit_small", patch=14, pos_grid=size // 14, registers=0)
    return getattr(torchvision.models, name)(weights=None)


def export(name: str, size: int) -> Path:
    import torch

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}_{size}.onnx"
    if not path.exists():
        model = build(name, size).eval()
        torch.onnx.export(model, (torch.rand(1, 3, size, size),), str(path), dynamo=True, opset_version=18,
                          input_names=["x"], external_data=False)
    return path


def count(path: Path) -> tuple[int, float]:
    """(parameters, FLOPs) of an ONNX graph: 2 × MACs of Conv, Gemm and MatMul."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path)))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    params = int(sum(v.size for v in inits.values()))
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]  # symbolic (batch) dims count as 1
        shapes[vi.name] = dims
    for k, v in inits.items():
        shapes[k] = list(v.shape)
    macs = 0
    for n in model.graph.node:
        out = shapes.get(n.output[0])
        if not out or 0 in out:
            continue
        if n.op_type == "Conv":
            w = shapes.get(n.input[1])
            if w:
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes.get(n.input[0])
            if a:
                macs += int(np.prod(out)) * int(a[-1])
    return params, 2.0 * macs


def time_onnx(path_or_bytes, size: int, runs: int, threads: int) -> float:
    """Median ms at batch 1 (one warm-up run): speed_matrix's timer."""
    from speed_matrix import time_session

    onnx = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return time_session(onnx, size, 1, runs, threads, warmup=1)["p50"]


def peak_gflops(threads: int) -> float:
    """This CPU's achievable peak, measured: a large float32 matrix product in ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 3072
    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    s = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    a = np.random.rand(n, n).astype(np.float32)
    s.run(None, {"a": a, "b": a})
    ts = []
    for _ in range(10):
        t = time.perf_counter()
        s.run(None, {"a": a, "b": a})
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / min(ts) / 1e9


def main() -> None:
    import onnxruntime

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    peak = peak_gflops(args.threads)
    ours = ROOT / "models" / "default" / "model.onnx"
    manifest = json.loads((ROOT / "models" / "default" / "manifest.json").read_text())
    size = manifest["input_size"]
    ours_ms = time_onnx(ours, size, max(args.runs, 20), args.threads)
    p, f = count(ours)
    rows = [{"model": f"ours: {manifest['name']} @{size}", "members": 1, "ms_p50": ours_ms, "params": p,
             "gflops": f / 1e9, "achieved_gflops_s": f / 1e9 / (ours_ms / 1e3), "speedup_vs_ours": 1.0,
             "note": "spatial 16×16 map"}]
    for label, (arch, sz, members, note) in PEERS.items():
        archs = arch if isinstance(arch, list) else [arch]
        ms = params = flops = 0.0
        for a in archs:
            path = export(a, sz)
            t = time_onnx(path, sz, args.runs, args.threads)
            pa, fl = count(path)
            ms, params, flops = ms + t * members, params + pa * members, flops + fl * members
            print(f"  {a}@{sz}: {t:.0f} ms, {pa / 1e6:.1f} M params, {fl / 1e9:.1f} GFLOPs", flush=True)
        rows.append({"model": label, "members": members * len(archs), "ms_p50": ms, "params": int(params),
                     "gflops": flops / 1e9, "achieved_gflops_s": flops / 1e9 / (ms / 1e3),
                     "speedup_vs_ours": ms / ours_ms, "note": note})
        print(rows[-1], flush=True)
    out = {"benchmark": "peers_speed", "command": "benchmarks/peers.py (separate venv with torchvision)",
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "threads": args.threads, "onnxruntime": onnxruntime.__version__,
           "peak_gflops_s_measured": peak, "peak_method": "best of 10 float32 3072³ MatMul in ONNX Runtime (a measured, not a datasheet, peak: on this shared machine some convolution graphs exceed it)",
           "weights": "random (compute only)", "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "peers.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"peak {peak:.1f} GFLOP/s")
    for r in rows:
        print(f"| {r['model']} | {r['ms_p50']:.0f} | {r['params'] / 1e6:.1f} | {r['gflops']:.1f} | "
              f"{r['achieved_gflops_s']:.1f} ({r['achieved_gflops_s'] / peak:.0%} of peak) | {r['speedup_vs_ours']:.1f}× |")


if __name__ == "__main__":
    main()
