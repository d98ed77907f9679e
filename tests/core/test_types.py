import numpy as np
import pytest

from vigil.core.types import FaceDetections


def _faces(n: int = 3) -> FaceDetections:
    xyxy = np.array([[0, 0, 10, 10], [5, 5, 50, 60], [1, 2, 3, 4]], np.float32)[:n]
    return FaceDetections(
        xyxy=xyxy,
        score=np.linspace(0.1, 0.9, n),
        landmarks=np.zeros((n, 5, 2)),
        quality=np.ones(n),
        embedding=np.eye(n, 4),
    )


def test_arrays_are_typed_and_mask_indexable() -> None:
    d = _faces()
    assert d.xyxy.dtype == np.float32 and d.score.dtype == np.float32
    sub = d[d.score > 0.4]
    assert len(sub) == 2
    assert sub.embedding is not None and sub.embedding.shape == (2, 4)
    assert sub.landmarks is not None and sub.landmarks.shape == (2, 5, 2)
    assert len(d[1]) == 1 and d[1].xyxy.shape == (1, 4)
    np.testing.assert_allclose(d.size_wh[1], [45, 55])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xyxy": np.zeros((2, 3)), "score": np.zeros(2)}, "xyxy must have shape"),
        ({"xyxy": np.zeros((2, 4)), "score": np.zeros(3)}, "score has 3 rows"),
        ({"xyxy": np.zeros((2, 4)), "score": np.zeros(2), "landmarks": np.zeros((2, 4, 2))}, "landmarks"),
        ({"xyxy": np.zeros((2, 4)), "score": np.zeros(2), "embedding": np.zeros((3, 8))}, "embedding"),
        ({"xyxy": np.zeros((2, 4)), "score": np.zeros(2), "quality": np.zeros((2, 1))}, "quality"),
    ],
)
def test_shapes_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaceDetections(**kwargs)


def test_wrong_mask_length_is_refused() -> None:
    with pytest.raises(IndexError):
        _faces()[np.array([True, False])]


def test_with_returns_a_new_value_and_leaves_the_input_alone() -> None:
    d = _faces()
    e = d.with_(quality=np.zeros(3))
    assert d.quality is not None and d.quality.sum() == 3
    assert e.quality is not None and e.quality.sum() == 0


def test_eye_nose_for_both_schemes() -> None:
    lm = np.array([[[10, 10], [20, 10], [15, 15], [12, 20], [18, 20]]], np.float32)
    d = FaceDetections(xyxy=np.zeros((1, 4)), score=np.ones(1), landmarks=lm)
    left, right, nose = d.eye_nose()
    np.testing.assert_allclose(left[0], [10, 10])
    np.testing.assert_allclose(nose[0], [15, 15])
    dl = np.array([[[30, 10], [24, 10], [6, 10], [12, 10], [18, 20]]], np.float32)
    d5 = FaceDetections(xyxy=np.zeros((1, 4)), score=np.ones(1), landmarks=dl, landmark_scheme="dlib5")
    left, right, nose = d5.eye_nose()
    np.testing.assert_allclose(left[0], [9, 10])
    np.testing.assert_allclose(right[0], [27, 10])
    np.testing.assert_allclose(nose[0], [18, 20])


def test_empty() -> None:
    e = FaceDetections.empty()
    assert len(e) == 0 and e.landmarks is not None and e.landmarks.shape == (0, 5, 2)
