import numpy as np

from vigil.core.types import FaceDetections
from vigil.video.tracker import IouTracker, iou_matrix


def dets(boxes: list[list[float]], scores: list[float] | None = None) -> FaceDetections:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores if scores is not None else [0.95] * len(b), np.float32)
    return FaceDetections(xyxy=b, score=s)


def test_iou_matrix_matches_hand_computed_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 20]], np.float32)
    b = np.array([[5, 5, 15, 15], [100, 100, 110, 110]], np.float32)
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 2)
    assert np.isclose(iou[0, 0], 25 / 175)
    assert np.isclose(iou[1, 0], 100 / 400)
    assert iou[0, 1] == 0 and iou[1, 1] == 0
    assert iou_matrix(a, np.zeros((0, 4), np.float32)).shape == (2, 0)


def test_two_faces_crossing_keep_their_ids() -> None:
    """Two faces walk towards each other and past; constant-velocity prediction keeps the ids."""
    tracker = IouTracker(max_lost_s=0.5)
    ids_left, ids_right = set(), set()
    for f in range(40):
        xa, xb = 10 + 12 * f, 500 - 12 * f
        boxes = [[xa, 100, xa + 60, 160], [xb, 110, xb + 60, 170]]
        if 18 <= f <= 22:  # they overlap; the detector sees only the front one
            boxes = boxes[:1]
        up = tracker.update(dets(boxes), f, f / 25)
        assert up.faces.track_id is not None
        ids_left.add(int(up.faces.track_id[0]))
        if len(boxes) == 2:
            ids_right.add(int(up.faces.track_id[1]))
    assert ids_left == {1}
    assert ids_right == {2}
    assert [t.id for t in tracker.finish()] == [1, 2]


def test_weak_detections_extend_tracks_but_do_not_start_them() -> None:
    tracker = IouTracker(high_score=0.8)
    up = tracker.update(dets([[0, 0, 50, 50]], [0.6]), 0, 0.0)
    assert len(up.faces) == 0 and not up.started
    up = tracker.update(dets([[0, 0, 50, 50]], [0.9]), 1, 0.04)
    assert [t.id for t in up.started] == [1]
    up = tracker.update(dets([[2, 0, 52, 50]], [0.6]), 2, 0.08)
    assert up.faces.track_id is not None and list(up.faces.track_id) == [1]


def test_a_track_ends_after_max_lost_seconds_and_a_return_is_a_new_track() -> None:
    tracker = IouTracker(max_lost_s=1.0)
    tracker.update(dets([[0, 0, 50, 50]]), 0, 0.0)
    assert tracker.update(dets([]), 10, 0.9).ended == []
    ended = tracker.update(dets([]), 30, 1.2).ended
    assert [t.id for t in ended] == [1]
    up = tracker.update(dets([[0, 0, 50, 50]]), 31, 1.24)
    assert [t.id for t in up.started] == [2]


def test_a_young_fast_track_is_followed_by_distance_not_a_new_track() -> None:
    """Seen once, then 6 frames later 60 px on (IoU 0.14 with no speed known yet): the same track.
    A face of another size, or two face sizes away, starts its own track."""
    tracker = IouTracker()
    first = tracker.update(dets([[100, 100, 180, 180]]), 0, 0.0)
    later = tracker.update(dets([[160, 102, 240, 182]]), 6, 0.24)
    assert first.faces.track_id is not None and later.faces.track_id is not None
    assert later.started == [] and int(later.faces.track_id[0]) == int(first.faces.track_id[0])
    # The track now knows its speed (10 px/frame): IoU follows it again.
    assert int(tracker.update(dets([[190, 102, 270, 182]]), 9, 0.36).faces.track_id[0]) == 1

    other = IouTracker()
    other.update(dets([[100, 100, 180, 180]]), 0, 0.0)
    far = other.update(dets([[280, 100, 360, 180]]), 3, 0.12)  # 180 px = 2.25 face sizes away
    big = IouTracker()
    big.update(dets([[100, 100, 180, 180]]), 0, 0.0)
    grown = big.update(dets([[130, 80, 290, 240]]), 3, 0.12)  # twice the size, centre 70 px away
    assert len(far.started) == 1 and len(grown.started) == 1
