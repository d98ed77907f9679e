"""The ONNX backends (YuNet detector, ArcFace-style embedder) on the shared test models and images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from model_cards import mobilefacenet_card, write_mobilefacenet_card
from vigil.core.errors import ConfigError, ModelError
from vigil.core.types import FaceDetections
from vigil.vision.onnx import create_session, sha256_file
from vigil.vision.onnx.arcface import ARCFACE_TEMPLATE_112, OnnxEmbedder, align_arcface, similarity_transform
from vigil.vision.onnx.yunet import YuNetDetector, letterbox, nms
from vigil.vision.protocols import Detector, Embedder

cv2 = pytest.importorskip("cv2")

YUNET = "face_detection_yunet_2023mar.onnx"
MOBILEFACENET = "mobilefacenet.onnx"
MOBILEFACENET_SHA256 = "0c9ad2a83969fc82155706f7020e6926b4a1a90a5476fff4a5588dfe207f64a4"


def _card(**changes: Any) -> dict[str, Any]:
    return mobilefacenet_card(**changes)


def _write_card(path: Path, **changes: Any) -> Path:
    return write_mobilefacenet_card(path, **changes)


def _read(path: Path) -> npt.NDArray[np.uint8]:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.asarray(bgr, np.uint8)


@pytest.fixture(scope="module")
def yunet(shared_models: Path) -> YuNetDetector:
    return YuNetDetector.load(shared_models / YUNET, threads=2, min_confidence=0.6)


@pytest.fixture(scope="module")
def embedder(shared_models: Path, tmp_path_factory: pytest.TempPathFactory) -> OnnxEmbedder:
    card = _write_card(tmp_path_factory.mktemp("cards") / "mobilefacenet-test.json")
    return OnnxEmbedder.load(shared_models / MOBILEFACENET, card_path=card, threads=2)


# -- session helper ----------------------------------------------------------------------------------


def test_missing_model_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        YuNetDetector.load(tmp_path / "nope.onnx")


def test_directory_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a file"):
        create_session(tmp_path)


def test_corrupt_model_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match="cannot load ONNX model") as info:
        YuNetDetector.load(path)
    assert info.value.hint


@pytest.mark.parametrize("model", [YUNET, MOBILEFACENET])
def test_truncated_model_file_is_a_model_error(shared_models: Path, tmp_path: Path, model: str) -> None:
    data = (shared_models / model).read_bytes()
    path = tmp_path / model
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        create_session(path)


def test_sha256_file(shared_models: Path) -> None:
    assert sha256_file(shared_models / MOBILEFACENET) == MOBILEFACENET_SHA256


def test_embedder_model_is_not_a_detector(shared_models: Path) -> None:
    with pytest.raises(ModelError, match="not a YuNet"):
        YuNetDetector.load(shared_models / MOBILEFACENET)


# -- YuNet -----------------------------------------------------------------------------------------


def test_yunet_implements_detector(yunet: YuNetDetector) -> None:
    assert isinstance(yunet, Detector)
    assert yunet.name == "yunet"


@pytest.mark.parametrize(("image", "count"), [("two_people.jpg", 2), ("obama.jpg", 1), ("biden.jpg", 1)])
def test_yunet_counts_faces(yunet: YuNetDetector, people: Path, image: str, count: int) -> None:
    bgr = _read(people / image)
    faces = yunet.detect(bgr)
    assert len(faces) == count
    assert faces.landmark_scheme == "arcface5"
    assert faces.landmarks is not None
    assert ((faces.score >= 0.6) & (faces.score <= 1.0)).all()
    h, w = bgr.shape[:2]
    assert (faces.xyxy[:, [0, 2]] >= 0).all() and (faces.xyxy[:, [0, 2]] <= w).all()
    assert (faces.xyxy[:, [1, 3]] >= 0).all() and (faces.xyxy[:, [1, 3]] <= h).all()
    # arcface5 order: eyes above the nose above the mouth, image-left points left of image-right ones.
    lm = faces.landmarks
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()
    assert (lm[:, [0, 1], 1].max(axis=1) < lm[:, 2, 1]).all()
    assert (lm[:, 2, 1] < lm[:, [3, 4], 1].min(axis=1)).all()
    # landmarks lie in their box
    inside_x = (lm[..., 0] >= faces.xyxy[:, [0]]) & (lm[..., 0] <= faces.xyxy[:, [2]])
    inside_y = (lm[..., 1] >= faces.xyxy[:, [1]]) & (lm[..., 1] <= faces.xyxy[:, [3]])
    assert (inside_x & inside_y).all()


@pytest.mark.parametrize("image", ["two_people.jpg", "obama.jpg", "obama2.jpg", "biden.jpg"])
def test_yunet_agrees_with_opencv(
    yunet: YuNetDetector, shared_models: Path, people: Path, image: str
) -> None:
    """cv2.FaceDetectorYN on the same resized image (its own padding) is the decoding oracle."""
    bgr = _read(people / image)
    faces = yunet.detect(bgr)
    square, (scale_x, scale_y) = letterbox(bgr, 640)
    new_h, new_w = round(bgr.shape[0] * scale_y), round(bgr.shape[1] * scale_x)
    oracle = cv2.FaceDetectorYN.create(str(shared_models / YUNET), "", (new_w, new_h), 0.6, 0.3)
    _, found = oracle.detect(np.ascontiguousarray(square[:new_h, :new_w]))
    assert found is not None and len(found) == len(faces)
    back = np.array([scale_x, scale_y], np.float32)
    xyxy = np.concatenate([found[:, :2], found[:, :2] + found[:, 2:4]], axis=1) / np.tile(back, 2)
    landmarks = found[:, 4:14].reshape(-1, 5, 2) / back
    ours, theirs = np.argsort(faces.xyxy[:, 0]), np.argsort(xyxy[:, 0])
    np.testing.assert_allclose(faces.xyxy[ours], xyxy[theirs], atol=3.0)
    assert faces.landmarks is not None
    np.testing.assert_allclose(faces.landmarks[ours], landmarks[theirs], atol=3.0)
    np.testing.assert_allclose(faces.score[ours], found[theirs, 14], atol=0.02)


def test_yunet_on_blank_image_finds_nothing(yunet: YuNetDetector) -> None:
    faces = yunet.detect(np.zeros((200, 300, 3), np.uint8))
    assert len(faces) == 0 and faces.landmark_scheme == "arcface5"


def test_yunet_rejects_a_wrong_tile_size(shared_models: Path) -> None:
    with pytest.raises(ConfigError, match="fixed 640x640"):
        YuNetDetector.load(shared_models / YUNET, tile_px=320)


def test_letterbox_keeps_aspect() -> None:
    square, (sx, sy) = letterbox(np.full((100, 200, 3), 255, np.uint8), 640)
    assert square.shape == (640, 640, 3)
    assert sx == pytest.approx(3.2) and sy == pytest.approx(3.2)
    assert square[:320].min() == 255 and square[320:].max() == 0


def test_nms_drops_overlaps() -> None:
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    score = np.array([0.8, 0.9, 0.7], np.float32)
    assert nms(xyxy, score, 0.3).tolist() == [1, 2]


# -- ArcFace alignment -----------------------------------------------------------------------------


def test_similarity_transform_matches_skimage() -> None:
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(1)
    src = ARCFACE_TEMPLATE_112.astype(np.float64) * 2.7 + 40 + rng.normal(0, 2, (5, 2))
    ours = similarity_transform(src, ARCFACE_TEMPLATE_112.astype(np.float64))
    theirs = transform.SimilarityTransform.from_estimate(src, ARCFACE_TEMPLATE_112.astype(np.float64))
    assert ours is not None
    np.testing.assert_allclose(ours, theirs.params[:2], atol=1e-9)


def test_align_arcface_maps_landmarks_onto_template() -> None:
    """Draw dots at rotated, scaled template points; after alignment they sit on the template."""
    angle, scale, shift = np.deg2rad(20), 2.5, np.array([150.0, 90.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (ARCFACE_TEMPLATE_112 @ rot.T) * scale + shift
    bgr = np.zeros((500, 500, 3), np.uint8)
    for x, y in points:
        cv2.circle(bgr, (round(x), round(y)), 6, (255, 255, 255), -1)
    crop = align_arcface(bgr, points)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE_112:
        assert crop[round(y), round(x)].min() == 255


def test_align_arcface_degenerate_landmarks_give_black() -> None:
    crop = align_arcface(np.full((50, 50, 3), 255, np.uint8), np.full((5, 2), 10.0))
    assert crop.shape == (112, 112, 3) and crop.max() == 0


# -- ONNX embedder ---------------------------------------------------------------------------------


def test_embedder_implements_embedder(embedder: OnnxEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.card.id == "mobilefacenet-test"


def test_embeddings_are_unit_vectors(embedder: OnnxEmbedder, yunet: YuNetDetector, people: Path) -> None:
    bgr = _read(people / "two_people.jpg")
    faces = yunet.detect(bgr)
    vectors = embedder.embed(bgr, faces)
    assert vectors.shape == (2, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # a batch gives the same vectors as one face at a time
    one = np.concatenate([embedder.embed(bgr, faces[i]) for i in range(len(faces))])
    np.testing.assert_allclose(vectors, one, atol=1e-5)
    assert embedder.embed(bgr, FaceDetections.empty()).shape == (0, 128)


def test_same_person_scores_higher(embedder: OnnxEmbedder, yunet: YuNetDetector, people: Path) -> None:
    def vector(name: str) -> npt.NDArray[np.float32]:
        bgr = _read(people / name)
        faces = yunet.detect(bgr)
        assert len(faces) == 1
        return np.asarray(embedder.embed(bgr, faces)[0], np.float32)

    obama, obama2, biden = vector("obama.jpg"), vector("obama2.jpg"), vector("biden.jpg")
    same_cos, other_cos = float(obama @ obama2), float(obama @ biden)
    assert same_cos > 0.5 and other_cos < 0.3 and same_cos > other_cos + 0.3, (same_cos, other_cos)


def test_dlib5_landmarks_are_a_model_error(embedder: OnnxEmbedder) -> None:
    faces = FaceDetections(
        xyxy=np.array([[10, 10, 60, 60]], np.float32),
        score=np.ones(1, np.float32),
        landmarks=np.full((1, 5, 2), 30, np.float32),
        landmark_scheme="dlib5",
    )
    with pytest.raises(ModelError, match="arcface5"):
        embedder.embed(np.zeros((80, 80, 3), np.uint8), faces)


def test_no_landmarks_are_a_model_error(embedder: OnnxEmbedder) -> None:
    faces = FaceDetections(xyxy=np.array([[10, 10, 60, 60]], np.float32), score=np.ones(1, np.float32))
    with pytest.raises(ModelError, match="no landmarks"):
        embedder.embed(np.zeros((80, 80, 3), np.uint8), faces)


def test_missing_card_is_a_model_error(shared_models: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model card") as info:
        OnnxEmbedder.load(shared_models / MOBILEFACENET, cards_dir=tmp_path)
    assert info.value.hint is not None and "dimension" in info.value.hint


def test_card_path_that_does_not_exist_is_a_model_error(shared_models: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        OnnxEmbedder.load(shared_models / MOBILEFACENET, card_path=tmp_path / "nope.json")


def test_card_found_in_cards_dir(shared_models: Path, tmp_path: Path) -> None:
    _write_card(tmp_path / "mobilefacenet.json", file_sha256=MOBILEFACENET_SHA256)
    embedder = OnnxEmbedder.load(shared_models / MOBILEFACENET, cards_dir=tmp_path)
    assert embedder.card.file_sha256 == MOBILEFACENET_SHA256


def test_card_beside_the_model(shared_models: Path, tmp_path: Path) -> None:
    model = tmp_path / MOBILEFACENET
    model.symlink_to(shared_models / MOBILEFACENET)
    _write_card(tmp_path / "mobilefacenet.json")
    assert OnnxEmbedder.load(model).card.id == "mobilefacenet-test"


def test_wrong_dimension_is_a_model_error(shared_models: Path, tmp_path: Path) -> None:
    card = _write_card(tmp_path / "card.json", dimension=512)
    with pytest.raises(ModelError, match="dimension 512"):
        OnnxEmbedder.load(shared_models / MOBILEFACENET, card_path=card)


def test_wrong_hash_is_a_model_error(shared_models: Path, tmp_path: Path) -> None:
    card = _write_card(tmp_path / "card.json", file_sha256="0" * 64)
    with pytest.raises(ModelError, match="SHA-256"):
        OnnxEmbedder.load(shared_models / MOBILEFACENET, card_path=card)


def test_dlib_alignment_card_is_a_model_error(shared_models: Path, tmp_path: Path) -> None:
    card = _card()
    card["preprocessing"]["alignment"] = "dlib5-chip"
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelError, match="dlib5-chip"):
        OnnxEmbedder.load(shared_models / MOBILEFACENET, card_path=path)


def test_wrong_input_size_is_a_model_error(shared_models: Path, tmp_path: Path) -> None:
    card = _card()
    card["preprocessing"]["input_size_wh"] = [128, 128]
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(ModelError, match="height 128"):
        OnnxEmbedder.load(shared_models / MOBILEFACENET, card_path=path)
