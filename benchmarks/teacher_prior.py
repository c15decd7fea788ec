"""Another inpainting prior in the teacher, judged by the student: the study gate of
``results/teacher_prior_rule.md`` (written before any result).

The pool relabelled by the teacher in ``--teacher`` (the shipped teacher with only
``inpainter.pt`` and its recalibrated ``teacher.json`` changed); the shipped map head on the shipped
``union`` target with the ``cs`` region maps of ``region_measures.py`` (its cache, checked against
today's code), seeds 0/1/2, the same split; scored on the other fifth degraded by ``synth`` and
judged against ``region_measures.json``'s ``cs`` rows (the shipped prior).

    python benchmarks/region_measures.py        # first: the cs maps' cache and the rows compared with
    python -m efiqa.train.prior_gpu assemble …  # the prior (see efiqa.train.prior_gpu)
    python benchmarks/teacher_prior.py --teacher DIR [--name prior64]

Also measures both priors' ``teacher.hole_recovery`` on the pool's vessel maps (the same maps for
both; disc radii 16/32/48 px). Writes results/teacher_prior.json / .md and teacher_prior_holes.png
(the priors' redraws of hard and fading holes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from region_targets import seed_table  # noqa: E402
from student_variants import pool_arguments  # noqa: E402
from teacher_excess import beside_cs, cs_study, verdict_lines  # noqa: E402

from efiqa.train import teacher as T  # noqa: E402
from efiqa.train import vessels as vessel_stage  # noqa: E402
from efiqa.train.data import data_root, load_photo  # noqa: E402

SHIPPED = HERE.parent / "models" / "teacher"
#: training-pool photos (four cameras) whose vessel maps show the priors' redraws in the figure
FIGURE_PHOTOS = ["DRIVE/training/images/21_training.tif", "HRF/images/02_dr.JPG", "unlabelled/IDRiD/IDRiD_15.jpg",
                 "unlabelled/REFUGE/g0001.jpg"]


def pass_seconds(model: T.ResidualInpainter, repeats: int = 5) -> float:
    """Median CPU seconds of one 256² pass (the teacher runs one per photo)."""
    x = torch.rand(1, 1, T.MAP_SIZE, T.MAP_SIZE)
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def prior_facts(folder: Path) -> dict:
    """What the rule reports beside the gate: the prior's size, sha256, CPU pass and calibration."""
    model = T.load_model(folder / "inpainter.pt")
    config = json.loads((folder / T.CONFIG).read_text())
    return {"inpainter_sha256": hashlib.sha256((folder / "inpainter.pt").read_bytes()).hexdigest(),
            "base": int(model.net.down[0][0].weight.shape[0]), "params": sum(p.numel() for p in model.parameters()),
            "cpu_pass_seconds": pass_seconds(model), "tau": config["tau"], "phi": config["phi"],
            "vessel_depth": config["vessel_depth"], "vessel_contrast": config.get("vessel_contrast")}


def hole_figure(maps: list[tuple[np.ndarray, np.ndarray]], priors: dict[str, Path], path: Path,
                radius: int = 32, seed: int = 0) -> None:
    """A row per map: the map, then for a hard and a soft (fading) hole of ``radius`` px the map with
    the hole and each prior's redraw of it (the disc outlined), as ``teacher.hole_recovery`` measures."""
    import cv2

    rng = np.random.default_rng(seed)
    models = {name: T.load_model(folder / "inpainter.pt") for name, folder in priors.items()}
    grey = lambda a: cv2.cvtColor((np.clip(a, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)  # noqa: E731
    rows = []
    for v, f in maps:
        ys, xs = np.nonzero(cv2.erode(f.astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)))
        k = rng.integers(len(ys))
        disc = np.zeros_like(v)
        cv2.circle(disc, (int(xs[k]), int(ys[k])), radius, 1, -1)
        tiles = [grey(v)]
        for keep in (1 - disc, 1 - cv2.GaussianBlur(disc, (0, 0), radius / 4)):
            x = (v * keep).astype(np.float32)
            with torch.no_grad():
                redraws = [m(torch.from_numpy(x)[None, None])[0, 0].numpy() for m in models.values()]
            for a in (x, *redraws):
                tile = grey(a)
                cv2.circle(tile, (int(xs[k]), int(ys[k])), radius, (0, 200, 255), 1)
                tiles.append(tile)
        rows.append(np.hstack(tiles))
    head = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    titles = ["map"] + [f"{kind}: {t}" for kind in ("hard", "soft") for t in ("input", *models)]
    for i, t in enumerate(titles):
        cv2.putText(head, t, (i * T.MAP_SIZE + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), np.vstack([head, *rows]))


def check_candidate(folder: Path) -> None:
    """The rule changes the prior only: the extractors and the visibility references must be the
    shipped ones (a stale or missing teacher.json would change the labels for another reason)."""
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    if not (folder / T.CONFIG).is_file():
        raise SystemExit(f"{folder} has no {T.CONFIG}: run efiqa train teacher --calibrate-only --dir {folder}")
    if digest(folder / "inpainter.pt") == digest(SHIPPED / "inpainter.pt"):
        raise SystemExit(f"{folder} holds the shipped prior: --teacher must name the candidate's folder")
    for f in ("vessels.pt", "anatomy.pt"):
        if digest(folder / f) != digest(SHIPPED / f):
            raise SystemExit(f"{folder / f} is not the shipped extractor: the rule changes the prior only")
    mine, shipped = (json.loads((f / T.CONFIG).read_text()) for f in (folder, SHIPPED))
    for key in ("vessel_depth", "vessel_contrast"):
        if mine.get(key) != shipped.get(key):
            raise SystemExit(f"{folder / T.CONFIG}: {key} {mine.get(key)} is not the shipped {shipped.get(key)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    ap.add_argument("--name", default="prior64", help="the candidate's name in the tables")
    args = ap.parse_args()
    check_candidate(args.teacher)
    t0 = time.time()
    st = cs_study(args, "teacher", args.name)
    rows, mean, base, checks, kinds = st["rows"], st["mean"], st["base"], st["checks"], st["kinds"]
    clean_label = float(np.mean(st["clean"]))
    facts = {args.name: prior_facts(args.teacher), "shipped": prior_facts(SHIPPED)}
    _, pool = T.pool_maps(args.data, SHIPPED / "vessels.pt")  # both priors measured on the same maps
    for name, folder in ((args.name, args.teacher), ("shipped", SHIPPED)):
        facts[name]["hole_recovery"] = T.hole_recovery(T.load_model(folder / "inpainter.pt"), pool)
    extractor, root = vessel_stage.load_model(SHIPPED / "vessels.pt"), data_root(args.data)
    hole_figure([T.vessel_map(extractor, load_photo(n, vessel_stage.SIZE, root)) for n in FIGURE_PHOTOS],
                {"shipped": SHIPPED, args.name: args.teacher}, HERE / "results" / "teacher_prior_holes.png")
    command = " ".join(["python benchmarks/teacher_prior.py", *sys.argv[1:]])
    out = {"benchmark": "teacher_prior", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(st["photos"]), "training_photos": len(st["train"]),
           "seconds": round(time.time() - t0), "priors": facts, "clean_mean_teacher_label": clean_label, "rows": rows,
           "mean": mean, "cs (region_measures.json)": base, "checks": checks, "passed": all(checks.values())}
    (HERE / "results" / "teacher_prior.json").write_text(json.dumps(out, indent=2) + "\n")
    md = ["# Another inpainting prior in the teacher, judged by the student: the study gate", "",
          f"The pool relabelled by the teacher in `{args.teacher}` ({facts[args.name]['base']} base channels, "
          f"{facts[args.name]['params']:,} parameters); the shipped map head on the `union` target with the `cs` region "
          f"maps; {len(st['train'])} training-pool photos, scored on the other {len(st['photos'])} degraded by `synth`. "
          f"Rule: `results/teacher_prior_rule.md`. Command: `{command}`.", "",
          *seed_table(rows, "teacher", st["sevs"], kinds), "",
          "Means over seeds, beside `cs` (`region_measures.json`, the shipped prior):", "",
          *beside_cs([(args.name, mean), ("shipped (cs)", base)], "teacher", kinds)]
    md += ["", "| prior | base | parameters | CPU pass (s) | tau | phi | hole recovery hard 16/32/48 | soft 16/32/48 |",
           "|---|---|---|---|---|---|---|---|"]
    for name, f in facts.items():
        h = f["hole_recovery"]
        fmt = lambda d: " / ".join(f"{d[r]:.2f}" for r in ("16", "32", "48"))  # noqa: E731
        md.append(f"| {name} | {f['base']} | {f['params']:,} | {f['cpu_pass_seconds']:.3f} | {f['tau']:.3f} | "
                  f"{f['phi']:.3f} | {fmt(h['hard'])} | {fmt(h['soft'])} |")
    md += ["", f"Mean teacher label on the unperturbed training cells: {clean_label:.3f}.", "", *verdict_lines(checks)]
    (HERE / "results" / "teacher_prior.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
