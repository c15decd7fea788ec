"""Are the training perturbations still the images they were at an earlier commit?

``efiqa.train.augment`` and ``distill.perturbations`` were refactored (``augment_pair``: each
perturbation with its reference; shared CLAHE and unsharp helpers) to draw exactly what they drew
before. Where every image is the same, the teacher's labels of them are too, and the stored labels
could be re-keyed instead of recomputed (47 min). This replays the training pool's perturbation
stream with the earlier commit's ``augment.py`` (the loop of that commit's ``distill.perturbations``,
written out below) and with today's code, and compares every image by sha1.

    python benchmarks/perturbation_identity.py [--base 24cf70e] [--augmentations 24]

Writes benchmarks/results/perturbation_identity.json.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

from efiqa.train import distill  # noqa: E402


def old_augment(base: str):
    """``training/augment.py`` as it was at ``base``, loaded as a module of its own."""
    source = subprocess.run(["git", "show", f"{base}:training/augment.py"], cwd=HERE.parent, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "augment_at_base.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("augment_at_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hashes(which: str, base: str, data: str | None, augmentations: int) -> list[str]:
    """sha1 of every image of the pool's perturbation stream (seed 0), in order."""
    photos = [p for _, p in distill.photo_list(None, data)]
    if which == "now":
        stream = (img for _, _, img in distill.perturbations(photos, augmentations, 0))
    else:
        aug = old_augment(base)

        def replay():  # the loop of distill.perturbations as it was at 24cf70e (the default base)
            rng, enhance_rng = np.random.default_rng(0), np.random.default_rng([0, 1])
            for photo in photos:
                for k in range(augmentations):
                    if k == 0:
                        yield photo
                        continue
                    img = aug.augment(photo, rng)
                    yield aug.enhancement(img, enhance_rng) if enhance_rng.random() < distill.ENHANCED else img
        stream = replay()
    return [hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest() for img in stream]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="24cf70e")
    ap.add_argument("--data")
    ap.add_argument("--augmentations", type=int, default=24)
    args = ap.parse_args()
    t0 = time.time()
    with ProcessPoolExecutor(2) as pool:
        then, now = pool.map(hashes, ("base", "now"), (args.base,) * 2, (args.data,) * 2, (args.augmentations,) * 2)
    differ = [n for n, (a, b) in enumerate(zip(then, now)) if a != b]
    out = {"benchmark": "perturbation_identity", "command": " ".join(["python benchmarks/perturbation_identity.py",
                                                                     *sys.argv[1:]]),
           "machine": stamp(), "base": args.base, "images": len(now), "images_at_base": len(then),
           "differing": len(differ), "first_differing": differ[:10], "seconds": round(time.time() - t0),
           "identical": len(then) == len(now) and not differ}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "perturbation_identity.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
