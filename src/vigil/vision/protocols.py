"""The small protocols every vision backend implements (one file per backend)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from vigil.core.modelcard import ModelCard
from vigil.core.types import FaceDetections


@runtime_checkable
class Detector(Protocol):
    """Finds faces in a BGR image."""

    @property
    def name(self) -> str: ...

    def detect(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        """Faces in ``bgr`` ((h, w, 3) uint8), boxes and landmarks in its pixel coordinates.

        ``score`` is a confidence in [0, 1].
        """
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns faces into L2-normalised template vectors."""

    card: ModelCard

    def embed(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> npt.NDArray[np.float32]:
        """(n, card.dimension) float32 unit vectors, one per face of ``faces``, in order."""
        ...


def l2_normalise(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length; (n, d) float32. Zero rows stay zero."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    return out
