"""Detection ahead on worker threads: frames come back in order, with the same events as without."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from videoclips import watchlist

from vigil.app import App
from vigil.core.types import FaceDetections
from vigil.gallery import enroll as enrolment
from vigil.video.detection import DetectAhead, Detected
from vigil.video.pipeline import PipelineEvent
from vigil.video.watch import watch
from vigil.vision.image import load_image


class SlowDetector:
    """Sleeps longer on even frames (so later jobs finish first) and records the concurrency seen."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.seen: list[int] = []
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> FaceDetections:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.seen.append(int(image[0, 0, 0]))
        time.sleep(0.1 if int(image[0, 0, 0]) % 2 == 0 else 0.001)
        with self._lock:
            self.running -= 1
        return FaceDetections.empty()


def _image(i: int) -> np.ndarray:
    return np.full((2, 2, 3), i, np.uint8)


def test_frames_come_back_in_order_with_detections_every_nth() -> None:
    detector = SlowDetector()
    processed: list[int] = []

    def process(i: int, detected: Detected | None) -> list[tuple[int, Detected | None]]:
        processed.append(i)
        return [(i, detected)]

    def needs(k: int) -> int | None:
        return k - 2 if k % 2 else None  # odd detections need detection k - 2 processed

    def plan(i: int) -> Callable[[], FaceDetections]:
        k = i // 3
        if needs(k) is not None and k >= 2:
            assert processed[-1] >= 3 * (k - 2)
        return lambda: detector(_image(i))

    ahead: DetectAhead[int, tuple[int, Detected | None]] = DetectAhead(
        plan, process, every=3, workers=2, needs=needs
    )
    out = []
    for i in range(20):
        out.extend(ahead.push(i))
        assert sum(d is not None for _, d in ahead._pending) <= 3  # at most workers + 1 queued
    out.extend(ahead.drain())
    ahead.close()
    assert [f for f, _ in out] == list(range(20)) == processed
    assert [f for f, d in out if d is not None] == list(range(0, 20, 3))
    assert sorted(detector.seen) == list(range(0, 20, 3)) and detector.most == 2


def test_a_detector_error_reaches_the_caller() -> None:
    def broken() -> FaceDetections:
        raise RuntimeError("model file damaged")

    ahead: DetectAhead[int, int] = DetectAhead(lambda i: broken, lambda i, d: [i], every=1, workers=2)
    with pytest.raises(RuntimeError, match="model file damaged"):
        for i in range(5):
            ahead.push(i)
        ahead.drain()
    ahead.close()


def _events(app: App, clip: Path, threads: int) -> list[dict]:
    app.settings = app.settings.model_copy(update={"video_detect_threads": threads})
    events: list[PipelineEvent] = []
    summary = watch(app, str(clip), on_event=events.append)
    assert summary["frames"] == 275
    scans = summary["scans"]
    assert sum(scans.values()) == summary["detected_frames"] == 92 and scans["regions"] > 0
    volatile = {"ts", "latency_ms", "alarm_id", "event_id"}  # ids: of the capture time, or random
    return [{k: v for k, v in e.model_dump().items() if k not in volatile} for e in events]


def test_two_detection_threads_give_the_same_events(app: App, people: Path, shared_data: Path) -> None:
    watchlist(app, "wanted")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [load_image(people / "lin-manuel-miranda.png")])
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    # Detection every third frame, every other one only around the tracked faces (the defaults).
    serial, threaded = _events(app, clip, 1), _events(app, clip, 2)
    assert threaded == serial
    assert sum(e["type"] == "alarm" for e in threaded) >= 1


def test_a_failing_detector_ends_the_run_cleanly(
    app: App, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error reaches the caller; the run is still audited (with the frames it did)."""
    from vigil.storage import audit
    from vigil.video import pipeline

    class Breaks:
        name = "breaks"
        calls = 0

        def detect(self, bgr: np.ndarray) -> FaceDetections:
            Breaks.calls += 1
            if Breaks.calls == 5:
                raise RuntimeError("detector crashed")
            return FaceDetections.empty()

    monkeypatch.setattr(pipeline, "video_detector", lambda settings, pack, base: Breaks())
    app.settings = app.settings.model_copy(update={"video_detect_threads": 2})
    with pytest.raises(RuntimeError, match="detector crashed"):
        watch(app, str(shared_data / "video" / "short_hamilton_clip.mp4"))
    (run,) = audit.entries(app, action="camera_run")
    assert 0 < run.detail["frames"] < 275
