"""The detection stage of the video pipeline.

- :class:`ScaledDetector`: the settings' detector run on frames scaled to one size, on the whole
  frame, on regions of it (around the tracked faces), or coarser;
- :func:`regions_around`: the regions to scan around predicted face boxes;
- :class:`DetectAhead`: upcoming frames detected on worker threads while earlier ones are processed.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from vigil.core.config import Settings
from vigil.core.types import FaceDetections
from vigil.vision.engine import build_detector
from vigil.vision.onnx.yunet import YuNetDetector
from vigil.vision.protocols import Detector


@dataclass
class ScaledDetector:
    """Runs ``inner`` on the frame scaled so its long side is ``side_px`` (up or down); boxes mapped back."""

    inner: Detector
    side_px: int
    enlarge: bool = True
    """False: smaller frames keep their size (YuNet finds the same faces in 640x360 frames at 960 px
    as at 640, at twice the cost; bench/detect.py)."""

    def factor(self, height: int, width: int) -> float:
        """The scale :meth:`detect` runs a ``height`` x ``width`` frame at."""
        factor = self.side_px / max(height, width)
        return factor if self.enlarge else min(1.0, factor)

    @property
    def name(self) -> str:
        return f"{self.inner.name}@{self.side_px}"

    def detect(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        return self._detect_at(bgr, self.factor(*bgr.shape[:2]))

    def _detect_at(self, bgr: npt.NDArray[np.uint8], factor: float) -> FaceDetections:
        import cv2

        if abs(factor - 1.0) < 0.02:
            return self.inner.detect(bgr)
        h, w = bgr.shape[:2]
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        small = np.asarray(
            cv2.resize(bgr, (round(w * factor), round(h * factor)), interpolation=interpolation), np.uint8
        )
        return self.inner.detect(small).scaled(1.0 / factor)

    def detect_coarse(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        """The whole frame at two thirds of :meth:`detect`'s scale: about half the cost, and faces
        from 1.5x the smallest size :meth:`detect` finds."""
        return self._detect_at(bgr, self.factor(*bgr.shape[:2]) / COARSE_RATIO)

    def detect_regions(self, bgr: npt.NDArray[np.uint8], regions: list[Region]) -> FaceDetections:
        """Faces inside ``regions`` of ``bgr`` only, at the scale :meth:`detect` uses for the whole frame."""
        factor = self.factor(*bgr.shape[:2])
        parts = [
            self._detect_at(np.ascontiguousarray(bgr[y1:y2, x1:x2]), factor).shifted(x1, y1)
            for x1, y1, x2, y2 in regions
        ]
        return FaceDetections.concat([p for p in parts if len(p)]) if parts else FaceDetections.empty("dlib5")


COARSE_RATIO = 1.5
"""How much smaller a coarse scan's scale is than a full one's."""

HOG_WINDOW_PX = 80
"""The smallest face dlib's detectors find without upsampling, in pixels at the detection scale."""

Region = tuple[int, int, int, int]
"""A rectangle of a frame in whole pixels, x1, y1, x2, y2 (x2 and y2 excluded)."""


def regions_around(
    boxes: npt.NDArray[np.float32], width: int, height: int, *, grow: float, min_side: int
) -> list[Region]:
    """Rectangles around ``boxes`` ((n, 4) xyxy), grown by ``grow`` box sizes on every side, at least
    ``min_side`` pixels wide and high, clipped to the frame; overlapping ones are merged."""
    rects: list[list[int]] = []
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half = max((1 + 2 * grow) * max(x2 - x1, y2 - y1), min_side) / 2
        rects.append(
            [
                max(0, int(cx - half)),
                max(0, int(cy - half)),
                min(width, int(np.ceil(cx + half))),
                min(height, int(np.ceil(cy + half))),
            ]
        )
    merged = True
    while merged and len(rects) > 1:
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    rects[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    return [(r[0], r[1], r[2], r[3]) for r in rects if r[2] > r[0] and r[3] > r[1]]


def video_detector(settings: Settings, pack: str | None = None, base: Detector | None = None) -> Detector:
    """The detector of ``pack`` (None: the settings' own), configured for video frames (``video_*``).

    ``base``: the engine's detector; a YuNet one is re-tuned (same model session) rather than loaded
    again, so the video path always runs the engine's model, wherever its files lie.

    YuNet (fixed or dynamic input) gets the video settings through ``with_settings`` and scans frames
    scaled down to ``video_detect_side_px``, never up: it finds faces from about 16 px at the scale it
    runs at, so 960 px finds 16 px faces in 640x360 frames, 24 px in 1080p and 48 px in 4K, and a
    ``video_detect_side_px`` of the frame's width (1920, 3840) finds 20 px faces there
    (``bench/detect.py``); ``video_detect_upsample`` doubles its scale for smaller faces.
    """
    tuned = settings.model_copy(
        update={
            "detect_max_side_px": 100_000,
            "detect_upsample_below_px": 100_000 if settings.video_detect_upsample else 0,
            "detect_min_confidence": settings.video_min_confidence,
        }
    )
    detector: Detector = (
        base
        if isinstance(base, YuNetDetector)
        else build_detector(tuned, gray=settings.video_detect_gray, pack=pack)
    )
    if isinstance(detector, YuNetDetector):  # however the engine built it (settings, model pack): tune it
        return ScaledDetector(detector.with_settings(tuned), settings.video_detect_side_px, enlarge=False)
    return ScaledDetector(detector, settings.video_detect_side_px)


MAX_DETECT_THREADS = 4
"""Detection threads at most (more would only hold more frames in memory)."""


def detect_threads(settings: Settings) -> int:
    """Threads the video pipeline detects on: ``video_detect_threads``, or one per usable core (<= 4)."""
    if settings.video_detect_threads > 0:
        return min(settings.video_detect_threads, MAX_DETECT_THREADS)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_DETECT_THREADS, cores))


F = TypeVar("F")
"""A frame (whatever carries the image; the ahead only passes it along)."""
R = TypeVar("R")
"""What processing a frame gives (the pipeline's events)."""


@dataclass(frozen=True)
class Detected:
    """The detection stage's result for one frame: the faces, and the seconds the detector took."""

    faces: FaceDetections
    seconds: float


class DetectAhead(Generic[F, R]):
    """Detects upcoming frames on worker threads while earlier ones are processed, in order.

    Every ``every``-th frame pushed (the first included) is a detection frame: ``plan(frame)`` is
    called at once, in the caller's thread, and the work it returns runs on a worker thread. Up to
    ``workers`` detections run at once, so the work must be thread-safe (vigil's detectors are;
    dlib and onnxruntime release the GIL while they compute, so two threads use two cores).
    ``process(frame, detected)`` is called in the caller's thread, in the order frames were pushed,
    once the frame's detection (None for the frames in between) is back.

    Detections are numbered from 0. Before detection ``k`` is planned, every frame up to and
    including detection ``needs(k)`` (when not None) has been processed, so a plan may rely on what
    processing those frames left behind. At most ``workers + 1`` detections are queued or running.
    """

    def __init__(
        self,
        plan: Callable[[F], Callable[[], FaceDetections]],
        process: Callable[[F, Detected | None], list[R]],
        *,
        every: int,
        workers: int,
        needs: Callable[[int], int | None] = lambda k: None,
    ) -> None:
        self._plan = plan
        self._process = process
        self._needs = needs
        self.every = every
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vigil-detect")
        self._pending: deque[tuple[F, Future[Detected] | None]] = deque()
        self._pushed = 0
        self._planned = 0
        self._processed = 0
        """Detections processed so far."""
        self.waited_s = 0.0
        """Seconds the caller spent waiting for a detection to finish."""

    @staticmethod
    def _run(work: Callable[[], FaceDetections]) -> Detected:
        t0 = time.monotonic()
        faces = work()
        return Detected(faces, time.monotonic() - t0)

    def _jobs(self) -> int:
        return sum(job is not None for _, job in self._pending)

    def _release(self, *, block: bool) -> list[R]:
        """Process the frames at the head whose detection is back (waiting for the first if ``block``)."""
        out: list[R] = []
        while self._pending:
            frame, job = self._pending[0]
            if job is not None and not job.done():
                if not block:
                    break
                t0 = time.monotonic()
                job.result()
                self.waited_s += time.monotonic() - t0
                block = False
            self._pending.popleft()
            out.extend(self._process(frame, job.result() if job is not None else None))
            self._processed += job is not None
        return out

    def push(self, frame: F) -> list[R]:
        """Queue ``frame``; what processing the frames now ready gave (the detector's errors raise here)."""
        out: list[R] = []
        is_detect_frame = self._pushed % self.every == 0
        self._pushed += 1
        job = None
        if is_detect_frame:
            needed = self._needs(self._planned)
            while self._jobs() > self.workers or (needed is not None and self._processed <= needed):
                out.extend(self._release(block=True))
            self._planned += 1
            job = self._pool.submit(self._run, self._plan(frame))
        self._pending.append((frame, job))
        out.extend(self._release(block=False))
        return out

    def drain(self) -> list[R]:
        """Process every frame still queued, waiting for their detections."""
        out: list[R] = []
        while self._pending:
            out.extend(self._release(block=True))
        return out

    def close(self) -> None:
        """Drop what is queued and stop the threads."""
        for _, job in self._pending:
            if job is not None:
                job.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)
