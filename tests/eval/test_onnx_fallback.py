"""Issue 13 item 8: with an ONNX embedder a photo without a detected face is a failure to acquire that
the report names, never a file silently dropped as "unreadable"."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from model_cards import write_mobilefacenet_card
from vigil.core.config import Settings
from vigil.eval.embed import embed_files
from vigil.eval.identify import run_identification


def _onnx_settings(tmp_path: Path, models: Path) -> Settings:
    card = write_mobilefacenet_card(tmp_path / "mobilefacenet.json")
    return Settings(
        data_dir=tmp_path / "data",
        detector="yunet",
        embedder="onnx",
        onnx_detector_path=models / "face_detection_yunet_2023mar.onnx",
        onnx_embedder_path=models / "mobilefacenet.onnx",
        onnx_embedder_card=card,
    )


def _faceless(path: Path) -> Path:
    """A 250x250 photo of texture with no face in it."""
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8), (9, 9), 3)
    cv2.imwrite(str(path), noise)
    return path


def test_a_faceless_photo_is_embedded_by_fallback_and_counted(
    tmp_path: Path, shared_data: Path, shared_models: Path
) -> None:
    settings = _onnx_settings(tmp_path, shared_models)
    root = tmp_path / "set"
    for person in sorted((shared_data / "deepface-13").iterdir())[:6]:
        if person.is_dir():
            shutil.copytree(person, root / person.name)
    blank = _faceless(root / sorted(p.name for p in root.iterdir())[0] / "no_face.jpg")

    emb = embed_files(settings, [blank], workers=1)
    assert emb.errors == [] and bool(emb.ok[0]) and not bool(emb.detected[0])
    assert emb.fallbacks == 1

    result, _ = run_identification(settings, root, mated=2, seed=1, workers=1)
    assert result.no_face >= 1 and result.unreadable == 0
    assert result.failures_to_acquire == result.no_face + result.unreadable
