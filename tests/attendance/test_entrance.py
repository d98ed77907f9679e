"""A day at the entrance, end to end with real video and models: marks, no alarms, the report, the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from attendance_day import DAY, ZONE, A, B, D, E, EntranceDay, comparable, independent, local
from sqlalchemy import select

from vigil.attendance.report import CSV_COLUMNS, attendance_report, to_csv
from vigil.events.schemas import Alarm
from vigil.storage import audit
from vigil.storage.tables import AlarmRecord, AttendanceMark, Identity

pytestmark = pytest.mark.slow


def test_entrance_marks_in_and_out_and_never_an_alarm(entrance_day: EntranceDay) -> None:
    app = entrance_day.app
    assert [s["attendance"] for s in entrance_day.summaries] == [["staff"], [], ["staff"], ["staff"]]
    assert not [e for e in entrance_day.events if isinstance(e, Alarm)]
    assert all(s["alarms"] == 0 for s in entrance_day.summaries)
    with app.db.session() as s:
        assert s.scalar(select(AlarmRecord.id)) is None
        marks = s.execute(
            select(Identity.name, AttendanceMark).join(Identity).order_by(AttendanceMark.at)
        ).all()
        got = [(name, m.camera_name, m.at.replace(tzinfo=UTC)) for name, m in marks]
        for _, m in marks:
            assert m.score >= m.threshold > 0 and m.track_id is not None
    # One mark per track and person: A in the morning and evening, B late; C (enrolled nowhere) and D
    # (never came) have none; the corridor camera is not an entrance.
    assert [(n, cam) for n, cam, _ in got] == [
        (A[0], "front-door"),
        (B[0], "front-door"),
        (A[0], "front-door"),
    ]
    for (_, _, at), clip_start in zip(got, ("08:55", "09:20", "17:05"), strict=True):
        assert local(clip_start) <= at <= local(clip_start) + timedelta(seconds=3)
    assert sum(s["attendance_marks"] for s in entrance_day.summaries) == 3
    entries = audit.entries(app, action="attendance_mark")
    assert [e.target_name for e in entries] == [A[0], B[0], A[0]]
    assert entries[0].actor == "camera:front-door" and entries[0].detail["gallery"] == "staff"
    assert not audit.entries(app, action="alarm")
    assert audit.verify(app).ok


def test_report_on_time_late_absent_and_consent_rule(entrance_day: EntranceDay) -> None:
    r = attendance_report(entrance_day.app, "staff", DAY)
    assert r.timezone == ZONE and r.date_from == r.date_until == DAY
    rows = {row.person: row for row in r.rows}
    # C is not enrolled and E consented on the day itself: neither is in the report.
    assert set(rows) == {A[0], B[0], D[0]}
    a, b, d = rows[A[0]], rows[B[0]], rows[D[0]]
    assert a.status == "present" and a.marks == 2 and not a.left_early
    assert a.first_in is not None and a.first_in.strftime("%H:%M") == "08:55"
    assert a.last_out is not None and a.last_out.strftime("%H:%M") == "17:05"
    assert a.first_in.utcoffset() == timedelta(hours=1)  # local time, Paris in winter
    assert b.status == "late" and b.last_out is None and b.late_by_min is not None
    assert 20 <= b.late_by_min <= 20.1
    assert d.status == "absent" and d.first_in is None and d.marks == 0
    assert (r.present, r.late, r.absent) == (2, 1, 1)


def test_report_range_csv_and_json_equal_an_independent_computation(
    entrance_day: EntranceDay, tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from vigil.cli import cli

    until = DAY + timedelta(days=6)  # Tuesday to Friday: everyone absent; the weekend does not count
    expected = independent(entrance_day.app, "staff", DAY, until)
    assert [r["person"] for r in expected if r["date"] == (DAY + timedelta(days=1)).isoformat()] == sorted(
        [A[0], B[0], D[0], E[0]], key=str.casefold
    )
    assert not [r for r in expected if r["date"] >= (DAY + timedelta(days=5)).isoformat()]

    report = attendance_report(entrance_day.app, "staff", DAY, until)
    parsed = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert comparable(parsed) == expected

    runner = CliRunner()
    base = ["--data-dir", str(entrance_day.data_dir), "attendance", "report", "--gallery", "staff"]
    dates = ["--date", DAY.isoformat(), "--until", until.isoformat()]
    env = {"VIGIL_TIMEZONE": ZONE}
    out_csv = tmp_path / "staff.csv"
    result = runner.invoke(cli, [*base, *dates, "--csv", str(out_csv)], env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    with out_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        assert comparable(list(reader)) == expected

    result = runner.invoke(cli, [*base, *dates, "--json"], env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data = json.loads(result.stdout)
    assert data["gallery"] == "staff" and data["timezone"] == ZONE
    as_csv_strings = [
        {
            "date": r["date"],
            "person": r["person"],
            "status": r["status"],
            "first_in": datetime.fromisoformat(r["first_in"]).isoformat(timespec="seconds")
            if r["first_in"]
            else "",
            "last_out": datetime.fromisoformat(r["last_out"]).isoformat(timespec="seconds")
            if r["last_out"]
            else "",
            "marks": str(r["marks"]),
            "late_by_min": "" if r["late_by_min"] is None else f"{r['late_by_min']:g}",
            "left_early": "yes" if r["left_early"] else "no",
        }
        for r in data["rows"]
    ]
    assert as_csv_strings == expected
    assert data["absent"] == sum(r["status"] == "absent" for r in expected)

    result = runner.invoke(cli, [*base, "--date", DAY.isoformat()], env=env)
    assert result.exit_code == 0 and "late" in result.stdout and "review" in result.stdout
    reports = audit.entries(entrance_day.app, action="attendance_report")
    assert reports and reports[-1].target_name == "staff"

    result = runner.invoke(cli, [*base, "--date", "03/03/2025"], env=env)
    assert result.exit_code == 3 and "YYYY-MM-DD" in result.stderr
    result = runner.invoke(cli, [*base[:-1], "wanted", "--date", DAY.isoformat()], env=env)
    assert result.exit_code == 3 and "not an attendance gallery" in result.stderr
