"""The attendance API on a real `vigil serve`: the report (JSON, CSV, roles, audit), schedules and consent."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from attendance_day import DAY, TESTS, ZONE, A, B, D, EntranceDay, comparable, independent, load_helper

from vigil.storage import audit

pytestmark = pytest.mark.slow

harness = load_helper("harness", TESTS / "server" / "harness.py")


@pytest.fixture(scope="module")
def server(entrance_day: EntranceDay) -> Iterator[Any]:
    """`vigil serve` on the day's catalog, in the day's time zone, cameras not started."""
    s = harness.start_server(
        entrance_day.data_dir, env={"VIGIL_TIMEZONE": ZONE, "VIGIL_START_CAMERAS": "false"}
    )
    yield s
    harness.stop_server(s)


def test_report_json_and_csv_for_managers_only_and_audited(server: Any, entrance_day: EntranceDay) -> None:
    until = DAY + timedelta(days=1)
    expected = independent(entrance_day.app, "staff", DAY, until)
    with server.client("supervisor") as c:
        r = c.get("/api/attendance/report", params={"gallery": "staff", "date": DAY.isoformat()})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["timezone"] == ZONE and body["schedule"]["grace_min"] == 10
        status = {row["person"]: row["status"] for row in body["rows"]}
        assert status == {A[0]: "present", B[0]: "late", D[0]: "absent"}

        params = {"gallery": "staff", "date": DAY.isoformat(), "until": until.isoformat(), "format": "csv"}
        r = c.get("/api/attendance/report", params=params)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        assert comparable(list(csv.DictReader(io.StringIO(r.text)))) == expected

        for bad, code in (
            ({"gallery": "staff", "date": "yesterday"}, 422),
            ({"gallery": "staff", "date": DAY.isoformat(), "format": "xml"}, 422),
            ({"gallery": "nobody", "date": DAY.isoformat()}, 404),
            ({"gallery": "wanted", "date": DAY.isoformat()}, 422),
        ):
            r = c.get("/api/attendance/report", params=bad)
            assert r.status_code == code, (bad, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
    for role in ("operator", "auditor"):
        with server.client(role) as c:
            r = c.get("/api/attendance/report", params={"gallery": "staff", "date": DAY.isoformat()})
            assert r.status_code == 403, role
    entries = [
        e for e in audit.entries(entrance_day.app, action="attendance_report") if e.actor.startswith("key:")
    ]
    assert [e.detail["format"] for e in entries] == ["json", "csv"]
    assert entries[0].actor == "key:test-supervisor" and entries[0].target_name == "staff"


def test_schedule_and_consent_through_the_api(server: Any, shared_data: Any) -> None:
    with server.client("admin") as c:
        new = {
            "name": "night-desk",
            "kind": "attendance",
            "attendance_start": "9:00",
            "attendance_end": "17:30",
            "attendance_days": "mon-fri",
            "attendance_grace_min": 5,
        }
        r = c.post("/api/galleries", json=new)
        assert r.status_code == 201, r.text
        assert (
            r.json()["attendance_start"] == "09:00" and r.json()["attendance_days"] == "mon,tue,wed,thu,fri"
        )
        r = c.patch(
            "/api/galleries/night-desk", json={"attendance_grace_min": 15, "attendance_days": "sat-sun"}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["attendance_grace_min"], r.json()["attendance_days"]) == (15, "sat,sun")
        r = c.patch("/api/galleries/night-desk", json={"attendance_start": "25:00"})
        assert r.status_code == 422 and "not a time of day" in r.json()["detail"]

        photo = (shared_data / "lfw-dev" / D[1]).read_bytes()
        files = {"files": ("d.jpg", photo, "image/jpeg")}
        r = c.post("/api/galleries/night-desk/identities", data={"identity": "Aaron Sorkin"}, files=files)
        assert r.status_code == 403, r.text
        assert "consented" in r.json()["detail"] and "consent_on" in r.json()["hint"]
        assert c.get("/api/galleries/night-desk/identities").json() == []
        data = {"identity": "Aaron Sorkin", "consent_on": "2025-03-01", "consent_by": "HR, J. Doe"}
        r = c.post("/api/galleries/night-desk/identities", data=data, files=files)
        assert r.status_code == 201, r.text
        assert (r.json()["consent_on"], r.json()["consent_by"]) == ("2025-03-01", "HR, J. Doe")
        (person,) = c.get("/api/galleries/night-desk/identities").json()
        assert person["consent_on"] == "2025-03-01" and person["templates"] == 1
