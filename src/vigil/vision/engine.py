"""The face engine: a detector and an embedder chosen by settings, plus quality scoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.core.config import Settings
from vigil.core.errors import ConfigError
from vigil.core.modelcard import ModelCard, load_card
from vigil.core.types import FaceDetections
from vigil.vision.protocols import Detector, Embedder
from vigil.vision.quality import face_quality


@dataclass
class FaceEngine:
    """Detect, score and embed faces.

    >>> engine = build_engine(Settings())  # doctest: +SKIP
    >>> faces = engine.analyze(load_image(path).bgr)  # doctest: +SKIP
    """

    detector: Detector
    embedder: Embedder

    @property
    def card(self) -> ModelCard:
        return self.embedder.card

    @property
    def model_id(self) -> str:
        return self.embedder.card.id

    def detect(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        """Faces with quality scores, largest first."""
        faces = self.detector.detect(bgr)
        if len(faces) == 0:
            return faces
        faces = faces[np.argsort(-faces.area, kind="stable")]
        return faces.with_(quality=face_quality(bgr, faces))

    def embed(self, bgr: npt.NDArray[np.uint8], faces: FaceDetections) -> FaceDetections:
        """``faces`` with their embeddings filled in."""
        return faces.with_(embedding=self.embedder.embed(bgr, faces))

    def analyze(self, bgr: npt.NDArray[np.uint8]) -> FaceDetections:
        """Detect, score and embed every face in ``bgr``."""
        return self.embed(bgr, self.detect(bgr))


def build_detector(settings: Settings, *, gray: bool = False) -> Detector:
    """The settings' detector; ``gray``: HOG scans the grey image (video frames)."""
    if settings.detector in ("hog", "mmod", "mmod-dlib"):
        from vigil.vision.dlib.detector import DlibDetector

        return DlibDetector(
            method="hog" if settings.detector == "hog" else "mmod",
            onnx_cache_dir=settings.models_dir if settings.detector == "mmod" else None,
            threads=settings.threads,
            max_side_px=settings.detect_max_side_px,
            upsample_below_px=settings.detect_upsample_below_px,
            min_confidence=settings.detect_min_confidence,
            gray=gray,
        )
    if settings.onnx_detector_path is None:
        raise ConfigError(
            "the yunet detector needs a model file", hint="set VIGIL_ONNX_DETECTOR_PATH to the .onnx file"
        )
    from vigil.vision.onnx.yunet import YuNetDetector

    return YuNetDetector.load(settings.onnx_detector_path, threads=settings.threads)


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "dlib-onnx":
        from vigil.vision.dlib.embedder import MODEL_ID, dlib_alignment
        from vigil.vision.dlib_onnx.embedder import OnnxDlibEmbedder

        card = load_card(MODEL_ID, settings.cards_dir)
        return OnnxDlibEmbedder(
            cache_dir=settings.models_dir,
            card=card,
            alignment=dlib_alignment(settings.detector, card, settings.dlib_landmarks),
            threads=settings.threads,
        )
    if settings.embedder == "dlib-resnet":
        from vigil.vision.dlib.embedder import MODEL_ID, DlibEmbedder, dlib_alignment

        card = load_card(MODEL_ID, settings.cards_dir)
        return DlibEmbedder(
            card=card, alignment=dlib_alignment(settings.detector, card, settings.dlib_landmarks)
        )
    if settings.onnx_embedder_path is None:
        raise ConfigError(
            "the onnx embedder needs a model file", hint="set VIGIL_ONNX_EMBEDDER_PATH to the .onnx file"
        )
    from vigil.vision.onnx.arcface import OnnxEmbedder

    return OnnxEmbedder.load(
        settings.onnx_embedder_path,
        card_path=settings.onnx_embedder_card,
        threads=settings.threads,
        cards_dir=settings.cards_dir,
    )


def build_engine(settings: Settings) -> FaceEngine:
    """The engine the settings describe (dlib HOG + ResNet by default)."""
    return FaceEngine(detector=build_detector(settings), embedder=build_embedder(settings))
