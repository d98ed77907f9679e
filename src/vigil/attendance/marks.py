"""Attendance marks: people of attendance galleries recognised by an entrance camera.

A registered camera of kind ``entrance`` matches the faces it embeds against the attendance galleries
as well as the watchlists: open-set, with the same per-gallery threshold as
:func:`~vigil.gallery.matching.identify_faces` (the target FPIR for the gallery's size). Each person
gets one mark per track (like alarms, not one per frame), stored as an
:class:`~vigil.storage.tables.AttendanceMark` at the frame's capture time (UTC) with the score, the
threshold and the camera, and audited (``attendance_mark``). A mark raises no alarm and keeps no
image. The first mark of a day is the arrival, the last the departure (see :mod:`vigil.attendance.report`).

The pipeline's :class:`AttendanceMarker` only decides: it returns
:class:`~vigil.events.schemas.AttendanceMarked` events, and the catalog writer stores each with
:func:`store_mark` (row and audit entry in one transaction, once per ``event_id``).
"""

from __future__ import annotations

import time
from datetime import UTC, date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ForbiddenError, NotFoundError
from vigil.core.frame import Frame
from vigil.core.types import FaceDetections
from vigil.events.schemas import AttendanceMarked, event_id_for
from vigil.gallery.matching import IdentifyResult, Match, identify_faces
from vigil.storage import audit
from vigil.storage.tables import AttendanceMark, Camera, Gallery, GalleryKind, Identity

ENTRANCE = "entrance"
"""The camera kind that records attendance."""


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
    """Decides the attendance marks of one camera's pipeline (a no-op unless it is an entrance camera).

    The attendance galleries are looked up again every ``video_watchlist_refresh_s`` seconds, and at
    once when one expired or was deleted since.

    Args:
        app: the application context (read only: the marks are stored by the catalog writer).
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

    def refresh(self, force: bool = False) -> None:
        """Look the attendance galleries up again (when due, or now if ``force``)."""
        if force or time.monotonic() - self._refreshed >= self.app.settings.video_watchlist_refresh_s:
            self.galleries = entrance_galleries(self.app, self.names, self.camera_id)
            self._refreshed = time.monotonic()

    def _identify(self, faces: FaceDetections) -> IdentifyResult | None:
        try:
            return identify_faces(self.app, faces, self.galleries, top_k=3 * len(self.galleries))
        except (ForbiddenError, NotFoundError):  # a gallery expired or was deleted since the look-up
            self.refresh(force=True)
            if not self.galleries:
                return None
            return identify_faces(self.app, faces, self.galleries, top_k=3 * len(self.galleries))

    def mark(self, frame: Frame, faces: FaceDetections, marked: list[set[int]]) -> list[AttendanceMarked]:
        """Match embedded ``faces`` (n faces, with ``track_id``) against the attendance galleries: a
        mark for each person not yet in that face's track set ``marked[i]`` (updated), to store."""
        if not self.entrance:
            return []
        self.refresh()
        if not self.galleries or len(faces) == 0:
            return []
        result = self._identify(faces)
        if result is None:
            return []
        marks = []
        for i, face in enumerate(result.faces):
            hits: dict[str, Match] = {}
            for m in face.matches:  # best first: the best match above threshold in each gallery
                if m.above_threshold and m.gallery not in hits:
                    hits[m.gallery] = m
            for match in hits.values():
                if match.identity_id in marked[i]:
                    continue
                marked[i].add(match.identity_id)
                marks.append(self._event(frame, faces, i, match, result.fpir, result.model))
        return marks

    def _event(
        self, frame: Frame, faces: FaceDetections, i: int, match: Match, fpir: float, model: str
    ) -> AttendanceMarked:
        track_id = int(faces.track_id[i]) if faces.track_id is not None else -1
        box = [round(float(v), 1) for v in faces.xyxy[i]]
        return AttendanceMarked(
            event_id=event_id_for(
                "attendance",
                self.camera,
                self.camera_id,
                match.identity_id,
                match.gallery,
                frame.index,
                frame.ts,
                box,
            ),
            camera=self.camera,
            camera_id=self.camera_id,
            ts=frame.ts,
            identity=match.identity,
            identity_id=match.identity_id,
            gallery=match.gallery,
            score=round(match.score, 6),
            threshold=round(match.threshold, 6),
            fpir=fpir,
            model=model,
            track_id=track_id,
            frame=frame.index,
            xyxy=box,
        )


def store_mark(app: App, mark: AttendanceMarked) -> AttendanceMarked | None:
    """Store ``mark`` and audit it (``attendance_mark``, by ``camera:NAME``) in one transaction; the
    stored copy (``mark_id`` set), or None when a mark with its ``event_id`` is stored already.
    A mark for an identity no longer in the catalog is a :class:`NotFoundError` (nothing stored)."""
    try:
        with app.db.session() as s:
            if s.get(Identity, mark.identity_id) is None:
                raise NotFoundError(
                    f"attendance mark {mark.event_id}: identity {mark.identity_id} is not in the catalog",
                    hint="the person was erased or deleted after the match; the mark is not stored",
                )
            gallery_id = s.scalar(select(Gallery.id).where(Gallery.name == mark.gallery))
            row = AttendanceMark(
                event_id=mark.event_id,
                identity_id=mark.identity_id,
                gallery_id=gallery_id,
                camera_id=mark.camera_id if _camera_known(s, mark.camera_id) else None,
                camera_name=mark.camera,
                at=mark.ts.astimezone(UTC),
                score=mark.score,
                threshold=mark.threshold,
                track_id=mark.track_id,
            )
            s.add(row)
            s.flush()
            mark_id = row.id
            audit.append(
                s,
                f"camera:{mark.camera}",
                "attendance_mark",
                target_type="identity",
                target_id=mark.identity_id,
                target_name=mark.identity,
                mark_id=mark_id,
                camera=mark.camera,
                frame=mark.frame,
                captured_at=mark.ts.isoformat(),
                gallery=mark.gallery,
                track_id=mark.track_id,
                score=mark.score,
                threshold=mark.threshold,
                fpir=mark.fpir,
                model=mark.model,
                event_id=mark.event_id,
            )
    except IntegrityError:
        if _mark_stored(app, mark.event_id):
            return None
        raise
    return mark.model_copy(update={"mark_id": mark_id})


def _camera_known(s: Session, camera_id: int | None) -> bool:
    """Whether the camera is registered here (a device's camera may have been deleted since)."""
    return camera_id is not None and s.get(Camera, camera_id) is not None


def _mark_stored(app: App, event_id: str) -> bool:
    with app.db.session() as s:
        return s.scalar(select(AttendanceMark.id).where(AttendanceMark.event_id == event_id)) is not None
