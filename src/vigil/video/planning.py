"""What each detection of the video pipeline scans: the whole frame, regions around the tracked
faces, or the whole frame coarser; and the detection itself (filtered, with quality).

Every ``video_full_frame_every``-th detection scans the whole frame (new faces are found there); the
ones between scan only regions around the tracked faces (``ROI_GROW`` face sizes beyond each), which
costs a fraction of a whole frame; with no face tracked they scan the whole frame at a coarser scale
(about half the cost; all but the smallest faces). Detection ``k`` looks where the tracks of detection
``k - ROI_LAG`` are predicted to be at its frame (detection ``k - 1`` may still be running on another
thread), so the events are the same whatever the number of detection threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from vigil.core.config import Settings
from vigil.core.frame import Frame
from vigil.core.types import FaceDetections
from vigil.video.detection import HOG_WINDOW_PX, Region, ScaledDetector, regions_around
from vigil.video.tracker import Track
from vigil.vision.protocols import Detector
from vigil.vision.quality import face_quality

ROI_LAG = 2
"""A detection around the tracked faces starts from the tracks of the detection this many before it."""

ROI_GROW = 0.6
"""A region around a tracked face reaches this many face sizes beyond it on every side."""

MAX_REGION_SHARE = 0.5
"""Regions covering more of the frame than this are scanned as the whole frame instead."""


class DetectionPlanner:
    """Plans and runs the detections of one pipeline, in detection order.

    :meth:`plan` is called once per detection frame, in order, from the pipeline's thread; the work it
    returns may run on another thread. :meth:`tracked` records the tracks each detection left.
    ``scans`` counts the detections by what they scanned.
    """

    def __init__(self, settings: Settings, detector: Detector) -> None:
        self.settings = settings
        self.detector = detector
        self.planned = 0
        self.scans = {"whole": 0, "regions": 0, "coarse": 0}
        self._tracks_after: dict[int, list[Track]] = {}

    def detect(
        self, bgr: npt.NDArray[np.uint8], regions: list[Region] | None = None, *, coarse: bool = False
    ) -> FaceDetections:
        """The faces the detector finds (in ``regions``, or coarser), weak ones dropped, with quality."""
        if regions is None and not coarse:
            faces = self.detector.detect(bgr)
        else:
            assert isinstance(self.detector, ScaledDetector)
            faces = (
                self.detector.detect_coarse(bgr)
                if regions is None
                else self.detector.detect_regions(bgr, regions)
            )
        faces = faces[faces.score >= self.settings.video_min_confidence]
        if len(faces):
            faces = faces.with_(quality=face_quality(bgr, faces))
        return faces

    def scans_regions(self, k: int) -> bool:
        """Detection ``k`` scans only around the tracked faces (not the whole frame)."""
        every = self.settings.video_full_frame_every
        return every > 1 and k >= ROI_LAG and k % every != 0 and isinstance(self.detector, ScaledDetector)

    def needs(self, k: int) -> int | None:
        """The detection whose tracks detection ``k`` starts from (None: it needs none)."""
        return k - ROI_LAG if self.scans_regions(k) else None

    def plan(self, frame: Frame) -> Callable[[], FaceDetections]:
        """The next detection, on ``frame``: what to scan, as work to run."""
        k = self.planned
        self.planned += 1
        if not self.scans_regions(k):
            return self._scan("whole", frame)
        assert isinstance(self.detector, ScaledDetector)
        tracks = self._tracks_after.get(k - ROI_LAG, [])
        if not tracks:  # nobody to follow: the whole frame, coarser, so that newcomers are found soon
            return self._scan("coarse", frame)
        boxes = np.stack([t.predict(frame.index) for t in tracks])
        h, w = frame.bgr.shape[:2]
        factor = self.detector.side_px / max(h, w)
        regions = regions_around(boxes, w, h, grow=ROI_GROW, min_side=round(2 * HOG_WINDOW_PX / factor))
        if sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in regions) > MAX_REGION_SHARE * w * h:
            return self._scan("whole", frame)
        return self._scan("regions", frame, regions)

    def _scan(
        self, kind: str, frame: Frame, regions: list[Region] | None = None
    ) -> Callable[[], FaceDetections]:
        self.scans[kind] += 1
        return lambda: self.detect(frame.bgr, regions, coarse=kind == "coarse")

    def tracked(self, k: int, tracks: list[Track]) -> None:
        """Detection ``k`` left these tracks (copied: later updates do not change them)."""
        self._tracks_after[k] = [replace(t) for t in tracks]
        self._tracks_after.pop(k - ROI_LAG - 1, None)
