"""Stranger rules and stranger alarms in a real browser (Chromium driven by Playwright) against a real
`vigil serve`: the camera forms set, change and clear the rule (bad hours and unknown galleries are
refused with the server's message), and a real stranger alarm shows as "stranger" in the review queue,
filtered by kind, with no enrolled photos to compare."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Server, start_server, stop_server
from test_ui import browser, go, login, page  # noqa: F401 (fixtures)

from vigil.app import App
from vigil.core.config import Settings
from vigil.events.schemas import Alarm
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.video import cameras
from vigil.video.strangers import StrangerRule
from vigil.video.watch import watch
from vigil.vision.image import load_image

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine, people: Path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    """``staff`` (Barack Obama); camera ``lab`` with a stranger rule saw Joe Biden: one stranger alarm."""
    root = tmp_path_factory.mktemp("strangers-ui")
    (root / "cam").mkdir()
    shutil.copy(people / "biden.jpg", root / "cam" / "a.jpg")
    app = App(Settings(data_dir=root / "data", media_dirs=[root]), engine_override=engine)
    galleries.create_gallery(
        app, galleries.validate_spec(name="staff", kind="reference", purpose="who works here")
    )
    enrolment.enroll(app, "staff", "Barack Obama", [load_image(people / "obama.jpg")])
    cameras.add_camera(app, "lab", str(root / "cam"), strangers=StrangerRule(galleries=["staff"]))
    events: list[object] = []
    watch(app, None, camera="lab", on_event=events.append)
    assert [e.kind for e in events if isinstance(e, Alarm)] == ["stranger"]
    app.close()
    s = start_server(
        root / "data", {"VIGIL_START_CAMERAS": "false", "VIGIL_MEDIA_DIRS": json.dumps([str(root)])}
    )
    yield s
    stop_server(s)


def test_a_stranger_alarm_in_the_review_queue(server: Server, page: Any) -> None:  # noqa: F811
    login(page, server, "operator")
    go(page, "Alarms")
    filters = page.get_by_role("form", name="Filter alarms")
    filters.get_by_label("Kind").select_option("stranger")
    filters.get_by_role("button", name="Apply filters").click()
    row = page.get_by_role("table", name="Alarms").get_by_role("row").filter(has_text="lab")
    expect(row).to_contain_text("stranger")
    expect(row).to_contain_text("0 of 1")  # no gallery: one confirmation decides it
    filters.get_by_label("Kind").select_option("match")
    filters.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_role("main")).to_contain_text("No alarms match these filters")
    page.goto(server.url + "/#/alarms/1")
    expect(page.get_by_role("heading", level=1)).to_have_text("Alarm 1: stranger")
    expect(page.get_by_role("main")).to_contain_text("Nobody is identified")


def test_the_rule_in_the_camera_forms(server: Server, page: Any) -> None:  # noqa: F811
    login(page, server, "supervisor")
    go(page, "Cameras")
    table = page.get_by_role("table", name="Cameras")
    lab = table.get_by_role("row").filter(has_text="lab")
    expect(lab).to_contain_text("strangers: not in staff")
    lab.get_by_role("button", name="Edit camera lab").click()
    dialog = page.get_by_role("dialog", name="Edit camera lab")
    expect(dialog.get_by_label("Stranger alarms: galleries of who belongs here")).to_have_value("staff")
    dialog.get_by_label("Stranger hours").fill("Mon-Fri 7:00-19:00")
    dialog.get_by_role("button", name="Save").click()
    expect(lab).to_contain_text("strangers: not in staff (mon,tue,wed,thu,fri 07:00-19:00)")
    with server.client("supervisor") as c:
        assert c.get("/api/cameras/lab").json()["strangers"]["hours"] == "mon,tue,wed,thu,fri 07:00-19:00"
    lab.get_by_role("button", name="Edit camera lab").click()
    dialog.get_by_label("Stranger hours").fill("25:00-26:00")
    dialog.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert").first).to_contain_text("stranger_hours")
    lab.get_by_role("button", name="Edit camera lab").click()
    dialog.get_by_label("Stranger alarms: galleries of who belongs here").fill("")
    dialog.get_by_label("Stranger hours").fill("")
    dialog.get_by_role("button", name="Save").click()
    expect(lab).not_to_contain_text("strangers:")
    with server.client("supervisor") as c:
        assert c.get("/api/cameras/lab").json()["strangers"] is None

    add = page.get_by_role("form", name="Add a camera")
    add.get_by_label("Camera name").fill("yard")
    add.get_by_label("Address").fill("webcam:9")
    add.get_by_label("Start it now").uncheck()
    add.get_by_label("Stranger alarms: galleries of who belongs here").fill("staff, nobody")
    add.get_by_role("button", name="Add camera").click()
    expect(add).to_contain_text("no gallery named 'nobody'")
    add.get_by_label("Stranger alarms: galleries of who belongs here").fill("staff")
    add.get_by_label("Stranger hours").fill("sat,sun")
    add.get_by_label("Stranger min quality").fill("0.9")
    add.get_by_role("button", name="Add camera").click()
    expect(add.get_by_role("status")).to_contain_text("Camera added")
    expect(table.get_by_role("row").filter(has_text="yard")).to_contain_text(
        "strangers: not in staff (sat,sun)"
    )
    with server.client("supervisor") as c:
        rule = c.get("/api/cameras/yard").json()["strangers"]
    assert rule == {"galleries": ["staff"], "hours": "sat,sun", "min_quality": 0.9}
