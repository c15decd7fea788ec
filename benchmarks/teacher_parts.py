"""Where does the teacher's score of an unperturbed training-pool photo come from, camera by camera?

For each photo of the training pool (never the held-out or DRIMDB-dev photos), as it is: the share of
the FOV the *anatomy* model expects vessels in, the share the *vessel extractor* traces (its map
limited to the anatomy's, as the teacher uses it), their ratio, and how visible the traced vessels
are to the teacher (depth and Weber contrast at each scale, brightness), with the teacher's mean
patch score. A camera whose photos score high because the extractor misses vessels the anatomy
model sees has a different problem (the extractor's domain) from one whose vessels are traced but
faint (the visibility terms).

    python benchmarks/teacher_parts.py [TEACHER_DIR]

Writes benchmarks/results/teacher_parts.json / .md (per photo and per camera medians).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402

from efiqa.train import teacher as T  # noqa: E402
from efiqa.train.data import UNLABELLED  # noqa: E402
from efiqa.train.distill import photo_list  # noqa: E402


def camera(name: str) -> str:
    parts = name.split("/")
    return parts[1] if parts[0] == UNLABELLED else parts[0]


def parts(teacher: T.Teacher, bgr: np.ndarray) -> dict:
    p = teacher.parts(bgr)
    photo, anatomy, traced = p.photo, p.anatomy, p.traced
    fov = photo.fov_mask
    ves = traced > 0.5
    row = {"anatomy_share": float((anatomy > 0.5)[fov].mean()), "traced_share": float(ves[fov].mean()),
           "green_median": float(np.median(photo.rgb[..., 1][fov]))}
    row["traced_over_anatomy"] = row["traced_share"] / max(row["anatomy_share"], 1e-6)
    for k, ref, con in zip(T.DEPTH_KERNELS, teacher.config["vessel_depth"], teacher.config["vessel_contrast"]):
        depth, background = T._depth_and_background(photo.rgb, k)
        row[f"depth_visibility_k{k}"] = float(np.clip(depth / (T.VISIBLE_K * ref), 0, 1)[ves].mean()) if ves.any() else None
        row[f"weber_visibility_k{k}"] = (float(np.clip(T.weber(depth, background) / (T.VISIBLE_K * con), 0, 1)[ves].mean())
                                         if ves.any() else None)
    row["brightness_visibility"] = float(T.brightness_visibility(photo.rgb, fov)[ves].mean()) if ves.any() else None
    out = teacher.judge(p)
    row["teacher_score"] = float(out.patch_score[out.coverage >= 0.5].mean())
    return row


def main() -> None:
    torch.set_num_threads(2)
    from tqdm import tqdm

    teacher_dir = sys.argv[1] if len(sys.argv) > 1 else "models/teacher"
    teacher = T.Teacher.load(teacher_dir)
    rows = {name: parts(teacher, bgr) for name, bgr in tqdm(photo_list(None, None), desc="teacher parts")}
    keys = [k for k in next(iter(rows.values())) if k != "green_median"] + ["green_median"]
    cams: dict[str, dict] = {}
    for cam in dict.fromkeys(camera(n) for n in rows):
        mine = [r for n, r in rows.items() if camera(n) == cam]
        cams[cam] = {"n": len(mine), **{k: float(np.median([r[k] for r in mine if r[k] is not None])) for k in keys}}
        if len(mine) >= 10:  # within a camera: does the score follow what the extractor misses, or visibility?
            score = [r["teacher_score"] for r in mine]
            cams[cam]["pearson_score_vs"] = {k: float(np.corrcoef([r[k] for r in mine], score)[0, 1]) for k in
                                             ("traced_over_anatomy", "weber_visibility_k7", "brightness_visibility")}
    out = {"benchmark": "teacher_parts", "command": " ".join(["python benchmarks/teacher_parts.py", *sys.argv[1:]]),
           "machine": stamp(), "teacher": teacher_dir, "per_camera_median": cams, "per_photo": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "teacher_parts.json").write_text(json.dumps(out, indent=2) + "\n")
    md = ["# The teacher's parts on the training pool, per camera (medians)", "",
          "Unperturbed photos. Shares are of the FOV at the teacher's map size; visibilities are means over "
          f"the traced vessels (1 = fully visible). Command: `{out['command']}`.", "",
          "| camera | n | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    md += [f"| {cam} | {c['n']} | " + " | ".join(f"{c[k]:.3f}" if k != "green_median" else f"{c[k]:.0f}" for k in keys)
           + " |" for cam, c in cams.items()]
    md += ["", "Within a camera (n ≥ 10), Pearson r of the teacher's score with:", ""]
    md += [f"- {cam}: " + ", ".join(f"{k} {v:+.2f}" for k, v in c["pearson_score_vs"].items())
           for cam, c in cams.items() if "pearson_score_vs" in c]
    (HERE / "results" / "teacher_parts.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
