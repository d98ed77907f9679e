"""YuNet-n with dynamic input (and the fixed 2023mar file beside it) on the shared models and images:
model kinds, decoding at any size, the working scale, small faces, and the settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from vigil.core.config import Settings
from vigil.core.errors import ConfigError, ImageError, ModelError
from vigil.core.types import FaceDetections
from vigil.vision.onnx.yunet import (
    YuNetDetector,
    check_outputs,
    upsample_below_for_yunet,
    yunet_from_settings,
)

cv2 = pytest.importorskip("cv2")

DYNAMIC = "yunet_n_dynamic.onnx"
FIXED = "face_detection_yunet_2023mar.onnx"
LFW_FACES = ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Alicia_Keys/Alicia_Keys_0001.jpg")


def _read(path: Path) -> npt.NDArray[np.uint8]:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return np.asarray(bgr, np.uint8)


def _iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    out: npt.NDArray[np.float32] = inter / (area_a[:, None] + area_b[None, :] - inter)
    return out


def _landmarks_inside(faces: FaceDetections) -> bool:
    assert faces.landmarks is not None
    lm, box = faces.landmarks, faces.xyxy
    inside_x = (lm[..., 0] >= box[:, [0]]) & (lm[..., 0] <= box[:, [2]])
    inside_y = (lm[..., 1] >= box[:, [1]]) & (lm[..., 1] <= box[:, [3]])
    return bool((inside_x & inside_y).all())


@pytest.fixture(scope="module")
def dynamic_path(shared_models: Path) -> Path:
    path = shared_models / DYNAMIC
    if not path.is_file():
        pytest.skip(f"{DYNAMIC} not found in {shared_models}")
    return path


@pytest.fixture(scope="module")
def dynamic(dynamic_path: Path) -> YuNetDetector:
    return YuNetDetector.load(dynamic_path, threads=2)


@pytest.fixture(scope="module")
def fixed(shared_models: Path) -> YuNetDetector:
    return YuNetDetector.load(shared_models / FIXED, threads=2)


@pytest.fixture(scope="module")
def small_faces(
    dynamic: YuNetDetector, shared_data: Path
) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]]:
    """LFW photos and their face box."""
    out = []
    for name in LFW_FACES:
        bgr = _read(shared_data / "lfw-dev" / name)
        faces = dynamic.detect(bgr)
        assert len(faces) >= 1
        out.append((bgr, faces.xyxy[0]))
    return out


def _frame_with_faces(
    shared_data: Path,
    faces: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]],
    size_wh: tuple[int, int],
    face_px: int,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """A hamilton frame (curtains, no face where the faces go) scaled to ``size_wh``, with ``faces``
    pasted so their box is ``face_px`` wide; the frame and the pasted boxes."""
    cap = cv2.VideoCapture(str(shared_data / "video" / "short_hamilton_clip.mp4"))
    for _ in range(101):
        ok, frame = cap.read()
        assert ok
    cap.release()
    w, h = size_wh
    canvas = cv2.resize(frame, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    boxes = []
    for i, (bgr, (x1, y1, x2, y2)) in enumerate(faces):
        scale = face_px / (x2 - x1)
        m = 0.45 * (x2 - x1)
        crop = bgr[max(0, int(y1 - m)) : int(y2 + m), max(0, int(x1 - m)) : int(x2 + m)]
        small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)
        sh, sw = small.shape[:2]
        mask = np.zeros((sh, sw), np.float32)
        cv2.ellipse(mask, (sw // 2, sh // 2), (sw * 9 // 20, sh * 9 // 20), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, sw / 12))[..., None]
        ox, oy = int(w * (0.72 + 0.12 * i)), int(h * 0.25)  # the curtains on the right
        canvas[oy : oy + sh, ox : ox + sw] = canvas[oy : oy + sh, ox : ox + sw] * (1 - mask) + small * mask
        left, top = ox + (x1 - max(0, int(x1 - m))) * scale, oy + (y1 - max(0, int(y1 - m))) * scale
        boxes.append([left, top, left + (x2 - x1) * scale, top + (y2 - y1) * scale])
    return np.clip(canvas, 0, 255).astype(np.uint8), np.asarray(boxes, np.float32)


# -- model kinds ------------------------------------------------------------------------------------


def test_the_kind_comes_from_the_input_shape(dynamic: YuNetDetector, fixed: YuNetDetector) -> None:
    assert dynamic.dynamic and dynamic.input_hw is None
    assert not fixed.dynamic and fixed.input_hw == (640, 640)


def test_fixed_model_tiles_are_its_input_size(shared_models: Path) -> None:
    with pytest.raises(ConfigError, match="fixed 640x640") as info:
        YuNetDetector.load(shared_models / FIXED, tile_px=320)
    assert info.value.hint and "tile_px=640" in info.value.hint


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("min_confidence", 1.5, "min_confidence must be in"),
        ("nms_iou", 0.0, "nms_iou must be in"),
        ("max_side_px", 16, "max_side_px must be None or at least 32"),
        ("upsample_below_px", -1, "upsample_below_px must be"),
        ("tile_px", 100, "tile_px must be a positive multiple of 32"),
    ],
)
def test_options_out_of_range_are_config_errors(
    dynamic_path: Path, option: str, value: float, error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        YuNetDetector.load(dynamic_path, **{option: value})  # type: ignore[arg-type]


def test_outputs_of_the_wrong_shape_are_model_errors(dynamic: YuNetDetector) -> None:
    image = np.zeros((1, 64, 96, 3), np.uint8)
    outputs = dynamic._infer(image)
    check_outputs(outputs, (64, 96), 1)
    with pytest.raises(ModelError, match=r"cls_8 has shape \(1, 96, 1\), expected \(1, 64, 1\) for a 64x64"):
        check_outputs(outputs, (64, 64), 1)


# -- photos -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "count"), [("two_people.jpg", 2), ("obama.jpg", 1), ("alex-lacamoire.png", 1)]
)
def test_dynamic_model_finds_the_faces(
    dynamic: YuNetDetector, fixed: YuNetDetector, people: Path, image: str, count: int
) -> None:
    bgr = _read(people / image)
    faces = dynamic.detect(bgr)
    assert len(faces) == count
    assert faces.landmark_scheme == "arcface5" and _landmarks_inside(faces)
    assert (faces.score >= 0.8).all() and (faces.score <= 1).all()
    lm = faces.landmarks
    assert lm is not None and (lm[:, 0, 0] < lm[:, 1, 0]).all()  # image-left eye first
    theirs = fixed.detect(bgr)
    assert len(theirs) == count
    assert (_iou(faces.xyxy, theirs.xyxy).max(axis=1) > 0.75).all()


def test_decoding_matches_opencv_at_a_size_not_a_multiple_of_32(dynamic_path: Path, people: Path) -> None:
    """cv2.FaceDetectorYN (which pads to multiples of 32 itself) is the oracle of the padded grid."""
    bgr = cv2.resize(_read(people / "two_people.jpg"), (630, 370), interpolation=cv2.INTER_AREA)
    detector = YuNetDetector.load(dynamic_path, threads=2, min_confidence=0.6, upsample_below_px=0)
    faces = detector.detect(bgr)
    oracle = cv2.FaceDetectorYN.create(str(dynamic_path), "", (630, 370), 0.6, 0.3)
    _, found = oracle.detect(bgr)
    assert found is not None and len(found) == len(faces) == 2
    xyxy = np.concatenate([found[:, :2], found[:, :2] + found[:, 2:4]], axis=1)
    ours, theirs = np.argsort(faces.xyxy[:, 0]), np.argsort(xyxy[:, 0])
    np.testing.assert_allclose(faces.xyxy[ours], xyxy[theirs], atol=1.0)
    assert faces.landmarks is not None
    np.testing.assert_allclose(faces.landmarks[ours], found[theirs, 4:14].reshape(-1, 5, 2), atol=1.0)
    np.testing.assert_allclose(faces.score[ours], found[theirs, 14], atol=1e-3)


def test_min_confidence_filters(dynamic_path: Path, shared_data: Path) -> None:
    bgr = _read(shared_data / "people" / "two_people.jpg")
    low = YuNetDetector.load(dynamic_path, threads=2, min_confidence=0.3).detect(bgr)
    high = YuNetDetector.load(dynamic_path, threads=2, min_confidence=0.95).detect(bgr)
    assert (low.score >= 0.3).all() and (high.score >= 0.95).all()
    assert len(high) < len(low)
    np.testing.assert_allclose(high.xyxy, low[low.score >= 0.95].xyxy, atol=1e-4)


@pytest.mark.parametrize("size_hw", [(1, 1), (20, 20), (31, 33), (7, 300)])
def test_tiny_images_give_no_faces(
    dynamic: YuNetDetector, fixed: YuNetDetector, size_hw: tuple[int, int]
) -> None:
    bgr = np.random.default_rng(0).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
    for detector in (dynamic, fixed):
        faces = detector.detect(bgr)
        assert len(faces) == 0 and faces.landmark_scheme == "arcface5"


@pytest.mark.parametrize("shape", [(0, 0, 3), (10, 10), (10, 10, 4)])
def test_non_images_are_image_errors(dynamic: YuNetDetector, shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageError, match="needs an"):
        dynamic.detect(np.zeros(shape, np.uint8))


def test_huge_image_is_scaled_down(dynamic: YuNetDetector, people: Path) -> None:
    bgr = _read(people / "obama-1080p.jpg")
    huge = cv2.resize(bgr, (6000, 3375), interpolation=cv2.INTER_LINEAR)
    assert dynamic.working_scale(3375, 6000) == pytest.approx(1600 / 6000)
    faces = dynamic.detect(huge)
    assert len(faces) == 1 and _landmarks_inside(faces)
    expected = dynamic.detect(bgr).xyxy * (6000 / 1920)
    assert _iou(faces.xyxy, expected)[0, 0] > 0.8


def test_a_face_larger_than_the_fine_pass_finds_is_found_once(dynamic: YuNetDetector, people: Path) -> None:
    """A tight crop with the face ~900 px wide: the coarse pass finds it, its pieces are dropped."""
    bgr = _read(people / "biden.jpg")
    x1, y1, x2, y2 = dynamic.detect(bgr).xyxy[0]
    m = 0.25 * (x2 - x1)
    crop = bgr[int(y1 - m) : int(y2 + m), int(x1 - m) : int(x2 + m)]
    big = cv2.resize(crop, None, fx=900 / (x2 - x1), fy=900 / (x2 - x1), interpolation=cv2.INTER_LINEAR)
    faces = dynamic.detect(big)
    assert len(faces) == 1 and 800 < faces.xyxy[0, 2] - faces.xyxy[0, 0] < 1000


def test_upsampling_below_the_threshold(dynamic_path: Path) -> None:
    detector = YuNetDetector.load(dynamic_path, max_side_px=1600, upsample_below_px=160)
    assert detector.working_scale(100, 150) == 2.0
    assert detector.working_scale(250, 250) == 1.0
    assert detector.working_scale(3200, 1000) == 0.5
    assert YuNetDetector.load(dynamic_path, max_side_px=None).working_scale(2160, 3840) == 1.0


# -- small faces ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size_wh", [(640, 360), (1920, 1080)])
def test_a_20_px_face_is_found_at_native_resolution(
    dynamic_path: Path, shared_data: Path, small_faces: list, size_wh: tuple[int, int]
) -> None:
    frame, truth = _frame_with_faces(shared_data, small_faces, size_wh, 20)
    detector = YuNetDetector.load(dynamic_path, threads=2, min_confidence=0.5, max_side_px=None)
    faces = detector.detect(frame)
    iou = _iou(truth, faces.xyxy) if len(faces) else np.zeros((len(truth), 0))
    assert (iou.max(axis=1, initial=0) > 0.4).all(), (truth, faces.xyxy, faces.score)
    assert _landmarks_inside(faces)


def test_tiles_find_a_20_px_face_in_1080p(
    shared_models: Path, dynamic_path: Path, shared_data: Path, small_faces: list
) -> None:
    """Both models in 640 px tiles at native resolution; the fixed one letterboxed alone misses it."""
    frame, truth = _frame_with_faces(shared_data, small_faces, (1920, 1080), 20)
    for path in (dynamic_path, shared_models / FIXED):
        faces = YuNetDetector.load(path, threads=2, min_confidence=0.5, max_side_px=None, tile_px=640).detect(
            frame
        )
        assert (_iou(truth, faces.xyxy).max(axis=1, initial=0) > 0.4).all(), path.name
    letterboxed = YuNetDetector.load(shared_models / FIXED, threads=2, min_confidence=0.5).detect(frame)
    assert not len(letterboxed) or (_iou(truth, letterboxed.xyxy).max(axis=1) < 0.4).all()


# -- settings ---------------------------------------------------------------------------------------


def test_settings_reach_the_detector(dynamic_path: Path) -> None:
    settings = Settings(
        detect_max_side_px=1200, detect_upsample_below_px=800, detect_min_confidence=0.7, threads=1
    )
    detector = yunet_from_settings(dynamic_path, settings)
    assert (detector.max_side_px, detector.min_confidence) == (1200, 0.7)
    assert detector.upsample_below_px == upsample_below_for_yunet(800) == 160
    default = yunet_from_settings(dynamic_path, Settings())
    plain = YuNetDetector.load(dynamic_path)
    assert (default.max_side_px, default.upsample_below_px, default.min_confidence) == (
        plain.max_side_px,
        plain.upsample_below_px,
        plain.min_confidence,
    )


def test_video_detector_builds_yunet_from_the_video_settings(dynamic_path: Path, shared_data: Path) -> None:
    from vigil.video.detection import ScaledDetector, video_detector

    settings = Settings(
        detector="yunet", onnx_detector_path=dynamic_path, video_min_confidence=0.4, threads=2
    )
    detector = video_detector(settings)
    assert isinstance(detector, ScaledDetector) and detector.side_px == settings.video_detect_side_px == 960
    assert detector.factor(360, 640) == 1.0 and detector.factor(1080, 1920) == 0.5  # down, never up
    inner = detector.inner
    assert isinstance(inner, YuNetDetector)
    assert inner.min_confidence == 0.4 and inner.upsample_below_px == 0
    assert inner.working_scale(2160, 3840) == 1.0  # the ScaledDetector alone chooses the scale
    cap = cv2.VideoCapture(str(shared_data / "video" / "short_hamilton_clip.mp4"))
    for _ in range(101):
        _, frame = cap.read()
    cap.release()
    faces = detector.detect(np.asarray(frame, np.uint8))
    assert len(faces) >= 1 and faces.score.max() > 0.8


def test_video_detector_needs_the_model_path() -> None:
    from vigil.video.detection import video_detector

    with pytest.raises(ConfigError, match="needs a model file"):
        video_detector(Settings(detector="yunet"))
