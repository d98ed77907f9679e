"""YuNet face detector (OpenCV Zoo, 2023mar) on onnxruntime, with ArcFace-order 5-point landmarks.

The model takes one BGR 0-255 image, NCHW float32, unnormalised, and returns, for each stride
8, 16 and 32, four tensors over the stride's grid (row-major, one anchor per cell):

- ``cls_<s>`` (1, cells, 1) and ``obj_<s>`` (1, cells, 1): class and objectness probabilities;
  the face score is ``sqrt(cls * obj)``;
- ``bbox_<s>`` (1, cells, 4): ``dx, dy, dw, dh`` with centre ``((col + dx) * s, (row + dy) * s)``
  and size ``(exp(dw) * s, exp(dh) * s)``;
- ``kps_<s>`` (1, cells, 10): five points ``((col + kx) * s, (row + ky) * s)`` in the order
  image-left eye, image-right eye, nose tip, image-left and image-right mouth corner (vigil's
  ``arcface5`` scheme).

This is the decoding of ``cv2.FaceDetectorYN`` (which the tests use as an oracle); the model itself
runs on onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vigil.core.errors import ModelError
from vigil.core.types import FaceDetections
from vigil.vision.onnx import create_session, run_session

STRIDES = (8, 16, 32)
_HEADS = ("cls", "obj", "bbox", "kps")
_HEAD_WIDTH = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}


def letterbox(bgr: npt.NDArray[np.uint8], size: int) -> tuple[npt.NDArray[np.uint8], tuple[float, float]]:
    """``bgr`` scaled to fit a ``size`` x ``size`` square (aspect kept), padded with black.

    The image sits in the top-left corner, so a point ``(x, y)`` of the square maps back to
    ``(x / scale_x, y / scale_y)`` in ``bgr``.

    Returns:
        the (size, size, 3) uint8 square and ``(scale_x, scale_y)``, resized over original size.
    """
    import cv2

    h, w = bgr.shape[:2]
    scale = size / max(h, w)
    new_w = min(size, max(1, round(w * scale)))
    new_h = min(size, max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = bgr
    if (new_w, new_h) != (w, h):
        resized = np.asarray(cv2.resize(bgr, (new_w, new_h), interpolation=interpolation), np.uint8)
    square = np.zeros((size, size, 3), np.uint8)
    square[:new_h, :new_w] = resized
    return square, (new_w / w, new_h / h)


def nms(
    xyxy: npt.NDArray[np.float32], score: npt.NDArray[np.float32], iou_threshold: float
) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression.

    Args:
        xyxy: (n, 4) float32 boxes.
        score: (n,) float32 scores.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.

    Returns:
        (k,) int64 indices of the kept boxes, highest score first.
    """
    order = np.argsort(-score, kind="stable")
    x1, y1, x2, y2 = xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3]
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = iw * ih
        union = area[i] + area[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def decode(
    outputs: dict[str, npt.NDArray[np.float32]], input_size: int, score_threshold: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Candidate faces from YuNet's raw outputs, in the coordinates of the network input.

    Args:
        outputs: the twelve ``cls_<s>``, ``obj_<s>``, ``bbox_<s>``, ``kps_<s>`` arrays.
        input_size: side of the square network input in pixels.
        score_threshold: candidates scoring below this are dropped.

    Returns:
        ``xyxy`` (n, 4), ``score`` (n,) in [0, 1] and ``landmarks`` (n, 5, 2), all float32.
    """
    boxes, scores, points = [], [], []
    for stride in STRIDES:
        cols = input_size // stride
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0.0, 1.0)
        score = np.sqrt(cls * obj)
        idx = np.flatnonzero(score >= score_threshold)
        if idx.size == 0:
            continue
        cell_xy = np.stack([idx % cols, idx // cols], axis=1).astype(np.float32)  # (k, 2) col, row
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[idx]
        kps = outputs[f"kps_{stride}"].reshape(-1, 5, 2)[idx]
        centre_xy = (cell_xy + bbox[:, :2]) * stride
        size_wh = np.exp(bbox[:, 2:]) * stride
        boxes.append(np.concatenate([centre_xy - size_wh / 2, centre_xy + size_wh / 2], axis=1))
        scores.append(score[idx])
        points.append((cell_xy[:, None, :] + kps) * stride)
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
    return (
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
        np.concatenate(points).astype(np.float32),
    )


@dataclass
class YuNetDetector:
    """YuNet face detection on a letterboxed ``input_size`` square.

    Attributes:
        session: the onnxruntime session of the model.
        score_threshold: minimum face score in [0, 1].
        nms_iou: IoU above which overlapping detections are merged into the best one.
        input_size: side of the square network input in pixels (a multiple of 32).
    """

    session: Any
    score_threshold: float = 0.6
    nms_iou: float = 0.3
    input_size: int = 640
    name: str = "yunet"
    _input_name: str = field(init=False, repr=False)
    _output_names: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.input_size <= 0 or self.input_size % max(STRIDES):
            raise ValueError(
                f"input_size must be a positive multiple of {max(STRIDES)}, got {self.input_size}"
            )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"a YuNet model has one input, this one has {len(inputs)}")
        self._input_name = inputs[0].name
        self._output_names = [o.name for o in self.session.get_outputs()]
        wanted = {f"{head}_{s}" for head in _HEADS for s in STRIDES}
        missing = sorted(wanted - set(self._output_names))
        if missing:
            raise ModelError(
                f"this model is not a YuNet 2023mar detector: outputs {', '.join(missing)} are missing",
                hint="use face_detection_yunet_2023mar.onnx from OpenCV Zoo",
            )
        height, width = inputs[0].shape[2:4] if len(inputs[0].shape) == 4 else (None, None)
        fixed = [d for d in (height, width) if isinstance(d, int)]
        if fixed and any(d != self.input_size for d in fixed):
            raise ModelError(
                f"this YuNet model takes a fixed {width}x{height} input, not {self.input_size}",
                hint=f"use input_size={fixed[0]}",
            )

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        threads: int = 0,
        score_threshold: float = 0.6,
        nms_iou: float = 0.3,
        input_size: int = 640,
    ) -> YuNetDetector:
        """The detector for the YuNet ``.onnx`` file at ``path``.

        Raises ModelError when the file is missing, corrupt or not a YuNet model.
        """
        return cls(
            session=create_session(Path(path), threads=threads),
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            input_size=input_size,
        )

    def detect(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        """Faces in ``bgr`` ((h, w, 3) uint8 BGR), best score first.

        Returns ``xyxy`` clipped to the image, ``score`` in [0, 1] and ``arcface5`` landmarks, all
        in ``bgr``'s pixel coordinates.
        """
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.shape[0] == 0 or bgr.shape[1] == 0:
            raise ValueError(f"detect needs an (h, w, 3) BGR image, got shape {bgr.shape}")
        h, w = bgr.shape[:2]
        square, (scale_x, scale_y) = letterbox(bgr, self.input_size)
        blob = np.ascontiguousarray(square.transpose(2, 0, 1)[None], dtype=np.float32)  # (1, 3, s, s)
        raw = run_session(self.session, {self._input_name: blob}, "the YuNet detector")
        outputs = dict(zip(self._output_names, raw, strict=True))
        xyxy, score, landmarks = decode(outputs, self.input_size, self.score_threshold)
        if len(score) == 0:
            return FaceDetections.empty("arcface5")
        keep = nms(xyxy, score, self.nms_iou)
        xyxy, score, landmarks = xyxy[keep], score[keep], landmarks[keep]
        back = np.array([1 / scale_x, 1 / scale_y], np.float32)
        xyxy = xyxy * np.tile(back, 2)
        xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
        xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
        return FaceDetections(xyxy=xyxy, score=score, landmarks=landmarks * back, landmark_scheme="arcface5")
