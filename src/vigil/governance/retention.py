"""Retention: what is kept, for how long, and the purge that deletes rows and files together.

- Per gallery (``retention_days``): its alarms (rows, reviews, face crops and frame thumbnails) and,
  for attendance galleries, its attendance marks are deleted that many days after capture.
- Per alarm (``alarms.retention_days``, set on stranger alarms, which have no gallery: their camera's
  ``retention_days``, else the ``stranger_retention_days`` setting): the alarm, its reviews, face crop
  and frame thumbnail are deleted that many days after capture.
- Per camera (``retention_days``): its frame snapshots (the thumbnails of its alarms, which show
  bystanders) are deleted that many days after capture, and its sightings (rows and face crops) that
  many days after they were last seen (30 days when the camera sets none, see
  :mod:`vigil.investigation.sightings`).
- Always: expired browser sessions; notification dead letters after 30 days.

``vigil serve`` purges every ``purge_interval_s``; ``vigil purge`` does it once (for cron). Each purge
that deletes anything is audited with its counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.gallery.enroll import delete_unreferenced_blobs
from vigil.investigation import sightings as sighting_store
from vigil.storage import audit
from vigil.storage.tables import AlarmRecord, AttendanceMark, Camera, DeadLetter, Gallery, WebSession

DEAD_LETTER_DAYS = 30


class PurgeReport(BaseModel):
    now: datetime
    alarms: int
    snapshots: int
    files: int
    sessions: int
    dead_letters: int
    sightings: int = 0
    attendance_marks: int = 0


def _naive(t: datetime) -> datetime:
    return (t.astimezone(UTC) if t.tzinfo else t).replace(tzinfo=None)


def _purge_own_retention(s: Session, now: datetime) -> tuple[set[str], int]:
    """Delete the alarms past their own ``retention_days`` (stranger alarms); their blobs and count."""
    shas: set[str] = set()
    count = 0
    for (days,) in s.execute(
        select(AlarmRecord.retention_days).where(AlarmRecord.retention_days.is_not(None)).distinct()
    ):
        cutoff = _naive(now - timedelta(days=days or 0))
        old = s.execute(
            select(AlarmRecord.id, AlarmRecord.crop_sha256, AlarmRecord.thumbnail_sha256).where(
                AlarmRecord.retention_days == days, AlarmRecord.captured_at < cutoff
            )
        ).all()
        if old:
            shas |= {sha for _, crop, thumb in old for sha in (crop, thumb) if sha}
            s.execute(delete(AlarmRecord).where(AlarmRecord.id.in_([r[0] for r in old])))
            count += len(old)
    return shas, count


def purge(app: App, *, now: datetime | None = None, actor: str = "system:retention") -> PurgeReport:
    """Delete everything past its retention at ``now`` (default: the current time)."""
    now = now or datetime.now(UTC)
    shas: set[str] = set()
    alarms = snapshots = marks = 0
    with app.db.session() as s:
        for gallery_id, days in s.execute(
            select(Gallery.id, Gallery.retention_days).where(Gallery.retention_days.is_not(None))
        ):
            cutoff = _naive(now - timedelta(days=days or 0))
            old = s.execute(
                select(AlarmRecord.id, AlarmRecord.crop_sha256, AlarmRecord.thumbnail_sha256).where(
                    AlarmRecord.gallery_id == gallery_id, AlarmRecord.captured_at < cutoff
                )
            ).all()
            if old:
                shas |= {sha for _, crop, thumb in old for sha in (crop, thumb) if sha}
                s.execute(delete(AlarmRecord).where(AlarmRecord.id.in_([r[0] for r in old])))
                alarms += len(old)
            marks += s.execute(
                delete(AttendanceMark).where(
                    AttendanceMark.gallery_id == gallery_id, AttendanceMark.at < cutoff
                )
            ).rowcount  # type: ignore[attr-defined]
        alarm_shas, own = _purge_own_retention(s, now)
        shas |= alarm_shas
        alarms += own
        for camera_id, days in s.execute(
            select(Camera.id, Camera.retention_days).where(Camera.retention_days.is_not(None))
        ):
            cutoff = _naive(now - timedelta(days=days or 0))
            old_snaps = s.execute(
                select(AlarmRecord.id, AlarmRecord.thumbnail_sha256).where(
                    AlarmRecord.camera_id == camera_id,
                    AlarmRecord.captured_at < cutoff,
                    AlarmRecord.thumbnail_sha256.is_not(None),
                )
            ).all()
            if old_snaps:
                shas |= {sha for _, sha in old_snaps if sha}
                s.execute(
                    update(AlarmRecord)
                    .where(AlarmRecord.id.in_([r[0] for r in old_snaps]))
                    .values(thumbnail_sha256=None)
                )
                snapshots += len(old_snaps)
        sessions = s.execute(delete(WebSession).where(WebSession.expires_at < _naive(now))).rowcount  # type: ignore[attr-defined]
        dead = s.execute(
            delete(DeadLetter).where(DeadLetter.created_at < _naive(now - timedelta(days=DEAD_LETTER_DAYS)))
        ).rowcount  # type: ignore[attr-defined]
        sightings, sighting_shas = sighting_store.purge_expired(s, now)
        shas |= sighting_shas
        shas -= sighting_store.referenced_crops(s, shas)  # a crop a kept sighting still shows
    files = delete_unreferenced_blobs(app, shas)
    report = PurgeReport(
        now=now,
        alarms=alarms,
        snapshots=snapshots,
        files=files,
        sessions=int(sessions or 0),
        dead_letters=int(dead or 0),
        sightings=sightings,
        attendance_marks=int(marks or 0),
    )
    if alarms or snapshots or files or sightings or marks:
        audit.record(app, actor, "purge", **report.model_dump(mode="json"))
    return report
