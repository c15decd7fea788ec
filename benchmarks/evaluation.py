"""Shared harness: held-out photos × evaluation degradations → patch-level metrics per method.

A *method* maps an 8-bit BGR photo to (G×G patch scores, Crop, coverage). Ground truth comes from
the degradation masks (evaluation only; nothing here feeds training).

A *generator* is a ``degrade(img, fov, kind, severity, seed)`` callable returning an object with
``.image`` and ``.mask``, with the kinds it knows: :data:`GENERATORS` holds the two the project has,
``synth`` (:mod:`efiqa.eval.synth`, the default) and ``soft`` (:mod:`efiqa.eval.soft_regions`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from efiqa.errors import EfiqaError
from efiqa.fov import Fov, find_fov
from efiqa.preprocess import Crop
from efiqa.eval import soft_regions
from efiqa.eval.synth import DEGRADATIONS, degrade as synth_degrade, patch_truth
from efiqa.eval.metrics import auroc, best_f1

#: Jobs a method refused (filled by :func:`run`).
failures: list[dict] = []

Method = Callable[[np.ndarray], tuple[np.ndarray, Crop, np.ndarray]]
Degrade = Callable[..., object]

#: name → (degrade callable, its kinds)
GENERATORS: dict[str, tuple[Degrade, tuple[str, ...]]] = {
    "synth": (synth_degrade, tuple(DEGRADATIONS)),
    "soft": (soft_regions.degrade, tuple(soft_regions.KINDS)),
}


@dataclass
class Record:
    photo: str
    kind: str          # "clean" or a degradation
    severity: int
    scores: dict[str, np.ndarray] = field(default_factory=dict)   # method → G×G
    truth: np.ndarray | None = None                               # G×G bool (None for clean)
    valid: np.ndarray | None = None                               # G×G bool: cells that count


def run(photos: dict[str, np.ndarray], methods: dict[str, Method], severities=(1, 2, 3), seed: int = 0,
        progress: bool = True, grid: int = 16, generator: str | tuple[Degrade, Sequence[str]] = "synth",
        kinds: Sequence[str] | None = None) -> list[Record]:
    """Score every method on each photo as it is (``clean``) and on degraded copies of it.

    ``generator``: a name in :data:`GENERATORS` or a ``(degrade, kinds)`` pair; ``kinds`` narrows
    the generator's kinds (default: all of them, in its order).
    """
    from tqdm import tqdm

    degrade, all_kinds = GENERATORS[generator] if isinstance(generator, str) else generator
    kinds = tuple(all_kinds if kinds is None else kinds)
    unknown = set(kinds) - set(all_kinds)
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(sorted(unknown))} for this generator: {', '.join(all_kinds)}")
    jobs = [(name, "clean", 0) for name in photos] + [
        (name, kind, sev) for name in photos for kind in kinds for sev in severities]
    records = []
    failures.clear()
    order = {name: i for i, name in enumerate(photos)}
    fovs: dict[str, Fov] = {}  # each clean photo's FOV, found once: it places every region and truth
    for name, kind, sev in tqdm(jobs, desc="evaluate", disable=not progress):
        img = photos[name]
        rec = Record(name, kind, sev)
        if kind == "clean":
            test, mask, fov = img, np.zeros(img.shape[:2], bool), None
        else:
            # one region per (photo, kind), whatever the severities or the number of photos run:
            # severities then differ only in amount, and a quick run is a subset of the full one
            if name not in fovs:
                fovs[name] = find_fov(img)
            fov = fovs[name]
            d = degrade(img, fov, kind, sev, seed=seed + 100 * order[name] + all_kinds.index(kind))
            test, mask = d.image, d.mask
        try:
            for mname, method in methods.items():
                scores, crop, coverage = method(test)
                rec.scores[mname] = scores
                if rec.valid is None:
                    rec.valid = coverage >= 0.5
                    rec.truth = patch_truth(mask, crop, grid, fov=fov)  # share of the clean photo's FOV
        except EfiqaError as err:  # e.g. a degradation that hides the FOV: counted, not scored
            failures.append({"photo": name, "kind": kind, "severity": sev, "error": str(err)})
            continue
        records.append(rec)
    return records


def image_score(scores: np.ndarray, valid: np.ndarray) -> float:
    """Mean cell score over the cells that count; +inf (ranked worst) where none does."""
    return float(scores[valid].mean()) if valid.any() else float("inf")


def summarise(records: list[Record], methods: list[str], flag_thresholds: dict[str, float] | None = None) -> dict:
    """Patch AUROC / best Dice per kind, per severity, per (kind, severity) and overall; ranking
    accuracy (a degraded copy's image score above its clean photo's); at each method's own flag
    threshold (``flag_thresholds``): clean false-positive rate and the share of degraded cells
    flagged (``flag_recall``: what that false-positive rate costs)."""
    out: dict = {"per_kind": {}, "per_severity": {}, "per_kind_severity": {}, "overall": {}, "ranking": {},
                 "clean_fpr": {}, "flag_recall": {}}
    degraded = [r for r in records if r.kind != "clean"]
    clean = {r.photo: r for r in records if r.kind == "clean"}
    kinds = sorted({r.kind for r in degraded})
    sevs = sorted({r.severity for r in degraded})

    def pooled(recs, m):
        if not recs:
            return {"auroc": float("nan"), "best_dice": float("nan"), "positives": 0, "cells": 0}
        s = np.concatenate([r.scores[m][r.valid] for r in recs])
        y = np.concatenate([r.truth[r.valid] for r in recs])
        return {"auroc": auroc(s, y), "best_dice": best_f1(s, y)[0], "positives": int(y.sum()), "cells": int(len(y))}

    for m in methods:
        out["overall"][m] = pooled(degraded, m)
        for kind in kinds:
            of_kind = [r for r in degraded if r.kind == kind]
            out["per_kind"].setdefault(kind, {})[m] = pooled(of_kind, m)
            for sev in sevs:
                out["per_kind_severity"].setdefault(kind, {}).setdefault(str(sev), {})[m] = pooled(
                    [r for r in of_kind if r.severity == sev], m)
        for sev in sevs:
            out["per_severity"].setdefault(str(sev), {})[m] = pooled([r for r in degraded if r.severity == sev], m)
        # a degraded copy whose clean original was refused has nothing to be ranked against
        wins = [image_score(r.scores[m], r.valid) > image_score(clean[r.photo].scores[m], clean[r.photo].valid)
                for r in degraded if r.photo in clean]
        out["ranking"][m] = float(np.mean(wins)) if wins else float("nan")
        if flag_thresholds and m in flag_thresholds and clean:
            cells = np.concatenate([c.scores[m][c.valid] for c in clean.values()])
            out["clean_fpr"][m] = float((cells >= flag_thresholds[m]).mean())
        if flag_thresholds and m in flag_thresholds and degraded:
            hit = np.concatenate([r.scores[m][r.valid & r.truth] for r in degraded])
            out["flag_recall"][m] = float((hit >= flag_thresholds[m]).mean()) if hit.size else float("nan")
    return out


def fmt(v: float | None) -> str:
    """Three decimals; — for a missing (None) or undefined (NaN) value."""
    return "—" if v is None or v != v else f"{v:.3f}"


def markdown_table(summary: dict, methods: list[str]) -> str:
    """Per kind (and overall): patch AUROC and best Dice of each method; ranking accuracy; clean FPR."""
    head = "| degradation | " + " | ".join(f"{m} AUROC | {m} Dice" for m in methods) + " |"
    sep = "|---|" + "---|---|" * len(methods)
    rows = [head, sep]
    for kind, d in list(summary["per_kind"].items()) + [("**overall**", summary["overall"])]:
        rows.append(f"| {kind} | " + " | ".join(f"{fmt(d[m]['auroc'])} | {fmt(d[m]['best_dice'])}" for m in methods) + " |")
    rows.append("| ranking accuracy | " + " | ".join(f"{fmt(summary['ranking'][m])} | " for m in methods) + " |")
    if summary["clean_fpr"]:
        rows.append("| clean false-positive rate | " + " | ".join(
            f"{fmt(summary['clean_fpr'].get(m, float('nan')))} | " for m in methods) + " |")
    if summary.get("flag_recall"):
        rows.append("| degraded cells flagged | " + " | ".join(
            f"{fmt(summary['flag_recall'].get(m, float('nan')))} | " for m in methods) + " |")
    return "\n".join(rows)


def severity_table(summary: dict, methods: list[str]) -> str:
    """Patch AUROC per (kind, severity): one row each, a column per method (— : no degraded cell)."""
    rows = ["| degradation | severity | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for kind, per_sev in summary.get("per_kind_severity", {}).items():
        for sev, d in per_sev.items():
            rows.append(f"| {kind} | {sev} | " + " | ".join(fmt(d[m]["auroc"]) for m in methods) + " |")
    for sev, d in summary["per_severity"].items():
        rows.append(f"| **all** | {sev} | " + " | ".join(fmt(d[m]["auroc"]) for m in methods) + " |")
    return "\n".join(rows)


def side_by_side(summaries: dict[str, dict], methods: list[str]) -> str:
    """One row per method, for each generator: overall patch AUROC, best Dice, ranking, clean FPR and
    the share of degraded cells flagged at the same threshold."""
    gens = list(summaries)
    head = "| method | " + " | ".join(f"{g} AUROC | {g} Dice | {g} ranking | {g} clean FPR | {g} flagged"
                                     for g in gens) + " |"
    rows = [head, "|---|" + "---|---|---|---|---|" * len(gens)]
    for m in methods:
        cells = []
        for g in gens:
            s = summaries[g]
            if m not in s["overall"]:
                cells.append("n/a | n/a | n/a | n/a | n/a")
                continue
            o = s["overall"][m]
            cells.append(f"{fmt(o['auroc'])} | {fmt(o['best_dice'])} | {fmt(s['ranking'].get(m))} | "
                         f"{fmt(s['clean_fpr'].get(m))} | {fmt(s.get('flag_recall', {}).get(m))}")
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
