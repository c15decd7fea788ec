"""Streams: a video file, an image folder played as a sequence, or a camera, through a
:class:`~efiqa.guidance.Guide`, latest frame wins.

A reader thread keeps only the newest frame; the guide takes whatever is newest when it is free, so
when inference is slower than the source, stale frames are dropped (counted), never queued. Files
are read as fast as they decode unless ``realtime`` paces them at their own frame rate.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import EfiqaError, ImageReadError
from .guidance import Guide, GuidanceState
from .imageio import IMAGE_SUFFIXES, read_image


class SourceError(EfiqaError):
    """A stream source that cannot be opened or read."""

    code = "source_error"


@dataclass
class StreamReport:
    frames_read: int = 0
    processed: int = 0
    dropped: int = 0
    corrupt: int = 0
    captures: int = 0
    seconds: float = 0.0
    ended: str = "end of stream"
    latency_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        lat = np.asarray(self.latency_ms) if self.latency_ms else np.zeros(1)
        return {"frames_read": self.frames_read, "processed": self.processed, "dropped": self.dropped,
                "corrupt": self.corrupt, "captures": self.captures, "seconds": round(self.seconds, 3),
                "fps": round(self.fps, 2), "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 2), "ended": self.ended}


class FrameSource:
    """Yields (timestamp_s, frame | None); None marks a corrupt frame that was skipped."""

    def __init__(self, source: str | int, realtime: bool | None = None) -> None:
        self.name = str(source)
        self.live = False
        self._files: list[Path] | None = None
        self._cap = None
        self.fps = 25.0
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
            self._cap = cv2.VideoCapture(int(source))
            self.live = True
        else:
            p = Path(source)
            if p.is_dir():
                self._files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                if not self._files:
                    raise SourceError("folder holds no image files", self.name)
            elif p.is_file():
                self._cap = cv2.VideoCapture(str(p))
            else:
                raise SourceError("no such file, folder or camera", self.name)
        if self._cap is not None:
            if not self._cap.isOpened():
                raise SourceError("cannot be opened as a video or camera", self.name)
            self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0) or 25.0
        self.realtime = self.live if realtime is None else realtime
        self.stop_reason = "end of stream"

    def __iter__(self) -> Iterator[tuple[float, np.ndarray | None]]:
        period = 1.0 / self.fps
        start = time.monotonic()
        if self._files is not None:
            for i, f in enumerate(self._files):
                self._pace(start, i * period)
                try:
                    yield i * period, read_image(f)
                except ImageReadError:
                    yield i * period, None
            return
        i = 0
        failures = 0
        while True:
            ok, frame = self._cap.read()
            if not ok:
                if self.live and failures < 25:  # a camera may hiccup; give up after ~1 s of failures
                    failures += 1
                    time.sleep(0.04)
                    continue
                if self.live:
                    self.stop_reason = "camera stopped delivering frames (disconnected?)"
                return
            failures = 0
            ts = time.monotonic() - start if self.live else i * period
            if not self.live:
                self._pace(start, ts)
            yield ts, (frame if frame is not None and frame.size else None)
            i += 1

    def _pace(self, start: float, ts: float) -> None:
        if self.realtime and not self.live:
            delay = start + ts - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


class LatestFrame:
    """Reader thread holding only the newest frame of a source."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self._cond = threading.Condition()
        self._item: tuple[float, np.ndarray | None] | None = None
        self._done = False
        self.read = 0
        self.overwritten = 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ts, frame in self.source:
                with self._cond:
                    if self._item is not None:
                        self.overwritten += 1
                    self._item = (ts, frame)
                    self.read += 1
                    self._cond.notify()
        except Exception as exc:  # a camera that disconnects mid-read, a decoder error
            self.error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def take(self) -> tuple[float, np.ndarray | None] | None:
        with self._cond:
            while self._item is None and not self._done:
                self._cond.wait()
            item, self._item = self._item, None
            return item


def run_stream(source: FrameSource, guide: Guide, *, on_state=None, latest_wins: bool = True) -> StreamReport:
    """Drive ``guide`` with ``source``; ``on_state(frame, state)`` sees every processed frame."""
    report = StreamReport()
    t0 = time.perf_counter()
    try:
        if latest_wins:
            reader = LatestFrame(source)
            while (item := reader.take()) is not None:
                _step(item[1], item[0], guide, on_state, report)
            report.frames_read, report.dropped = reader.read, reader.overwritten
            if reader.error is not None:
                report.ended = f"source failed: {reader.error}"
        else:
            for ts, frame in source:
                report.frames_read += 1
                _step(frame, ts, guide, on_state, report)
    except KeyboardInterrupt:
        report.ended = "interrupted"
    finally:
        source.close()
    if report.ended == "end of stream":
        report.ended = source.stop_reason
    report.seconds = time.perf_counter() - t0
    report.captures = len(guide.captures)
    return report


def _step(frame, ts, guide: Guide, on_state, report: StreamReport) -> None:
    if frame is None:
        report.corrupt += 1
        return
    state: GuidanceState = guide.update(frame, ts)
    report.processed += 1
    report.latency_ms.append(state.latency_ms)
    if on_state is not None:
        on_state(frame, state)
