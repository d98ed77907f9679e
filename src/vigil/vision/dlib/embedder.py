"""dlib's ResNet 128-d face embedder (face chips aligned on dlib's 5 landmarks)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vigil.core.modelcard import ModelCard, bundled_card
from vigil.core.types import FaceDetections
from vigil.vision.dlib import resnet_v1
from vigil.vision.dlib.detector import dlib_landmarks
from vigil.vision.protocols import l2_normalise

MODEL_ID = "dlib-resnet-v1"


@dataclass
class DlibEmbedder:
    """128-d embeddings from ``dlib_face_recognition_resnet_model_v1``, L2-normalised."""

    card: ModelCard = field(default_factory=lambda: bundled_card(MODEL_ID))
    num_jitters: int = 0

    def __post_init__(self) -> None:
        self._net = resnet_v1()

    def embed(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> npt.NDArray[np.float32]:
        import dlib

        if len(faces) == 0:
            return np.zeros((0, self.card.dimension), np.float32)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        if faces.landmarks is not None and faces.landmark_scheme == "dlib5":
            landmarks = faces.landmarks
        else:
            landmarks = dlib_landmarks(rgb, faces.xyxy)
        shapes = dlib.full_object_detections()
        for (x1, y1, x2, y2), pts in zip(faces.xyxy, landmarks, strict=True):
            rect = dlib.rectangle(round(x1), round(y1), round(x2), round(y2))
            shapes.append(dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in pts]))
        vectors = np.asarray(
            self._net.compute_face_descriptor(rgb, shapes, self.num_jitters, self.card.preprocessing.padding),
            np.float32,
        )
        return l2_normalise(vectors)
