"""How should the map head's training target measure the detail a perturbation destroyed? The study
gate of ``results/region_measures_rule.md`` (written before any result).

Three measures of lost band-pass detail, each pooled per cell into the ``union`` target
1 − (1 − teacher)(1 − region) of the shipped map head:

- **cs**: 1 − SSIM's contrast-structure term (what ``efiqa.train.regions`` shipped with; it hardly
  moves under a mild loss of contrast);
- **kept**: 1 − (share of the amplitude kept, one-sided) × (structure kept);
- **kept2**: the larger of ``kept`` at the shipped scale and at twice it.

Each trains the shipped head (384 px, three-scale, conv adapter) on 4 of 5 training-pool photos,
seeds 0/1/2, and is scored on the other fifth degraded by ``synth`` (as ``region_targets.py``);
never ``soft``, never the held-out photos of ``accuracy.py``.

    python benchmarks/region_measures.py
    # the candidate student (efiqa train student with the chosen measure): its score head must be the shipped one's
    python benchmarks/region_measures.py --construction STUDENT --shipped models/student
    # the rule's ship gate from the candidate's held-out runs tagged TAG (accuracy.py --previous, real_photos.py)
    python benchmarks/region_measures.py --ship TAG --bundle models/default --previous OLD_BUNDLE

Writes results/region_measures.json / .md and region_measures_examples.png (the first pool photo's
most degraded perturbations: reference, perturbed, then each measure's cell map); the second form
results/region_measures_construction.json, the third region_measures_ship_TAG.json / .md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from region_targets import example_figure, score_pool, seed_means, seed_table, train_heads  # noqa: E402
from student_variants import pool_arguments, pool_features  # noqa: E402

from efiqa.bundle import load_bundle  # noqa: E402
from efiqa.preprocess import Crop, Preprocessor  # noqa: E402
from efiqa.train import distill, regions  # noqa: E402
from efiqa.train.data import fov_disc  # noqa: E402
from efiqa.train.teacher import pool_cells  # noqa: E402

#: the study gate, fixed before any result (results/region_measures_rule.md)
GAIN, SEVERITY_1_GAIN, KIND_SLACK, RANKING_SLACK = 0.02, 0.02, 0.02, 0.01
BASE = "cs"
C = regions.FLOOR ** 2


def moments(reference: np.ndarray, perturbed: np.ndarray, band: tuple[float, float], window: float):
    """Local second moments (σx², σy², σxy) of the two images' band-pass green detail."""
    def bandpass(bgr):
        g = bgr[..., 1].astype(np.float32)
        return cv2.GaussianBlur(g, (0, 0), band[0]) - cv2.GaussianBlur(g, (0, 0), band[1])

    def local(a):
        return cv2.GaussianBlur(a, (0, 0), window)

    x, y = bandpass(reference), bandpass(perturbed)
    return local(x * x), local(y * y), local(x * y)


def cs(sxx, syy, sxy):
    return np.clip(1 - (2 * sxy + C) / (sxx + syy + C), 0, 1)


def kept(sxx, syy, sxy):
    amplitude = np.minimum(1, np.sqrt((syy + C) / (sxx + C)))
    structure = np.clip((sxy + C) / np.sqrt((sxx + C) * (syy + C)), 0, 1)
    return 1 - amplitude * structure


def pixel_measures(reference: np.ndarray, perturbed: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate's per-pixel loss of two aligned images at the analysis size."""
    fine = moments(reference, perturbed, regions.BAND, regions.WINDOW)
    coarse = moments(reference, perturbed, (2 * regions.BAND[0], 2 * regions.BAND[1]), 2 * regions.WINDOW)
    k = kept(*fine)
    return {"cs": cs(*fine), "kept": k, "kept2": np.maximum(k, kept(*coarse))}


MEASURES = ("cs", "kept", "kept2")


def cell_measures(reference: np.ndarray, perturbed: np.ndarray, fov, grid: int) -> dict[str, np.ndarray]:
    """Each measure's grid×grid mean inside the FOV (drawn at sub-pixel precision) on the runtime's crop."""
    if regions.ANALYSIS % grid:
        raise ValueError(f"the analysis size {regions.ANALYSIS} is not a multiple of the grid {grid}")
    crop = Crop.around(fov, perturbed.shape)
    pre = Preprocessor(regions.ANALYSIS)
    inside = fov_disc(regions.ANALYSIS, fov, crop)
    per_pixel = pixel_measures(pre.crop_resize(reference, crop), pre.crop_resize(perturbed, crop))
    return {m: pool_cells(a, inside, grid, 0.0)[0] for m, a in per_pixel.items()}


def measure_maps(photos: list[np.ndarray], labels: distill.Labels, augmentations: int) -> dict[str, list[np.ndarray]]:
    """:func:`cell_measures` of every labelled perturbation, in ``labels.samples`` order (0 unperturbed)."""
    from tqdm import tqdm

    row = {s: n for n, s in enumerate(labels.samples)}
    maps = {m: [None] * len(row) for m in MEASURES}
    for i, k, reference, img in tqdm(distill.perturbation_pairs(photos, augmentations, 0),
                                     total=len(photos) * augmentations, desc="measures"):
        n = row.get((i, k))
        if n is None:
            continue
        g = labels.score[n].shape[0]
        cells = ({m: np.zeros((g, g), np.float32) for m in MEASURES} if k == 0
                 else cell_measures(reference, img, labels.fov[n], g))
        for m, a in cells.items():
            maps[m][n] = a
    return maps


def study_means(rows: dict[str, dict]) -> dict:
    """:func:`region_targets.seed_means` of ``rows`` with the severity-1 AUROC the rule judges beside it."""
    mean = seed_means(rows)
    return {**mean, "severity_1": mean["per_severity"]["1"]}


def train_and_score(sets: dict[str, distill.FeatureSet], label: str, train: set[int], val: set[int], phi: float,
                    names: list[str], data: str | None) -> tuple[dict, dict, dict, dict]:
    """The shipped map head (``union`` target) trained on each candidate's feature set from every seed
    (:func:`region_targets.train_heads`) and scored on the validation photos: (rows, :func:`study_means`
    per candidate, summary, photos)."""
    heads, rows = {}, {}
    for value, fs in sets.items():
        h, r = train_heads(fs, label, value, train, phi)
        heads.update(h)
        rows.update(r)
    summary, photos = score_pool(heads, rows, names, val, data)
    means = {v: study_means({k: r for k, r in rows.items() if r[label] == v}) for v in sets}
    return rows, means, summary, photos


def means_table(label: str, means: dict[str, dict], kinds: list[str]) -> list[str]:
    """Markdown lines of :func:`study_means` per candidate: overall, severity 1, ranking, each kind."""
    return (["| " + label + " | overall | severity 1 | ranking | " + " | ".join(kinds) + " |",
             "|---|---|---|---|" + "---|" * len(kinds)]
            + [f"| {v} | {m['overall']:.4f} | {m['severity_1']:.3f} | {m['ranking']:.3f} | "
               + " | ".join(f"{m['per_kind'][k]:.3f}" for k in kinds) + " |" for v, m in means.items()])


def gate_lines(label: str, rows: dict[str, dict], means: dict[str, dict], sevs: list[str], kinds: list[str],
               base: str, drift: float | None, checks: dict[str, bool], passed: bool) -> list[str]:
    """A study gate's Markdown after its opening paragraph: the rows per seed, the means, how far the
    baseline's rows are from ``fov_defects.json``'s (``drift``; None: not compared), the checks against
    ``base`` and the verdict."""
    return [*seed_table(rows, label, sevs, kinds), "", "Means over seeds:", "", *means_table(label, means, kinds), "",
            *([f"The `{base}` rows' overall AUROC differs from `fov_defects.json`'s rows of the same seeds by at most "
               f"{drift:.4f}.", ""] if drift is not None else []),
            f"Checks against `{base}`: " + ", ".join(f"{k} {'pass' if ok else 'FAIL'}" for k, ok in checks.items()), "",
            "**Passed: on to the ship gate.**" if passed else "**Failed: recorded, not shipped.**"]


def write_gate(name: str, out: dict, title: str, intro: str, label: str, summary: dict, base: str,
               drift: float | None) -> None:
    """Write a study gate's results/NAME.json (``out``: its rows, means, checks, passed) and NAME.md
    (``title``, the ``intro`` paragraph, then :func:`gate_lines`), and print the Markdown."""
    (HERE / "results" / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    kinds, sevs = list(summary["per_kind"]), list(summary["per_severity"])
    md = [f"# {title}", "", intro, "",
          *gate_lines(label, out["rows"], out["means"], sevs, kinds, base, drift, out["checks"], out["passed"])]
    (HERE / "results" / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def study_checks(candidate: dict, base: dict, gain: float = GAIN, severity_1_gain: float = SEVERITY_1_GAIN) -> dict[str, bool]:
    """The rule's four conditions on a candidate's :func:`study_means` against the baseline's (also
    the rule of ``teacher_excess_rule.md``, written alike; ``root_region_rule.md`` asks smaller gains)."""
    return {"overall_gain": candidate["overall"] >= base["overall"] + gain,
            "severity_1_gain": candidate["severity_1"] >= base["severity_1"] + severity_1_gain,
            "no_kind_worse": all(candidate["per_kind"][k] >= v - KIND_SLACK for k, v in base["per_kind"].items()),
            "ranking": candidate["ranking"] >= base["ranking"] - RANKING_SLACK}


def gate(rows: dict[str, dict]) -> dict:
    """The rule's four conditions on each candidate's means over seeds against ``cs``'s; the chosen one."""
    mean = {m: study_means({k: r for k, r in rows.items() if r["measure"] == m}) for m in MEASURES}
    checks = {m: study_checks(mean[m], mean[BASE]) for m in MEASURES if m != BASE}
    passing = [m for m in checks if all(checks[m].values())]
    chosen = max(passing, key=lambda m: (mean[m]["overall"], m == "kept")) if passing else None
    return {"means": mean, "checks": checks, "passed": passing, "chosen": chosen}


def examples(photo: np.ndarray, fs: distill.FeatureSet, maps: dict[str, list[np.ndarray]], fov: list,
             path: Path, show: int = 6) -> None:
    """The first photo's ``show`` most degraded perturbations (by ``kept``): reference, perturbed, each measure."""
    example_figure(photo, fs, lambda n: maps["kept"][n].mean(), lambda n: [maps[m][n] for m in MEASURES], path, show,
                   fov)


def construction(student: Path, shipped: Path) -> dict:
    """The candidate's score head against the shipped student's, weight for weight, with its gradable
    threshold: the rule changes the map head's target only."""
    mine, theirs = (torch.load(f / "adapter.pt", map_location="cpu", weights_only=True) for f in (student, shipped))
    meta, ref = (json.loads((f / "adapter.json").read_text()) for f in (student, shipped))
    keys = sorted(k for k in theirs if k.startswith("score."))
    same_keys = bool(keys) and keys == sorted(k for k in mine if k.startswith("score.")) and all(
        mine[k].shape == theirs[k].shape for k in keys)
    diff = max(float((mine[k].double() - theirs[k].double()).abs().max()) for k in keys) if same_keys else None
    return {"benchmark": "region_measures_construction", "command": " ".join(["python", *sys.argv]), "machine": stamp(),
            "student": str(student), "shipped": str(shipped), "score_tensors": len(keys), "same_keys": same_keys,
            "max_abs_weight_difference": diff, "gradable_threshold": meta["gradable_threshold"],
            "shipped_gradable_threshold": ref["gradable_threshold"],
            "identical": bool(same_keys and diff == 0.0 and meta["gradable_threshold"] == ref["gradable_threshold"])}


def ship_gate(tag: str, bundle: Path, previous: Path) -> dict:
    """The rule's ship clauses from the candidate's runs tagged ``tag`` (``accuracy.py --previous`` and
    ``real_photos.py``) and the bundle itself; bounds those of the rule."""
    from region_targets import ship_gate as verdict_clauses
    from two_heads import bundle_clauses

    run = json.loads((HERE / "results" / f"accuracy_{tag}.json").read_text())
    acc = run["summary"]
    if any("groups" not in acc.get(k, {}) for k in ("hrf", "hrf_previous")):
        raise SystemExit(f"accuracy_{tag}.json has no HRF rates of both students: run accuracy.py with --previous "
                         "where the HRF photos are")
    base = verdict_clauses(tag)  # its clauses 4, 5 and 7 (the verdicts) are this rule's, word for word
    shas = {"candidate": (run.get("student_onnx_sha256"), base["candidate_onnx_sha256"], load_bundle(bundle).sha256),
            "previous": (run.get("previous_onnx_sha256"), load_bundle(previous).sha256)}
    if any(len(set(v)) != 1 for v in shas.values()):
        raise SystemExit(f"the runs tagged {tag} are not of these bundles (accuracy, real_photos, bundle): {shas}")
    auroc = {g: acc[g]["overall"]["student"]["auroc"] for g in ("soft", "synth")}
    fpr = {g: acc[g]["clean_fpr"]["student"] for g in ("soft", "synth")}
    ranking = {g: (acc[g]["ranking"]["student"], acc[g]["ranking"]["student_previous"]) for g in ("soft", "synth")}
    flags = {g: {"candidate": acc["hrf"]["groups"][g]["mean_flagged_share"],
                 "previous (same run)": acc["hrf_previous"]["groups"][g]["mean_flagged_share"]}
             for g in acc["hrf"]["groups"]}
    below = {f"{g} {k}": (v["student"]["auroc"], v["patch_classical"]["auroc"])
             for g in ("soft", "synth") for k, v in acc[g]["per_kind"].items() if v["student"]["auroc"] <= v["patch_classical"]["auroc"]}
    clauses = {
        "1 soft AUROC >= 0.927": {"value": auroc["soft"], "passed": auroc["soft"] >= 0.927},
        "2 synth AUROC >= 0.901": {"value": auroc["synth"], "passed": auroc["synth"] >= 0.901},
        "3 clean FPR <= 0.05; ranking >= shipped - 0.01": {
            "value": {"clean_fpr": fpr, "ranking (candidate, shipped)": ranking},
            "passed": max(fpr.values()) <= 0.05 and all(c >= p - 0.01 for c, p in ranking.values())},
        **{k: v for k, v in base["clauses"].items() if k[0] in "45"},
        "6 HRF flagged share <= 0.05 in every group": {
            "value": flags, "passed": all(v["candidate"] is not None and v["candidate"] <= 0.05 for v in flags.values())},
        **{k: v for k, v in base["clauses"].items() if k[0] == "7"},
        "8 every kind of both generators above patch_classical": {
            "value": {"kinds not above (student, patch_classical)": below}, "passed": not below},
    }
    verdict = {"tag": tag, "candidate_onnx_sha256": base["candidate_onnx_sha256"], "clauses": clauses,
               "issue_20_targets (reported, not gated)": {
                   "soft >= 0.95": auroc["soft"] >= 0.95,
                   "ranking >= 0.97 on both": all(c >= 0.97 for c, _ in ranking.values())}}
    cost, precision = bundle_clauses(verdict, bundle, previous)
    clauses["9a FP16 and INT8 pass their gates; TensorRT-for-RTX engines build"] = precision
    clauses["9b multiply-adds at most 1.25 x the shipped bundle's"] = cost
    verdict.update(benchmark="region_measures_ship", command=" ".join(["python", *sys.argv]), machine=stamp(),
                   passed=all(c["passed"] for c in clauses.values()))
    return verdict


def write_ship(verdict: dict) -> None:
    from region_targets import clause_table

    tag = verdict["tag"]
    (HERE / "results" / f"region_measures_ship_{tag}.json").write_text(json.dumps(verdict, indent=2) + "\n")
    md = [f"# The map head's lost-detail measure: the ship gate of candidate `{tag}`", "",
          f"Rule: `results/region_measures_rule.md`; runs: `accuracy_{tag}.json`, `real_photos_{tag}.json`, the "
          f"variants' manifests and `engine_builds.json`; candidate ONNX sha256 `{verdict['candidate_onnx_sha256'][:16]}…`. "
          f"Command: `{verdict['command']}`.", "", *clause_table(verdict)]
    (HERE / "results" / f"region_measures_ship_{tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def gate_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of a study with a construction check and a ship gate (this one, ``local_defects.py``)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool_arguments(ap)
    ap.add_argument("--construction", type=Path, metavar="STUDENT")
    ap.add_argument("--shipped", type=Path, default=Path("models/student"), metavar="STUDENT")
    ap.add_argument("--ship", metavar="TAG")
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--previous", type=Path, metavar="BUNDLE")
    return ap


def main() -> None:
    ap = gate_arguments(__doc__)
    args = ap.parse_args()
    if args.construction:
        doc = construction(args.construction, args.shipped)
        (HERE / "results" / "region_measures_construction.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(doc, indent=1))
        return
    if args.ship:
        if not args.previous:
            ap.error("--ship needs --previous")
        return write_ship(ship_gate(args.ship, args.bundle, args.previous))
    t0 = time.time()
    size = distill.DEFAULT["size"]
    names, sets, phi, train, val = pool_features(args, (size,))
    fs = sets[size]
    named = distill.photo_list(None, args.data)
    lkey = distill.label_cache_key([n for n, _ in named], args.teacher, args.augmentations, 0)
    labels = distill._load(args.cache / f"labels_{lkey}.pkl")
    mpath = args.cache / f"measures_{distill._code_key((lkey,), (regions, moments, cs, kept, pixel_measures, cell_measures, measure_maps))}.pkl"
    maps = distill._load(mpath)
    if maps is None:
        maps = measure_maps([p for _, p in named], labels, args.augmentations)
        distill._store(mpath, maps)
    mine = np.array([p in train for p in fs.photo])
    valid = np.stack(fs.valid)[mine]
    heads, rows, spread = {}, {}, {}
    for m in MEASURES:
        fm = dataclasses.replace(fs, region=[distill._to_grid(a, fs.data.shape[-1]) for a in maps[m]])
        r = np.stack(fm.region)[mine][valid]
        spread[m] = {"mean": float(r.mean()), "quantiles_50_90_99": [float(q) for q in np.quantile(r, [0.5, 0.9, 0.99])]}
        h, hr = train_heads(fm, "measure", m, train, phi)
        heads.update(h)
        rows.update(hr)
    examples(named[0][1], fs, maps, labels.fov, HERE / "results" / "region_measures_examples.png")
    summary, photos = score_pool(heads, rows, names, val, args.data)
    verdict = gate(rows)
    command = " ".join(["python benchmarks/region_measures.py", *sys.argv[1:]])
    out = {"benchmark": "region_measures", "command": command, "machine": stamp(), "generator": "synth",
           "validation_photos": sorted(photos), "training_photos": len(train), "seconds": round(time.time() - t0),
           "training_region": spread, "rows": rows, "gate": verdict}
    (HERE / "results" / "region_measures.json").write_text(json.dumps(out, indent=2) + "\n")
    kinds, sevs = list(summary["per_kind"]), list(summary["per_severity"])
    md = ["# The map head's lost-detail measure: the study gate", "",
          f"The shipped map head trained on `union` with each measure of lost detail, on {len(train)} training-pool "
          f"photos; scored on the other {len(photos)} degraded by `synth` (patch AUROC). Rule: "
          f"`results/region_measures_rule.md`. Command: `{command}`.", "", *seed_table(rows, "measure", sevs, kinds)]
    md += ["", "Means over seeds:", "",
           "| measure | overall | severity 1 | ranking | " + " | ".join(kinds) + " |",
           "|---|---|---|---|" + "---|" * len(kinds)]
    md += [f"| {m} | {v['overall']:.4f} | {v['severity_1']:.3f} | {v['ranking']:.3f} | "
           + " | ".join(f"{v['per_kind'][k]:.3f}" for k in kinds) + " |" for m, v in verdict["means"].items()]
    md += ["", "Training targets' region maps on the training photos' valid cells (mean; 50/90/99th percentiles): "
           + "; ".join(f"{m} {s['mean']:.3f} ({', '.join(f'{q:.3f}' for q in s['quantiles_50_90_99'])})"
                       for m, s in spread.items()), ""]
    md += [f"Checks against `{BASE}`: " + "; ".join(
        f"{m}: " + ", ".join(f"{k} {'pass' if ok else 'FAIL'}" for k, ok in c.items()) for m, c in verdict["checks"].items()),
           "", f"**Chosen: `{verdict['chosen']}`.**" if verdict["chosen"] else "**No candidate passed.**",
           "", "Examples (`region_measures_examples.png`): reference, perturbed, then " + ", ".join(MEASURES) + "."]
    (HERE / "results" / "region_measures.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
