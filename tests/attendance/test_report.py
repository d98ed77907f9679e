"""Report rules on catalog rows: local days across time zones and DST, single marks, early leaving,
days off, missing schedules and bad ranges. (The end-to-end day with real video is test_entrance.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from vigil.app import App
from vigil.attendance.report import attendance_report, day_names
from vigil.core.config import Settings
from vigil.core.errors import ConfigError, InputError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, identities
from vigil.storage.tables import AttendanceMark, Gallery

ZONE = "America/New_York"


@pytest.fixture
def ny(tmp_path: Path, engine: Any) -> Iterator[App]:
    a = App(Settings(data_dir=tmp_path / "data", timezone=ZONE), engine_override=engine)
    yield a
    a.close()


def gallery(app: App, name: str, **schedule: Any) -> None:
    galleries.create_gallery(app, galleries.validate_spec(name=name, kind="attendance", **schedule))


def person(app: App, g: str, name: str, consent: date = date(2025, 1, 1)) -> int:
    return enrolment.enroll_prepared(app, g, name, [], consent_on=consent, consent_by="HR").identity_id


def mark(app: App, g: str, identity_id: int, utc: str) -> None:
    with app.db.session() as s:
        gid = s.scalar(select(Gallery.id).where(Gallery.name == g))
        at = datetime.fromisoformat(utc).replace(tzinfo=UTC)
        s.add(
            AttendanceMark(
                identity_id=identity_id,
                gallery_id=gid,
                camera_name="door",
                at=at,
                score=0.9,
                threshold=0.5,
            )
        )


def test_local_days_dst_single_marks_early_leaving_and_days_off(ny: App) -> None:
    gallery(
        ny,
        "staff",
        attendance_start="09:00",
        attendance_end="17:00",
        attendance_days="mon-fri",
        attendance_grace_min=0,
    )
    ann, bob = person(ny, "staff", "Ann"), person(ny, "staff", "Bob")
    # Sunday 9 March 2025, 21:30 EDT (the day DST began) is already Monday in UTC.
    mark(ny, "staff", ann, "2025-03-10T01:30:00")
    # Monday 10 March: Ann 09:05 EDT (late by 5) and 12:00 (left early); Bob once at 08:59 (on time).
    mark(ny, "staff", ann, "2025-03-10T13:05:00")
    mark(ny, "staff", ann, "2025-03-10T16:00:00")
    mark(ny, "staff", bob, "2025-03-10T12:59:00")
    r = attendance_report(ny, "staff", date(2025, 3, 8), date(2025, 3, 11))
    got = [(x.date.isoformat(), x.person, x.status, x.marks, x.late_by_min, x.left_early) for x in r.rows]
    assert got == [
        ("2025-03-09", "Ann", "present", 1, None, False),  # a day off: never late, never absent
        ("2025-03-10", "Ann", "late", 2, 5.0, True),
        ("2025-03-10", "Bob", "present", 1, None, False),
        ("2025-03-11", "Ann", "absent", 0, None, False),
        ("2025-03-11", "Bob", "absent", 0, None, False),
    ]
    sunday, monday = r.rows[0], r.rows[1]
    assert sunday.working_day is False and sunday.first_in is not None
    assert sunday.first_in.isoformat() == "2025-03-09T21:30:00-04:00" and sunday.last_out is None
    assert monday.first_in is not None and monday.first_in.isoformat() == "2025-03-10T09:05:00-04:00"
    assert monday.last_out is not None and monday.last_out.isoformat() == "2025-03-10T12:00:00-04:00"
    assert r.rows[2].last_out is None  # one mark: nobody saw Bob leave
    assert (r.present, r.late, r.absent, r.timezone) == (3, 1, 2, ZONE)


def test_no_schedule_no_lateness_or_absence_and_bad_requests(ny: App) -> None:
    gallery(ny, "plain")
    ann = person(ny, "plain", "Ann")
    mark(ny, "plain", ann, "2025-03-10T20:00:00")
    r = attendance_report(ny, "plain", date(2025, 3, 10), date(2025, 3, 12))
    assert [(x.person, x.status) for x in r.rows] == [("Ann", "present")]
    assert any("late arrivals are not computed" in n for n in r.notes)
    assert any("absences are not computed" in n for n in r.notes)
    with pytest.raises(InputError, match="before it starts"):
        attendance_report(ny, "plain", date(2025, 3, 10), date(2025, 3, 9))
    with pytest.raises(InputError, match="at most 366 days"):
        attendance_report(ny, "plain", date(2025, 1, 1), date(2026, 1, 2))
    galleries.create_gallery(ny, galleries.validate_spec(name="ref", kind="reference"))
    with pytest.raises(InputError, match="not an attendance gallery"):
        attendance_report(ny, "ref", date(2025, 3, 10))


def test_unknown_time_zone_is_a_config_error(tmp_path: Path, engine: Any) -> None:
    a = App(Settings(data_dir=tmp_path / "data", timezone="Mars/Olympus"), engine_override=engine)
    try:
        gallery(a, "staff")
        with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
            attendance_report(a, "staff", date(2025, 3, 10))
    finally:
        a.close()


def test_consent_on_or_after_the_day_is_never_an_absence(ny: App) -> None:
    gallery(ny, "staff", attendance_start="09:00", attendance_days="mon-sun")
    person(ny, "staff", "Early", consent=date(2025, 3, 9))
    person(ny, "staff", "Same day", consent=date(2025, 3, 10))
    r = attendance_report(ny, "staff", date(2025, 3, 10), date(2025, 3, 10) + timedelta(days=1))
    assert [(x.date.day, x.person) for x in r.rows] == [(10, "Early"), (11, "Early"), (11, "Same day")]


def test_day_names_for_display() -> None:
    assert day_names("mon,tue,wed,thu,fri") == "mon-fri"
    assert day_names("mon,wed,fri,sat") == "mon,wed,fri,sat"
    assert day_names(None) == "-"


def test_erasure_and_removal_delete_the_marks(ny: App) -> None:
    from sqlalchemy import func

    from vigil.governance.erasure import erase_identity

    gallery(ny, "staff", attendance_start="09:00", attendance_days="mon-fri")
    ann, bob = person(ny, "staff", "Ann"), person(ny, "staff", "Bob")
    for who in (ann, bob):
        mark(ny, "staff", who, "2025-03-10T13:05:00")
    erase_identity(ny, ann, "cli:test", reason="consent withdrawn")
    identities.remove_identity(ny, "staff", "Bob")
    with ny.db.session() as s:
        assert s.scalar(select(func.count(AttendanceMark.id))) == 0


def test_marks_are_purged_after_the_gallery_retention(ny: App) -> None:
    from sqlalchemy import func

    from vigil.governance import retention
    from vigil.storage import audit

    gallery(ny, "staff", retention_days=30)
    gallery(ny, "keep-all")
    ann, bob = person(ny, "staff", "Ann"), person(ny, "keep-all", "Bob")
    for day in ("2025-03-01", "2025-03-20"):
        mark(ny, "staff", ann, f"{day}T13:05:00")
        mark(ny, "keep-all", bob, f"{day}T13:05:00")
    report = retention.purge(ny, now=datetime(2025, 4, 10, tzinfo=UTC))  # 30 days back: 2025-03-11
    assert report.attendance_marks == 1
    with ny.db.session() as s:
        left = s.execute(
            select(Gallery.name, func.date(AttendanceMark.at))
            .join(Gallery, Gallery.id == AttendanceMark.gallery_id)
            .order_by(Gallery.name, AttendanceMark.at)
        ).all()
    assert [tuple(r) for r in left] == [
        ("keep-all", "2025-03-01"),
        ("keep-all", "2025-03-20"),
        ("staff", "2025-03-20"),
    ]
    assert audit.entries(ny, action="purge")[-1].detail["attendance_marks"] == 1
