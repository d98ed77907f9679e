"""The dlib ResNet on onnxruntime: the same embeddings as dlib, many faces per call, all cores.

Landmarks still come from dlib's shape predictors (68 or 5 points, as :mod:`vigil.vision.dlib.embedder`
chooses); the chips are cut by :mod:`vigil.vision.dlib_onnx.chips`, and the network runs as the ONNX
graph :func:`vigil.vision.dlib_onnx.convert.converted_resnet` makes from dlib's own model file. The
model card is dlib's (``dlib-resnet-v1``): templates made by either backend are interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vigil.core.modelcard import ModelCard, bundled_card
from vigil.core.types import FaceDetections
from vigil.vision.dlib import model_path, shape_predictor_5, shape_predictor_68
from vigil.vision.dlib.embedder import MODEL_ID
from vigil.vision.dlib_onnx.chips import extract_chip
from vigil.vision.dlib_onnx.convert import converted_resnet
from vigil.vision.dlib_onnx.runtime import open_session
from vigil.vision.protocols import l2_normalise


@dataclass
class OnnxDlibEmbedder:
    """128-d embeddings from dlib's ResNet run by onnxruntime, L2-normalised.

    Args:
        cache_dir: where the converted graph is kept (``<data dir>/models``).
        alignment: 68- or 5-point chips (see :func:`vigil.vision.dlib.embedder.dlib_alignment`).
        threads: intra-op threads (0: onnxruntime's default, all cores).
        batch_size: chips per inference call.
    """

    cache_dir: Path
    card: ModelCard = field(default_factory=lambda: bundled_card(MODEL_ID))
    alignment: Literal["dlib68-chip", "dlib5-chip"] = "dlib68-chip"
    threads: int = 0
    batch_size: int = 32
    _session: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        graph = converted_resnet(model_path("dlib_face_recognition_resnet_model_v1.dat"), self.cache_dir)
        self._session = open_session(graph, self.threads)

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def landmarks(self, rgb: npt.NDArray[np.uint8], faces: FaceDetections) -> list[npt.NDArray[np.float64]]:
        import dlib

        if (
            self.alignment == "dlib5-chip"
            and faces.landmarks is not None
            and faces.landmark_scheme == "dlib5"
        ):
            return [np.asarray(lm, np.float64) for lm in faces.landmarks]
        predictor = shape_predictor_68() if self.alignment == "dlib68-chip" else shape_predictor_5()
        out = []
        for x1, y1, x2, y2 in faces.xyxy:
            shape = predictor(rgb, dlib.rectangle(round(x1), round(y1), round(x2), round(y2)))
            out.append(np.array([(p.x, p.y) for p in shape.parts()], np.float64))
        return out

    def chips(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> npt.NDArray[np.uint8]:
        """(n, 150, 150, 3) uint8 RGB chips of ``faces``."""
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        size = self.card.preprocessing.input_size_wh[0]
        pad = self.card.preprocessing.padding
        return np.stack([extract_chip(rgb, lm, size, pad) for lm in self.landmarks(rgb, faces)])

    def embed_chips(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw (not normalised) embeddings of ready-made chips, in batches."""
        parts = [
            self._session.run(None, {"chips": np.ascontiguousarray(chips[i : i + self.batch_size])})[0]
            for i in range(0, len(chips), self.batch_size)
        ]
        return np.concatenate(parts).astype(np.float32)

    def embed(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> npt.NDArray[np.float32]:
        if len(faces) == 0:
            return np.zeros((0, self.card.dimension), np.float32)
        return l2_normalise(self.embed_chips(self.chips(bgr, faces)))
