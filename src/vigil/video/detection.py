"""The detection stage of the video pipeline: the settings' detector run on frames scaled to one size."""

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
from vigil.vision.protocols import Detector


@dataclass
class ScaledDetector:
    """Runs ``inner`` on the frame scaled so its long side is ``side_px`` (up or down); boxes mapped back."""

    inner: Detector
    side_px: int

    @property
    def name(self) -> str:
        return f"{self.inner.name}@{self.side_px}"

    def detect(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        import cv2

        h, w = bgr.shape[:2]
        factor = self.side_px / max(h, w)
        if abs(factor - 1.0) < 0.02:
            return self.inner.detect(bgr)
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        small = np.asarray(
            cv2.resize(bgr, (round(w * factor), round(h * factor)), interpolation=interpolation), np.uint8
        )
        return self.inner.detect(small).scaled(1.0 / factor)


def video_detector(settings: Settings) -> Detector:
    """The settings' detector, configured for video frames (``video_*`` settings)."""
    tuned = settings.model_copy(
        update={
            "detect_max_side_px": 100_000,
            "detect_upsample_below_px": 100_000 if settings.video_detect_upsample else 0,
            "detect_min_confidence": settings.video_min_confidence,
        }
    )
    return ScaledDetector(build_detector(tuned), settings.video_detect_side_px)


def detect_threads(settings: Settings) -> int:
    """Threads the video pipeline detects on: ``video_detect_threads``, or one per usable core (<= 4)."""
    if settings.video_detect_threads > 0:
        return settings.video_detect_threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


F = TypeVar("F")
"""A frame (whatever carries the image; the ahead only passes it along)."""


@dataclass(frozen=True)
class Detected:
    """The detection stage's result for one frame: the faces, and the seconds the detector took."""

    faces: FaceDetections
    seconds: float


class DetectAhead(Generic[F]):
    """Detects upcoming frames on worker threads while the caller handles earlier ones, in order.

    Every ``every``-th frame pushed (the first included) is a detection frame. Up to ``workers``
    detections run at once, calling ``detect`` from that many threads, so it must be thread-safe
    (vigil's detectors are; dlib and onnxruntime release the GIL while they compute, so two threads
    use two cores). Frames come back
    from :meth:`push` and :meth:`drain` in the order they were pushed, each with its
    :class:`Detected` (None for the frames in between), once everything before them is back.
    """

    def __init__(
        self,
        detect: Callable[[npt.NDArray[np.uint8]], FaceDetections],
        image: Callable[[F], npt.NDArray[np.uint8]],
        *,
        every: int,
        workers: int,
    ) -> None:
        self._detect_fn = detect
        self._image = image
        self.every = every
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="vigil-detect")
        self._pending: deque[tuple[F, Future[Detected] | None]] = deque()
        self._pushed = 0
        self.waited_s = 0.0
        """Seconds the caller spent waiting for a detection to finish."""

    def _detect(self, bgr: npt.NDArray[np.uint8]) -> Detected:
        t0 = time.monotonic()
        faces = self._detect_fn(bgr)
        return Detected(faces, time.monotonic() - t0)

    def _jobs(self) -> int:
        return sum(job is not None for _, job in self._pending)

    def _release(self, *, block: bool) -> list[tuple[F, Detected | None]]:
        """The frames at the head whose detection is back (waiting for the first one if ``block``)."""
        out: list[tuple[F, Detected | None]] = []
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
            out.append((frame, job.result() if job is not None else None))
        return out

    def push(self, frame: F) -> list[tuple[F, Detected | None]]:
        """Queue ``frame``; the frames now ready, in order (the detector's errors are raised here)."""
        out: list[tuple[F, Detected | None]] = []
        is_detect_frame = self._pushed % self.every == 0
        self._pushed += 1
        job = None
        if is_detect_frame:
            while self._jobs() >= self.workers:
                out.extend(self._release(block=True))
            job = self._pool.submit(self._detect, self._image(frame))
        self._pending.append((frame, job))
        out.extend(self._release(block=False))
        return out

    def drain(self) -> list[tuple[F, Detected | None]]:
        """Every frame still queued, waiting for their detections."""
        out: list[tuple[F, Detected | None]] = []
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
