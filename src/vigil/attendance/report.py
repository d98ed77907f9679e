"""Attendance reports: per person and day, the first mark (in) and the last (out), late arrivals and
absences, for one attendance gallery over a date or a range of dates; JSON and CSV.

Days are local days in the ``timezone`` setting; marks are stored in UTC. Rules:

- present: the person has marks that day; ``first_in`` is the first, ``last_out`` the last (none when
  there is only one mark: nobody saw them leave).
- late: on a working day, the first mark is after the start plus the grace minutes.
- left_early: on a working day, the last of two or more marks is before the end.
- absent: a working day without a mark, only for people whose consent was recorded before that day.

A mark is a face recognition result, not proof of presence: an absence may be a missed face, a
presence a false match. Each row is a prompt for review, never a sanction by itself.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import select

from vigil.app import App
from vigil.core.errors import InputError
from vigil.gallery.galleries import get_gallery
from vigil.gallery.schedule import DAYS, Schedule, local_zone
from vigil.storage import audit
from vigil.storage.tables import AttendanceMark, GalleryKind, Identity

MAX_DAYS = 366
"""The longest range one report covers."""

Status = Literal["present", "late", "absent"]

CSV_COLUMNS = (
    "date",
    "person",
    "identity_id",
    "external_id",
    "status",
    "working_day",
    "first_in",
    "last_out",
    "marks",
    "late_by_min",
    "left_early",
)


class PersonDay(BaseModel):
    """One person on one day; times are local, ISO 8601 with their UTC offset."""

    date: date
    person: str
    identity_id: int
    external_id: str | None
    status: Status
    working_day: bool
    first_in: datetime | None
    last_out: datetime | None
    marks: int
    late_by_min: float | None
    """Minutes after the start (not after the grace) of a late arrival."""
    left_early: bool


class ScheduleInfo(BaseModel):
    start: str | None
    end: str | None
    days: str | None
    grace_min: int | None


class AttendanceReport(BaseModel):
    gallery: str
    timezone: str
    date_from: date
    date_until: date
    schedule: ScheduleInfo
    rows: list[PersonDay]
    present: int
    late: int
    absent: int
    notes: list[str]


def _day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return datetime.combine(day, time(0), zone), datetime.combine(day + timedelta(days=1), time(0), zone)


def attendance_report(
    app: App,
    gallery_name: str,
    date_from: date,
    date_until: date | None = None,
    *,
    actor: str = audit.SYSTEM,
    fmt: str = "json",
) -> AttendanceReport:
    """The report of an attendance gallery from ``date_from`` to ``date_until`` (inclusive; default:
    the one day), in the local time zone of the settings. Audited (``attendance_report``: the range,
    the ``fmt`` it is given out in (json, csv, table) and its counts)."""
    r = _report(app, gallery_name, date_from, date_until)
    audit.record(
        app,
        actor,
        "attendance_report",
        target_type="gallery",
        target_name=r.gallery,
        date_from=r.date_from.isoformat(),
        date_until=r.date_until.isoformat(),
        format=fmt,
        rows=len(r.rows),
        late=r.late,
        absent=r.absent,
    )
    return r


def _report(app: App, gallery_name: str, date_from: date, date_until: date | None) -> AttendanceReport:
    until = date_until or date_from
    if until < date_from:
        raise InputError(f"the range ends ({until}) before it starts ({date_from})")
    if (until - date_from).days + 1 > MAX_DAYS:
        raise InputError(f"a report covers at most {MAX_DAYS} days", hint="split the range")
    zone = local_zone(app.settings)
    lo, hi = _naive_utc(_day_bounds(date_from, zone)[0]), _naive_utc(_day_bounds(until, zone)[1])
    with app.db.session() as s:
        gallery = get_gallery(s, gallery_name)
        if gallery.kind is not GalleryKind.attendance:
            raise InputError(
                f"{gallery.name!r} is a {gallery.kind.value} gallery, not an attendance gallery",
                hint="see `vigil gallery list`",
            )
        info = ScheduleInfo(
            start=gallery.attendance_start,
            end=gallery.attendance_end,
            days=gallery.attendance_days,
            grace_min=gallery.attendance_grace_min,
        )
        people = list(s.scalars(select(Identity).where(Identity.gallery_id == gallery.id)))
        marks = s.execute(
            select(AttendanceMark.identity_id, AttendanceMark.at)
            .where(AttendanceMark.gallery_id == gallery.id, AttendanceMark.at >= lo, AttendanceMark.at < hi)
            .order_by(AttendanceMark.at)
        ).all()
        name = gallery.name
    schedule = Schedule.of(info.start, info.end, info.days, info.grace_min)
    seen: dict[tuple[int, date], list[datetime]] = {}
    for identity_id, at in marks:
        local = _aware(at).astimezone(zone)
        seen.setdefault((identity_id, local.date()), []).append(local)
    rows: list[PersonDay] = []
    day = date_from
    while day <= until:
        for person in people:
            row = _person_day(person, day, seen.get((person.id, day), []), schedule, zone)
            if row is not None:
                rows.append(row)
        day += timedelta(days=1)
    rows.sort(key=lambda r: (r.date, r.person.casefold(), r.identity_id))
    return AttendanceReport(
        gallery=name,
        timezone=str(zone.key),
        date_from=date_from,
        date_until=until,
        schedule=info,
        rows=rows,
        present=sum(r.status != "absent" for r in rows),
        late=sum(r.status == "late" for r in rows),
        absent=sum(r.status == "absent" for r in rows),
        notes=_notes(schedule),
    )


def _aware(at: datetime) -> datetime:
    """SQLite returns naive datetimes: they are UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def _person_day(
    person: Identity, day: date, seen: list[datetime], schedule: Schedule, zone: ZoneInfo
) -> PersonDay | None:
    working = schedule.is_working_day(day)
    if not seen:
        consented_before = person.consent_on is not None and person.consent_on < day
        if not (working and consented_before):
            return None
        return PersonDay(
            date=day,
            person=person.name,
            identity_id=person.id,
            external_id=person.external_id,
            status="absent",
            working_day=True,
            first_in=None,
            last_out=None,
            marks=0,
            late_by_min=None,
            left_early=False,
        )
    first, last = min(seen), max(seen)
    status: Status = "present"
    late_by = None
    late_after = schedule.late_after(day, zone)
    if working and late_after is not None and first > late_after:
        status = "late"
        start = late_after - timedelta(minutes=schedule.grace_min)
        late_by = round((first - start).total_seconds() / 60, 1)
    end = schedule.end_at(day, zone)
    out = last if len(seen) > 1 else None
    return PersonDay(
        date=day,
        person=person.name,
        identity_id=person.id,
        external_id=person.external_id,
        status=status,
        working_day=working,
        first_in=first,
        last_out=out,
        marks=len(seen),
        late_by_min=late_by,
        left_early=working and out is not None and end is not None and out < end,
    )


def _notes(schedule: Schedule) -> list[str]:
    notes = []
    if schedule.start is None:
        notes.append("no start time set: late arrivals are not computed")
    if not schedule.days:
        notes.append("no working days set: absences are not computed")
    notes.append(
        "marks are face recognition results at the stated false-positive identification rate: "
        "review a row before acting on it"
    )
    return notes


def to_csv(report: AttendanceReport) -> str:
    """The report's rows as CSV (header first; times local ISO 8601 with offset; empty for none)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report.rows:
        writer.writerow(
            [
                r.date.isoformat(),
                r.person,
                r.identity_id,
                r.external_id or "",
                r.status,
                "yes" if r.working_day else "no",
                r.first_in.isoformat(timespec="seconds") if r.first_in else "",
                r.last_out.isoformat(timespec="seconds") if r.last_out else "",
                r.marks,
                "" if r.late_by_min is None else f"{r.late_by_min:g}",
                "yes" if r.left_early else "no",
            ]
        )
    return buf.getvalue()


def day_names(days: str | None) -> str:
    """``mon,tue,wed,thu,fri`` -> ``mon-fri`` for display (a run of 3 or more days as a range)."""
    if not days:
        return "-"
    idx = [DAYS.index(d) for d in days.split(",")]
    parts, run = [], [idx[0]]
    for i in idx[1:]:
        if i == run[-1] + 1:
            run.append(i)
        else:
            parts.append(run)
            run = [i]
    parts.append(run)
    return ",".join(
        f"{DAYS[r[0]]}-{DAYS[r[-1]]}" if len(r) >= 3 else ",".join(DAYS[i] for i in r) for r in parts
    )
