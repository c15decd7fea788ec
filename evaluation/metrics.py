"""Small, dependency-free metrics (numpy): AUROC by ranks, best-threshold F1/Dice."""
from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie-averaged ranks); NaN if one class is absent."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def best_f1(scores: np.ndarray, labels: np.ndarray, steps: int = 101) -> tuple[float, float]:
    """(best F1 = Dice, threshold) over ``steps`` quantile thresholds of the scores."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels, bool).ravel()
    if y.sum() == 0:
        return float("nan"), float("nan")
    best, best_t = 0.0, 0.5
    for t in np.unique(np.quantile(s, np.linspace(0, 1, steps))):
        pred = s >= t
        tp = float((pred & y).sum())
        f1 = 2 * tp / (pred.sum() + y.sum()) if (pred.sum() + y.sum()) else 0.0
        if f1 > best:
            best, best_t = f1, float(t)
    return best, best_t


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    pred = np.asarray(scores).ravel() >= threshold
    y = np.asarray(labels, bool).ravel()
    tp = float((pred & y).sum())
    return 2 * tp / (pred.sum() + y.sum()) if (pred.sum() + y.sum()) else float("nan")
