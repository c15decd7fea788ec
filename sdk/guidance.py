"""Real-time capture guidance: smoothing over time, a hysteresis capture trigger, operator hints.

Feed frames to :class:`Guide` as they come; each call returns a :class:`GuidanceState`. The guide
keeps the best (lowest-score) frame of the current good window and hands it out once the window
has lasted ``dwell_s``.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from .assessor import QualityAssessor
from .errors import EfiqaError, NotFundusError
from .fov import Fov
from .imageio import to_bgr8
from .result import QualityResult

ZONE_TEXT = {"centre": "centre/macula", "superior": "upper (superior) field", "inferior": "lower (inferior) field",
             "left": "left side", "right": "right side"}


@dataclass(frozen=True)
class Hint:
    """A short instruction for the operator: a stable ``code`` for software, ``text`` for people."""

    code: str
    text: str
    zone: str | None = None

    def to_dict(self) -> dict:
        return {"code": self.code, "text": self.text, **({"zone": self.zone} if self.zone else {})}


@dataclass
class GuidanceState:
    frame_index: int
    timestamp: float
    score: float | None            # smoothed image score (None: no fundus in view)
    raw_score: float | None
    map: np.ndarray | None         # smoothed G×G map
    ready_to_capture: bool
    hints: list[Hint]
    latency_ms: float
    result: QualityResult | None = None
    captured: bool = False         # a capture was taken on this frame

    def to_dict(self) -> dict:
        return {"frame": self.frame_index, "timestamp": round(self.timestamp, 4),
                "score": None if self.score is None else round(self.score, 4),
                "raw_score": None if self.raw_score is None else round(self.raw_score, 4),
                "ready": self.ready_to_capture, "captured": self.captured,
                "hints": [h.to_dict() for h in self.hints], "latency_ms": round(self.latency_ms, 2)}


@dataclass
class Capture:
    frame: np.ndarray
    result: QualityResult
    frame_index: int
    timestamp: float


#: Frame-statistics thresholds at 256 px (FOV median of the brightest channel; mean |Laplacian| of
#: green). Measured: well-exposed photos 200-210, an under-exposed EyePACS photo 52; sharp photos
#: 6.7-8.9, a hazy one 2.3, defocused frames about 3.
DARK_LUMINANCE = 60
SHARPNESS_BLURRED = 4.0
SHADOW_RATIO = 0.5
#: Hints that veto a capture whatever the map says: the frame statistics already show a problem.
BLOCKING = frozenset({"fov_off_centre", "fov_cut_off", "too_dark", "overexposed", "blurred", "shadow"})


def frame_hints(bgr: np.ndarray, res: QualityResult) -> list[Hint]:
    """Hints from simple frame statistics (likely cause) and from the map (which zone)."""
    hints: list[Hint] = []
    h, w = bgr.shape[:2]
    fov = res.fov
    if fov.source == "circle":
        off = math.hypot(fov.cx - w / 2, fov.cy - h / 2) / max(fov.r, 1)
        cut = max(0.0, fov.r - min(fov.cx, w - fov.cx)) + max(0.0, fov.r - min(fov.cy, h - fov.cy))
        if off > 0.2:
            hints.append(Hint("fov_off_centre", "Centre the pupil: the field of view is off-centre"))
        elif cut > 0.25 * fov.r:
            hints.append(Hint("fov_cut_off", "Field of view is cut off: move back or re-centre"))
    k = 256 / max(h, w)
    small = cv2.resize(bgr, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:small.shape[0], 0:small.shape[1]]
    u, v = xx - fov.cx * k, yy - fov.cy * k
    inside = (u * u + v * v <= (0.95 * fov.r * k) ** 2) if fov.source == "circle" else np.ones(small.shape[:2], bool)
    lum_img = small.max(axis=2)
    lum = lum_img[inside]
    dark = bright = False
    if lum.size:
        median = float(np.median(lum))
        dark = median < DARK_LUMINANCE
        bright = float(np.mean(lum >= 250)) > 0.05
        if dark:
            hints.append(Hint("too_dark", "Image too dark: increase flash/illumination or dilate the pupil"))
        elif bright:
            hints.append(Hint("overexposed", "Overexposed: reduce flash intensity"))
        sharp = float(np.abs(cv2.Laplacian(small[..., 1].astype(np.float32), cv2.CV_32F))[inside].mean())
        if sharp < SHARPNESS_BLURRED and not dark:
            hints.append(Hint("blurred", "Blurred: adjust focus"))
        # one side much darker than the others: eyelid, lashes or a misaligned pupil shadowing it
        sides = {"superior": (v < 0) & (np.abs(v) >= np.abs(u)), "inferior": (v > 0) & (np.abs(v) >= np.abs(u)),
                 "left": (u < 0) & (np.abs(u) > np.abs(v)), "right": (u > 0) & (np.abs(u) > np.abs(v))}
        levels = {z: float(np.median(lum_img[m & inside])) for z, m in sides.items() if (m & inside).sum() > 50}
        if len(levels) == 4 and not dark:
            zone, low = min(levels.items(), key=lambda kv: kv[1])
            if low < SHADOW_RATIO * float(np.median(list(levels.values()))):
                hints.append(Hint("shadow", f"Shadow over the {ZONE_TEXT[zone]}: lift the eyelid or re-align", zone))
    for zone, value in sorted(((z, v) for z, v in res.zones.items() if v is not None), key=lambda kv: -kv[1]):
        if value >= res.patch_threshold:
            hints.append(Hint("zone_degraded", f"Poor quality in the {ZONE_TEXT[zone]}", zone))
    return hints


class Guide:
    """Turns a stream of frames into guidance.

    ``time_constant_s``: EMA time constant for map and score (reset on an abrupt scene change).
    ``dwell_s``: how long the smoothed score must stay good before ``ready_to_capture``.
    ``hysteresis``: the score must fall below ``threshold − hysteresis`` to turn good and rise above
    ``threshold + hysteresis`` to turn bad again, so the trigger does not flicker. A frame whose
    statistics raise a blocking hint (off-centre, too dark, blurred, shadow, …) is never good.
    """

    #: Captures kept (oldest dropped): a long session must not grow without bound.
    max_captures = 50

    def __init__(self, assessor: QualityAssessor, *, threshold: float | None = None, time_constant_s: float = 0.4,
                 dwell_s: float = 0.6, hysteresis: float = 0.03, scene_change: float = 0.25,
                 fov_refresh_s: float = 1.0) -> None:
        self.qa = assessor
        self.threshold = assessor.threshold if threshold is None else float(threshold)
        self.tau = time_constant_s
        self.dwell_s = dwell_s
        self.hysteresis = hysteresis
        self.scene_change = scene_change
        self.fov_refresh_s = fov_refresh_s
        self.reset()

    def reset(self) -> None:
        self._map: np.ndarray | None = None
        self._score: float | None = None
        self._last_t: float | None = None
        self._good_since: float | None = None
        self._best: Capture | None = None
        self._fov: Fov | None = None
        self._fov_t = -math.inf
        self._captured_window = False
        self.frames = 0
        self.captures: deque[Capture] = deque(maxlen=self.max_captures)

    def update(self, frame: np.ndarray, timestamp: float | None = None, *, color: str = "bgr") -> GuidanceState:
        t0 = time.perf_counter()
        ts = time.monotonic() if timestamp is None else float(timestamp)
        index = self.frames
        self.frames += 1
        try:
            bgr = to_bgr8(frame, color=color)
            reuse = self._fov if ts - self._fov_t < self.fov_refresh_s else None
            res = self.qa.assess(bgr, fov=reuse)
            if reuse is None:
                self._fov, self._fov_t = res.fov, ts
        except NotFundusError:
            self.reset_window(full=True)
            self._last_t = ts
            return GuidanceState(index, ts, None, None, None, False,
                                 [Hint("no_fundus", "No fundus in view: align the camera with the pupil")],
                                 (time.perf_counter() - t0) * 1e3)
        except EfiqaError as err:
            return GuidanceState(index, ts, self._score, None, self._map, False,
                                 [Hint("bad_frame", f"Frame skipped: {err.message}")], (time.perf_counter() - t0) * 1e3)

        raw = res.score
        hints = frame_hints(bgr, res)
        blocked = any(h.code in BLOCKING for h in hints)
        if self._score is None or abs(raw - self._score) > self.scene_change or self._last_t is None:
            self._map, self._score = res.map.copy(), raw
        else:
            a = 1.0 - math.exp(-max(ts - self._last_t, 0.0) / self.tau)
            self._map = (1 - a) * self._map + a * res.map
            self._score = (1 - a) * self._score + a * raw
        self._last_t = ts

        good_now = not blocked and (self._score < self.threshold - self.hysteresis if self._good_since is None
                                    else self._score < self.threshold + self.hysteresis)
        captured = False
        if good_now:
            if self._good_since is None:
                self._good_since = ts
            if self._best is None or raw < self._best.result.score:
                self._best = Capture(bgr.copy(), res, index, ts)
        else:
            self.reset_window()
        ready = self._good_since is not None and ts - self._good_since >= self.dwell_s
        if ready and not self._captured_window and self._best is not None:
            self.captures.append(self._best)
            self._captured_window = captured = True
        return GuidanceState(index, ts, self._score, raw, self._map, ready, hints,
                             (time.perf_counter() - t0) * 1e3, res, captured)

    def reset_window(self, full: bool = False) -> None:
        self._good_since, self._best, self._captured_window = None, None, False
        if full:
            self._map = self._score = None
            self._fov, self._fov_t = None, -math.inf
