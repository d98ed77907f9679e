"""dlib's ResNet converted to ONNX: the same embeddings as dlib, chips without dlib, a safe cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vigil.core.config import Settings
from vigil.core.errors import ModelError
from vigil.vision.dlib import model_path, resnet_v1, shape_predictor_68
from vigil.vision.dlib_onnx.chips import extract_chip
from vigil.vision.dlib_onnx.convert import converted_resnet, read_resnet
from vigil.vision.dlib_onnx.embedder import OnnxDlibEmbedder
from vigil.vision.dlib_onnx.runtime import pick_providers
from vigil.vision.engine import build_engine
from vigil.vision.image import load_image

SOURCE = "dlib_face_recognition_resnet_model_v1.dat"


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory) -> OnnxDlibEmbedder:
    return OnnxDlibEmbedder(cache_dir=tmp_path_factory.mktemp("models"))


def _photos(shared_data: Path) -> list[Path]:
    people = [shared_data / "people" / n for n in ("obama.jpg", "biden.jpg", "lin-manuel-miranda.png")]
    lfw = sorted((shared_data / "lfw-dev").glob("A*/*.jpg"))[:8]
    return people + lfw


def _dlib_faces(shared_data: Path):  # type: ignore[no-untyped-def]
    import dlib

    detector = dlib.get_frontal_face_detector()
    for path in _photos(shared_data):
        rgb = np.ascontiguousarray(load_image(path).bgr[:, :, ::-1])
        rect = detector(rgb, 1)[0]
        shape = shape_predictor_68()(rgb, rect)
        yield path, rgb, shape, np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_graph_matches_dlib_on_the_same_chips(shared_data: Path, onnx_embedder: OnnxDlibEmbedder) -> None:
    import dlib

    chips = np.stack(
        [
            dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
            for _, rgb, shape, _ in _dlib_faces(shared_data)
        ]
    )
    ref = np.asarray(resnet_v1().compute_face_descriptor(list(chips)), np.float32)
    ours = onnx_embedder.embed_chips(chips)  # one batch of 11
    assert ours.shape == ref.shape == (len(chips), 128)
    assert _cos(ours, ref).min() >= 0.9999
    np.testing.assert_allclose(ours, ref, atol=1e-4)  # raw values too, not only directions
    one_by_one = np.concatenate([onnx_embedder.embed_chips(chips[i : i + 1]) for i in range(len(chips))])
    np.testing.assert_allclose(one_by_one, ours, atol=1e-5)  # batching changes nothing


def test_chips_without_dlib_match_dlibs(shared_data: Path, onnx_embedder: OnnxDlibEmbedder) -> None:
    import dlib

    for path, rgb, shape, landmarks in _dlib_faces(shared_data):
        theirs = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        ours = extract_chip(rgb, landmarks)
        assert ours.shape == (150, 150, 3) and ours.dtype == np.uint8
        e = onnx_embedder.embed_chips(np.stack([theirs, ours]))
        # Faces up to twice the chip's scale are cut the way dlib cuts them (mean pixel error < 1);
        # larger ones are reduced by area averaging where dlib uses its own pyramid filter.
        assert float(_cos(e[:1], e[1:])[0]) >= 0.999, path.name
        if rgb.shape[0] <= 400:
            assert np.abs(theirs.astype(int) - ours).mean() < 1.0, path.name
            assert float(_cos(e[:1], e[1:])[0]) >= 0.9999, path.name


def test_default_engine_runs_the_onnx_graph_with_dlibs_card(tmp_path: Path, people: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = build_engine(settings)
    assert isinstance(engine.embedder, OnnxDlibEmbedder) and engine.model_id == "dlib-resnet-v1"
    reference = build_engine(settings.model_copy(update={"embedder": "dlib-resnet"}))
    bgr = load_image(people / "two_people.jpg").bgr
    faces = engine.detect(bgr)
    a, b = engine.embed(bgr, faces).embedding, reference.embed(bgr, faces).embedding
    assert a is not None and b is not None and len(a) == 2
    assert float((a * b).sum(axis=1).min()) >= 0.999  # templates of either backend are interchangeable


def test_corrupt_or_truncated_model_is_a_clear_error_and_not_cached(tmp_path: Path) -> None:
    source = tmp_path / SOURCE
    data = model_path(SOURCE).read_bytes()
    cache = tmp_path / "cache"
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"not dlib's ResNet face recognition model.*truncated"):
        converted_resnet(source, cache)
    source.write_bytes(data[:100] + b"\x7f" * 50 + data[150:])
    with pytest.raises(ModelError, match="not dlib's ResNet"):
        converted_resnet(source, cache)
    source.write_bytes(data + b"extra")
    with pytest.raises(ModelError, match="bytes left"):
        converted_resnet(source, cache)
    assert not cache.exists() or not list(cache.iterdir())


def test_cache_is_reused_and_a_damaged_copy_is_rebuilt(tmp_path: Path) -> None:
    source = tmp_path / SOURCE
    shutil.copy(model_path(SOURCE), source)
    first = converted_resnet(source, tmp_path / "cache")
    stamp = first.stat().st_mtime_ns
    assert converted_resnet(source, tmp_path / "cache") == first and first.stat().st_mtime_ns == stamp
    first.write_bytes(b"garbage")
    again = converted_resnet(source, tmp_path / "cache")
    assert again == first and again.stat().st_size > 20_000_000
    layers = read_resnet(source)
    assert [layer.kind for layer in layers][:2] == ["fc", "avg_pool_all"] and layers[-1].kind == "input"
    assert sum(layer.kind == "con" for layer in layers) == 29


def test_cuda_is_preferred_when_present() -> None:
    assert pick_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert pick_providers(["CPUExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


# -- MMOD ------------------------------------------------------------------------------------------


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)


def test_mmod_on_onnxruntime_finds_dlibs_boxes(shared_data: Path, tmp_path: Path) -> None:
    import cv2
    import dlib

    from vigil.vision.dlib_onnx.mmod import OnnxMmod

    ours = OnnxMmod(tmp_path)
    theirs = dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))
    photos = [
        shared_data / "people" / "two_people.jpg",
        shared_data / "deepface-13" / "_extra" / "couple.jpg",
    ]
    cap = cv2.VideoCapture(str(shared_data / "video" / "short_hamilton_clip.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 240)
    frame = cap.read()[1]
    cap.release()
    images = [np.ascontiguousarray(load_image(p).bgr[:, :, ::-1]) for p in photos] + [
        frame[:, :, ::-1].copy()
    ]
    total = 0
    for rgb in images:
        if max(rgb.shape[:2]) > 700:
            f = 700 / max(rgb.shape[:2])
            rgb = np.ascontiguousarray(cv2.resize(rgb, None, fx=f, fy=f, interpolation=cv2.INTER_AREA))
        ref = [
            (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
            for d in theirs(rgb, 0)
        ]
        got = ours(rgb)
        assert len(got) == len(ref) >= 1
        for r in ref:
            best = max(got, key=lambda g: _iou(g[:4], r[:4]))
            assert _iou(best[:4], r[:4]) >= 0.95
            assert abs(best[4] - r[4]) < 0.02
        total += len(ref)
    assert total >= 6  # two, two and the audience of the hamilton frame


def test_mmod_detector_setting_and_bad_model_file(tmp_path: Path, people: Path) -> None:
    from vigil.vision.dlib_onnx.convert import converted_mmod

    engine = build_engine(Settings(data_dir=tmp_path, detector="mmod"))
    assert engine.detector.name == "dlib-mmod-onnx"
    faces = engine.detect(load_image(people / "two_people.jpg").bgr)
    assert len(faces) == 2 and faces.landmark_scheme == "dlib5"
    bad = tmp_path / "mmod_human_face_detector.dat"
    bad.write_bytes(model_path("mmod_human_face_detector.dat").read_bytes()[:5000])
    with pytest.raises(ModelError, match="not dlib's MMOD face detector"):
        converted_mmod(bad, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
