"""Reviews that teach in a real browser (Chromium driven by Playwright) against a real `vigil serve`:
the reviewer dismisses a look-alike's alarm as "Not this person", a later photo of her is stored
suppressed, its page says "Suppressed by 1 earlier dismissal" with a link to the dismissed alarm, and
the reviewer undoes the negative example there. Real models and LFW photos (tests/negatives_seed.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Server, start_server, stop_server
from test_ui import browser, login, page, screenshot  # noqa: F401 (fixtures)

from negatives_seed import LOOKALIKE, enrol_person, photo_alarm, photos, store
from vigil.app import App
from vigil.core.config import Settings
from vigil.events.schemas import Alarm

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine, shared_data: Path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("negatives-ui")
    app = App(Settings(data_dir=root / "data"), engine_override=engine)
    enrol_person(app, shared_data)
    first = photo_alarm(app, photos(shared_data, LOOKALIKE)[0], 0)
    assert first is not None
    assert isinstance(store(app, first)[0], Alarm)
    app.close()
    s = start_server(root / "data", {"VIGIL_START_CAMERAS": "false"})
    yield s
    stop_server(s)


def test_not_this_person_then_suppressed_then_undo(  # type: ignore[no-untyped-def]
    server: Server,
    page: Any,  # noqa: F811
    engine,
    shared_data: Path,
) -> None:
    login(page, server, "operator")
    page.goto(server.url + "/#/alarms/1")
    expect(page.get_by_role("main")).to_contain_text("keeps this face as a negative example")
    page.get_by_role("button", name="Not this person").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("keep the face as a negative example")
    dialog.get_by_label("Reason for dismissing").fill("her, not the person on the list")
    dialog.get_by_role("button", name="Dismiss").click()
    section = page.get_by_role("region", name="Negative examples")
    expect(section).to_contain_text("Dismissed as not this person")
    expect(section).to_contain_text("It has suppressed 0 later faces")

    # A later photo of the look-alike, as a camera would see it: stored suppressed, raised to no one.
    app = App(Settings(data_dir=server.data_dir), engine_override=engine)
    try:
        later = photo_alarm(app, photos(shared_data, LOOKALIKE)[1], 1)
        assert later is not None and later.suppressed_by
        assert store(app, later)[0] is None
    finally:
        app.close()

    page.goto(server.url + "/#/alarms")
    page.get_by_label("State").select_option("suppressed")
    page.get_by_role("button", name="Apply filters").click()
    rows = page.get_by_role("table", name="Alarms").locator("tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("link", name="Open alarm 2").click()
    section = page.get_by_role("region", name="Negative examples")
    expect(section).to_contain_text("Suppressed by 1 earlier dismissal")
    expect(section.get_by_role("link", name="Alarm 1")).to_have_attribute("href", "#/alarms/1")
    expect(page.get_by_role("main")).to_contain_text("Nothing to review: this alarm was not raised")
    screenshot(page, "alarm-suppressed-by-negative")
    section.get_by_role("button", name="Undo negative example 1").click()
    expect(section).to_contain_text("negative example 1, undone")
    expect(section.get_by_role("button", name="Undo negative example 1")).to_have_count(0)


def test_the_api_refuses_what_it_cannot_do(server: Server, engine, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    """After the browser test: alarm 1 dismissed with negative 1 (undone), alarm 2 suppressed."""
    app = App(Settings(data_dir=server.data_dir), engine_override=engine)
    try:
        third = photo_alarm(app, photos(shared_data, LOOKALIKE)[2], 2)  # negative 1 is undone: it alarms
        assert third is not None and third.suppressed_by is None
        stored = store(app, third)[0]
        assert isinstance(stored, Alarm) and stored.alarm_id is not None
    finally:
        app.close()
    url = f"/api/alarms/{stored.alarm_id}/review"
    with server.client("auditor") as c:
        r = c.post(url, json={"action": "dismiss", "version": 0, "reason": "x", "not_this_person": True})
        assert r.status_code == 403
        assert c.post("/api/alarms/negatives/1/undo").status_code == 403
    with server.client("operator") as c:
        r = c.post(url, json={"action": "confirm", "version": 0, "not_this_person": True})
        assert r.status_code == 422 and "goes with a dismissal" in r.json()["detail"]
        r = c.post(url, json={"action": "dismiss", "version": 0, "reason": "x", "not_this_person": "maybe"})
        assert r.status_code == 422
        r = c.post(url, json={"action": "dismiss", "version": 0, "reason": "x", "not_this_persn": True})
        assert r.status_code == 422  # a misspelt key is refused, not a dismissal that keeps nothing
        r = c.post("/api/alarms/negatives/1/undo")
        assert r.status_code == 409 and "undone already" in r.json()["detail"]
        r = c.post("/api/alarms/negatives/999/undo")
        assert r.status_code == 404 and "no negative example with id 999" in r.json()["detail"]
        assert c.get(f"/api/alarms/{stored.alarm_id}").json()["state"] == "pending"  # nothing changed
        r = c.post(url, json={"action": "dismiss", "version": 0, "reason": "x", "not_this_person": True})
        assert r.status_code == 200 and r.json()["negative"]["id"] == 2
        listed = c.get("/api/alarms", params={"state": "suppressed"}).json()
        assert [a["suppressed_by"] for a in listed] == [[1]]
