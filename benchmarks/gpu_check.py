"""Device check for a lent GPU machine (PyTorch/CUDA and cuda-python there, no TensorRT).

1. Exercises efiqa's own cuda-python plumbing (efiqa.backends.cuda) on the real GPU: device query,
   device + pinned buffers, async H2D/D2H on a stream, CUDA-graph capture of a copy, round trip.
2. Times the shipped student in PyTorch CUDA as a GPU reference: fp32 and fp16, eager and CUDA
   graphs, batch 1 and 8 (medians of 200 runs after warm-up).

    python benchmarks/gpu_check.py [--out DIR]

Writes gpu_check_<card>.json (the card is named in the file and in its name).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

import numpy as np


def check_cuda_plumbing() -> dict:
    from efiqa.backends.cuda import host_array, load_cuda

    cuda = load_cuda()
    dev = cuda.device_info()
    shape = (8, 3, 512, 512)
    nbytes = int(np.prod(shape)) * 4
    d = cuda.malloc(nbytes)
    h_in_ptr, h_out_ptr = cuda.malloc_host(nbytes), cuda.malloc_host(nbytes)
    h_in, h_out = host_array(h_in_ptr, shape, np.float32), host_array(h_out_ptr, shape, np.float32)
    h_in[:] = np.random.default_rng(0).uniform(0, 255, shape)
    stream = cuda.stream()
    times = []
    for _ in range(50):
        t = time.perf_counter()
        cuda.h2d(d, h_in_ptr, nbytes, stream)
        cuda.d2h(h_out_ptr, d, nbytes, stream)
        cuda.synchronize(stream)
        times.append((time.perf_counter() - t) * 1e3)
    ok = bool(np.array_equal(h_in, h_out))
    graph_ok = None
    if cuda.name == "cuda-python":
        h_out[:] = 0
        cuda.begin_capture(stream)
        cuda.d2h(h_out_ptr, d, nbytes, stream)
        graph = cuda.end_capture(stream)
        cuda.launch_graph(graph, stream)
        cuda.synchronize(stream)
        graph_ok = bool(np.array_equal(h_in, h_out))
    for p in (h_in_ptr, h_out_ptr):
        cuda.free_host(p)
    cuda.free(d)
    cuda.destroy_stream(stream)
    return {"binding": cuda.name, "device": dev.name, "compute_capability": dev.compute_capability,
            "memory_mb": dev.total_memory_mb, "roundtrip_ok": ok, "graph_copy_ok": graph_ok,
            "roundtrip_8x3x512x512_ms_p50": float(np.median(times)),
            "pinned_bandwidth_gb_s": 2 * nbytes / (np.median(times) / 1e3) / 1e9}


def time_torch(size: int = 512, runs: int = 200) -> list[dict]:
    import torch

    from efiqa.train.distill import load_student

    model, _ = load_student()
    model = model.cuda()
    rows = []
    for dtype in (torch.float32, torch.float16):
        m = model.to(dtype)
        for batch in (1, 8):
            x = torch.rand(batch, 3, size, size, device="cuda", dtype=dtype) * 255
            with torch.inference_mode():
                for _ in range(20):
                    m(x)
                torch.cuda.synchronize()
                ts = []
                for _ in range(runs):
                    t = time.perf_counter()
                    m(x)
                    torch.cuda.synchronize()
                    ts.append((time.perf_counter() - t) * 1e3)
            eager = float(np.median(ts))
            g = torch.cuda.CUDAGraph()
            static = x.clone()
            with torch.inference_mode():
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        m(static)
                torch.cuda.current_stream().wait_stream(s)
                with torch.cuda.graph(g):
                    out = m(static)
                ts = []
                for _ in range(runs):
                    t = time.perf_counter()
                    g.replay()
                    torch.cuda.synchronize()
                    ts.append((time.perf_counter() - t) * 1e3)
            graph = float(np.median(ts))
            rows.append({"dtype": str(dtype).replace("torch.", ""), "batch": batch, "size": size,
                         "eager_ms_p50": eager, "cuda_graph_ms_p50": graph,
                         "frames_per_s_graph": batch / (graph / 1e3), "out_shape": list(out.shape)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    card = torch.cuda.get_device_name(0)
    result = {"benchmark": "gpu_check", "card": card, "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tensorrt": "not installed on this machine"}
    try:
        result["cuda_plumbing"] = check_cuda_plumbing()
    except Exception as exc:  # report, do not hide: the JSON says what failed
        result["cuda_plumbing"] = {"error": f"{type(exc).__name__}: {exc}"}
    result["torch_student"] = time_torch()
    from efiqa.build.student_bundle import describe_adapter

    meta = json.loads(Path("models/student/adapter.json").read_text())
    result["adapter"] = f"trained {describe_adapter(meta)}"
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", card).strip("-").lower()
    path = args.out / f"gpu_check_{slug}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
