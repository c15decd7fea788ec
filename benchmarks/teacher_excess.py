"""The teacher counted only above its own clean level in the map head's ``union`` target: the study
gate of ``results/teacher_excess_rule.md`` (written before any result).

Target 1 − (1 − t′)(1 − region), t′ = clip((t − m) / (1 − m), 0, 1), m the median teacher label
over the valid cells of the unperturbed training photos; region the ``cs`` maps of
``region_measures.py`` (its cache, checked against today's code on a few perturbations). The shipped map head, seeds 0/1/2, the same split; scored on the
other fifth degraded by ``synth`` and judged against ``region_measures.json``'s ``cs`` rows.

    python benchmarks/region_measures.py    # first: the cs maps' cache and the rows compared with
    python benchmarks/teacher_excess.py

Writes results/teacher_excess.json / .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from region_measures import cell_measures, study_checks, study_means  # noqa: E402
from region_targets import score_pool, seed_table, train_heads  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.train import distill  # noqa: E402


def newest_measures(cache: Path) -> dict[str, list[np.ndarray]]:
    """The measure maps ``region_measures.py`` cached last (its cache key hashes its source, which
    has changed since without changing a formula; :func:`check_maps` verifies them)."""
    found = sorted(cache.glob("measures_*.pkl"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no region maps in {cache}: run benchmarks/region_measures.py first")
    return distill._load(found[-1])


def check_maps(maps: dict[str, list[np.ndarray]], labels: distill.Labels, photo: np.ndarray, count: int = 4) -> None:
    """Recompute the first photo's first ``count`` perturbed maps and require the cached ones equal."""
    row = {s: n for n, s in enumerate(labels.samples)}
    for i, k, reference, img in distill.perturbation_pairs([photo], count + 1, 0):
        n = row.get((0, k))
        if k and n is not None:
            fresh = cell_measures(reference, img, labels.fov[n], labels.score[n].shape[0])
            if not all(np.array_equal(fresh[m], maps[m][n]) for m in fresh):
                raise SystemExit(f"the cached region maps differ from today's code (perturbation 0#{k})")


def cs_study(args: argparse.Namespace, label: str, value: str, rescore=None) -> dict:
    """The harness of the studies judged against ``region_measures.json``'s ``cs`` rows: the pool's
    features and labels (the teacher in ``args.teacher``), the cached ``cs`` region maps checked
    against today's code, the shipped map head on ``union`` with those maps, seeds 0/1/2, scored on
    the other fifth degraded by ``synth``; the means, the ``cs`` baseline and the rule's checks.
    ``rescore(scores, clean)`` replaces the teacher's labels, ``clean`` being its labels on the valid
    cells of the unperturbed training photos (also returned)."""
    names, sets, phi, train, val = pool_features(args, (distill.DEFAULT["size"],))
    fs = sets[distill.DEFAULT["size"]]
    named = distill.photo_list(None, args.data)
    lkey = distill.label_cache_key([n for n, _ in named], args.teacher, args.augmentations, 0)
    labels = distill._load(args.cache / f"labels_{lkey}.pkl")
    maps = newest_measures(args.cache)
    if len(maps["cs"]) != len(labels.samples):
        raise SystemExit(f"the cached region maps hold {len(maps['cs'])} rows, the labels {len(labels.samples)}")
    check_maps(maps, labels, named[0][1])
    unperturbed = np.array([p in train and k == 0 for p, k in zip(fs.photo, fs.perturbation)])
    clean = np.stack(fs.score)[unperturbed][np.stack(fs.valid)[unperturbed]]
    changes = {"region": [distill._to_grid(a, fs.data.shape[-1]) for a in maps["cs"]]}
    if rescore is not None:
        changes["score"] = rescore(fs.score, clean)
    heads, rows = train_heads(dataclasses.replace(fs, **changes), label, value, train, phi)
    summary, photos = score_pool(heads, rows, names, val, args.data)
    mean = study_means(rows)
    base = json.loads((HERE / "results" / "region_measures.json").read_text())["gate"]["means"]["cs"]
    return {"photos": photos, "train": train, "clean": clean, "rows": rows, "mean": mean, "base": base,
            "checks": study_checks(mean, base), "kinds": list(summary["per_kind"]), "sevs": list(summary["per_severity"])}


def beside_cs(candidates: list[tuple[str, dict]], label: str, kinds: list[str]) -> list[str]:
    """Markdown lines: each (name, :func:`region_measures.study_means`) as a row of means."""
    return (["| " + label + " | overall | severity 1 | ranking | " + " | ".join(kinds) + " |",
             "|---|---|---|---|" + "---|" * len(kinds)]
            + [f"| {t} | {v['overall']:.4f} | {v['severity_1']:.3f} | {v['ranking']:.3f} | "
               + " | ".join(f"{v['per_kind'][k]:.3f}" for k in kinds) + " |" for t, v in candidates])


def verdict_lines(checks: dict[str, bool]) -> list[str]:
    """Markdown lines: the rule's checks, then the verdict."""
    return ["Checks: " + ", ".join(f"{k} {'pass' if ok else 'FAIL'}" for k, ok in checks.items()), "",
            f"**{'Passed.' if all(checks.values()) else 'Failed: recorded, not carried on.'}**"]


def excess(scores: list[np.ndarray], m: float) -> list[np.ndarray]:
    """The teacher's labels above ``m`` (its median on clean cells), rescaled to [0, 1]."""
    return [np.clip((s - m) / (1 - m), 0, 1) for s in scores]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    args = ap.parse_args()
    t0 = time.time()
    st = cs_study(args, "target", "excess", lambda scores, clean: excess(scores, float(np.median(clean))))
    m, rows, mean, base, checks, kinds = float(np.median(st["clean"])), st["rows"], st["mean"], st["base"], st["checks"], st["kinds"]
    command = " ".join(["python benchmarks/teacher_excess.py", *sys.argv[1:]])
    out = {"benchmark": "teacher_excess", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(st["photos"]), "training_photos": len(st["train"]),
           "seconds": round(time.time() - t0), "clean_median_teacher_label": m, "rows": rows, "mean": mean,
           "cs (region_measures.json)": base, "checks": checks, "passed": all(checks.values())}
    (HERE / "results" / "teacher_excess.json").write_text(json.dumps(out, indent=2) + "\n")
    md = ["# The teacher's excess over its clean level in the map head's target: the study gate", "",
          f"The shipped map head on 1 − (1 − t′)(1 − region), t′ the teacher's label above its median on the unperturbed "
          f"training cells ({m:.3f}), rescaled; {len(st['train'])} training-pool photos, scored on the other "
          f"{len(st['photos'])} degraded by `synth`. Rule: `results/teacher_excess_rule.md`. Command: `{command}`.", "",
          *seed_table(rows, "target", st["sevs"], kinds), "", "Means over seeds, beside `cs` (`region_measures.json`):", "",
          *beside_cs([("excess", mean), ("cs", base)], "target", kinds), "", *verdict_lines(checks)]
    (HERE / "results" / "teacher_excess.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
