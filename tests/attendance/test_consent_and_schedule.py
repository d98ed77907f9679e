"""Attendance galleries: the schedule (creation, update, refusals) and consent at enrolment."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from vigil.app import App
from vigil.core.errors import ForbiddenError, InputError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, identities
from vigil.gallery.schedule import parse_days, parse_hhmm
from vigil.storage.tables import Identity, Photo, Template
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs


@pytest.mark.parametrize(
    ("text", "expected", "error"),
    [
        ("mon-fri", "mon,tue,wed,thu,fri", None),
        ("sat,sun", "sat,sun", None),
        ("fri-mon", "mon,fri,sat,sun", None),
        ("Monday, wed", "mon,wed", None),
        ("mon,mon-tue", "mon,tue", None),
        ("", None, "names no working day"),
        ("mon-xyz", None, "'xyz' is not a day"),
        ("weekdays", None, "is not a day"),
    ],
)
def test_parse_days(text: str, expected: str | None, error: str | None) -> None:
    if error:
        with pytest.raises(ValueError, match=error):
            parse_days(text)
    else:
        assert parse_days(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "error"),
    [
        ("9:05", "09:05", None),
        ("17:00", "17:00", None),
        ("24:00", None, "00:00 to 23:59"),
        ("9h", None, "HH:MM"),
    ],
)
def test_parse_hhmm(text: str, expected: str | None, error: str | None) -> None:
    if error:
        with pytest.raises(ValueError, match=error):
            parse_hhmm(text)
    else:
        assert parse_hhmm(text) == expected


FUTURE = date.today() + timedelta(days=30)
WATCH = {"legal_basis": "court order", "authorized_by": "Judge", "expires_on": FUTURE, "purpose": "p"}


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "attendance", "attendance_start": "9:00", "attendance_days": "mon-fri"}, None),
        ({"kind": "attendance", "attendance_start": "25:00"}, "attendance_start: .*not a time of day"),
        ({"kind": "attendance", "attendance_start": "17:00", "attendance_end": "09:00"}, "over midnight"),
        ({"kind": "attendance", "attendance_days": "someday"}, "attendance_days: .*is not a day"),
        ({"kind": "attendance", "attendance_grace_min": -1}, "attendance_grace_min"),
        ({"kind": "watchlist", **WATCH, "attendance_start": "09:00"}, "only for attendance galleries"),
        ({"kind": "reference", "attendance_grace_min": 5}, "only for attendance galleries"),
    ],
)
def test_schedule_validation(fields: dict[str, Any], error: str | None) -> None:
    if error:
        with pytest.raises(InputError, match=error):
            galleries.validate_spec(name="g", **fields)
    else:
        spec = galleries.validate_spec(name="g", **fields)
        assert (spec.attendance_start, spec.attendance_days) == ("09:00", "mon,tue,wed,thu,fri")


def test_cli_schedule_at_creation_and_by_update(run) -> None:  # type: ignore[no-untyped-def]
    args = ["gallery", "create", "staff", "--kind", "attendance", "--start", "09:00", "--end", "17:00"]
    out, _ = run(*args, "--days", "mon-fri", "--grace", "10", "--json")
    info = json.loads(out)
    assert (info["attendance_start"], info["attendance_end"]) == ("09:00", "17:00")
    assert (info["attendance_days"], info["attendance_grace_min"]) == ("mon,tue,wed,thu,fri", 10)
    out, _ = run("gallery", "update", "staff", "--start", "8:30", "--days", "mon-sat", "--json")
    info = json.loads(out)
    assert (info["attendance_start"], info["attendance_end"]) == ("08:30", "17:00")
    assert info["attendance_days"] == "mon,tue,wed,thu,fri,sat" and info["attendance_grace_min"] == 10
    _, err = run("gallery", "update", "staff", "--end", "08:00", code=3)
    assert "not after the start" in err
    run("gallery", "create", "ref", "--kind", "reference", "--start", "09:00", code=3)
    out, _ = run("audit", "export", "--action", "gallery_update")
    entry = json.loads(out.splitlines()[-1])
    assert entry["detail"]["before"]["attendance_start"] == "09:00"
    assert entry["detail"]["after"]["attendance_start"] == "08:30"


@pytest.fixture
def staff(app: App) -> App:
    spec = galleries.validate_spec(name="staff", kind="attendance", attendance_start="09:00")
    galleries.create_gallery(app, spec)
    return app


def counts(app: App) -> tuple[int, int, int]:
    with app.db.session() as s:
        return (
            s.scalar(select(func.count(Identity.id))) or 0,
            s.scalar(select(func.count(Photo.id))) or 0,
            s.scalar(select(func.count(Template.id))) or 0,
        )


def test_enrolment_without_consent_is_refused_and_stores_nothing(staff: App, people: Path) -> None:
    photo = load_image(people / "obama.jpg")
    for consent_on, consent_by, missing in (
        (None, None, "consent date, who recorded it"),
        (date(2025, 3, 1), None, "who recorded it"),
        (date(2025, 3, 1), "  ", "who recorded it"),
        (None, "HR", "consent date"),
    ):
        with pytest.raises(
            ForbiddenError, match=f"enrols only people who consented; missing: {missing} \\("
        ) as exc:
            enrolment.enroll(
                staff, "staff", "Barack Obama", [photo], consent_on=consent_on, consent_by=consent_by
            )
        assert exc.value.hint is not None and "--consent-on" in exc.value.hint
    with pytest.raises(ForbiddenError, match="consented"):
        enrolment.enroll_prepared(staff, "staff", "Barack Obama", [])  # the CompreFace path too
    with pytest.raises(InputError, match="in the future"):
        enrolment.enroll(
            staff,
            "staff",
            "Barack Obama",
            [photo],
            consent_on=date.today() + timedelta(days=1),
            consent_by="HR",
        )
    assert counts(staff) == (0, 0, 0)
    assert not any(p.is_file() for p in staff.settings.blob_dir.rglob("*"))

    result = enrolment.enroll(
        staff, "staff", "Barack Obama", [photo], consent_on=date(2025, 3, 1), consent_by=" HR, J. Doe "
    )
    assert (result.consent_on, result.consent_by) == (date(2025, 3, 1), "HR, J. Doe")
    # More photos of a person whose consent is on record need no new consent.
    more = enrolment.enroll(staff, "staff", "Barack Obama", [load_image(people / "obama2.jpg")])
    assert more.consent_on == date(2025, 3, 1) and not more.created
    (info,) = identities.list_identities(staff, "staff")
    assert (info.consent_on, info.consent_by, info.templates) == (date(2025, 3, 1), "HR, J. Doe", 2)


def test_consent_is_only_for_attendance_galleries(app: App, people: Path) -> None:
    galleries.create_gallery(app, galleries.validate_spec(name="ref", kind="reference"))
    with pytest.raises(InputError, match="only for attendance galleries"):
        enrolment.enroll(
            app,
            "ref",
            "Barack Obama",
            [load_image(people / "obama.jpg")],
            consent_on=date(2025, 3, 1),
            consent_by="x",
        )
    assert counts(app) == (0, 0, 0)


def test_cli_enrol_needs_consent(run, people: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "attendance", "--start", "09:00", "--days", "mon-fri")
    _, err = run("enroll", "Barack Obama", str(people / "obama.jpg"), "--gallery", "staff", code=7)
    assert "enrols only people who consented" in err and "--consent-on" in err
    _, err = run(
        "enroll", "Barack Obama", str(people / "obama.jpg"), "-g", "staff", "--consent-on", "1 March", code=3
    )
    assert "YYYY-MM-DD" in err
    out, _ = run("people", "list", "--json")
    assert json.loads(out) == []
    out, _ = run(
        "enroll",
        "Barack Obama",
        str(people / "obama.jpg"),
        "-g",
        "staff",
        "--consent-on",
        "2025-03-01",
        "--consent-by",
        "HR",
        "--json",
    )
    assert json.loads(out)["consent_on"] == "2025-03-01"
    out, _ = run("audit", "export", "--action", "enrol")
    assert json.loads(out.splitlines()[-1])["detail"]["consent_by"] == "HR"
    folder = tmp_path / "bulk" / "Joe Biden"
    folder.mkdir(parents=True)
    (folder / "biden.jpg").write_bytes((people / "biden.jpg").read_bytes())
    _, err = run("enroll-dir", str(tmp_path / "bulk"), "--gallery", "staff", code=7)
    assert "consented" in err
