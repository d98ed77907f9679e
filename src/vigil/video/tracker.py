"""Face tracking by box overlap and motion, in the manner of ByteTrack.

Each track predicts its box with a constant-velocity model. On every frame with detections,
confident detections are matched to the predicted boxes first (Hungarian assignment on IoU), then
the remaining tracks get a second chance with the low-confidence detections, which keeps a track
alive through a blurred or turned face without letting weak detections start tracks. Tracks still
unmatched then take the nearest confident detection of a similar size whose centre lies within
``match_distance`` face sizes of the prediction (a face that moved further than IoU can follow, such
as a young track whose speed is not known yet after a gap between detections). A track not
matched for ``max_lost_s`` seconds ends. Frames without detection (the detection interval) only
advance the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from vigil.core.types import FaceDetections

F32 = npt.NDArray[np.float32]


def iou_matrix(a: F32, b: F32) -> F32:
    """(len(a), len(b)) intersection over union of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    out: F32 = (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)).astype(np.float32)
    return out


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: F32
    first_frame: int
    first_pos_s: float
    last_frame: int
    last_pos_s: float
    velocity: F32 = field(default_factory=lambda: np.zeros(4, np.float32))
    """Box change per frame (x1, y1, x2, y2), smoothed."""
    hits: int = 1

    def predict(self, frame: int) -> F32:
        return (self.box + self.velocity * float(frame - self.last_frame)).astype(np.float32)

    def update(self, box: F32, frame: int, pos_s: float) -> None:
        gap = max(1, frame - self.last_frame)
        observed = (box - self.box) / gap
        self.velocity = (0.6 * self.velocity + 0.4 * observed).astype(np.float32)
        self.box = box.astype(np.float32)
        self.last_frame = frame
        self.last_pos_s = pos_s
        self.hits += 1


@dataclass(frozen=True)
class TrackUpdate:
    """What one frame did to the tracks.

    Attributes:
        faces: the frame's detections that belong to a track, with ``track_id`` set.
        started: tracks that began on this frame.
        ended: tracks that ended on this frame (not seen for ``max_lost_s``).
    """

    faces: FaceDetections
    started: list[Track]
    ended: list[Track]


@dataclass
class IouTracker:
    """ByteTrack-style association of detections to tracks.

    Args:
        high_score: detections at least this confident are matched first and may start tracks.
        match_iou: the least IoU between a predicted box and a detection to match them.
        match_distance: the farthest a confident detection's centre may lie from an unmatched
            track's predicted centre, in face sizes, to be matched by distance (sizes within 1.5x).
        max_lost_s: a track unmatched for this long (video time) ends.
    """

    high_score: float = 0.8
    match_iou: float = 0.2
    match_distance: float = 1.0
    max_lost_s: float = 1.0
    _tracks: list[Track] = field(default_factory=list, init=False)
    _next_id: int = field(default=1, init=False)

    @property
    def active(self) -> list[Track]:
        return list(self._tracks)

    def _assign(self, tracks: list[Track], boxes: F32, frame: int) -> list[tuple[int, int]]:
        if not tracks or len(boxes) == 0:
            return []
        predicted = np.stack([t.predict(frame) for t in tracks])
        iou = iou_matrix(predicted, boxes)
        rows, cols = linear_sum_assignment(-iou)
        return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.match_iou]

    def _assign_by_distance(self, tracks: list[Track], boxes: F32, frame: int) -> list[tuple[int, int]]:
        if not tracks or len(boxes) == 0:
            return []
        predicted = np.stack([t.predict(frame) for t in tracks])
        size_t = np.maximum(predicted[:, 2:] - predicted[:, :2], 1.0).max(axis=1)
        size_d = np.maximum(boxes[:, 2:] - boxes[:, :2], 1.0).max(axis=1)
        centre_t = (predicted[:, :2] + predicted[:, 2:]) / 2
        centre_d = (boxes[:, :2] + boxes[:, 2:]) / 2
        distance = np.linalg.norm(centre_t[:, None] - centre_d[None], axis=2) / size_t[:, None]
        ratio = size_d[None, :] / size_t[:, None]
        ok = (distance <= self.match_distance) & (ratio >= 1 / 1.5) & (ratio <= 1.5)
        rows, cols = linear_sum_assignment(np.where(ok, distance, 1e6))
        return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ok[r, c]]

    def update(self, faces: FaceDetections, frame: int, pos_s: float) -> TrackUpdate:
        """Match this frame's detections to the tracks; start and end tracks."""
        track_ids = np.zeros(len(faces), np.int64)
        high = np.flatnonzero(faces.score >= self.high_score)
        low = np.flatnonzero(faces.score < self.high_score)
        unmatched = list(self._tracks)
        for det_set in (high, low):
            pairs = self._assign(unmatched, faces.xyxy[det_set], frame)
            matched = set()
            for r, c in pairs:
                det = int(det_set[c])
                unmatched[r].update(faces.xyxy[det], frame, pos_s)
                track_ids[det] = unmatched[r].id
                matched.add(r)
            unmatched = [t for i, t in enumerate(unmatched) if i not in matched]
        free = np.array([d for d in high if track_ids[d] == 0], np.int64)
        for r, c in self._assign_by_distance(unmatched, faces.xyxy[free], frame):
            det = int(free[c])
            unmatched[r].update(faces.xyxy[det], frame, pos_s)
            track_ids[det] = unmatched[r].id
        started = []
        for det in (int(d) for d in high):
            if track_ids[det] == 0:
                track = Track(self._next_id, faces.xyxy[det].copy(), frame, pos_s, frame, pos_s)
                self._next_id += 1
                self._tracks.append(track)
                started.append(track)
                track_ids[det] = track.id
        ended = self._expire(pos_s)
        kept = track_ids > 0
        return TrackUpdate(faces[kept].with_(track_id=track_ids[kept]), started, ended)

    def _expire(self, pos_s: float) -> list[Track]:
        ended = [t for t in self._tracks if pos_s - t.last_pos_s > self.max_lost_s]
        if ended:
            self._tracks = [t for t in self._tracks if t not in ended]
        return ended

    def advance(self, pos_s: float) -> list[Track]:
        """A frame without detection: only end the tracks that have been lost too long."""
        return self._expire(pos_s)

    def finish(self) -> list[Track]:
        """End every track (the end of the stream)."""
        ended, self._tracks = self._tracks, []
        return ended

    def predicted(self, frame: int) -> tuple[list[int], F32]:
        """Ids and predicted boxes of the active tracks at ``frame`` (for drawing between detections)."""
        if not self._tracks:
            return [], np.zeros((0, 4), np.float32)
        return [t.id for t in self._tracks], np.stack([t.predict(frame) for t in self._tracks])
