"""Attendance marks: people of attendance galleries recognised by an entrance camera.

A registered camera of kind ``entrance`` matches the faces it embeds against the attendance galleries
as well as the watchlists: open-set, with the same per-gallery threshold as
:func:`~vigil.gallery.matching.identify_faces` (the target FPIR for the gallery's size). Each person
gets one mark per track (like alarms, not one per frame), stored as an
:class:`~vigil.gallery.models.AttendanceMark` at the frame's capture time (UTC) with the score, the
threshold and the camera, and audited (``attendance_mark``). A mark raises no alarm and keeps no
image. The first mark of a day is the arrival, the last the departure (see :mod:`vigil.attendance.report`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select

from vigil.app import App
from vigil.core.errors import ForbiddenError
from vigil.core.types import FaceDetections
from vigil.gallery.matching import Match, identify_faces
from vigil.gallery.models import AttendanceMark, Camera, Gallery, GalleryKind
from vigil.governance import audit
from vigil.video.sources import Frame

ENTRANCE = "entrance"
"""The camera kind that records attendance."""

REFRESH_S = 30.0
"""Seconds between look-ups of the attendance galleries (as for the watchlists)."""


@dataclass(frozen=True)
class Mark:
    """One stored mark; ``face`` is its index in the faces given to :meth:`AttendanceMarker.mark`."""

    face: int
    mark_id: int
    identity: str
    identity_id: int
    gallery: str
    at: datetime
    score: float
    threshold: float


def _split(csv: str) -> set[str]:
    return {part.strip() for part in csv.split(",") if part.strip()}


def entrance_galleries(
    app: App, names: list[str] | None, camera_id: int | None, today: date | None = None
) -> list[str]:
    """The attendance galleries that camera ``camera_id`` marks: none unless it is a registered
    entrance camera; among ``names`` (every attendance gallery when None), skipping expired ones and
    those limited to other cameras or sites."""
    if camera_id is None:
        return []
    with app.db.session() as s:
        cam = s.get(Camera, camera_id)
        if cam is None or cam.kind != ENTRANCE:
            return []
        query = select(Gallery).where(Gallery.kind == GalleryKind.attendance).order_by(Gallery.name)
        if names:
            query = query.where(Gallery.name.in_(names))
        chosen = []
        for g in s.scalars(query):
            if g.is_expired(today):
                continue
            if g.cameras and cam.name not in _split(g.cameras):
                continue
            if g.sites and cam.site not in _split(g.sites):
                continue
            chosen.append(g.name)
        return chosen


class AttendanceMarker:
    """Marks attendance for one camera's pipeline (a no-op unless it is an entrance camera).

    Args:
        app: the application context.
        camera: the camera's name, as marks record it.
        galleries: the galleries the pipeline was asked to watch (None: all).
        camera_id: the registered camera, if any.
    """

    def __init__(self, app: App, camera: str, galleries: list[str] | None, camera_id: int | None) -> None:
        self.app = app
        self.camera = camera
        self.camera_id = camera_id
        self.names = galleries
        self.galleries = entrance_galleries(app, galleries, camera_id)
        self.entrance = self._is_entrance()
        self._refreshed = time.monotonic()

    def _is_entrance(self) -> bool:
        if self.camera_id is None:
            return False
        with self.app.db.session() as s:
            cam = s.get(Camera, self.camera_id)
            return cam is not None and cam.kind == ENTRANCE

    def _refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._refreshed >= REFRESH_S:
            self.galleries = entrance_galleries(self.app, self.names, self.camera_id)
            self._refreshed = time.monotonic()

    def mark(self, frame: Frame, faces: FaceDetections, marked: list[set[int]]) -> list[Mark]:
        """Match embedded ``faces`` (n faces, with ``track_id``) against the attendance galleries and
        store a mark for each person not yet in that face's track set ``marked[i]`` (updated)."""
        if not self.entrance:
            return []
        self._refresh()
        if not self.galleries or len(faces) == 0:
            return []
        top_k = 3 * len(self.galleries)
        try:
            result = identify_faces(self.app, faces, self.galleries, top_k=top_k)
        except ForbiddenError:  # a gallery expired since the last look-up
            self._refresh(force=True)
            if not self.galleries:
                return []
            result = identify_faces(self.app, faces, self.galleries, top_k=top_k)
        stored = []
        for i, face in enumerate(result.faces):
            hits: dict[str, Match] = {}
            for m in face.matches:  # best first: the best match above threshold in each gallery
                if m.above_threshold and m.gallery not in hits:
                    hits[m.gallery] = m
            for match in hits.values():
                if match.identity_id in marked[i]:
                    continue
                marked[i].add(match.identity_id)
                stored.append(self._store(frame, faces, i, match, result.fpir, result.model))
        return stored

    def _store(
        self, frame: Frame, faces: FaceDetections, i: int, match: Match, fpir: float, model: str
    ) -> Mark:
        track_id = int(faces.track_id[i]) if faces.track_id is not None else None
        with self.app.db.session() as s:
            gallery_id = s.scalar(select(Gallery.id).where(Gallery.name == match.gallery))
            row = AttendanceMark(
                identity_id=match.identity_id,
                gallery_id=gallery_id,
                camera_id=self.camera_id,
                camera_name=self.camera,
                at=frame.ts.astimezone(UTC),
                score=match.score,
                threshold=match.threshold,
                track_id=track_id,
            )
            s.add(row)
            s.flush()
            mark_id = row.id
        audit.record(
            self.app,
            f"camera:{self.camera}",
            "attendance_mark",
            target_type="identity",
            target_id=match.identity_id,
            target_name=match.identity,
            mark_id=mark_id,
            camera=self.camera,
            frame=frame.index,
            captured_at=frame.ts.isoformat(),
            gallery=match.gallery,
            track_id=track_id,
            score=round(match.score, 6),
            threshold=round(match.threshold, 6),
            fpir=fpir,
            model=model,
        )
        return Mark(
            face=i,
            mark_id=mark_id,
            identity=match.identity,
            identity_id=match.identity_id,
            gallery=match.gallery,
            at=frame.ts,
            score=match.score,
            threshold=match.threshold,
        )
