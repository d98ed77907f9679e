"""Face quality in [0, 1]: size, sharpness, detector confidence and a pose proxy.

Later stages use it to pick best shots. Each factor is in [0, 1]; the score is their weighted
geometric mean, so one bad factor (a blurred or turned face) pulls the whole score down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.core.types import FaceDetections


@dataclass(frozen=True)
class QualityWeights:
    size: float = 0.3
    sharpness: float = 0.2
    confidence: float = 0.2
    pose: float = 0.3
    full_size_px: float = 80.0
    """A face this many pixels on its shorter side (or more) scores 1 for size."""
    sharpness_half_px2: float = 60.0
    """Variance of the Laplacian (on a 64x64 grey crop) that scores 0.5 for sharpness."""


def size_factor(faces: FaceDetections, w: QualityWeights) -> npt.NDArray[np.float32]:
    side = faces.size_wh.min(axis=1)
    out: npt.NDArray[np.float32] = np.clip(side / w.full_size_px, 0.0, 1.0).astype(np.float32)
    return out


def sharpness_factor(
    bgr: npt.NDArray[np.uint8], faces: FaceDetections, w: QualityWeights
) -> npt.NDArray[np.float32]:
    import cv2

    h, wd = bgr.shape[:2]
    out = np.zeros(len(faces), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(faces.xyxy.astype(int)):
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(wd, x2), min(h, y2)
        if x2 - x1 < 4 or y2 - y1 < 4:
            continue
        grey = cv2.cvtColor(bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
        grey = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)
        var = float(cv2.Laplacian(grey, cv2.CV_64F).var())
        out[i] = var / (var + w.sharpness_half_px2)
    return out


def pose_factor(faces: FaceDetections) -> npt.NDArray[np.float32]:
    """1 for a frontal face, falling to 0 as the nose moves off the eyes' midline (yaw)."""
    if faces.landmarks is None:
        return np.full(len(faces), 0.5, np.float32)
    left, right, nose = faces.eye_nose()
    eye_dist = np.linalg.norm(right - left, axis=1)
    mid = (left + right) / 2
    axis = (right - left) / np.maximum(eye_dist, 1e-6)[:, None]
    offset = np.abs(((nose - mid) * axis).sum(axis=1)) / np.maximum(eye_dist, 1e-6)
    out: npt.NDArray[np.float32] = np.clip(1.0 - 2.0 * offset, 0.0, 1.0).astype(np.float32)
    return out


def face_quality(
    bgr: npt.NDArray[np.uint8], faces: FaceDetections, weights: QualityWeights | None = None
) -> npt.NDArray[np.float32]:
    """(n,) float32 quality in [0, 1] for each face in ``faces``."""
    w = weights or QualityWeights()
    if len(faces) == 0:
        return np.zeros(0, np.float32)
    factors = [
        (size_factor(faces, w), w.size),
        (sharpness_factor(bgr, faces, w), w.sharpness),
        (np.clip(faces.score, 0.0, 1.0), w.confidence),
        (pose_factor(faces), w.pose),
    ]
    total = sum(weight for _, weight in factors)
    log_q = sum(weight * np.log(np.maximum(f, 1e-3)) for f, weight in factors) / total
    out: npt.NDArray[np.float32] = np.exp(log_q).astype(np.float32)
    return out
