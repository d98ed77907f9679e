"""dlib's ResNet 128-d face embedder (dlib face chips, aligned on its 68 or 5 landmarks).

The ResNet was trained on chips aligned with dlib's 68-point landmarks, and does best with them when the
boxes come from the HOG detector that the 68-point predictor was trained on (LFW DevTest 10-fold:
99.1 % against 98.7 % with the 5-point predictor). The 68-point predictor does worse on MMOD-CNN
boxes (98.0 %), where the 5 points are used instead (98.6 %); see :func:`dlib_alignment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from vigil.core.modelcard import ModelCard, bundled_card
from vigil.core.types import FaceDetections
from vigil.vision.dlib import RESNET_LOCK, resnet_v1, shape_predictor_68
from vigil.vision.dlib.detector import dlib_landmarks
from vigil.vision.protocols import l2_normalise

MODEL_ID = "dlib-resnet-v1"


@dataclass
class DlibEmbedder:
    """128-d embeddings from ``dlib_face_recognition_resnet_model_v1``, L2-normalised."""

    card: ModelCard = field(default_factory=lambda: bundled_card(MODEL_ID))
    num_jitters: int = 0
    alignment: Literal["dlib68-chip", "dlib5-chip"] | None = None
    """None: the card's alignment."""

    def __post_init__(self) -> None:
        self._net = resnet_v1()
        if self.alignment is None:
            card_alignment = self.card.preprocessing.alignment
            self.alignment = "dlib68-chip" if card_alignment == "dlib68-chip" else "dlib5-chip"

    def embed(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> npt.NDArray[np.float32]:
        import dlib

        if len(faces) == 0:
            return np.zeros((0, self.card.dimension), np.float32)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        if self.alignment == "dlib68-chip":
            return self._embed_68(rgb, faces)
        if faces.landmarks is not None and faces.landmark_scheme == "dlib5":
            landmarks = faces.landmarks
        else:
            landmarks = dlib_landmarks(rgb, faces.xyxy)
        shapes = dlib.full_object_detections()
        for (x1, y1, x2, y2), pts in zip(faces.xyxy, landmarks, strict=True):
            rect = dlib.rectangle(round(x1), round(y1), round(x2), round(y2))
            shapes.append(dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in pts]))
        with RESNET_LOCK:
            vectors = np.asarray(
                self._net.compute_face_descriptor(
                    rgb, shapes, self.num_jitters, self.card.preprocessing.padding
                ),
                np.float32,
            )
        return l2_normalise(vectors)

    def _embed_68(self, rgb: npt.NDArray[np.uint8], faces: FaceDetections) -> npt.NDArray[np.float32]:
        import dlib

        predictor = shape_predictor_68()
        shapes = dlib.full_object_detections()
        for x1, y1, x2, y2 in faces.xyxy:
            shapes.append(predictor(rgb, dlib.rectangle(round(x1), round(y1), round(x2), round(y2))))
        with RESNET_LOCK:
            vectors = np.asarray(
                self._net.compute_face_descriptor(
                    rgb, shapes, self.num_jitters, self.card.preprocessing.padding
                ),
                np.float32,
            )
        return l2_normalise(vectors)


def dlib_alignment(
    detector: str, card: ModelCard, landmarks: Literal["auto", "68", "5"] = "auto"
) -> Literal["dlib68-chip", "dlib5-chip"]:
    """The alignment for boxes from ``detector``: ``landmarks`` if set, else the card's on HOG boxes
    and 5 points on any others."""
    if landmarks != "auto":
        return "dlib68-chip" if landmarks == "68" else "dlib5-chip"
    if card.preprocessing.alignment == "dlib68-chip" and detector == "hog":
        return "dlib68-chip"
    return "dlib5-chip"
