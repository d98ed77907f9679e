"""The pipeline's events and the catalog writer, on the real hamilton clip with the real models.

A clip replayed with the same capture times gives the same alarm ids and the writer stores each once;
each stored event has its audit entry (the chain verifies); an alarm's crop travels in its wire form;
a watchlist deleted or created while a camera runs is followed without a crash.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from vigil.app import App
from vigil.core.errors import NotFoundError
from vigil.events.schemas import (
    EVENT_ADAPTER,
    Alarm,
    AnyEvent,
    AttendanceMarked,
    CameraStatus,
    SightingRecorded,
    event_id_for,
    public,
)
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.storage import audit
from vigil.storage.tables import AlarmRecord, AttendanceMark, AuditEntry, Identity, Sighting
from vigil.video import cameras
from vigil.video.alarms import list_alarms
from vigil.video.pipeline import Pipeline
from vigil.video.sinks import CatalogWriter
from vigil.video.watch import watch
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs

START = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
"""The recording's start: the same on every play, so the capture times (and the ids) repeat."""


def watchlist(app: App, name: str) -> None:
    spec = galleries.validate_spec(
        name=name,
        kind="watchlist",
        purpose="test",
        legal_basis="court order 12",
        authorized_by="Judge A",
        expires_on=date.today() + timedelta(days=30),
    )
    galleries.create_gallery(app, spec)


class Recorder:
    """A sink in front of another: keeps every event the pipeline emitted and what the writer returned."""

    def __init__(self, writer: CatalogWriter) -> None:
        self.writer = writer
        self.seen: list[AnyEvent] = []
        self.passed: list[AnyEvent] = []

    def write(self, event: AnyEvent) -> AnyEvent | None:
        self.seen.append(event)
        out = self.writer.write(event)
        if out is not None:
            self.passed.append(out)
        return out


@pytest.fixture
def clip(shared_data: Path) -> Path:
    return shared_data / "video" / "short_hamilton_clip.mp4"


@pytest.fixture
def wanted(app: App, people: Path) -> App:
    watchlist(app, "wanted")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [load_image(people / "lin-manuel-miranda.png")])
    return app


def _play(app: App, spec: str | None, **kw: object) -> tuple[Recorder, list[AnyEvent], dict]:  # type: ignore[type-arg]
    rec = Recorder(CatalogWriter(app, device=kw.pop("device", None)))  # type: ignore[arg-type]
    got: list[AnyEvent] = []
    summary = watch(app, spec, start=START, sink=rec, on_event=got.append, **kw)  # type: ignore[arg-type]
    return rec, got, summary


def _count(app: App, model: type, *where: object) -> int:
    with app.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]


def test_a_replayed_clip_gives_the_same_alarm_ids_and_is_stored_once(wanted: App, clip: Path) -> None:
    cameras.add_camera(wanted, "stage", str(clip), keep_sightings=True)
    first, got1, summary1 = _play(wanted, None, camera="stage")
    alarms1 = [e for e in first.seen if isinstance(e, Alarm)]
    assert len(alarms1) == 2 == summary1["alarms"] == _count(wanted, AlarmRecord)
    assert [e.event_id for e in got1] == [e.event_id for e in first.seen], "on_event gets what was stored"
    sightings1 = [e for e in first.seen if isinstance(e, SightingRecorded)]
    assert sightings1 and _count(wanted, Sighting) == len(sightings1)

    second, got2, summary2 = _play(wanted, None, camera="stage")
    alarms2 = [e for e in second.seen if isinstance(e, Alarm)]
    assert [a.event_id for a in alarms2] == [a.event_id for a in alarms1], "deterministic ids"
    assert [e.event_id for e in second.seen if isinstance(e, SightingRecorded)] == [
        e.event_id for e in sightings1
    ]
    assert summary2["alarms"] == 0 and not [e for e in got2 if isinstance(e, Alarm | SightingRecorded)]
    assert second.writer.duplicates == len(alarms2) + len(sightings1) and second.writer.stored == 0
    assert _count(wanted, AlarmRecord) == 2 and _count(wanted, Sighting) == len(sightings1)
    assert _count(wanted, AuditEntry, AuditEntry.action == "alarm") == 2, "no audit entry for a duplicate"
    # Random ids for the events that are not stored.
    assert {e.event_id for e in first.seen if e.type == "sighting_started"}.isdisjoint(
        e.event_id for e in second.seen if e.type == "sighting_started"
    )


def test_every_stored_alarm_has_its_audit_entry_and_the_chain_verifies(wanted: App, clip: Path) -> None:
    _, got, _ = _play(wanted, str(clip), device="pole-17")
    stored = [e for e in got if isinstance(e, Alarm)]
    assert stored and all(a.alarm_id is not None and a.device == "pole-17" for a in stored)
    with wanted.db.session() as s:
        entries = {e.target_id: json.loads(e.detail) for e in s.scalars(select(AuditEntry))}
        for a in stored:
            row = s.get(AlarmRecord, a.alarm_id)
            assert row is not None and row.event_id == a.event_id and row.device_name == "pole-17"
            assert row.crop_sha256 == a.crop_sha256 and wanted.blobs.get(row.crop_sha256) == a.crop_jpeg
            detail = entries[str(a.alarm_id)]
            assert detail["event_id"] == a.event_id and detail["device"] == "pole-17"
            assert detail["crop_sha256"] == a.crop_sha256
    report = audit.verify(wanted)
    assert report.ok and report.entries >= len(stored) + 1, report
    assert [a.device for a in list_alarms(wanted)] == ["pole-17"] * len(stored)


def test_an_alarm_travels_with_its_crop(wanted: App, clip: Path) -> None:
    _, got, _ = _play(wanted, str(clip), max_frames=150)
    alarm = next(e for e in got if isinstance(e, Alarm))
    back = EVENT_ADAPTER.validate_json(alarm.model_dump_json())
    assert back == alarm and isinstance(back, Alarm) and back.crop_jpeg == alarm.crop_jpeg
    assert back.crop_jpeg is not None and back.thumbnail_jpeg is not None
    crop = cv2.imdecode(np.frombuffer(back.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
    thumb = cv2.imdecode(np.frombuffer(back.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and crop.shape[0] > 40 and thumb is not None and thumb.shape[1] <= 480
    assert "crop_jpeg" not in public(alarm) and "thumbnail_jpeg" not in public(alarm)


@pytest.mark.parametrize("asked", [None, ["wanted"]], ids=["all watchlists", "named"])
def test_a_watchlist_deleted_while_the_camera_runs_stops_alarming_without_a_crash(
    wanted: App, clip: Path, asked: list[str] | None
) -> None:
    def delete_early(done: int, total: int | None) -> None:
        if done == 50:  # before his close-up (frames 82 to the end)
            galleries.delete_gallery(wanted, "wanted")

    rec, _, summary = _play(wanted, str(clip), galleries=asked, on_progress=delete_early)
    assert summary["frames"] == 275 and summary["watchlists"] == []
    alarms = [e for e in rec.seen if isinstance(e, Alarm)]
    assert len(alarms) == summary["alarms"] == 1 and alarms[0].frame < 50, "the close-up raises none"


def test_refresh_watchlists_takes_a_new_watchlist_at_once(app: App, people: Path) -> None:
    pipeline = Pipeline(app, "gate")
    try:
        assert pipeline.watchlists.names == []
        watchlist(app, "wanted")
        assert pipeline.watchlists.names == [], "looked up every video_watchlist_refresh_s"
        pipeline.refresh_watchlists()
        assert pipeline.watchlists.names == ["wanted"]
    finally:
        pipeline.finish()


def test_an_attendance_mark_is_stored_once_with_its_audit_entry(wanted: App) -> None:
    with wanted.db.session() as s:
        lin = s.scalar(select(Identity.id))
    assert lin is not None
    mark = AttendanceMarked(
        event_id=event_id_for("attendance", "door", None, lin, "wanted", 12, START, [1.0, 2.0, 3.0, 4.0]),
        camera="door",
        ts=START,
        identity="Lin-Manuel Miranda",
        identity_id=lin,
        gallery="wanted",
        score=0.95,
        threshold=0.9,
        fpir=0.01,
        model=wanted.engine.model_id,
        track_id=1,
        frame=12,
        xyxy=[1.0, 2.0, 3.0, 4.0],
    )
    writer = CatalogWriter(wanted)
    stored = writer.write(mark)
    assert isinstance(stored, AttendanceMarked) and stored.mark_id is not None
    assert writer.write(mark) is None and writer.duplicates == 1
    assert _count(wanted, AttendanceMark) == 1
    with wanted.db.session() as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "attendance_mark"))
        assert entry is not None and entry.actor == "camera:door"
        assert json.loads(entry.detail)["mark_id"] == stored.mark_id
    assert audit.verify(wanted).ok
    status = CameraStatus(camera="door", state="running", restarts=0)
    assert writer.write(status) is status, "other events pass unchanged"


def test_an_alarm_for_a_person_erased_since_the_match_is_refused_and_nothing_is_stored(
    wanted: App,
) -> None:
    box = [1.0, 2.0, 3.0, 4.0]
    late = Alarm(
        event_id=event_id_for("alarm", "pole", None, 999_999, 5, START, box),
        camera="pole",
        ts=START,
        identity="Erased Person",
        identity_id=999_999,
        gallery="wanted",
        score=0.95,
        threshold=0.9,
        fpir=0.01,
        model=wanted.engine.model_id,
        track_id=1,
        frame=5,
        xyxy=box,
        quality=0.5,
        latency_ms=1.0,
        crop_jpeg=b"\xff\xd8 a crop",
    )
    entries = _count(wanted, AuditEntry)
    with pytest.raises(NotFoundError, match="identity 999999 is not in the catalog"):
        CatalogWriter(wanted, device="pole-17").write(late)
    assert _count(wanted, AlarmRecord) == 0 and _count(wanted, AuditEntry) == entries
