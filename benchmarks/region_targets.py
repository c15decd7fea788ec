"""Does training the student on its perturbations' degraded regions, beside the teacher's labels,
move its maps? The study gate of ``results/region_targets_rule.md`` (written before any result).

The shipped head (384 px, three-scale, conv adapter, its training loop) is trained on 4 of 5
training-pool photos (every fifth held out, as ``feature_ceiling.py`` and ``teacher_rules.py`` hold
it out), seeds 0/1/2, on:

- **teacher**: the teacher's mean anomaly per cell (``target="soft"``, what ships);
- **union**: 1 − (1 − teacher)(1 − region), region being how much detail the label-free
  perturbation destroyed in the cell (``efiqa.train.regions``; ``target="union"``).

Both are scored on the held-out fifth degraded by ``synth`` (patch AUROC per kind and severity,
image ranking), and the rule's three conditions are checked on the means over seeds. Never
``soft``, never the held-out photos of ``accuracy.py``.

    python benchmarks/region_targets.py
    python benchmarks/region_targets.py --ship regions   # the ship gate of a candidate's held-out runs

The second form judges a candidate student (trained with the union target, exported) from its runs
``accuracy.py --model C --previous models/default --tag T`` and ``real_photos.py --model C --tag T``
against the shipped student's (``accuracy.json``, the ``student_previous`` rows of the candidate's
run), clause by clause, into results/region_targets_ship_T.json / .md.

Writes benchmarks/results/region_targets.json / .md and region_targets_examples.png (training
perturbations of the first pool photo: reference, perturbed, teacher label, region map, union).
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
from feature_ceiling import score_heads  # noqa: E402
from machine import stamp  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.imageio import read_image  # noqa: E402
from efiqa.train import distill  # noqa: E402
from efiqa.train.data import data_root, resolve  # noqa: E402

SEEDS = (0, 1, 2)
TARGETS = ("soft", "union")
#: the study gate, fixed before any result (results/region_targets_rule.md)
GAIN, KIND_SLACK, RANKING_SLACK = 0.03, 0.02, 0.01


def gate(rows: dict[str, dict]) -> dict:
    """The rule's three conditions on the means over seeds of the union heads against the teacher heads."""
    mean = {t: seed_means({k: r for k, r in rows.items() if r["target"] == t}) for t in TARGETS}
    soft, union = mean["soft"], mean["union"]
    checks = {"overall_gain": union["overall"] >= soft["overall"] + GAIN,
              "no_kind_worse": all(union["per_kind"][k] >= v - KIND_SLACK for k, v in soft["per_kind"].items()),
              "ranking": union["ranking"] >= soft["ranking"] - RANKING_SLACK}
    return {"means": mean, "checks": checks, "passed": all(checks.values())}


def examples(photo: np.ndarray, fs: distill.FeatureSet, path: Path, show: int = 6) -> None:
    """A picture of the targets of the first photo's most degraded perturbations (by region map)."""
    union = lambda n: 1 - (1 - fs.score[n]) * (1 - fs.region[n])  # noqa: E731
    example_figure(photo, fs, lambda n: fs.region[n].mean(), lambda n: [fs.score[n], fs.region[n], union(n)], path, show)


def example_figure(photo: np.ndarray, fs: distill.FeatureSet, rank, panels, path: Path, show: int = 6,
                   fov: list | None = None) -> None:
    """The first photo's ``show`` perturbations with the highest ``rank(n)``, a row each: reference,
    perturbed, then the cell maps ``panels(n)`` as heat maps; cropped on ``fov[n]`` (the teacher's)
    where given, else on the FOV found in the image."""
    import cv2

    from efiqa.fov import find_fov
    from efiqa.preprocess import Crop, Preprocessor

    row = {(p, k): n for n, (p, k) in enumerate(zip(fs.photo, fs.perturbation))}
    picked = sorted((n for (p, k), n in row.items() if p == 0 and k > 0), key=lambda n: -rank(n))[:show]
    pre, side = Preprocessor(256), 256
    heat = lambda a: cv2.applyColorMap(cv2.resize((np.clip(a, 0, 1) * 255).astype(np.uint8), (side, side),  # noqa: E731
                                                  interpolation=cv2.INTER_NEAREST), cv2.COLORMAP_INFERNO)
    lines = []
    for _, k, reference, img in distill.perturbation_pairs([photo], max(fs.perturbation[n] for n in picked) + 1, 0):
        n = row.get((0, k))
        if n in picked:
            crop = Crop.around(fov[n] if fov is not None else find_fov(img), img.shape)
            lines.append(np.hstack([pre.crop_resize(reference, crop), pre.crop_resize(img, crop),
                                    *(heat(a) for a in panels(n))]))
    cv2.imwrite(str(path), np.vstack(lines))


def ship_gate(tag: str) -> dict:
    """The rule's ship clauses on the candidate's held-out runs tagged ``tag``; every value read from
    the benchmarks' JSON, the bounds those of the rule (set from the shipped student's figures)."""
    results = HERE / "results"
    acc = json.loads((results / f"accuracy_{tag}.json").read_text())["summary"]
    # the previous student's rates from the same run where it holds them (accuracy.py --previous, since
    # region_measures): accuracy.json is overwritten by a ship, and a gate run after it would compare
    # the candidate with itself
    shipped_hrf = (acc["hrf_previous"] if "hrf_previous" in acc else
                   json.loads((results / "accuracy.json").read_text())["summary"]["hrf"])["groups"]
    real = json.loads((results / f"real_photos_{tag}.json").read_text())
    drimdb, variants = real["drimdb"], real["drimdb_variants"]
    auroc = {g: acc[g]["overall"]["student"]["auroc"] for g in ("soft", "synth")}
    fpr = {g: acc[g]["clean_fpr"]["student"] for g in ("soft", "synth")}
    ranking = {g: (acc[g]["ranking"]["student"], acc[g]["ranking"]["student_previous"]) for g in ("soft", "synth")}
    caught = lambda label: drimdb[label]["refused"] + drimdb[label]["ungradable"]  # noqa: E731
    flags = {g: (acc["hrf"]["groups"][g]["mean_flagged_share"], shipped_hrf[g]["mean_flagged_share"]) for g in ("dr", "g")}
    clauses = {
        "1 soft AUROC >= 0.906": (auroc["soft"], auroc["soft"] >= 0.906),
        "2 synth AUROC >= 0.877": (auroc["synth"], auroc["synth"] >= 0.877),
        "3 clean FPR <= 0.05; ranking >= shipped - 0.01": (
            {"clean_fpr": fpr, "ranking (candidate, shipped)": ranking},
            max(fpr.values()) <= 0.05 and all(c >= p - 0.01 for c, p in ranking.values())),
        "4 DRIMDB-dev AUROC >= 0.99; Good 42/42 gradable; Bad 23/23 and Outliers 8/8 refused or ungradable": (
            {"auroc": real["drimdb_auroc_bad_vs_good"], "good_gradable": drimdb["Good"]["gradable"],
             "bad_caught": caught("Bad"), "outliers_caught": caught("Outlier")},
            real["drimdb_auroc_bad_vs_good"] >= 0.99 and drimdb["Good"]["gradable"] == drimdb["Good"]["n"]
            and caught("Bad") == drimdb["Bad"]["n"] and caught("Outlier") == drimdb["Outlier"]["n"]),
        "5 CLAHE'd Good ungradable <= 3; Graham'd Bad ungradable >= 6": (
            {"clahe_good_ungradable": variants["clahe"]["Good"]["ungradable"],
             "graham_bad_ungradable": variants["graham"]["Bad"]["ungradable"]},
            variants["clahe"]["Good"]["ungradable"] <= 3 and variants["graham"]["Bad"]["ungradable"] >= 6),
        "6 HRF DR and glaucoma flagged share not above the shipped student's": (
            {g: {"candidate": c, "shipped": p} for g, (c, p) in flags.items()}, all(c <= p for c, p in flags.values())),
        "7 IDRiD ungradable <= 23 of 54": (real["unlabelled_cameras"]["IDRiD"]["ungradable"],
                                          real["unlabelled_cameras"]["IDRiD"]["ungradable"] <= 23),
    }
    return {"tag": tag, "candidate_onnx_sha256": real["onnx_sha256"],
            "clauses": {k: {"value": v, "passed": bool(ok)} for k, (v, ok) in clauses.items()},
            "passed": all(ok for _, ok in clauses.values())}


def train_heads(fs: distill.FeatureSet, label: str, value: str, train: set[int], phi: float,
                target: str = "union", seeds: tuple[int, ...] = SEEDS, head: str | None = None) -> tuple[dict, dict]:
    """The shipped map head (``distill.DEFAULT``'s size, features and head, or the adapter kind
    ``head``) trained on ``fs`` with ``target`` from each of ``seeds`` on the ``train`` photos:
    (heads, rows), the rows keyed "VALUE | seed S" and holding ``{label: value}`` for :func:`seed_table`."""
    size, kind, head = distill.DEFAULT["size"], distill.DEFAULT["features"], head or distill.DEFAULT["head"]
    heads, rows = {}, {}
    for seed in seeds:
        res = distill.train_adapter(fs, kind, head, phi=phi, seed=seed, train_photos=train, target=target)
        key = f"{value} | seed {seed}"
        heads[key], rows[key] = res.head.eval(), {label: value, "seed": seed, "size": size, "kind": kind}
        print(key, flush=True)
    return heads, rows


def region_alone(fs: distill.FeatureSet, transform=None) -> distill.FeatureSet:
    """``fs`` whose ``union`` target is its region map alone (a teacher that flags nothing:
    1 − (1 − 0)(1 − r) = r), the region map passed through ``transform`` where given."""
    region = fs.region if transform is None else [transform(r) for r in fs.region]
    return dataclasses.replace(fs, score=[np.zeros_like(s) for s in fs.score], region=region)


def score_pool(heads: dict, rows: dict, names: list[str], val: set[int], data: str | None) -> tuple[dict, dict]:
    """:func:`feature_ceiling.score_heads` on the validation photos ``val`` of the pool: (summary, photos)."""
    root = data_root(data)
    photos = {names[i]: distill.working_copy(read_image(resolve(names[i], root))) for i in sorted(val)}
    return score_heads(heads, rows, photos), photos


def seed_means(rows: dict[str, dict]) -> dict:
    """Overall AUROC, ranking, AUROC per severity and per kind, each the mean over ``rows``."""
    first = next(iter(rows.values()))
    avg = lambda f: float(np.mean([f(r) for r in rows.values()]))  # noqa: E731
    return {"overall": avg(lambda r: r["overall"]), "ranking": avg(lambda r: r["ranking"]),
            "per_severity": {s: avg(lambda r: r["per_severity"][s]) for s in first["per_severity"]},
            "per_kind": {k: avg(lambda r: r["per_kind"][k]) for k in first["per_kind"]}}


def seed_table(rows: dict[str, dict], label: str, sevs: list[str], kinds: list[str]) -> list[str]:
    """Markdown lines of a study's heads, one row each: its ``label`` value, seed, overall patch
    AUROC, ranking, AUROC per severity and per kind (the rows :func:`feature_ceiling.score_heads` filled)."""
    return (["| " + label + " | seed | overall AUROC | ranking | " + " | ".join(f"severity {s}" for s in sevs) + " | "
             + " | ".join(kinds) + " |", "|---|---|---|---|" + "---|" * (len(sevs) + len(kinds))]
            + [f"| {r[label]} | {r['seed']} | {r['overall']:.4f} | {r['ranking']:.3f} | "
               + " | ".join(f"{r['per_severity'][s]:.3f}" for s in sevs) + " | "
               + " | ".join(f"{r['per_kind'][k]:.3f}" for k in kinds) + " |" for r in rows.values()])


def clause_table(verdict: dict) -> list[str]:
    """A ship gate's clauses as Markdown table lines, then its verdict."""
    return (["| clause | value | passed |", "|---|---|---|"]
            + [f"| {k} | `{json.dumps(c['value'])}` | {'yes' if c['passed'] else '**no**'} |"
               for k, c in verdict["clauses"].items()]
            + ["", f"**{'Passed: ship.' if verdict['passed'] else 'Failed: not shipped.'}**"])


def write_ship_gate(tag: str) -> None:
    """:func:`ship_gate` into results/region_targets_ship_TAG.json and a Markdown table beside it."""
    verdict = ship_gate(tag)
    results = HERE / "results"
    (results / f"region_targets_ship_{tag}.json").write_text(json.dumps(verdict, indent=2) + "\n")
    md = [f"# Region targets: the ship gate of candidate `{tag}`", "",
          f"Rule: `results/region_targets_rule.md`; runs: `accuracy_{tag}.json`, `real_photos_{tag}.json`; "
          f"candidate ONNX sha256 `{verdict['candidate_onnx_sha256'][:16]}…`. "
          f"Command: `python benchmarks/region_targets.py --ship {tag}`.", "", *clause_table(verdict)]
    (results / f"region_targets_ship_{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    """The study gate (train and score the heads), or with ``--ship TAG`` the ship gate only."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    ap.add_argument("--ship", metavar="TAG", help="judge the candidate's held-out runs tagged TAG (no training)")
    args = ap.parse_args()
    if args.ship:
        return write_ship_gate(args.ship)
    t0 = time.time()
    size = distill.DEFAULT["size"]
    names, sets, phi, train, val = pool_features(args, (size,), regions_too=True)
    fs = sets[size]
    mine = np.array([p in train for p in fs.photo])
    valid = np.stack(fs.valid)[mine]
    region = np.stack(fs.region)[mine][valid]
    heads, rows = {}, {}
    for target in TARGETS:
        h, r = train_heads(fs, "target", target, train, phi, target=target)
        heads.update(h)
        rows.update(r)
    summary, photos = score_pool(heads, rows, names, val, args.data)
    verdict = gate(rows)
    command = " ".join(["python benchmarks/region_targets.py", *sys.argv[1:]])
    out = {"benchmark": "region_targets", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "seconds": round(time.time() - t0),
           "training_region": {"mean": float(region.mean()),
                               "quantiles_50_90_99": [float(q) for q in np.quantile(region, [0.5, 0.9, 0.99])]},
           "rows": rows, "gate": verdict}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "region_targets.json").write_text(json.dumps(out, indent=2) + "\n")
    kinds, sevs = list(summary["per_kind"]), list(summary["per_severity"])
    md = ["# Region targets: the study gate", "",
          f"The shipped adapter trained on {len(train)} training-pool photos, on the teacher's labels (`soft`) or on "
          f"the union of the teacher's labels and the perturbations' degraded regions (`union`); scored on the other "
          f"{len(photos)} degraded by `synth` (patch AUROC). Rule: `results/region_targets_rule.md`. "
          f"Command: `{command}`.", "", *seed_table(rows, "target", sevs, kinds)]
    md += ["", "Means over seeds and the gate:", "",
           "| target | overall | ranking | " + " | ".join(kinds) + " |", "|---|---|---|" + "---|" * len(kinds)]
    md += [f"| {t} | {m['overall']:.4f} | {m['ranking']:.3f} | " + " | ".join(f"{m['per_kind'][k]:.3f}" for k in kinds)
           + " |" for t, m in verdict["means"].items()]
    md += ["", "Checks: " + ", ".join(f"{k} {'pass' if v else 'FAIL'}" for k, v in verdict["checks"].items())
           + f". **Gate {'passed' if verdict['passed'] else 'failed'}.**"]
    (HERE / "results" / "region_targets.md").write_text("\n".join(md) + "\n")
    examples(distill.working_copy(read_image(resolve(names[0], data_root(args.data)))), fs,
             HERE / "results" / "region_targets_examples.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
