"""The detection stage of the video pipeline: the settings' detector run on frames scaled to one size."""

from __future__ import annotations

from dataclasses import dataclass

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
