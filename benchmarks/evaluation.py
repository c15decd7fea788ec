"""Shared harness: held-out photos × evaluation degradations → patch-level metrics per method.

A *method* maps an 8-bit BGR photo to (G×G patch scores, Crop, coverage). Ground truth comes from
the degradation masks (evaluation only; nothing here feeds training).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from efiqa.errors import EfiqaError
from efiqa.fov import find_fov
from efiqa.preprocess import Crop
from efiqa.eval.synth import DEGRADATIONS, degrade, patch_truth
from efiqa.eval.metrics import auroc, best_f1

#: Jobs a method refused (filled by :func:`run`).
failures: list[dict] = []

Method = Callable[[np.ndarray], tuple[np.ndarray, Crop, np.ndarray]]


@dataclass
class Record:
    photo: str
    kind: str          # "clean" or a degradation
    severity: int
    scores: dict[str, np.ndarray] = field(default_factory=dict)   # method → G×G
    truth: np.ndarray | None = None                               # G×G bool (None for clean)
    valid: np.ndarray | None = None                               # G×G bool: cells that count


def run(photos: dict[str, np.ndarray], methods: dict[str, Method], severities=(1, 2, 3), seed: int = 0,
        progress: bool = True, grid: int = 16) -> list[Record]:
    from tqdm import tqdm

    jobs = [(name, "clean", 0) for name in photos] + [
        (name, kind, sev) for name in photos for kind in DEGRADATIONS for sev in severities]
    records = []
    failures.clear()
    for k, (name, kind, sev) in enumerate(tqdm(jobs, desc="evaluate", disable=not progress)):
        img = photos[name]
        rec = Record(name, kind, sev)
        if kind == "clean":
            test, mask = img, np.zeros(img.shape[:2], bool)
        else:
            d = degrade(img, find_fov(img), kind, sev, seed=seed + k)
            test, mask = d.image, d.mask
        try:
            for mname, method in methods.items():
                scores, crop, coverage = method(test)
                rec.scores[mname] = scores
                if rec.valid is None:
                    rec.valid = coverage >= 0.5
                    rec.truth = patch_truth(mask, crop, grid)
        except EfiqaError as err:  # e.g. a degradation that hides the FOV: counted, not scored
            failures.append({"photo": name, "kind": kind, "severity": sev, "error": str(err)})
            continue
        records.append(rec)
    return records


def image_score(scores: np.ndarray, valid: np.ndarray) -> float:
    return float(scores[valid].mean())


def summarise(records: list[Record], methods: list[str], flag_thresholds: dict[str, float] | None = None) -> dict:
    """Patch AUROC / best Dice per kind, severity and overall; ranking; clean false-positive rate."""
    out: dict = {"per_kind": {}, "per_severity": {}, "overall": {}, "ranking": {}, "clean_fpr": {}}
    degraded = [r for r in records if r.kind != "clean"]
    clean = {r.photo: r for r in records if r.kind == "clean"}

    def pooled(recs, m):
        s = np.concatenate([r.scores[m][r.valid] for r in recs])
        y = np.concatenate([r.truth[r.valid] for r in recs])
        return {"auroc": auroc(s, y), "best_dice": best_f1(s, y)[0], "positives": int(y.sum()), "cells": int(len(y))}

    for m in methods:
        out["overall"][m] = pooled(degraded, m)
        for kind in sorted({r.kind for r in degraded}):
            out["per_kind"].setdefault(kind, {})[m] = pooled([r for r in degraded if r.kind == kind], m)
        for sev in sorted({r.severity for r in degraded}):
            out["per_severity"].setdefault(str(sev), {})[m] = pooled([r for r in degraded if r.severity == sev], m)
        wins = [image_score(r.scores[m], r.valid) > image_score(clean[r.photo].scores[m], clean[r.photo].valid)
                for r in degraded]
        out["ranking"][m] = float(np.mean(wins))
        if flag_thresholds and m in flag_thresholds:
            cells = np.concatenate([c.scores[m][c.valid] for c in clean.values()])
            out["clean_fpr"][m] = float((cells >= flag_thresholds[m]).mean())
    return out


def markdown_table(summary: dict, methods: list[str]) -> str:
    head = "| degradation | " + " | ".join(f"{m} AUROC | {m} Dice" for m in methods) + " |"
    sep = "|---|" + "---|---|" * len(methods)
    rows = [head, sep]
    for kind, d in list(summary["per_kind"].items()) + [("**overall**", summary["overall"])]:
        rows.append(f"| {kind} | " + " | ".join(f"{d[m]['auroc']:.3f} | {d[m]['best_dice']:.3f}" for m in methods) + " |")
    rows.append("| ranking accuracy | " + " | ".join(f"{summary['ranking'][m]:.3f} | " for m in methods) + " |")
    if summary["clean_fpr"]:
        rows.append("| clean false-positive rate | " + " | ".join(
            f"{summary['clean_fpr'].get(m, float('nan')):.3f} | " for m in methods) + " |")
    return "\n".join(rows)
