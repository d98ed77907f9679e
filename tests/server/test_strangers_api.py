"""Stranger rules over the API: set on a new camera, changed and cleared with PATCH, refused when bad
(422 naming the field, 404 for an unknown gallery), shown in the camera and in the transparency report."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Server
from test_api import assert_problem

URL = "rtsp://127.0.0.1:9/nothing-here"


@pytest.fixture(scope="module")
def galleries(server: Server) -> None:
    with server.client("admin") as c:
        for name, kind in (("staff", "reference"), ("students", "attendance")):
            assert c.post("/api/galleries", json={"name": name, "kind": kind}).status_code == 201


def test_rule_on_a_new_camera_then_changed_and_cleared(server: Server, galleries: None) -> None:
    with server.client("admin") as c:
        rule = {"galleries": ["staff", "students"], "hours": "Mon-Fri 7:00-19:00", "min_quality": 0.9}
        r = c.post("/api/cameras", json={"name": "lab", "url": URL, "start": False, "strangers": rule})
        assert r.status_code == 201, r.text
        assert r.json()["strangers"] == {
            "galleries": ["staff", "students"],
            "hours": "mon,tue,wed,thu,fri 07:00-19:00",
            "min_quality": 0.9,
        }
        r = c.patch("/api/cameras/lab", json={"strangers": {"galleries": ["staff"]}})
        assert r.status_code == 200 and r.json()["strangers"] == {
            "galleries": ["staff"],
            "hours": None,
            "min_quality": None,
        }
        assert c.patch("/api/cameras/lab", json={"site": "B"}).json()["strangers"]["galleries"] == ["staff"]
        report = c.get("/api/reports/transparency").json()
        assert [x["camera"] for x in report["stranger_rules"]] == ["lab"]
        r = c.patch("/api/cameras/lab", json={"strangers": None})
        assert r.status_code == 200 and r.json()["strangers"] is None
        audit = c.get("/api/audit", params={"action": "camera_update"}).json()
        assert len(audit) >= 3


@pytest.mark.parametrize(
    ("rule", "status", "words"),
    [
        ({"galleries": ["nobody"]}, 404, ["stranger_galleries", "nobody"]),
        ({"galleries": []}, 422, ["galleries"]),
        ({"galleries": ["staff"] * 21}, 422, ["galleries"]),
        ({"galleries": ["x" * 201]}, 422, ["galleries"]),
        ({"galleries": ["staff"], "hours": "mon-fri 7-19"}, 422, ["stranger_hours"]),
        ({"galleries": ["staff"], "hours": "funday 08:00-09:00"}, 422, ["stranger_hours", "not a day"]),
        ({"galleries": ["staff"], "hours": "08:00-08:00"}, 422, ["stranger_hours"]),
        ({"galleries": ["staff"], "hours": "\u0000\u001b[2J"}, 422, ["stranger_hours"]),
        ({"galleries": ["staff"], "hours": "x" * 201}, 422, ["hours"]),
        ({"galleries": ["staff"], "min_quality": 2}, 422, ["min_quality"]),
        ({"galleries": ["staff"], "actve": True}, 422, ["actve"]),
        ({"galleries": ["staff\u0000"]}, 404, ["stranger_galleries"]),
    ],
)
def test_bad_rules_are_refused_and_nothing_changes(
    server: Server, galleries: None, rule: dict[str, Any], status: int, words: list[str]
) -> None:
    with server.client("admin") as c:
        if c.get("/api/cameras/gate").status_code == 404:
            assert (
                c.post("/api/cameras", json={"name": "gate", "url": URL, "start": False}).status_code == 201
            )
        r = c.patch("/api/cameras/gate", json={"strangers": rule})
        body = assert_problem(r, status)
        text = (str(body.get("detail")) + str(body.get("errors", ""))).lower()
        assert all(w in text for w in words), body
        assert c.get("/api/cameras/gate").json()["strangers"] is None
        r = c.post("/api/cameras", json={"name": "gate2", "url": URL, "start": False, "strangers": rule})
        assert_problem(r, status)
        assert c.get("/api/cameras/gate2").status_code == 404


def test_alarm_kind_filter_is_checked(server: Server) -> None:
    with server.client("operator") as c:
        assert c.get("/api/alarms", params={"kind": "stranger"}).json() == []
        assert_problem(c.get("/api/alarms", params={"kind": "visitor"}), 422)
