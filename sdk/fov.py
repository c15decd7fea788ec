"""Finding the circular field of view (FOV) of a fundus photograph.

Works on a small copy of the frame (long side ``WORK_SIDE``): threshold against the level of the
dark surround, keep the largest bright blob, and fit a circle to the blob's outline *excluding*
outline points that run along the frame edge — so circles cut off by the sensor's top and bottom
are recovered. A frame with no dark surround at all is taken as all-FOV.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import NotFundusError

WORK_SIDE = 384
#: a FOV edge must follow the circle over this share of its visible circumference
MIN_ARC = 0.4
#: and the bright region cover this share of the circle (the rest: a dark sector inside the FOV)
MIN_COVERED = 0.5
#: most strong-edge pixels inside the FOV a fundus photo has (natural photographs: 4.5-21 %) ...
EDGES = 0.02
#: ... and when its edge follows a circle over SURE_ARC of it (damaged photos reach 10 %)
SURE_ARC, EDGES_IN_CIRCLE = 0.7, 0.15


@dataclass(frozen=True)
class Fov:
    """Field-of-view circle in original-image pixels."""

    cx: float
    cy: float
    r: float
    #: "circle": fitted to a visible FOV edge; "frame": no dark surround, the whole frame is FOV.
    source: str = "circle"

    def to_dict(self) -> dict:
        return {"cx": round(self.cx, 2), "cy": round(self.cy, 2), "r": round(self.r, 2)}


def find_fov(bgr: np.ndarray, source: str | None = None) -> Fov:
    """Locate the FOV of an 8-bit BGR frame or raise :class:`NotFundusError`."""
    h, w = bgr.shape[:2]
    k = min(WORK_SIDE / max(h, w), 1.0)
    small = _shrink(bgr, max(1, round(w * k)), max(1, round(h * k)))
    b, g, r = cv2.split(small)
    lum = cv2.medianBlur(cv2.max(cv2.max(b, g), r), 5)
    sh, sw = lum.shape
    fg = _percentile_u8(lum, 95)
    if fg < 20:
        raise NotFundusError(f"frame is black or nearly so (95th percentile brightness {fg:.0f}/255)", source)

    c = max(3, min(sh, sw) // 20)
    corners = np.concatenate([lum[:c, :c].ravel(), lum[:c, -c:].ravel(), lum[-c:, :c].ravel(), lum[-c:, -c:].ravel()])
    bg = float(np.median(corners))
    if bg > 0.35 * fg:
        # No dark surround in the corners: the fundus fills the frame (or it is not a fundus).
        _check_content(small, None, source)
        return Fov(w / 2.0, h / 2.0, float(np.hypot(w, h)) / 2.0, "frame")

    thresh = bg + 0.2 * (fg - bg)
    mask = (lum > thresh).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        raise NotFundusError("no bright field of view found", source)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    blob = (labels == big).astype(np.uint8)
    if stats[big, cv2.CC_STAT_AREA] < 0.05 * sh * sw:
        raise NotFundusError("bright region too small to be a fundus field of view", source)

    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = max(contours, key=len)[:, 0, :].astype(np.float64)
    inner = (pts[:, 0] > 1) & (pts[:, 0] < sw - 2) & (pts[:, 1] > 1) & (pts[:, 1] < sh - 2)
    pts = pts[inner]
    if len(pts) < 20:
        raise NotFundusError("field-of-view edge not visible enough to fit a circle", source)
    cx, cy, r, arc = _fit_circle(pts, (sh, sw))
    if not (0.15 * min(sh, sw) < r < 1.5 * max(sh, sw)):
        raise NotFundusError("bright region is not a circular field of view", source)
    if arc < MIN_ARC:
        raise NotFundusError(
            f"bright region is not a circular field of view (edge follows a circle over {arc:.0%} of it)", source)

    disc = np.zeros_like(blob)
    cv2.circle(disc, (round(cx * 16), round(cy * 16)), round(r * 16), 1, -1, shift=4)
    inter = float(np.count_nonzero(disc & blob))
    outside = 1 - inter / float(np.count_nonzero(blob))
    covered = inter / max(float(np.count_nonzero(disc)), 1.0)
    # A dark sector (vignetting, a lid shadow, an under-exposed side) is part of the FOV: the bright
    # region may cover only part of the circle, but it must not spill out of it.
    if outside > 0.1 or covered < MIN_COVERED:
        raise NotFundusError(
            f"bright region is not a circular field of view ({outside:.0%} of it outside the best circle, "
            f"{covered:.0%} of the circle bright)", source)
    inside = np.zeros_like(blob)
    cv2.circle(inside, (round(cx), round(cy)), round(0.9 * r), 1, -1)
    # A well-traced circular edge is strong evidence of a fundus camera: then over-exposed or flared
    # areas (clipped borders, amplified vessels: up to 10 % edge pixels) do not make it "not retina".
    _check_content(small, (inside & blob).astype(bool), source, EDGES_IN_CIRCLE if arc >= SURE_ARC else EDGES)
    return Fov(cx / k, cy / k, r / k, "circle")


def _percentile_u8(values: np.ndarray, q: float) -> float:
    """Percentile of uint8 values by histogram (much faster than np.percentile's sort)."""
    hist = np.bincount(values.ravel(), minlength=256).cumsum()
    return float(np.searchsorted(hist, q / 100.0 * hist[-1]))


def _shrink(img: np.ndarray, tw: int, th: int) -> np.ndarray:
    """Fast area-like reduction: linear to 2× the target, then a 2:1 area step."""
    if img.shape[1] == tw and img.shape[0] == th:
        return img
    if img.shape[1] > 2 * tw:
        img = cv2.resize(img, (2 * tw, 2 * th), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)


def _kasa(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Algebraic least-squares circle through points."""
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    sol, *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
    cx, cy = sol[0] / 2, sol[1] / 2
    return float(cx), float(cy), float(np.sqrt(max(sol[2] + cx * cx + cy * cy, 1e-9)))


def _fit_circle(pts: np.ndarray, shape: tuple[int, int], hypotheses: int = 256) -> tuple[float, float, float, float]:
    """(cx, cy, r, arc): the circle most outline points lie on, and the share of its in-frame
    circumference they support.

    RANSAC over three-point circles, then a least-squares refit on the inliers: the outline of the
    bright region also runs along dark sectors inside the FOV (vignetting, a lid shadow), and those
    points must not pull the circle. Deterministic (fixed seed)."""
    rng = np.random.default_rng(0)
    idx = rng.integers(len(pts), size=(hypotheses, 3))
    p1, p2, p3 = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    # circumcentre of each triple
    d = 2 * (p1[:, 0] * (p2[:, 1] - p3[:, 1]) + p2[:, 0] * (p3[:, 1] - p1[:, 1]) + p3[:, 0] * (p1[:, 1] - p2[:, 1]))
    ok = np.abs(d) > 1e-6
    d = np.where(ok, d, 1.0)
    n1, n2, n3 = (p1 ** 2).sum(1), (p2 ** 2).sum(1), (p3 ** 2).sum(1)
    ux = (n1 * (p2[:, 1] - p3[:, 1]) + n2 * (p3[:, 1] - p1[:, 1]) + n3 * (p1[:, 1] - p2[:, 1])) / d
    uy = (n1 * (p3[:, 0] - p2[:, 0]) + n2 * (p1[:, 0] - p3[:, 0]) + n3 * (p2[:, 0] - p1[:, 0])) / d
    ur = np.hypot(p1[:, 0] - ux, p1[:, 1] - uy)
    h, w = shape
    ok &= (ur > 0.15 * min(h, w)) & (ur < 1.5 * max(h, w))  # a near-straight run fits a huge circle: not a FOV
    tol = max(1.5, 0.005 * max(h, w))
    voters = pts[:: max(1, len(pts) // 300)].astype(np.float32)  # ≤ ~300 voters
    # |distance − r| < tol, compared in squares (no square roots: a quarter of the time)
    dx = voters[None, :, 0] - ux[:, None].astype(np.float32)
    dy = voters[None, :, 1] - uy[:, None].astype(np.float32)
    d2 = dx * dx + dy * dy
    lo, hi = (np.maximum(ur - tol, 0) ** 2)[:, None], ((ur + tol) ** 2)[:, None]
    votes = np.where(ok, ((d2 > lo) & (d2 < hi)).sum(1), -1)
    best = int(np.argmax(votes))
    keep = np.abs(np.hypot(pts[:, 0] - ux[best], pts[:, 1] - uy[best]) - ur[best]) < tol
    cx, cy, r = _kasa(pts[keep, 0], pts[keep, 1])
    for _ in range(3):  # refine: the inliers of the refitted circle, refitted
        keep = np.abs(np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) - r) < tol
        if keep.sum() < 3:
            break
        cx, cy, r = _kasa(pts[keep, 0], pts[keep, 1])
    return cx, cy, r, _arc_support(pts[keep], cx, cy, r, shape)


def _arc_support(pts: np.ndarray, cx: float, cy: float, r: float, shape: tuple[int, int], bins: int = 72) -> float:
    """Share of the circle's in-frame circumference (in angular bins) that has an outline point on it."""
    h, w = shape
    theta = (np.arange(bins) + 0.5) * 2 * np.pi / bins
    x, y = cx + r * np.cos(theta), cy + r * np.sin(theta)
    visible = (x > 2) & (x < w - 3) & (y > 2) & (y < h - 3)
    if not visible.any():
        return 0.0
    hit = np.zeros(bins, bool)
    ang = np.arctan2(pts[:, 1] - cy, pts[:, 0] - cx) % (2 * np.pi)
    hit[(ang / (2 * np.pi) * bins).astype(int) % bins] = True
    return float((hit & visible).sum() / visible.sum())


def _check_content(small: np.ndarray, inside: np.ndarray | None, source: str | None, max_edges: float = EDGES) -> None:
    """Reject what is plainly not retina inside the FOV: blue/green-dominated or full of sharp edges.

    Measured at 256 px width after a σ = 1.5 px blur (which removes sensor noise and JPEG blocking):
    fundus photos from three cameras, also with strong noise or JPEG damage, have at most 0.6 % of
    strong-gradient pixels inside the FOV; natural photographs 4.5-21 %. Without a visible FOV edge
    (``inside`` is None) the colour must also be clearly red-dominated; a grey frame can't be
    told from a non-fundus one and is refused.
    """
    width = 256
    height = max(1, round(width * small.shape[0] / small.shape[1]))
    s = cv2.resize(small, (width, height), interpolation=cv2.INTER_AREA)
    sel = np.ones((height, width), bool) if inside is None else cv2.resize(
        inside.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    b, g, r = (_percentile_u8(ch[sel], 50) for ch in cv2.split(s))
    rgb = f"median R,G,B = {r:.0f},{g:.0f},{b:.0f}"
    if inside is None and not (r >= 1.15 * g and r >= 1.3 * b):
        raise NotFundusError(f"no field-of-view edge and not the colours of a fundus photograph ({rgb})", source)
    if r < 0.9 * g or r < 0.9 * b:
        raise NotFundusError(f"colours are not those of a fundus photograph ({rgb})", source)
    # blur first: sensor noise and JPEG blocking are not structure; object edges survive it
    grey = cv2.GaussianBlur(cv2.cvtColor(s, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.5)
    mag = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    edges = float(np.mean(mag[sel] > 100))
    if edges > max_edges:
        raise NotFundusError(f"too much sharp structure for a retina ({edges:.0%} edge pixels)", source)
