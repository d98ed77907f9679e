"""The web UI in a real browser (Debian's Chromium driven by Playwright) against a real `vigil serve`:
log in, the forced password change, navigation by role, enrolment by upload with quality feedback,
a camera playing a real clip, its alarm arriving live on the dashboard, and two-person review."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import PASSWORD, Server

import vigil.server

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXPIRES = (date.today() + timedelta(days=30)).isoformat()
TIMEOUT_MS = 15_000
ALARM_TIMEOUT_MS = 90_000

STATIC = Path(vigil.server.__file__).parent / "static"
# Module imports and url(...) references inside the UI's own files.
ASSET_REF = re.compile(
    r"""(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']|\b(?:src|href)=["']([^"']+)["']|url\(["']?([^"')]+)"""
)


def test_the_ui_is_self_contained(server: Server) -> None:
    """Every asset comes from /static (the server may be offline) and sits directly in the static
    folder (the package data glob is ``server/static/*``)."""
    files = [p for p in STATIC.rglob("*") if p.is_file()]
    assert all(p.parent == STATIC for p in files), [str(p) for p in files if p.parent != STATIC]
    with server.client(None) as anon:
        index = anon.get("/")
        assert index.status_code == 200 and 'type="module"' in index.text
        for f in files:
            if f.suffix not in (".html", ".js", ".css"):
                continue
            text = f.read_text()
            for groups in ASSET_REF.findall(text):
                ref = next(g for g in groups if g)
                if ref.startswith(("#", "data:", "/api/", "${")):
                    continue
                assert not re.match(r"(https?:)?//", ref), f"{f.name} loads {ref} from elsewhere"
                path = ref if ref.startswith("/") else "/static/" + ref.removeprefix("./")
                assert anon.get(path).status_code == 200, (f.name, ref)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium); the browser tests need it")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser context (no cookies); a screenshot lands in tmp_path if the test fails, and an
    uncaught JavaScript error fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    js_errors: list[str] = []
    pg.on("pageerror", lambda e: js_errors.append(str(e)))
    failed_before = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failed_before:
        shot = tmp_path / "failure.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failure: {shot}")
    context.close()
    assert not js_errors, js_errors


def login(page: Any, server: Server, username: str, password: str = PASSWORD) -> None:
    page.goto(server.url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def logout(page: Any) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to vigil")).to_be_visible()


def nav_items(page: Any) -> list[str]:
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link").first).to_be_visible()
    return [t.strip() for t in nav.get_by_role("link").all_inner_texts()]


def test_wrong_password_shows_the_error(server: Server, page: Any) -> None:
    login(page, server, "operator", "not the password")
    alert = page.get_by_role("main").get_by_role("alert")
    expect(alert).to_contain_text("Could not log in")
    expect(alert).to_contain_text("wrong user name or password")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()


def test_one_time_password_forces_a_change(server: Server, page: Any) -> None:
    login(page, server, "admin")
    page.get_by_role("link", name="Users & keys").click()
    form = page.get_by_role("form", name="New user")
    form.get_by_label("Username").fill("newbie")
    form.get_by_label("Role").select_option("operator")
    form.get_by_role("button", name="Create user").click()
    dialog = page.get_by_role("dialog", name="User newbie created")
    otp = dialog.get_by_label("One-time password").inner_text().strip()
    assert len(otp) >= 10
    dialog.get_by_role("button", name="Done").click()
    expect(page.get_by_role("table", name="Users")).to_contain_text("one-time, must change")
    logout(page)

    login(page, server, "newbie", otp)
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    page.get_by_label("One-time (current) password").fill(otp)
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("Repeat the new password").fill("short")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert").first).to_contain_text("at least 10 characters")
    page.get_by_label("One-time (current) password").fill("not the one-time password")
    page.get_by_label("New password", exact=True).fill("a sound new passphrase")
    page.get_by_label("Repeat the new password").fill("a sound new passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("main").get_by_role("alert")).to_contain_text("Could not change the password")
    page.get_by_label("One-time (current) password").fill(otp)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    assert nav_items(page) == ["Dashboard", "Alarms", "Cameras", "Search"]


@pytest.mark.parametrize(
    ("role", "pages"),
    [
        ("operator", ["Dashboard", "Alarms", "Cameras", "Search"]),
        ("auditor", ["Alarms"]),
        ("supervisor", ["Dashboard", "Alarms", "Galleries & people", "Cameras", "Search"]),
        ("admin", ["Dashboard", "Alarms", "Galleries & people", "Cameras", "Search", "Users & keys"]),
    ],
)
def test_navigation_follows_the_role(server: Server, page: Any, role: str, pages: list[str]) -> None:
    login(page, server, role)
    assert nav_items(page) == pages
    if role in ("operator", "auditor"):
        page.goto(server.url + "/#/admin")
        expect(page.get_by_role("main")).to_contain_text("Not available for your role")
        expect(page.get_by_role("table", name="Users")).to_have_count(0)
        page.goto(server.url + "/#/galleries")
        expect(page.get_by_role("main")).to_contain_text("Not available for your role")
    if role == "operator":
        page.get_by_role("link", name="Cameras").click()
        expect(page.get_by_role("main")).to_contain_text("Read-only")
        expect(page.get_by_role("form", name="Add a camera")).to_have_count(0)


def test_uploading_a_non_image_shows_a_clear_error(server: Server, page: Any, tmp_path: Path) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "uploads", "kind": "reference"}).status_code == 201
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, this is not a photo")
    login(page, server, "supervisor")
    page.get_by_role("link", name="Galleries & people").click()
    page.get_by_role("link", name="uploads", exact=True).click()
    form = page.get_by_role("form", name="Enrol a person")
    form.get_by_label("Person's name").fill("Somebody")
    form.get_by_label("Photos").set_input_files(str(notes))
    form.get_by_role("button", name="Enrol").click()
    alert = form.get_by_role("alert")
    expect(alert).to_contain_text("Photo refused")
    expect(alert).to_contain_text("not an image")
    expect(page.get_by_role("main")).to_contain_text("Nobody is enrolled yet")


@pytest.mark.slow
def test_live_alarm_and_two_person_review(server: Server, page: Any, shared_data: Path) -> None:
    photo = shared_data / "people" / "lin-manuel-miranda.png"
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    login(page, server, "supervisor")

    # A watchlist needing two confirmations; the form says which fields a watchlist needs.
    page.get_by_role("link", name="Galleries & people").click()
    form = page.get_by_role("form", name="New gallery")
    form.get_by_label("Gallery name").fill("wanted")
    form.get_by_label("Kind").select_option("watchlist")
    expect(form).to_contain_text("Required for a watchlist")
    form.get_by_label("Confirmations required").select_option("2")
    form.get_by_role("button", name="Create gallery").click()
    expect(form.get_by_role("alert")).to_contain_text("purpose, legal basis")
    form.get_by_label("Purpose").fill("UI test")
    form.get_by_label("Legal basis").fill("test order 1")
    form.get_by_label("Authorised by").fill("test judge")
    form.get_by_label("Expires on").fill(EXPIRES)
    form.get_by_role("button", name="Create gallery").click()
    expect(form.get_by_role("status")).to_contain_text("Gallery created")

    # Enrol by upload, with the face-quality feedback.
    page.get_by_role("table", name="Galleries").get_by_role("link", name="wanted").click()
    enrol = page.get_by_role("form", name="Enrol a person")
    enrol.get_by_label("Person's name").fill("Lin-Manuel Miranda")
    enrol.get_by_label("Photos").set_input_files(str(photo))
    enrol.get_by_role("button", name="Enrol").click()
    expect(enrol).to_contain_text("Enrolled Lin-Manuel Miranda", timeout=60_000)
    feedback = enrol.get_by_role("list", name="Photo quality")
    expect(feedback).to_contain_text("1 face found")
    expect(feedback).to_contain_text(re.compile(r"Face quality\s+0\.\d\d \((good|fair|poor)\)"))
    expect(page.get_by_role("table", name="People")).to_contain_text("Lin-Manuel Miranda")

    # The clip as a camera, started from the dashboard.
    page.get_by_role("link", name="Cameras").click()
    add = page.get_by_role("form", name="Add a camera")
    add.get_by_label("Camera name").fill("hamilton")
    add.get_by_label("Address").fill(str(clip))
    add.get_by_label("Site").fill("theatre")
    add.get_by_label("Kind").select_option("entrance")
    add.get_by_label("Start it now").uncheck()
    add.get_by_role("button", name="Add camera").click()
    expect(add.get_by_role("status")).to_contain_text("Camera added")
    page.get_by_role("link", name="Dashboard").click()
    tile = page.get_by_role("article", name="Camera hamilton")
    expect(tile).to_contain_text("stopped")
    page.evaluate("window.__sameDocument = true")
    tile.get_by_role("button", name="Start").click()

    # His alarm arrives on the event stream, without a reload.
    latest = page.get_by_role("list", name="Latest alarms")
    item = latest.get_by_role("link", name=re.compile(r"Review alarm \d+: Lin-Manuel Miranda, wanted"))
    expect(item.first).to_be_visible(timeout=ALARM_TIMEOUT_MS)
    expect(item.first).to_contain_text(re.compile(r"\bnew\b"))
    assert page.evaluate("window.__sameDocument") is True
    preview = tile.get_by_role("img", name="Live view of camera hamilton")
    page.wait_for_function("img => img.naturalWidth > 1", arg=preview.element_handle())  # MJPEG frames

    # The evidence, and the first confirmation.
    item.first.click()
    expect(page.get_by_role("heading", name=re.compile(r"Alarm \d+: Lin-Manuel Miranda"))).to_be_visible()
    alarm_id = int(re.findall(r"#/alarms/(\d+)", page.url)[0])
    main = page.get_by_role("main")
    expect(main).to_contain_text("A match is a request for human review, never a decision by itself")
    for name in (
        "Face seen on camera hamilton",
        "Enrolled photo 1 of Lin-Manuel Miranda",
        "Frame from camera hamilton",
    ):
        img = main.get_by_role("img", name=name)
        expect(img).to_be_visible()
        assert img.evaluate("i => i.naturalWidth") > 0, name
    expect(main).to_contain_text("0 of 2 required")
    expect(main).to_contain_text("FPIR")
    status = page.get_by_role("region", name="Review status")
    main.get_by_role("button", name="Confirm").click()
    expect(status).to_contain_text("Your confirmation is recorded (1 of 2)")
    expect(main).to_contain_text("1 of 2 required")

    # The same person cannot confirm twice.
    main.get_by_role("button", name="Confirm").click()
    expect(status.get_by_role("alert")).to_contain_text(f"you have already confirmed alarm {alarm_id}")
    expect(status).to_contain_text("needs 2 confirmations by different people")
    expect(main).to_contain_text("1 of 2 required")
    logout(page)

    # A second supervisor finds it in the queue and confirms it.
    login(page, server, "supervisor2")
    page.get_by_role("link", name="Alarms").click()
    queue = page.get_by_role("table", name="Alarms")
    queue.get_by_role("link", name=f"Open alarm {alarm_id}").click()
    main.get_by_role("button", name="Confirm").click()
    expect(status).to_contain_text("The alarm is now confirmed")
    expect(main).to_contain_text("2 of 2 required")
    history = main.get_by_role("list").filter(has_text="user:supervisor2")
    expect(history).to_contain_text("user:supervisor: confirm")
    expect(history).to_contain_text("user:supervisor2: confirm")
    with server.client("operator") as c:
        assert c.get(f"/api/alarms/{alarm_id}").json()["state"] == "confirmed"
