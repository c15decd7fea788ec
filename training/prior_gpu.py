"""The authors' size of inpainting prior (64 base channels, 5 levels, batch 16) on a lent GPU.

A GPU machine here holds no photographs, so the work is split in three:

    efiqa train prior maps .prior/pool_maps.npz [--data DIR]     # here: the pool's vessel maps
    efiqa train prior train .prior/pool_maps.npz OUT --seconds 420   # on the GPU (carry .prior)
    efiqa train prior assemble OUT .prior/inpainter64.pt --maps .prior/pool_maps.npz  # here

(``python -m efiqa.train.prior_gpu …`` is the same where torch is installed.)

``maps`` writes what ``teacher.train`` learns from (the visible extractor's maps of the training
pool, 256², with their FOV) and nothing else: no photo leaves this machine. ``train`` runs the same
samples as ``teacher.fit`` (``teacher.training_sample``: augmentation, grid or blob masks, fills),
drawn by DataLoader workers, with bf16 autocast, AdamW on torch's one-cycle schedule of rate and β1
(as ``fit``; the H200 run of 2026-12-01 cycled the rate only, β1 fixed at 0.9). With ``--seconds`` the
schedule is set by time (the step count is measured after a short warm-up and logged); ``--steps``
fixes it instead. Weights come back as fp16 in parts of at most 15 MiB (the device's file limit).
``assemble`` joins them, checks their sha256 and measures ``teacher.hole_recovery`` on the maps.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from . import teacher

PART_BYTES = 15 * 2**20
WARMUP_STEPS = 30  # a --seconds run times steps 30-59, held at the schedule's first rate, then fixes its length


def save_maps(names: list[str], maps: list[tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    np.savez_compressed(path, names=np.array(names), maps=np.stack([m for m, _ in maps]).astype(np.float16),
                        fov=np.stack([f for _, f in maps]))


def load_maps(path: Path) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    z = np.load(path)
    return [str(n) for n in z["names"]], [(m.astype(np.float32), f.astype(bool)) for m, f in zip(z["maps"], z["fov"])]


class Samples(torch.utils.data.IterableDataset):
    """Endless ``teacher.training_sample`` draws; each worker its own generator. Training progress
    (for the grid's ratio schedule) is read from a shared value the training loop advances."""

    def __init__(self, maps: list[tuple[np.ndarray, np.ndarray]], seed: int, progress) -> None:
        self.maps, self.seed, self.progress = maps, seed, progress

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            x, v, f = teacher.training_sample(*self.maps[int(rng.integers(len(self.maps)))], rng, self.progress.value)
            yield x[None], v[None], f[None].astype(np.float32)


def _schedule(step: int, steps: int, peak: float, pct_start: float = 0.05) -> tuple[float, float]:
    """(rate, Adam's β1) of torch's OneCycleLR with its defaults, as ``teacher.fit`` trains: the rate
    from peak/25 up to ``peak`` then down to peak/25/1e4, β1 from 0.95 down to 0.85 and back, on cosines."""
    start, low = peak / 25, peak / 25 / 1e4
    up = float(pct_start * steps) - 1
    if step <= up:
        (a, b), (ma, mb), t = (start, peak), (0.95, 0.85), step / up
    else:
        (a, b), (ma, mb), t = (peak, low), (0.85, 0.95), (step - up) / (steps - 1 - up)
    c = (math.cos(math.pi * t) + 1) / 2
    return b + (a - b) * c, mb + (ma - mb) * c


def train(maps_path: Path, out: Path, seconds: float | None = None, steps: int | None = None, base: int = 64,
          batch: int = 16, lr: float = 1e-3, seed: int = 0, workers: int = 12, device: str = "cuda") -> dict:
    import multiprocessing as mp

    if (seconds is None) == (steps is None) or (steps is not None and steps < 1):
        raise ValueError("give either a time budget (seconds) or a positive step count, not both")
    names, maps = load_maps(maps_path)
    torch.manual_seed(seed)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    model = teacher.build_model(base).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    progress = mp.get_context("fork").Value("d", 0.0, lock=False)
    loader = torch.utils.data.DataLoader(Samples(maps, seed, progress), batch_size=batch, num_workers=workers,
                                         pin_memory=device == "cuda", persistent_workers=workers > 0,
                                         multiprocessing_context="fork" if workers else None,
                                         worker_init_fn=lambda _: cv2.setNumThreads(1))
    amp = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    total = steps  # None until a --seconds run has timed its pace
    history, window, t0, t_warm = [], [], time.time(), None
    model.train()
    for step, (x, inp, fov) in enumerate(loader):
        if total is not None and step >= total:
            break
        if total is None and step == WARMUP_STEPS:
            sync()
            t_warm = time.time()
        if total is None and step == 2 * WARMUP_STEPS:  # fix the schedule's length from the measured pace
            sync()
            pace = (time.time() - t_warm) / WARMUP_STEPS
            total = max(2 * WARMUP_STEPS + 1, int((seconds - (time.time() - t0)) / pace) + step)
        rate, beta1 = _schedule(step if total else 0, total or 2, lr)
        for g in opt.param_groups:
            g["lr"], g["betas"] = rate, (beta1, g["betas"][1])
        progress.value = step / total if total else 0.0
        x, inp, fov = (t.to(device, non_blocking=True).to(memory_format=torch.channels_last) for t in (x, inp, fov))
        with amp:
            recon = model(inp)
        loss = (((recon.float() - x) ** 2) * fov).sum() / fov.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(loss.detach())
        if len(window) == 100 or step == (total or 0) - 1:
            history.append({"step": step + 1, "seconds": round(time.time() - t0, 1),
                            "lr": rate, "beta1": beta1, "mse": float(torch.stack(window).mean())})
            window = []
            print(json.dumps(history[-1]), flush=True)
    model = model.float().cpu().eval()
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}, buf)
    blob = buf.getvalue()
    parts = [f"prior.pt.{i}" for i in range(math.ceil(len(blob) / PART_BYTES))]
    for i, name in enumerate(parts):
        (out / name).write_bytes(blob[i * PART_BYTES:(i + 1) * PART_BYTES])
    log = {"base": base, "levels": teacher.LEVELS, "batch": batch, "lr": lr, "seed": seed, "workers": workers,
           "steps": total, "schedule": "seconds" if steps is None else "steps",
           "seconds_budget": seconds, "train_seconds": round(time.time() - t0, 1), "history": history,
           "final_mse": history[-1]["mse"] if history else None, "params": sum(p.numel() for p in model.parameters()),
           "device": torch.cuda.get_device_name(0) if device == "cuda" else device, "torch": torch.__version__,
           "train_images": names, "maps_sha256": hashlib.sha256(maps_path.read_bytes()).hexdigest(),
           "weights": {"parts": parts, "dtype": "float16", "sha256": hashlib.sha256(blob).hexdigest()},
           "fills": list(teacher.FILLS), "apply_p": teacher.APPLY_P, "blob_p": teacher.BLOB_P}
    (out / "prior_log.json").write_text(json.dumps(log, indent=1))
    return log


def assemble(folder: Path, dest: Path, maps_path: Path | None = None) -> dict:
    """Join the fp16 parts into ``dest`` (fp32, as ``teacher.load_model`` reads) and measure hole recovery."""
    log = json.loads((folder / "prior_log.json").read_text())
    blob = b"".join((folder / p).read_bytes() for p in log["weights"]["parts"])
    if hashlib.sha256(blob).hexdigest() != log["weights"]["sha256"]:
        raise ValueError(f"{folder}: the weight parts do not join to the logged sha256")
    if log["levels"] != teacher.LEVELS:
        raise ValueError(f"{folder}: a prior of {log['levels']} levels; the teacher builds {teacher.LEVELS}")
    if maps_path is not None and hashlib.sha256(maps_path.read_bytes()).hexdigest() != log["maps_sha256"]:
        raise ValueError(f"{maps_path} is not the npz the prior in {folder} was trained on")
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    model = teacher.build_model(log["base"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), dest)
    if maps_path is not None:
        log["hole_recovery"] = teacher.hole_recovery(model.eval(), load_maps(maps_path)[1])
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="efiqa train prior", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("maps", help="the pool's vessel maps and FOVs → one npz (run where the photos are)")
    m.add_argument("out", type=Path)
    m.add_argument("--data", default=None)
    m.add_argument("--vessels", type=Path, default=Path("models/teacher/vessels.pt"))
    t = sub.add_parser("train", help="train the prior from the npz (run on the GPU)")
    t.add_argument("maps", type=Path)
    t.add_argument("out", type=Path)
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--seconds", type=float, help="time budget: the step count is measured and logged")
    g.add_argument("--steps", type=int, help="a fixed schedule (e.g. a logged run's step count)")
    t.add_argument("--base", type=int, default=64)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=12)
    t.add_argument("--device", default="cuda")
    a = sub.add_parser("assemble", help="join the returned parts into an inpainter .pt and measure it")
    a.add_argument("folder", type=Path)
    a.add_argument("dest", type=Path)
    a.add_argument("--maps", type=Path, default=None, help="measure hole recovery on these maps")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except (OSError, ValueError) as e:  # a missing or corrupt npz, log or part: one line, exit 2
        print(f"prior_gpu {args.cmd}: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "maps":
        names, maps = teacher.pool_maps(args.data, args.vessels)
        save_maps(names, maps, args.out)
        print(f"{len(names)} maps → {args.out}")
    elif args.cmd == "train":
        log = train(args.maps, args.out, args.seconds, args.steps, args.base, args.batch, args.lr, args.seed,
                    args.workers, args.device)
        print(f"prior: {log['steps']} steps in {log['train_seconds']} s, final MSE {log['final_mse']} → {args.out}")
    else:
        log = assemble(args.folder, args.dest, args.maps)
        (args.dest.with_suffix(".metrics.json")).write_text(json.dumps(log, indent=1))
        print(f"{args.dest}: base {log['base']}, {log['steps']} steps; hole recovery {log.get('hole_recovery')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
