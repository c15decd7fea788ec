"""Finding the circular field of view (FOV) of a fundus photograph.

Works on a small copy of the frame (long side ``WORK_SIDE``): threshold against the level of the
dark surround, keep the largest bright blob, and fit a circle to the blob's outline *excluding*
outline points that run along the frame edge — so circles cut off by the sensor's top and bottom
are recovered. Where no circle fits that blob, a lower threshold (just above the surround) is
tried before giving up on a circle: a deep shadow can take most of the field below the usual one.
A frame with no dark surround at all is taken as all-FOV.
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
#: ... and when its edge follows a circle over SURE_ARC of it: over-exposed and flared photos reach
#: 6.5 % (2754 damaged photos of benchmarks/fov_robustness.py), CLAHE-enhanced ones 11 % (all
#: red-dominated); natural pictures seen through a round eyepiece 2-25 %, grey ones often 8-15 %
SURE_ARC, EDGES_IN_CIRCLE, EDGES_IN_CIRCLE_NOT_RED = 0.7, 0.15, 0.08
#: a field whose grey levels (0.1st to 99.9th percentile, away from its edge) span less than this is
#: one flat tone: a mask or a drawn disc, not a photograph (a real one, clipped but for its vessels, keeps them)
BLANK = 3
#: ... unless it is white (clipped) and at least COLOURED of the frame's pixels have colour
CLIPPED, COLOURED = 250, 1e-4


@dataclass(frozen=True)
class Fov:
    """Field-of-view circle in original-image pixels."""

    cx: float
    cy: float
    r: float
    #: "circle": fitted to a visible FOV edge; "frame": no dark surround, the whole frame is FOV;
    #: "region": no circle fits a plainly retinal photo (octagonal/rectangular mask, preprocessed),
    #: assessed over the square around its bright region (``r`` = half its side); "dark": too dark
    #: to find an edge even brightened, assessed over the whole frame (``r`` = half its long side).
    source: str = "circle"

    def to_dict(self) -> dict:
        return {"cx": round(self.cx, 2), "cy": round(self.cy, 2), "r": round(self.r, 2), "source": self.source}


def find_fov(bgr: np.ndarray, source: str | None = None) -> Fov:
    """Locate the FOV of an 8-bit BGR frame or raise :class:`NotFundusError`.

    Only what is plainly not a fundus photograph is refused. A photo whose circle cannot be fitted
    but that is still plainly retinal is assessed over its bright region (``source="region"``); a
    photo preprocessed by background subtraction (Graham-style, grey around 128) over its textured
    disc or the whole frame; a nearly black one is brightened to find its field of view.
    """
    h, w = bgr.shape[:2]
    k = min(WORK_SIDE / max(h, w), 1.0)
    small = _shrink(bgr, max(1, round(w * k)), max(1, round(h * k)))
    lum = cv2.medianBlur(_brightest(small), 5)
    fg = _percentile_u8(lum, 95)
    if fg < DARK:
        return _find_dark(small, lum, k, source)
    cx, cy, r, kind, _ = _locate(small, lum, source)
    return Fov(cx / k, cy / k, r / k, kind)


#: below this 95th-percentile brightness a frame is "nearly black": it is brightened to look for a FOV
DARK = 20
#: a nearly black frame with less spread than this (grey levels, 1st to 99.9th percentile) holds nothing
FLAT = 3
#: a frame whose median brightness is at least this is washed out: its camera mask (a darker
#: surround, even if flared) is looked for although the corners are not dark
WASHED = 235
#: a brightened dark frame's FOV edge must be a step (contrast across it ≥ this), not a glow
EDGE_STEP = 0.3


def _find_dark(small: np.ndarray, lum: np.ndarray, k: float, source: str | None) -> Fov:
    """A nearly black frame: brightened, it must show a camera's sharp-edged field of view."""
    hi = _percentile_u8(lum, 99)  # median-filtered: a date stamp's thin text does not set the gain
    spread = hi - _percentile_u8(lum, 1)
    black = f"frame is black or nearly so (95th percentile brightness {_percentile_u8(lum, 95):.0f}/255)"
    if spread < FLAT:
        raise NotFundusError(black, source)
    gain = min(200.0 / max(hi, 1.0), 60.0)
    bright = cv2.convertScaleAbs(small, alpha=gain)
    blum = cv2.medianBlur(_brightest(bright), 5)
    h, w = small.shape[:2]
    try:
        cx, cy, r, kind, blob = _locate(bright, blum, source, strict_colour=False)
    except NotFundusError as err:
        # No FOV outline (the surround is as dark as the fundus): still a photo to score as too dark
        # if, brightened, it holds fine structure and nothing that is plainly not retina.
        try:
            # (brightening amplifies noise and a date stamp into edges: the looser limit applies)
            _check_content(bright, None, source, EDGES_IN_CIRCLE, strict_colour=False)
        except NotFundusError:
            raise NotFundusError(f"{black}; brightened, {err.message}", source) from None
        if _detail(bright, np.ones((h, w), bool)) < REGION_DETAIL:
            raise NotFundusError(f"{black}; brightened, it shows no structure", source) from None
        return Fov(w / 2.0 / k, h / 2.0 / k, max(h, w) / 2.0 / k, "dark")
    if kind != "frame" and _outline_step(blum, blob, (cx, cy, r) if kind == "circle" else None) < EDGE_STEP:
        raise NotFundusError(f"{black}; brightened, it shows a glow, not a camera's field of view", source)
    if kind == "frame":  # no surround even when brightened: too dark to tell, assess the whole frame
        kind, r = "dark", max(h, w) / 2.0
    return Fov(cx / k, cy / k, r / k, kind)


def _locate(small: np.ndarray, lum: np.ndarray, source: str | None,
            strict_colour: bool = True) -> tuple[float, float, float, str, np.ndarray | None]:
    """(cx, cy, r, source, blob) in ``small``'s pixels; see :func:`find_fov`. ``blob``: the bright
    region the field was found from (None for a frame-filling one and a Graham-style photo without a
    textured disc). ``strict_colour``: a region
    without a circle must be clearly red-dominated (relaxed for brightened dark and washed-out frames,
    whose colours are lost)."""
    sh, sw = lum.shape
    bg = _corner_level(lum)
    fg = _bright_level(lum, bg)
    washed = _percentile_u8(lum, 50) >= WASHED and bg < 0.7 * fg
    if bg > 0.35 * fg and not washed:
        # No dark surround in the corners: the fundus fills the frame (or it is not a fundus), or it
        # was preprocessed by background subtraction (grey around 128).
        if _graham_like(small):
            found = _graham_disc(small)
            if found is not None:
                cx, cy, r, blob = found
                return cx, cy, r, "circle", blob
            return sw / 2.0, sh / 2.0, max(sh, sw) / 2.0, "region", None
        _check_content(small, None, source)
        return sw / 2.0, sh / 2.0, float(np.hypot(sw, sh)) / 2.0, "frame", None

    colour = strict_colour and not washed
    blob = stat = None
    try:
        blob, stat = _bright_blob(lum, bg + 0.2 * (fg - bg), source)
        cx, cy, r, arc = _circle_of(blob, source)
    except NotFundusError:
        shaded = _shaded_circle(small, lum, bg, fg, source, colour)
        if shaded is not None:
            cx, cy, r, blob = shaded
            return cx, cy, r, "circle", blob
        region = None if blob is None else _region(small, blob, stat, colour)
        if region is None:
            raise
        return (*region, "region", blob)
    # A well-traced circular edge is strong evidence of a fundus camera: then over-exposed or flared
    # areas (clipped borders, amplified vessels) do not make it "not retina"; less so where the field
    # lacks a fundus camera's colours (and they are not lost), as a grey picture in an eyepiece does.
    if arc < SURE_ARC:
        limit, red_limit = EDGES, None
    elif colour:  # the looser limit only where the field is red-dominated
        limit, red_limit = EDGES_IN_CIRCLE_NOT_RED, EDGES_IN_CIRCLE
    else:
        limit, red_limit = EDGES_IN_CIRCLE, None
    _check_content(small, _inside(blob, cx, cy, r), source, limit, red_edges=red_limit)
    return cx, cy, r, "circle", blob


def _inside(blob: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """The blob's pixels within 0.9 r of the circle's centre: where the content is judged."""
    disc = np.zeros_like(blob)
    cv2.circle(disc, (round(cx), round(cy)), round(0.9 * r), 1, -1)
    return (disc & blob).astype(bool)


def _largest_blob(lum: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(mask, connected-component stats) of the largest region brighter than ``thresh`` (opened
    with a 5-px square), or None where there is none."""
    mask = cv2.morphologyEx((lum > thresh).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == big).astype(np.uint8), stats[big]


def _bright_blob(lum: np.ndarray, thresh: float, source: str | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_largest_blob`, or NotFundusError where there is none or it is under 5 % of the frame."""
    found = _largest_blob(lum, thresh)
    if found is None:
        raise NotFundusError("no bright field of view found", source)
    if found[1][cv2.CC_STAT_AREA] < 0.05 * lum.size:
        raise NotFundusError("bright region too small to be a fundus field of view", source)
    return found


#: where no circle fits the bright region, it is looked for again this far up from the surround to
#: the bright level (instead of a fifth): a deep shadow (a lid, a small pupil, a dark side) can take
#: a large part of the field below a fifth of the way up, seldom down to the surround itself ...
SHADED_STEP = 0.06
#: ... and at least this many grey levels above the surround (its noise and compression ringing)
SHADED_MARGIN = 6.0


def _shaded_circle(small: np.ndarray, lum: np.ndarray, bg: float, fg: float, source: str | None,
                   strict_colour: bool) -> tuple[float, float, float, np.ndarray] | None:
    """(cx, cy, r, blob) of a field whose shaded part fell below the usual threshold, or None.

    A circle found only this near the surround is weaker evidence of a camera (a vignetted natural
    picture has one too), so what it holds must also look like retina: red-dominated (unless the
    caller relaxes colour) and with few strong edges."""
    thresh = max(bg + SHADED_STEP * (fg - bg), bg + SHADED_MARGIN)
    if thresh >= bg + 0.2 * (fg - bg):
        return None
    try:
        blob, _ = _bright_blob(lum, thresh, source)
        cx, cy, r, _ = _circle_of(blob, source)
        _check_content(small, _inside(blob, cx, cy, r), source, EDGES, strict_colour=strict_colour)
    except NotFundusError:
        return None
    return cx, cy, r, blob


def _circle_of(blob: np.ndarray, source: str | None) -> tuple[float, float, float, float]:
    """(cx, cy, r, arc) of the circle a bright region's outline follows, or NotFundusError."""
    sh, sw = blob.shape
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
    return cx, cy, r, arc


#: a bright region assessed without a circle must span this share of the frame's width or height
#: (the camera's field runs past the frame: octagonal or rectangular masks), be this convex ...
REGION_SPAN, REGION_SOLIDITY = 0.8, 0.9
#: ... and show some fine structure (mean |Laplacian| of green at 256 px; flat fills have ~0)
REGION_DETAIL = 1.0


def _region(small: np.ndarray, blob: np.ndarray, stat: np.ndarray,
            strict_colour: bool = True) -> tuple[float, float, float] | None:
    """(cx, cy, r) of the square around a bright region that no circle fits but that is plainly a
    fundus camera's field (frame-wide, convex, red-dominated, retina-like structure), else None."""
    sh, sw = blob.shape
    x, y, bw, bh = (int(v) for v in stat[:4])
    if bw < REGION_SPAN * sw and bh < REGION_SPAN * sh:
        return None
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(max(contours, key=cv2.contourArea)))
    if hull <= 0 or np.count_nonzero(blob) / hull < REGION_SOLIDITY:
        return None
    inner = cv2.erode(blob, np.ones((7, 7), np.uint8)).astype(bool)
    try:
        _check_content(small, inner, None, EDGES, strict_colour=strict_colour)
    except NotFundusError:
        return None
    if _detail(small, inner) < REGION_DETAIL:
        return None
    return x + bw / 2.0, y + bh / 2.0, max(bw, bh) / 2.0


def _detail(small: np.ndarray, sel: np.ndarray) -> float:
    """Mean |Laplacian| of green at 256 px width over ``sel``: fine structure (vessels, texture)."""
    sh, sw = sel.shape
    s = cv2.resize(small, (256, max(1, round(256 * sh / sw))), interpolation=cv2.INTER_AREA)
    m = cv2.resize(sel.astype(np.uint8), (s.shape[1], s.shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return float(np.abs(cv2.Laplacian(s[..., 1].astype(np.float32), cv2.CV_32F))[m].mean()) if m.any() else 0.0


def _outline_step(lum: np.ndarray, blob: np.ndarray | None,
                  circle: tuple[float, float, float] | None = None) -> float:
    """Step across the outline of the bright region ``blob`` (the one its field was found from)
    relative to the field's level: (mean of a 3-px band just inside − just outside) / median of the
    region, away from the frame border and, where the field is a fitted ``circle`` (cx, cy, r), within
    6 px of it (a shadow's soft edge inside the field is not the camera's; under 20 px of outline
    there on either side: the whole outline). About 0.4-1 for a camera's sharp-edged field (circle or
    octagon), small for a blurred glow whose outline only happens to be round; 0 without a ``blob``."""
    h, w = lum.shape
    if blob is None:
        return 0.0
    ring = np.ones((7, 7), np.uint8)
    inner = blob.astype(bool) & ~cv2.erode(blob, ring).astype(bool)
    outer = cv2.dilate(blob, ring).astype(bool) & ~blob.astype(bool)
    away = np.zeros((h, w), bool)
    away[4:-4, 4:-4] = True
    if circle is not None:
        cx, cy, r = circle
        yy, xx = np.ogrid[:h, :w]
        on = np.abs(np.hypot(xx - cx, yy - cy) - r) < 6
        if (inner & away & on).sum() >= 20 and (outer & away & on).sum() >= 20:
            away &= on
    inner, outer = inner & away, outer & away
    if inner.sum() < 20 or outer.sum() < 20:
        return 1.0  # the outline runs along the frame: nothing to judge
    level = float(np.median(lum[blob.astype(bool)]))
    return (float(lum[inner].mean()) - float(lum[outer].mean())) / max(level, 1.0)


#: Graham-style background subtraction leaves every channel's median at 128 ± this ...
GRAHAM_MEDIAN = 10
#: ... most pixels within a few grey levels of it (median |g − 128| at most this) ...
GRAHAM_MAD = 24.0
#: ... but some detail: at least this share of pixels more than 3 levels from 128 (a flat grey frame: none)
GRAHAM_DETAIL = 0.05


def _graham_like(small: np.ndarray) -> bool:
    """A fundus photo preprocessed by subtracting its blurred background (``4·img − 4·blur + 128``):
    grey around 128 in every channel, with low-amplitude detail."""
    meds = [_percentile_u8(ch, 50) for ch in cv2.split(small)]
    if max(abs(m - 128) for m in meds) > GRAHAM_MEDIAN:
        return False
    if float(np.mean(small.max(axis=2) - small.min(axis=2))) < 1.0:
        return False  # a grey-level picture (page, texture): a colour photo's residual differs by channel
    dev = np.abs(small[..., 1].astype(np.int16) - 128)
    return float(np.median(dev)) <= GRAHAM_MAD and float(np.mean(dev > 3)) >= GRAHAM_DETAIL


def _graham_disc(small: np.ndarray) -> tuple[float, float, float, np.ndarray] | None:
    """(cx, cy, r, blob): the textured disc of a Graham-style photo (its surround is flat 128), if
    a circle fits it."""
    dev = np.abs(small.astype(np.int16) - 128).max(axis=2).astype(np.float32)
    texture = cv2.GaussianBlur(dev, (0, 0), 3)
    blob = (texture > 2.0).astype(np.uint8)
    blob = cv2.morphologyEx(blob, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(blob, connectivity=8)
    if n < 2:
        return None
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    sh, sw = blob.shape
    if stats[big, cv2.CC_STAT_AREA] > 0.97 * sh * sw:
        return None  # textured everywhere: no surround to fit
    disc = (labels == big).astype(np.uint8)
    try:
        cx, cy, r, _ = _circle_of(disc, None)
    except NotFundusError:
        return None
    return cx, cy, r, disc


#: the bright level is at most this many times the field's median (both over the surround): fundus
#: photos have 95th percentile / median 1.0-1.8, so the cap leaves them alone; a clipped over-exposed
#: patch lifts the 95th percentile to ~4x the median
FG_PER_MEDIAN = 2.0


def _bright_level(lum: np.ndarray, bg: float) -> float:
    """The field's bright level: the 95th percentile of brightness, capped at ``FG_PER_MEDIAN``
    times the median of the field (pixels a tenth of the way up from the surround ``bg``). An
    over-exposed patch clips the 95th percentile to ~255, and a fifth of the way up to it (the blob
    threshold) would cut a dark photo's dim periphery off its field of view."""
    fg = _percentile_u8(lum, 95)
    field = lum[lum > bg + 0.1 * (fg - bg)]
    if fg > bg and field.size:
        fg = min(fg, bg + FG_PER_MEDIAN * (_percentile_u8(field, 50) - bg))
    return fg


def _brightest(img: np.ndarray) -> np.ndarray:
    """Per-pixel brightest channel of an 8-bit 3-channel image (OpenCV's is much faster than numpy's axis-2 max)."""
    b, g, r = cv2.split(img)
    return cv2.max(cv2.max(b, g), r)


def _corner_level(lum: np.ndarray) -> float:
    """Median brightness of the four corner squares (side 1/20 of the short side): the surround."""
    h, w = lum.shape
    c = max(3, min(h, w) // 20)
    return float(np.median(np.concatenate([lum[:c, :c].ravel(), lum[:c, -c:].ravel(), lum[-c:, :c].ravel(),
                                           lum[-c:, -c:].ravel()])))


def _colour_share(img: np.ndarray) -> float:
    """Share of an 8-bit BGR image's pixels whose channels differ by more than 16 levels."""
    return float(np.mean((img.max(axis=2).astype(np.int16) - img.min(axis=2)) > 16))


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


def _check_content(small: np.ndarray, inside: np.ndarray | None, source: str | None, max_edges: float = EDGES,
                   strict_colour: bool | None = None, red_edges: float | None = None) -> None:
    """Reject what is plainly not retina inside the FOV: one flat tone, blue/green-dominated or full
    of sharp edges.

    Measured at 256 px width after a σ = 1.5 px blur (which removes sensor noise and JPEG blocking):
    fundus photos from three cameras, also with strong noise or JPEG damage, have at most 0.6 % of
    strong-gradient pixels inside the FOV; natural photographs 4.5-21 %. Without a visible FOV edge
    (``inside`` is None) the colour must also be clearly red-dominated; a grey frame can't be
    told from a non-fundus one and is refused. ``red_edges``: the edge limit instead of ``max_edges``
    where the colours are red-dominated.
    """
    width = 256
    height = max(1, round(width * small.shape[0] / small.shape[1]))
    s = cv2.resize(small, (width, height), interpolation=cv2.INTER_AREA)
    sel = np.ones((height, width), bool) if inside is None else cv2.resize(
        inside.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    grey8 = cv2.cvtColor(s, cv2.COLOR_BGR2GRAY)
    core = cv2.erode(sel.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    field = grey8[core if core.any() else sel]
    if field.size and _percentile_u8(field, 99.9) - _percentile_u8(field, 0.1) < BLANK:
        level = _percentile_u8(field, 50)
        # only clipping makes a photo flat, at white; a photo clipped to white throughout keeps the
        # colour of its edge, where it falls off to the surround (a mask is grey there too): over-exposed
        if level < CLIPPED or _colour_share(s) < COLOURED:
            where = "the field of view" if inside is not None else "the picture"
            raise NotFundusError(f"{where} is one flat tone (grey level {level:.0f}), a mask or drawing, "
                                 "not a photograph", source)
    b, g, r = (_percentile_u8(ch[sel], 50) for ch in cv2.split(s))
    rgb = f"median R,G,B = {r:.0f},{g:.0f},{b:.0f}"
    strict = inside is None if strict_colour is None else strict_colour
    red = r >= 1.15 * g and r >= 1.3 * b
    if strict and not red:
        raise NotFundusError(f"no field-of-view edge and not the colours of a fundus photograph ({rgb})", source)
    if r < 0.9 * g or r < 0.9 * b:
        raise NotFundusError(f"colours are not those of a fundus photograph ({rgb})", source)
    # blur first: sensor noise and JPEG blocking are not structure; object edges survive it
    grey = cv2.GaussianBlur(grey8.astype(np.float32), (0, 0), 1.5)
    mag = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    edges = float(np.mean(mag[sel] > 100))
    if edges > (red_edges if red and red_edges is not None else max_edges):
        raise NotFundusError(f"too much sharp structure for a retina ({edges:.0%} edge pixels)", source)
