"""The gallery check in a real browser (Chromium) against a real `vigil serve`: another person's photo
enrolled into Ricardo Lagos through the page is stored with a warning, the "Check gallery" action
lists it as a likely wrong photo with the photos side by side, and its one-click fix removes it. (The
galleries page is for supervisors and admins; an operator checks through the API, see
tests/server/test_hygiene_api.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import Server
from test_ui import browser, login, page  # noqa: F401 (fixtures)

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


def _enrol(server: Server, photos: list[Path]) -> None:
    with server.client("admin") as c:
        assert c.post("/api/galleries", json={"name": "hyg-ui", "kind": "reference"}).status_code == 201
        for photo in photos:
            r = c.post(
                "/api/galleries/hyg-ui/identities",
                data={"identity": "Ricardo Lagos"},
                files=[("files", (photo.name, photo.read_bytes(), "image/jpeg"))],
            )
            assert r.status_code == 201, r.text


def test_check_shows_the_wrong_photo_and_fixes_it(server: Server, page: Any, shared_data: Path) -> None:  # noqa: F811
    lfw = shared_data / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip("lfw-dev not in the shared data")
    stranger = sorted((lfw / "Jennifer_Lopez").glob("*.jpg"))[0]
    _enrol(server, sorted((lfw / "Ricardo_Lagos").glob("*.jpg"))[:3])

    login(page, server, "supervisor")
    page.goto(server.url + "/#/galleries/hyg-ui")
    # Enrolled through the page: stored, with the warning that it matches none of the person's photos.
    enrol = page.get_by_role("form", name="Enrol a person")
    enrol.get_by_label("Person's name").fill("Ricardo Lagos")
    enrol.get_by_label("Photos").set_input_files(str(stranger))
    enrol.get_by_role("button", name="Enrol").click()
    expect(enrol).to_contain_text("Check this photo", timeout=60_000)
    expect(enrol).to_contain_text("likely someone else's photo")
    page.get_by_role("button", name="Check gallery").click()
    wrong = page.get_by_role("list", name="Findings").get_by_role("listitem", name="Likely wrong photo")
    expect(wrong).to_have_count(1)
    expect(wrong).to_contain_text("likely someone else's photo")
    expect(wrong.get_by_role("img")).to_have_count(4)  # the flagged photo beside the person's three others
    fix = wrong.get_by_role("button", name="Remove photo")
    fix.click()
    page.get_by_role("dialog").get_by_role("button", name="Apply fix").click()
    expect(
        page.get_by_role("list", name="Findings").get_by_role("listitem", name="Likely wrong photo")
    ).to_have_count(0)
    with server.client("admin") as c:
        photos = [
            p["sha256"]
            for i in c.get("/api/galleries/hyg-ui/identities").json()
            for p in c.get(f"/api/identities/{i['id']}").json()["photo_list"]
        ]
    assert len(photos) == 3
