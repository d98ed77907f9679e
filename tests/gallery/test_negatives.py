"""Reviews that teach (issue 17.1): dismissing as "not this person" keeps a negative example that
suppresses later alarms for a look-alike, never for the person; undo; retention; bad input.
Real models, real LFW photos (see tests/negatives_seed.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from negatives_seed import LOOKALIKE, PERSON, enrol_person, frame_of, photo_alarm, photos, store
from vigil import accounts
from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.events.schemas import Alarm, AnyEvent, SightingRecorded
from vigil.fleet import devices
from vigil.fleet.central import CentralMatcher
from vigil.gallery import galleries, negatives
from vigil.governance import retention
from vigil.storage.tables import AlarmNegative, AlarmRecord, AlarmState, AuditEntry, ReviewAction, Role
from vigil.video import alarms as svc
from vigil.video import cameras
from vigil.video.sinks import CatalogWriter

pytestmark = pytest.mark.catalogs


def _reviewer(app: App, name: str = "rev") -> accounts.Principal:
    accounts.add_user(app, name, Role.operator, by="test")
    return accounts.user_principal(app, name)


def _stored(app: App, path: Path, index: int) -> int:
    alarm = photo_alarm(app, path, index)
    assert alarm is not None, f"{path.name} did not alarm"
    store(app, alarm)
    with app.db.session() as s:
        return s.scalar(select(AlarmRecord.id).where(AlarmRecord.event_id == alarm.event_id))  # type: ignore[return-value]


def _dismiss(app: App, alarm_id: int, by: accounts.Principal) -> svc.AlarmDetail:
    return svc.review_alarm(
        app,
        alarm_id,
        ReviewAction.dismiss,
        by,
        expected_version=0,
        reason="someone else",
        not_this_person=True,
    )


def _actions(app: App) -> list[str]:
    with app.db.session() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_a_dismissal_suppresses_the_lookalike_not_the_person(app: App, shared_data: Path) -> None:
    enrol_person(app, shared_data)
    jolie, lopez = photos(shared_data, LOOKALIKE), photos(shared_data, PERSON)
    first = photo_alarm(app, jolie[0], 0)
    assert first is not None and first.suppressed_by is None  # a false alarm: she is not on the list
    passed, _ = store(app, first)
    assert isinstance(passed, Alarm) and passed.alarm_id is not None
    first_id = passed.alarm_id
    by = _reviewer(app)
    detail = _dismiss(app, first_id, by)
    assert detail.state is AlarmState.dismissed and detail.negative is not None
    neg = detail.negative
    assert (neg.alarm_id, neg.created_by, neg.uses, neg.undone_at) == (first_id, "user:rev", 0, None)
    assert _actions(app)[-2:] == ["negative_kept", "alarm_review"]

    # The template kept is the alarm's face embedded again from its crop: it scores the person as the
    # pipeline's own template did, to within a few thousandths.
    with app.db.session() as s:
        row = s.get(AlarmNegative, neg.id)
        assert row is not None and row.dimension == 128
        kept = np.frombuffer(row.vector, "<f4")
    assert abs(float(np.linalg.norm(kept)) - 1.0) < 1e-4
    again = negatives.suppressing(app, first.identity_id, first.model, kept, first.score - 0.02)
    assert again == [neg.id]

    # Her other photos are nearer to the dismissed face than to Lopez: stored suppressed, passed on to
    # no one, each use counted and audited.
    suppressed = 0
    for i, path in enumerate(jolie[1:4], start=1):
        alarm = photo_alarm(app, path, i)
        assert alarm is not None and alarm.suppressed_by == [neg.id], path.name
        passed, writer = store(app, alarm)
        assert passed is None and writer.suppressed == 1 and writer.duplicates == 0
        suppressed += 1
    with app.db.session() as s:
        rows = list(s.scalars(select(AlarmRecord).where(AlarmRecord.state == AlarmState.suppressed)))
        assert len(rows) == suppressed and all(r.suppressed_by == f"[{neg.id}]" for r in rows)
        assert s.get(AlarmNegative, neg.id).uses == suppressed  # type: ignore[union-attr]
    assert _actions(app).count("alarm_suppressed") == suppressed
    listed = svc.list_alarms(app, state=AlarmState.suppressed)
    assert len(listed) == suppressed and listed[0].suppressed_by == [neg.id]
    shown = svc.alarm_detail(app, listed[0].id)
    assert [(n.id, n.alarm_id) for n in shown.suppressions] == [(neg.id, first_id)]
    with pytest.raises(ConflictError, match="only a pending alarm"):  # nobody reviews a suppressed one
        svc.review_alarm(app, listed[0].id, ReviewAction.confirm, by, expected_version=0)

    # Negatives only remove alarms: Lopez's own photos (not enrolled ones) still alarm, unsuppressed.
    for i, path in enumerate(lopez[2:6], start=10):
        alarm = photo_alarm(app, path, i)
        assert alarm is not None and alarm.suppressed_by is None, path.name


def test_undo_stops_a_negative_and_is_audited(app: App, shared_data: Path) -> None:
    enrol_person(app, shared_data)
    jolie = photos(shared_data, LOOKALIKE)
    by = _reviewer(app)
    neg = _dismiss(app, _stored(app, jolie[0], 0), by).negative
    assert neg is not None
    assert photo_alarm(app, jolie[1], 1).suppressed_by == [neg.id]  # type: ignore[union-attr]
    undone = negatives.undo_negative(app, neg.id, "user:rev")
    assert undone.undone_by == "user:rev" and undone.undone_at is not None
    assert _actions(app)[-1] == "negative_undone"
    again = photo_alarm(app, jolie[1], 1)
    assert again is not None and again.suppressed_by is None  # it alarms again
    with pytest.raises(ConflictError, match="undone already"):
        negatives.undo_negative(app, neg.id, "user:rev")
    with pytest.raises(NotFoundError, match="no negative example with id 999"):
        negatives.undo_negative(app, 999, "user:rev")


def test_bad_requests_change_nothing(app: App, shared_data: Path) -> None:
    enrol_person(app, shared_data)
    jolie = photos(shared_data, LOOKALIKE)
    by = _reviewer(app)
    alarm_id = _stored(app, jolie[0], 0)
    with pytest.raises(InputError, match="goes with a dismissal"):
        svc.review_alarm(app, alarm_id, ReviewAction.confirm, by, expected_version=0, not_this_person=True)
    # An alarm whose crop is gone (or never was: a device sent none) has no face to keep.
    with app.db.session() as s:
        row = s.get(AlarmRecord, alarm_id)
        assert row is not None
        crop, row.crop_sha256 = row.crop_sha256, None
    with pytest.raises(InputError, match="no readable face crop"):
        _dismiss(app, alarm_id, by)
    with app.db.session() as s:
        row = s.get(AlarmRecord, alarm_id)
        assert row is not None and row.state is AlarmState.pending and row.version == 0
        row.crop_sha256 = crop
    with pytest.raises(NotFoundError, match="no alarm with id 12345"):
        _dismiss(app, 12345, by)
    orphan = _stored(app, jolie[3], 3)  # its person deleted since (or a stranger alarm): nobody to teach
    with app.db.session() as s:
        row = s.get(AlarmRecord, orphan)
        assert row is not None
        row.identity_id = None
    with pytest.raises(InputError, match="names no person on a watchlist"):
        _dismiss(app, orphan, by)
    detail = _dismiss(app, alarm_id, by)
    with pytest.raises(ConflictError):  # dismissed already: no second negative
        svc.review_alarm(
            app,
            alarm_id,
            ReviewAction.dismiss,
            by,
            expected_version=detail.version,
            reason="x",
            not_this_person=True,
        )
    # An event that names negatives that are not this identity's (made up, or purged) is raised.
    made_up = photo_alarm(app, jolie[2], 2)
    assert made_up is not None
    forged = made_up.model_copy(update={"suppressed_by": [424242], "event_id": "forged-1"})
    passed, writer = store(app, forged)
    assert isinstance(passed, Alarm) and passed.suppressed_by is None and writer.suppressed == 0
    with app.db.session() as s:
        assert s.scalar(select(AlarmRecord.state).where(AlarmRecord.event_id == "forged-1")) == "pending"


def test_negatives_go_with_their_alarm_at_retention(app: App, shared_data: Path) -> None:
    enrol_person(app, shared_data)
    jolie = photos(shared_data, LOOKALIKE)
    by = _reviewer(app)
    neg = _dismiss(app, _stored(app, jolie[0], 0), by).negative
    assert neg is not None
    galleries.update_gallery(app, "wanted", {"retention_days": 30}, actor="test")
    if app.db.engine.dialect.name == "sqlite":  # the cascade needs the pragma there (PostgreSQL: always on)
        with app.db.session() as s:
            assert s.connection().exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # The photo alarms are dated 2026-12-01: 400 days on, they are past the 30 days' retention.
    report = retention.purge(app, now=datetime.now(UTC) + timedelta(days=400))
    assert report.alarms == 1
    with app.db.session() as s:
        assert s.scalar(select(AlarmNegative.id)) is None  # purged with the alarm it came from
    again = photo_alarm(app, jolie[1], 1)
    assert again is not None and again.suppressed_by is None


def test_an_edge_devices_alarm_is_screened_when_it_arrives(app: App, shared_data: Path) -> None:
    """A device matches on its own mirror, which holds no negatives: the server screens its alarm on
    arrival, from the crop the alarm carries."""
    enrol_person(app, shared_data)
    jolie, lopez = photos(shared_data, LOOKALIKE), photos(shared_data, PERSON)
    from_device = photo_alarm(app, jolie[1], 1)  # raised before anyone dismissed anything
    person = photo_alarm(app, lopez[3], 3)
    assert from_device is not None and from_device.suppressed_by is None and person is not None
    neg = _dismiss(app, _stored(app, jolie[0], 0), _reviewer(app)).negative
    assert neg is not None
    writer = CatalogWriter(app, device="pole-1")
    assert writer.write(from_device) is None and writer.suppressed == 1
    passed = writer.write(person)  # the person's own alarm from the device stands
    assert isinstance(passed, Alarm) and passed.suppressed_by is None
    with app.db.session() as s:
        rows = dict(
            s.execute(
                select(AlarmRecord.event_id, AlarmRecord.state).where(AlarmRecord.device_name == "pole-1")
            ).all()
        )
    assert rows == {from_device.event_id: AlarmState.suppressed, person.event_id: AlarmState.pending}


def test_central_matching_applies_the_negatives(app: App, shared_data: Path) -> None:
    """A device that keeps no templates sends sightings; the server matches them and screens them."""
    enrol_person(app, shared_data)
    devices.add_device(app, "pole-c", site="market", actor="test", keeps_templates=False)
    camera_id = cameras.add_camera(app, "cam-c", "/media/c.mp4", device="pole-c").id
    jolie, lopez = photos(shared_data, LOOKALIKE), photos(shared_data, PERSON)
    assert _dismiss(app, _stored(app, jolie[0], 0), _reviewer(app)).negative is not None

    def sighting(path: Path, n: int) -> SightingRecorded:
        faces = app.engine.analyze(frame_of(path, n).bgr)
        assert faces.embedding is not None
        now = datetime.now(UTC)
        return SightingRecorded(
            camera="cam-c", ts=now, event_id=f"sighting-{n}", camera_id=camera_id, track_id=n,
            first_frame=n, first_seen=now, last_seen=now, frames=10, quality=0.9, model=app.engine.model_id,
            embedding=faces.embedding[0].astype("<f4").tobytes(), crop_jpeg=path.read_bytes(),
        )  # fmt: skip

    seen: list[AnyEvent] = []
    matcher = CentralMatcher(app, seen.append)
    writer = CatalogWriter(app, device="pole-c")
    for n, path in ((1, jolie[1]), (2, lopez[3])):
        stored = writer.write(sighting(path, n))
        assert stored is not None
        matcher(stored)
    assert [e.identity for e in seen if isinstance(e, Alarm)] == ["Jennifer Lopez"]  # hers only
    assert matcher.alarms == 1
    with app.db.session() as s:
        states = list(s.scalars(select(AlarmRecord.state).where(AlarmRecord.device_name == "pole-c")))
    assert sorted(states) == [AlarmState.pending, AlarmState.suppressed]
