"""The evidence an event carries, and the events the pipeline stores, built from a frame and a face.

:func:`crop_jpeg` and :func:`thumbnail_jpeg` encode a face crop and a frame thumbnail; :func:`alarm`
and :func:`sighting` build the :class:`~vigil.events.schemas.Alarm` and
:class:`~vigil.events.schemas.SightingRecorded` events with their deterministic ids
(:func:`~vigil.events.schemas.event_id_for`): a frame replayed after a restart gives the same id.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from vigil.app import App
from vigil.core.frame import Frame
from vigil.core.types import FaceDetections
from vigil.events.schemas import Alarm, SightingRecorded, event_id_for
from vigil.gallery import negatives
from vigil.gallery.matching import Match


def box_of(xyxy: npt.NDArray[np.float32]) -> list[float]:
    """A box as events and the catalog record it: (x1, y1, x2, y2) pixels, rounded to 0.1."""
    return [round(float(v), 1) for v in xyxy]


def crop_jpeg(bgr: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.float32], margin: float = 0.4) -> bytes:
    """The face in box ``xyxy`` of the (h, w, 3) uint8 BGR frame, with ``margin`` of the box size on
    each side, as JPEG bytes (empty if it cannot be encoded)."""
    import cv2

    h, w = bgr.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    x1, y1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    x2, y2 = min(w, int(x2 + mx)), min(h, int(y2 + my))
    ok, buf = cv2.imencode(".jpg", bgr[y1:y2, x1:x2], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return bytes(buf) if ok else b""


def thumbnail_jpeg(bgr: npt.NDArray[np.uint8], xyxy: npt.NDArray[np.float32], width: int = 480) -> bytes:
    """The (h, w, 3) uint8 BGR frame scaled to at most ``width`` pixels wide with box ``xyxy`` drawn,
    as JPEG bytes (empty if it cannot be encoded)."""
    import cv2

    h, w = bgr.shape[:2]
    scale = min(1.0, width / w)
    small = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    x1, y1, x2, y2 = (round(float(v) * scale) for v in xyxy)
    cv2.rectangle(small, (x1, y1), (x2, y2), (0, 0, 255), 2)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return bytes(buf) if ok else b""


@dataclass(frozen=True)
class Decision:
    """What a match against a gallery decided, with the figures in force (FPIR, model)."""

    match: Match
    fpir: float
    model: str
    suppressed_by: list[int] | None = None
    """The negative examples nearer to the face than the person (see :func:`screen`)."""


def screen(app: App, d: Decision, embedding: npt.NDArray[np.float32]) -> Decision:
    """``d`` with the negative examples that suppress it (the face's (d,) float32 ``embedding`` is
    nearer to a stranger a reviewer dismissed than to the person; :mod:`vigil.gallery.negatives`)."""
    found = negatives.suppressing(app, d.match.identity_id, d.model, embedding, d.match.score)
    return replace(d, suppressed_by=found or None)


def alarm(camera: str, camera_id: int | None, frame: Frame, face: FaceDetections, d: Decision) -> Alarm:
    """The alarm for the one face ``face`` (with ``track_id`` and ``quality``) of ``frame``.

    Its id is made of the camera, the identity, the frame's index and capture time and the box: a
    frame replayed with the same time (a file camera resumed after its worker died) gives the same id.
    """
    xyxy = face.xyxy[0]
    box = box_of(xyxy)
    track_id = int(face.track_id[0]) if face.track_id is not None else -1
    quality = float(face.quality[0]) if face.quality is not None else 0.0
    m = d.match
    return Alarm(
        event_id=event_id_for("alarm", camera, camera_id, m.identity_id, frame.index, frame.ts, box),
        camera=camera,
        camera_id=camera_id,
        ts=frame.ts,
        identity=m.identity,
        identity_id=m.identity_id,
        gallery=m.gallery,
        score=round(m.score, 6),
        threshold=round(m.threshold, 6),
        fpir=d.fpir,
        model=d.model,
        track_id=track_id,
        frame=frame.index,
        xyxy=box,
        quality=round(quality, 4),
        latency_ms=round(1000 * (time.monotonic() - frame.mono), 1),
        crop_jpeg=crop_jpeg(frame.bgr, xyxy),
        thumbnail_jpeg=thumbnail_jpeg(frame.bgr, xyxy),
        suppressed_by=d.suppressed_by,
    )


@dataclass(frozen=True)
class Shot:
    """A track's best embedded shot: its (d,) float32 template, quality and face crop (JPEG)."""

    embedding: npt.NDArray[np.float32]
    quality: float
    crop_jpeg: bytes


@dataclass(frozen=True)
class Appearance:
    """An ended track as a sighting records it: frames, first and last times."""

    track_id: int
    first_frame: int
    first_xyxy: list[float]
    """The track's box on its first frame (see :func:`box_of`)."""
    frames: int
    first_seen: datetime
    last_seen: datetime


def sighting(
    camera: str,
    camera_id: int | None,
    seen: Appearance,
    shot: Shot,
    model: str,
    match: tuple[int | None, float | None],
) -> SightingRecorded:
    """The sighting of an ended track; ``match``: the identity id and score a gallery matched, if any.

    Its id is made of the camera and the track's first frame, time and box.
    """
    identity_id, score = match
    key = (seen.first_frame, seen.first_seen, seen.first_xyxy)
    return SightingRecorded(
        event_id=event_id_for("sighting", camera, camera_id, *key),
        camera=camera,
        camera_id=camera_id,
        ts=seen.last_seen,
        track_id=seen.track_id,
        first_frame=seen.first_frame,
        first_seen=seen.first_seen,
        last_seen=seen.last_seen,
        frames=seen.frames,
        quality=round(shot.quality, 6),
        model=model,
        embedding=np.asarray(shot.embedding, "<f4").tobytes(),
        crop_jpeg=shot.crop_jpeg or None,
        identity_id=identity_id,
        score=score,
    )
