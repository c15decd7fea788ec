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

import numpy as np

from .assessor import QualityAssessor
from .errors import ImageReadError, NotFundusError
from .fov import Fov
from .imageio import to_bgr8
from . import reasons
from .reasons import ZONE_TEXT
from .result import QualityResult


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


#: Thresholds live in :mod:`efiqa.reasons` (one implementation for stills and live guidance).
#: Hints that veto a capture whatever the map says: the frame statistics already show a problem.
BLOCKING = frozenset({"fov_off_centre", "fov_cut_off", "too_dark", "overexposed", "blurred", "shadow", "artefact"})

#: What the operator should do about each reason (the reason's own text where none is given).
ADVICE = {
    "fov_off_centre": "Centre the pupil: the field of view is off-centre",
    "fov_cut_off": "Field of view is cut off on one side: re-centre",
    "too_dark": "Image too dark: increase flash/illumination or dilate the pupil",
    "overexposed": "Overexposed: reduce flash intensity",
    "blurred": "Blurred: adjust focus",
    "hazy": "Hazy: clean the lens, check working distance (or media opacity)",
    "artefact": "Glare or reflections: adjust working distance and alignment",
}


def _hint(r: "reasons.Reason") -> Hint:
    if r.code == "shadow":
        return Hint(r.code, f"Shadow over the {ZONE_TEXT[r.zone]}: lift the eyelid or re-align", r.zone)
    if r.code == "uneven_illumination":
        return Hint(r.code, f"Uneven illumination, {ZONE_TEXT[r.zone]} dark: re-align with the pupil", r.zone)
    return Hint(r.code, ADVICE.get(r.code, r.text), r.zone)


def frame_hints(bgr: np.ndarray, res: QualityResult) -> list[Hint]:
    """Hints from simple frame statistics of ``bgr`` (likely cause) and from the map (which zone),
    via :mod:`efiqa.reasons`. A symmetric crop of the FOV circle by the sensor is not a fault."""
    zones = [r for r in reasons.map_reasons(res) if r.code == "zone_degraded"]
    return [_hint(r) for r in reasons.frame_reasons(bgr, res.fov)] + [_hint(r) for r in zones]


def result_hints(res: QualityResult) -> list[Hint]:
    """The same hints from the reasons a result already carries (no second look at the frame)."""
    return [_hint(r) for r in res.reasons if r.code != "low_detail"]


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
        except NotFundusError:  # per-frame problems are hints; model, engine and device errors stop the stream
            self.reset_window(full=True)
            self._last_t = ts
            return GuidanceState(index, ts, None, None, None, False,
                                 [Hint("no_fundus", "No fundus in view: align the camera with the pupil")],
                                 (time.perf_counter() - t0) * 1e3)
        except ImageReadError as err:
            return GuidanceState(index, ts, self._score, None, self._map, False,
                                 [Hint("bad_frame", f"Frame skipped: {err.message}")], (time.perf_counter() - t0) * 1e3)

        raw = res.score
        hints = result_hints(res)
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
