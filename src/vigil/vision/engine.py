"""The face engine: a detector and an embedder chosen by a model pack or by settings, plus quality scoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vigil.core.config import Settings
from vigil.core.errors import ConfigError
from vigil.core.modelcard import ModelCard, load_card
from vigil.core.types import FaceDetections
from vigil.vision.packs.catalog import get_pack
from vigil.vision.packs.store import installed_path
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


def _dlib_settings(settings: Settings) -> Settings:
    """The dlib pack: HOG and dlib's ResNet on onnxruntime, with the other settings as they are."""
    return settings.model_copy(update={"detector": "hog", "embedder": "dlib-onnx"})


def build_detector(settings: Settings, *, gray: bool = False, pack: str | None = None) -> Detector:
    """The detector of ``pack`` (None: ``settings.model_pack``, else the settings' detector); ``gray``:
    HOG scans the grey image (video frames)."""
    pack = pack if pack is not None else settings.model_pack
    if pack == "dlib":
        settings = _dlib_settings(settings)
    elif pack not in (None, "custom"):
        return _pack_yunet(settings, pack)
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
    from vigil.vision.onnx.yunet import yunet_from_settings

    return yunet_from_settings(settings.onnx_detector_path, settings)


def _pack_yunet(settings: Settings, pack: str) -> Detector:
    """An installed pack's YuNet detector, configured by the detection settings."""
    get_pack(pack)
    from vigil.vision.onnx.yunet import yunet_from_settings

    return yunet_from_settings(installed_path(settings, pack, "detector.onnx"), settings)


def build_embedder(settings: Settings, pack: str | None = None) -> Embedder:
    """The embedder of ``pack`` (None: ``settings.model_pack``, else the settings' embedder)."""
    pack = pack if pack is not None else settings.model_pack
    if pack == "dlib":
        settings = _dlib_settings(settings)
    elif pack not in (None, "custom"):
        return _pack_onnx_embedder(settings, pack)
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


def _pack_onnx_embedder(settings: Settings, pack: str) -> Embedder:
    """An installed pack's ONNX embedder with its bundled card (or the calibrated one in ``cards_dir``)."""
    card_id = get_pack(pack).card_id
    if card_id is None:
        raise ConfigError(f"the model pack {pack!r} has no card")
    from vigil.vision.onnx import create_session
    from vigil.vision.onnx.arcface import OnnxEmbedder

    path = installed_path(settings, pack, "embedder.onnx")
    card = load_card(card_id, settings.cards_dir)
    return OnnxEmbedder(session=create_session(path, threads=settings.threads), card=card)


def build_engine(settings: Settings, pack: str | None = None) -> FaceEngine:
    """The engine of the model pack ``pack`` (``dlib``, ``edgeface-xs``, ...).

    ``pack=None``: ``settings.model_pack`` if set, else the settings' detector and embedder as they
    are (dlib HOG + ResNet by default; ``custom`` is the same). A pack that is not installed is a
    ConfigError whose hint is the install command.
    """
    return FaceEngine(
        detector=build_detector(settings, pack=pack), embedder=build_embedder(settings, pack=pack)
    )
