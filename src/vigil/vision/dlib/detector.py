"""dlib face detectors: HOG (fast, frontal) and MMOD-CNN (slower, more poses), with dlib 5-point landmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vigil.core.types import FaceDetections
from vigil.vision.dlib import MMOD_LOCK, hog, mmod, shape_predictor_5


def _confidence(margin: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """dlib's SVM/CNN margins (0 = on the decision boundary) mapped into (0, 1)."""
    out: npt.NDArray[np.float32] = (1.0 / (1.0 + np.exp(-2.0 * (margin + 0.5)))).astype(np.float32)
    return out


def dlib_landmarks(rgb: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(n, 5, 2) float32 dlib 5-point landmarks for boxes ``xyxy`` in the RGB image ``rgb``."""
    import dlib

    sp = shape_predictor_5()
    out = np.zeros((len(xyxy), 5, 2), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(xyxy):
        shape = sp(rgb, dlib.rectangle(round(x1), round(y1), round(x2), round(y2)))
        out[i] = [(p.x, p.y) for p in shape.parts()]
    return out


@dataclass
class DlibDetector:
    """HOG or MMOD-CNN face detection at a bounded image size.

    Large images are scaled down so their long side is at most ``max_side_px``; small ones
    (long side under ``upsample_below_px``) are upsampled once so that small faces are found.
    Landmarks are computed at full resolution.
    """

    method: Literal["hog", "mmod"] = "hog"
    max_side_px: int = 1600
    upsample_below_px: int = 800
    min_confidence: float = 0.8
    onnx_cache_dir: Path | None = None
    """For MMOD: run dlib's network converted to ONNX (models cached here) instead of dlib's own."""
    threads: int = 0
    gray: bool = False
    """HOG on the grey image instead of the colour one (about 20 % faster; the video pipeline's choice)."""

    @property
    def name(self) -> str:
        return f"dlib-{self.method}" + ("-onnx" if self.method == "mmod" and self.onnx_cache_dir else "")

    def __post_init__(self) -> None:
        if self.method == "hog":
            self._model: Any = None  # hog() per call: one detector per thread
        elif self.onnx_cache_dir is not None:
            from vigil.vision.dlib_onnx.mmod import OnnxMmod

            self._model = OnnxMmod(self.onnx_cache_dir, threads=self.threads)
        else:
            self._model = mmod()

    def detect(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        import cv2

        h, w = bgr.shape[:2]
        scale = min(1.0, self.max_side_px / max(h, w))
        size = (round(w * scale), round(h * scale))
        upsample = 1 if max(size) < self.upsample_below_px else 0
        rgb: npt.NDArray[np.uint8] | None = None
        # Grey straight from BGR: no colour copy unless a face is found (for the landmarks).
        if self.method == "hog" and self.gray:
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            scanned = gray if scale == 1.0 else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        else:
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
            scanned = rgb if scale == 1.0 else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        if self.method == "hog":
            rects, margins, _ = hog().run(scanned, upsample, -0.5)
            boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        elif self.onnx_cache_dir is not None:
            found_onnx = self._model(scanned, upsample)
            boxes = [d[:4] for d in found_onnx]
            margins = [d[4] for d in found_onnx]
        else:
            with MMOD_LOCK:
                found = self._model(scanned, upsample)
            boxes = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in found]
            margins = [d.confidence for d in found]
        if not boxes:
            return FaceDetections.empty("dlib5")
        xyxy = np.asarray(boxes, np.float32) / scale
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w - 1)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h - 1)
        score = _confidence(np.asarray(margins, np.float32))
        keep = score >= self.min_confidence
        xyxy, score = xyxy[keep], score[keep]
        if rgb is None:
            rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        return FaceDetections(
            xyxy=xyxy, score=score, landmarks=dlib_landmarks(rgb, xyxy), landmark_scheme="dlib5"
        )
