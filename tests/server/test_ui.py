"""The web UI in a real browser (Debian's Chromium driven by Playwright) against a real `vigil serve`:
log in, the forced password change, navigation by role, enrolment by upload with quality feedback,
a camera playing a real clip, its alarm arriving live on the dashboard, and two-person review; the
safeguards: the audit log and its verification, the transparency report, watchlist terms and renewal,
refused sensitive metadata, erasure, camera retention, webhooks and the purge."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import PASSWORD, Server, wait_for

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
# Where screenshots of the pages go when VIGIL_UI_SHOTS names a folder (for people to look at).
SHOTS = os.environ.get("VIGIL_UI_SHOTS")
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


def dismiss_toasts(page: Any) -> None:
    """Close the notices in the corner (an error's stays until closed and may cover a button)."""
    page.evaluate("document.getElementById('toasts').replaceChildren()")


def screenshot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def nav_items(page: Any) -> list[str]:
    """The pages in the main navigation, those under its "More" menu included (in order)."""
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link").first).to_be_visible()
    more = nav.get_by_role("button", name="More")
    if more.count():
        more.click()
        expect(more).to_have_attribute("aria-expanded", "true")
    items = [t.strip() for t in nav.get_by_role("link").all_inner_texts()]
    if more.count():
        page.keyboard.press("Escape")
        expect(more).to_have_attribute("aria-expanded", "false")
    return items


def go(page: Any, label: str) -> None:
    """Follow the main navigation to the page ``label``, opening the "More" menu if it is there."""
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link").first).to_be_visible()
    link = nav.get_by_role("link", name=label, exact=True)
    if not link.is_visible():
        nav.get_by_role("button", name="More").click()
    link.click()


def test_wrong_password_shows_the_error(server: Server, page: Any) -> None:
    login(page, server, "operator", "not the password")
    alert = page.get_by_role("main").get_by_role("alert")
    expect(alert).to_contain_text("Could not log in")
    expect(alert).to_contain_text("wrong user name or password")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()


def test_one_time_password_forces_a_change(server: Server, page: Any) -> None:
    login(page, server, "admin")
    go(page, "Users & keys")
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
    assert nav_items(page) == OPERATOR_PAGES


OPERATOR_PAGES = ["Dashboard", "Alarms", "Cameras", "Search", "Investigations", "Unknown faces"]
MANAGER_PAGES = [
    "Dashboard",
    "Alarms",
    "Galleries & people",
    "Cameras",
    "Search",
    "Investigations",
    "Unknown faces",
    "Compare galleries",
    "Attendance",
    "Redact a video",
]


@pytest.mark.parametrize(
    ("role", "pages"),
    [
        ("operator", OPERATOR_PAGES),
        ("auditor", ["Audit log", "Transparency", "Alarms"]),
        ("supervisor", [*MANAGER_PAGES, "Transparency"]),
        ("admin", [*MANAGER_PAGES, "Audit log", "Transparency", "Users & keys", "Webhooks"]),
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
        page.goto(server.url + "/#/webhooks")
        expect(page.get_by_role("main")).to_contain_text("Not available for your role")
        for manager_only in ("attendance", "compare", "redact"):
            page.goto(server.url + f"/#/{manager_only}")
            expect(page.get_by_role("main")).to_contain_text("Not available for your role")
    if role in ("operator", "supervisor"):
        page.goto(server.url + "/#/audit")
        expect(page.get_by_role("main")).to_contain_text("Not available for your role")
        expect(page.get_by_role("table", name="Audit entries")).to_have_count(0)
    if role == "operator":
        go(page, "Cameras")
        expect(page.get_by_role("main")).to_contain_text("Read-only")
        expect(page.get_by_role("form", name="Add a camera")).to_have_count(0)


def test_uploading_a_non_image_shows_a_clear_error(server: Server, page: Any, tmp_path: Path) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "uploads", "kind": "reference"}).status_code == 201
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, this is not a photo")
    login(page, server, "supervisor")
    go(page, "Galleries & people")
    page.get_by_role("link", name="uploads", exact=True).click()
    form = page.get_by_role("form", name="Enrol a person")
    form.get_by_label("Person's name").fill("Somebody")
    form.get_by_label("Photos").set_input_files(str(notes))
    form.get_by_role("button", name="Enrol").click()
    alert = form.get_by_role("alert")
    expect(alert).to_contain_text("Photo refused")
    expect(alert).to_contain_text("not an image")
    expect(page.get_by_role("main")).to_contain_text("Nobody is enrolled yet")


# ---- investigations, unknown faces, attendance, gallery comparison, the dashboard's snapshots ----
# These run before the slow test, which enrols Lin-Manuel Miranda on a watchlist: here nobody in the
# hamilton clip is known yet, so every sighting is unmatched (and clustered).

SIGHTING_CAMERAS = ("foyer", "stage")


@pytest.fixture(scope="module")
def hamilton_sightings(server: Server, shared_data: Path) -> tuple[str, ...]:
    """The hamilton clip played to the end on two cameras that keep sightings (set up through the API):
    three people, each seen once per camera, so six sightings, nobody enrolled."""
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    with server.client("supervisor") as c:
        for name in SIGHTING_CAMERAS:
            body = {"name": name, "url": str(clip), "keep_sightings": True, "start": True}
            assert c.post("/api/cameras", json=body).status_code == 201
        for name in SIGHTING_CAMERAS:
            wait_for(
                lambda name=name: c.get(f"/api/cameras/{name}").json()["health"]["state"] == "finished",
                timeout_s=120,
            )
        assert len(c.get("/api/investigations/sightings").json()) >= 4
    return SIGHTING_CAMERAS


def audit_count(server: Server, action: str) -> int:
    with server.client("auditor") as c:
        return len(c.get("/api/audit", params={"action": action, "limit": 10_000}).json())


def test_investigation_search_needs_a_case_and_shows_sightings_and_timeline(
    server: Server, page: Any, people: Path, hamilton_sightings: tuple[str, ...]
) -> None:
    login(page, server, "supervisor")
    go(page, "Investigations")
    form = page.get_by_role("form", name="Search the sightings")
    expect(form).to_contain_text("Every search is recorded in the audit log")
    form.get_by_label("Photo of the person").set_input_files(str(people / "lin-manuel-miranda.png"))
    for camera in hamilton_sightings:
        form.get_by_label(camera).check()

    # No case reference: refused in the page, and nothing is searched (no audit entry).
    searches = audit_count(server, "retrospective_search")
    form.get_by_role("button", name="Search").click()
    alert = form.get_by_role("alert")
    expect(alert).to_contain_text("A case reference is required")
    expect(alert).to_contain_text("recorded in the audit log with its case reference")
    expect(form.get_by_label("Case reference")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("table", name="Sightings found")).to_have_count(0)
    assert audit_count(server, "retrospective_search") == searches

    form.get_by_label("Case reference").fill("INC-UI-7")
    form.get_by_role("button", name="Search").click()
    results = page.get_by_role("region", name="Search results")
    expect(results.get_by_role("heading", name="Results for case INC-UI-7")).to_be_visible()
    expect(results).to_contain_text("above the threshold")
    hits = page.get_by_role("table", name="Sightings found").locator("tbody tr")
    expect(hits.first).to_be_visible()
    assert hits.count() >= 2
    for camera in hamilton_sightings:  # he walks past both cameras
        expect(hits.filter(has_text=camera).first).to_be_visible()
    expect(hits.first).to_contain_text(re.compile(r"0\.9\d\d ≥ 0\.9\d\d"))
    crop = hits.first.get_by_role("img", name=re.compile(r"Face of sighting \d+ on (foyer|stage)"))
    expect(crop).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=crop.element_handle())
    timeline = results.get_by_role("img", name="Timeline of the sightings found, case INC-UI-7")
    expect(timeline).to_be_visible()
    assert timeline.locator("g.hit").count() == hits.count()
    results.locator("details.png-timeline summary").click()
    png = results.get_by_role("img", name="Timeline plot of case INC-UI-7")
    expect(png).to_be_visible()
    assert png.evaluate("i => i.naturalWidth") > 100
    screenshot(page, "investigation")
    assert audit_count(server, "retrospective_search") == searches + 1

    # Someone who was never there: a clear "nobody above the threshold".
    form.get_by_label("Photo of the person").set_input_files(str(people / "obama.jpg"))
    form.get_by_role("button", name="Search").click()
    expect(results).to_contain_text("Nobody above the threshold")
    expect(results).to_contain_text("not proof that the person was not there")
    expect(page.get_by_role("table", name="Sightings found")).to_have_count(0)


@pytest.mark.xfail(
    strict=False,
    reason="regression under investigation: the clip's first cluster now has crops the detector finds, "
    "so its promotion succeeds where the test expects the 'no member crop has a face' refusal",
)
def test_unknown_faces_update_review_dismiss_and_promote(
    server: Server, page: Any, hamilton_sightings: tuple[str, ...]
) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "visitors", "kind": "reference"}).status_code == 201
    login(page, server, "supervisor")
    go(page, "Unknown faces")
    update = page.get_by_role("button", name="Update clusters")
    update.click()
    status = page.get_by_role("main").locator(".slot").get_by_role("status")
    expect(status).to_contain_text("Clusters updated")
    expect(status).to_contain_text("3 new clusters (6 sightings)")
    # Each of the clip's three people, seen once on each camera: three clusters of two.
    cards = page.get_by_role("list", name="Clusters").get_by_role("listitem")
    expect(cards).to_have_count(3)
    for i in range(3):
        expect(cards.nth(i).locator("dl.mini dd")).to_have_text(["2", "foyer, stage"])
        expect(cards.nth(i).get_by_role("img")).to_have_count(2)
    screenshot(page, "clusters")
    update.click()  # nothing new: said so
    expect(status).to_contain_text("No new clusters")

    # The first cluster: its crops are too tight for the face detector, so promotion is refused clearly;
    # then it is dismissed.
    ids = [int(x) for x in re.findall(r"Cluster (\d+)", " ".join(cards.locator("h3").all_inner_texts()))]
    first, last = min(ids), max(ids)
    page.get_by_role("link", name=f"Review cluster {first}").click()
    expect(page.get_by_role("heading", name=f"Cluster {first}")).to_be_visible()
    faces = page.get_by_role("list", name="Member faces").get_by_role("img")
    expect(faces).to_have_count(2)
    promote = page.get_by_role("form", name="Promote to a person")
    promote.get_by_label("Gallery").select_option("visitors")
    promote.get_by_label("Name").fill("Visitor A")
    promote.get_by_role("button", name="Promote").click()
    expect(promote.get_by_role("alert")).to_contain_text("no member crop has a face the detector finds")
    dismiss_toasts(page)
    dismiss = page.get_by_role("form", name="Dismiss")
    dismiss.get_by_label("Reason (optional, audited)").fill("a passer-by")
    dismiss.get_by_role("button", name="Dismiss").click()
    page.get_by_role("dialog", name=f"Dismiss cluster {first}?").get_by_role("button", name="Dismiss").click()
    expect(page.get_by_role("main").locator("dl.facts")).to_contain_text("dismissed")
    expect(page.get_by_role("form", name="Dismiss")).to_have_count(0)

    # The last cluster's crops have a face: promoted, with what was enrolled and skipped.
    page.goto(server.url + f"/#/clusters/{last}")
    promote = page.get_by_role("form", name="Promote to a person")
    promote.get_by_label("Gallery").select_option("visitors")
    promote.get_by_label("Name").fill("Visitor B")
    promote.get_by_role("button", name="Promote").click()
    done = page.get_by_role("main").get_by_role("status").filter(has_text="Promoted to Visitor B")
    expect(done).to_contain_text("2 crops enrolled, 0 skipped")
    screenshot(page, "cluster-promoted")
    expect(page.get_by_role("main").locator("dl.facts")).to_contain_text("promoted")
    page.get_by_role("link", name="Open Visitor B").click()
    expect(page.get_by_role("heading", name="Visitor B")).to_be_visible()
    go(page, "Unknown faces")
    expect(page.get_by_role("list", name="Clusters").get_by_role("listitem")).to_have_count(1)
    with server.client("auditor") as c:
        (entry,) = c.get("/api/audit", params={"action": "cluster_dismiss"}).json()
    assert entry["detail"]["reason"] == "a passer-by" and entry["actor"] == "user:supervisor"

    # The promoted person can be searched for by their enrolled photos.
    go(page, "Investigations")
    form = page.get_by_role("form", name="Search the sightings")
    form.get_by_label("An enrolled person").check()
    form.get_by_label("Gallery").select_option("visitors")
    form.get_by_label("Person", exact=True).select_option(label="Visitor B")
    form.get_by_label("Case reference").fill("INC-UI-8")
    form.get_by_role("button", name="Search").click()
    results = page.get_by_role("region", name="Search results")
    expect(results.locator("dl.facts")).to_contain_text("Visitor B")
    expect(page.get_by_role("table", name="Sightings found").locator("tbody tr").first).to_be_visible()


def _monday_before_last_week() -> date:
    today = date.today()
    return today - timedelta(days=today.weekday() + 7)


def test_attendance_gallery_schedule_consent_and_report(server: Server, page: Any, people: Path) -> None:
    from sqlalchemy import select

    from vigil.app import App
    from vigil.core.config import Settings
    from vigil.gallery.schedule import local_zone
    from vigil.storage.tables import AttendanceMark, Gallery, Identity

    day = _monday_before_last_week()
    consent = (day - timedelta(days=3)).isoformat()
    login(page, server, "supervisor")
    go(page, "Galleries & people")
    form = page.get_by_role("form", name="New gallery")
    expect(form.get_by_label("Expected arrival")).to_be_hidden()
    form.get_by_label("Gallery name").fill("attendance-ui")
    form.get_by_label("Kind").select_option("attendance")
    expect(form).to_contain_text("enrols only people who consented")
    screenshot(page, "attendance-gallery")
    form.get_by_label("Expected arrival").fill("09:00")
    form.get_by_label("Expected departure").fill("17:00")
    form.get_by_label("Grace minutes").fill("10")
    expect(form.get_by_label("Mon")).to_be_checked()
    expect(form.get_by_label("Sat")).not_to_be_checked()
    form.get_by_role("button", name="Create gallery").click()
    expect(form.get_by_role("status")).to_contain_text("Gallery created")
    with server.client("supervisor") as c:
        g = c.get("/api/galleries/attendance-ui").json()
    assert (g["attendance_start"], g["attendance_end"], g["attendance_grace_min"]) == ("09:00", "17:00", 10)
    assert g["attendance_days"] == "mon,tue,wed,thu,fri"

    # Enrolment asks for the consent; without it nothing is sent.
    page.get_by_role("table", name="Galleries").get_by_role("link", name="attendance-ui").click()
    expect(page.get_by_role("main").locator("dl.facts")).to_contain_text(
        "09:00 to 17:00, Mon, Tue, Wed, Thu, Fri"
    )
    enrol = page.get_by_role("form", name="Enrol a person")
    enrol.get_by_label("Person's name").fill("Barack Obama")
    enrol.get_by_label("Photos").set_input_files(str(people / "obama.jpg"))
    enrol.get_by_role("button", name="Enrol").click()
    expect(enrol.get_by_role("alert")).to_contain_text("Consent required")
    screenshot(page, "attendance-enrol")
    enrol.get_by_label("Consent given on").fill(consent)
    enrol.get_by_label("Consent recorded by").fill("HR, J. Doe")
    enrol.get_by_role("button", name="Enrol").click()
    expect(enrol).to_contain_text("Enrolled Barack Obama", timeout=60_000)
    expect(enrol).to_contain_text(f"Consent of {consent} recorded by HR, J. Doe")
    expect(page.get_by_role("table", name="People")).to_contain_text("recorded by HR, J. Doe")
    with server.client("supervisor") as c, (people / "biden.jpg").open("rb") as fh:
        r = c.post(
            "/api/galleries/attendance-ui/identities",
            data={"identity": "Joe Biden", "consent_on": consent, "consent_by": "HR"},
            files=[("files", ("b.jpg", fh))],
        )
        assert r.status_code == 201, r.text

    # Marks as an entrance camera would make them: Obama late (09:25) and gone early (16:30); Biden absent.
    app = App(Settings(data_dir=server.data_dir))
    try:
        zone = local_zone(app.settings)
        with app.db.session() as s:
            gallery_id = s.scalar(select(Gallery.id).where(Gallery.name == "attendance-ui"))
            obama = s.scalar(select(Identity.id).where(Identity.name == "Barack Obama"))
            for hh_mm in ("09:25", "12:02", "16:30"):
                at = (
                    datetime.combine(day, time.fromisoformat(hh_mm), zone)
                    .astimezone(UTC)
                    .replace(tzinfo=None)
                )
                s.add(
                    AttendanceMark(
                        identity_id=obama,
                        gallery_id=gallery_id,
                        camera_name="front",
                        at=at,
                        score=0.95,
                        threshold=0.9,
                    )
                )
    finally:
        app.close()

    go(page, "Attendance")
    choose = page.get_by_role("form", name="Choose the report")
    choose.get_by_label("Attendance gallery").select_option("attendance-ui")
    choose.get_by_label("Date").fill(day.isoformat())
    choose.get_by_role("button", name="Show report").click()
    report = page.get_by_role("region", name="Attendance report")
    expect(report.get_by_role("heading", name=f"attendance-ui: {day.isoformat()}")).to_be_visible()
    expect(report.locator("dl.facts")).to_contain_text("09:00")
    expect(report.locator("dl.facts")).to_contain_text("10 minutes")
    table = report.get_by_role("table", name="Attendance")
    obama_row = table.get_by_role("row").filter(has_text="Barack Obama")
    expect(obama_row).to_contain_text("late")
    expect(obama_row).to_contain_text("left early")
    expect(obama_row).to_contain_text("09:25")
    expect(obama_row).to_contain_text("16:30")
    expect(obama_row).to_contain_text("25 min")
    expect(table.get_by_role("row").filter(has_text="Joe Biden")).to_contain_text("absent")
    screenshot(page, "attendance")

    href = report.get_by_role("link", name="Download CSV").get_attribute("href") or ""
    assert "format=csv" in href and "gallery=attendance-ui" in href
    answer = page.request.get(server.url + href)
    assert answer.ok and answer.headers["content-type"].startswith("text/csv")
    rows = {r["person"]: r for r in csv.DictReader(io.StringIO(answer.text()))}
    assert rows["Barack Obama"]["status"] == "late" and rows["Joe Biden"]["status"] == "absent"

    # A range: the Tuesday too, when nobody came.
    choose.get_by_label("Until (optional)").fill((day + timedelta(days=1)).isoformat())
    choose.get_by_role("button", name="Show report").click()
    expect(table.locator("tbody tr")).to_have_count(4)
    expect(table.locator("tbody tr").filter(has_text="absent")).to_have_count(3)


def test_compare_galleries_job_with_progress_and_pairs(server: Server, page: Any, people: Path) -> None:
    with server.client("supervisor") as c:
        for gallery, enrolments in (
            ("cmp-a", [("Barack Obama", "obama.jpg")]),
            ("cmp-b", [("B. H. Obama", "obama2.jpg"), ("Joe Biden", "biden.jpg")]),
        ):
            assert c.post("/api/galleries", json={"name": gallery, "kind": "reference"}).status_code == 201
            for name, photo in enrolments:
                with (people / photo).open("rb") as fh:
                    r = c.post(
                        f"/api/galleries/{gallery}/identities",
                        data={"identity": name},
                        files=[("files", (photo, fh))],
                    )
                assert r.status_code == 201, r.text
    login(page, server, "supervisor")
    go(page, "Compare galleries")
    form = page.get_by_role("form", name="New comparison")
    form.get_by_label("Gallery A (searched for)").select_option("cmp-a")
    form.get_by_label("Gallery B (searched in)").select_option("cmp-b")
    form.get_by_label("Best matches kept per face (top-k)").fill("3")
    form.get_by_role("button", name="Start comparison").click()
    expect(form.get_by_role("alert")).to_contain_text("A case reference is required")
    form.get_by_label("Case reference").fill("CASE-UI-3")
    form.get_by_role("button", name="Start comparison").click()

    job = page.get_by_role("region", name="Comparison job")
    bar = job.get_by_role("progressbar", name="Comparison progress")
    expect(bar).to_be_visible()
    expect(job).to_contain_text("done: 1 enrolled face of cmp-a searched")
    assert bar.evaluate("b => b.value === b.max && b.max >= 1")
    assert re.search(r"#/compare/[0-9a-f]{16}$", page.url), page.url
    pairs = job.get_by_role("table", name="Identity pairs")
    row = pairs.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Barack Obama")
    expect(row).to_contain_text("B. H. Obama")
    expect(row).not_to_contain_text("Biden")
    for name in ("Enrolled photo of Barack Obama", "Enrolled photo of B. H. Obama"):
        img = row.get_by_role("img", name=name)
        expect(img).to_be_visible()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    expect(job).to_contain_text("Pairs 1–1 of 1")
    screenshot(page, "compare")
    href = job.get_by_role("link", name="Download CSV (pairs of people)").get_attribute("href") or ""
    answer = page.request.get(server.url + href)
    assert answer.ok and "B. H. Obama" in answer.text() and "Barack Obama" in answer.text()
    jobs = page.get_by_role("table", name="Comparisons")
    expect(jobs.locator("tbody tr").filter(has_text="CASE-UI-3")).to_contain_text("done")

    # An operator has no comparison page (managers only).
    logout(page)
    login(page, server, "operator")
    page.goto(server.url + "/#/compare")
    expect(page.get_by_role("main")).to_contain_text("Not available for your role")


def test_dashboard_shows_the_last_snapshot_of_a_camera_that_is_not_running(
    server: Server, page: Any, hamilton_sightings: tuple[str, ...]
) -> None:
    with server.client("supervisor") as c:
        body = {"name": "never-run", "url": "webcam:9", "start": False}
        assert c.post("/api/cameras", json=body).status_code == 201
    login(page, server, "supervisor")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    foyer = page.get_by_role("article", name="Camera foyer")
    expect(foyer).to_contain_text("finished")
    still = foyer.get_by_role("img", name="Last picture of camera foyer (finished)")
    expect(still).to_be_visible()
    assert "/snapshot.jpg" in (still.get_attribute("src") or "")
    page.wait_for_function("img => img.naturalWidth > 1", arg=still.element_handle())
    expect(foyer.get_by_text("waiting for a picture…")).to_be_hidden()
    expect(foyer.get_by_text("loading the last picture…")).to_be_hidden()
    # A camera that never ran has no picture yet (the snapshot answers 404): said so.
    never = page.get_by_role("article", name="Camera never-run")
    expect(never.get_by_text("no picture yet")).to_be_visible()
    screenshot(page, "dashboard")

    # Started again: the live stream, whose note goes once a frame shows; finished: the snapshot again.
    stage = page.get_by_role("article", name="Camera stage")
    stage.get_by_role("button", name="Start").click()
    live = stage.get_by_role("img", name="Live view of camera stage")
    expect(live).to_have_attribute("src", re.compile(r"/preview\.mjpg"))
    page.wait_for_function("img => img.naturalWidth > 1", arg=live.element_handle())
    expect(stage.get_by_text("waiting for a picture…")).to_be_hidden()
    again = stage.get_by_role("img", name="Last picture of camera stage (finished)")
    expect(again).to_be_visible(timeout=ALARM_TIMEOUT_MS)
    assert "/snapshot.jpg" in (again.get_attribute("src") or "")
    page.wait_for_function("img => img.naturalWidth > 1", arg=again.element_handle())


@pytest.mark.slow
def test_live_alarm_and_two_person_review(server: Server, page: Any, shared_data: Path) -> None:
    photo = shared_data / "people" / "lin-manuel-miranda.png"
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    login(page, server, "supervisor")

    # A watchlist needing two confirmations; the form says which fields a watchlist needs.
    go(page, "Galleries & people")
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
    go(page, "Cameras")
    add = page.get_by_role("form", name="Add a camera")
    add.get_by_label("Camera name").fill("hamilton")
    add.get_by_label("Address").fill(str(clip))
    add.get_by_label("Site").fill("theatre")
    add.get_by_label("Kind").select_option("entrance")
    add.get_by_label("Start it now").uncheck()
    add.get_by_role("button", name="Add camera").click()
    expect(add.get_by_role("status")).to_contain_text("Camera added")
    go(page, "Dashboard")
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
    # The live view, or the last picture once the clip has ended.
    preview = tile.get_by_role("img", name=re.compile(r"(Live view|Last picture) of camera hamilton"))
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

    # The same person cannot confirm twice (the server refuses it): the button is off, and says why.
    expect(main.get_by_role("button", name="Confirm")).to_be_disabled()
    expect(main.get_by_role("button", name="Confirm")).to_have_accessible_description(
        "You confirmed; waiting for another person to confirm (nobody confirms twice)."
    )
    expect(main.get_by_role("button", name="Dismiss")).to_be_enabled()
    expect(main).to_contain_text("1 of 2 required")
    logout(page)

    # A second supervisor finds it in the queue and confirms it.
    login(page, server, "supervisor2")
    go(page, "Alarms")
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


# ---- safeguards: audit log, transparency, watchlist terms, metadata, erasure, retention, webhooks ----


def test_auditor_lands_on_the_audit_log_and_verifies_the_chain(server: Server, page: Any) -> None:
    c, csrf = server.login("supervisor")
    try:
        r = c.post(
            "/api/galleries",
            headers={"x-csrf-token": csrf},
            json={
                "name": "audited-wl",
                "kind": "watchlist",
                "purpose": "audit UI test",
                "legal_basis": "order 7",
                "authorized_by": "judge A",
                "expires_on": EXPIRES,
            },
        )
        assert r.status_code == 201, r.text
    finally:
        c.close()
    login(page, server, "auditor")
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    assert page.url.endswith("#/audit")
    entries = page.get_by_role("table", name="Audit entries")
    created = entries.get_by_role("row").filter(has_text="audited-wl").filter(has_text="gallery_create")
    expect(created).to_have_count(1)
    expect(created).to_contain_text("user:supervisor")
    created.locator("summary").click()
    expect(created.locator("pre")).to_contain_text('"legal_basis": "order 7"')

    # Newest first, and the filters narrow it down.
    ids = [int(x) for x in entries.locator("tbody tr td:first-child").all_inner_texts()]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 2
    filters = page.get_by_role("form", name="Filter the audit log")
    filters.get_by_label("Action").fill("gallery_create")
    filters.get_by_label("Actor").fill("user:supervisor")
    filters.get_by_role("button", name="Apply filters").click()
    expect(entries.locator("tbody tr").filter(has_not_text="gallery_create")).to_have_count(0)
    expect(entries.locator("tbody tr").filter(has_not_text="user:supervisor")).to_have_count(0)
    expect(entries).to_contain_text("audited-wl")

    page.get_by_role("button", name="Verify chain").click()
    expect(page.get_by_role("main")).to_contain_text("Audit chain intact")
    head = page.get_by_label("Head hash").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", head), head
    with server.client("auditor") as api:  # a running camera may have added entries since
        log = api.get("/api/audit", params={"limit": 10_000}).json()
    assert head in {e["hash"] for e in log}


def test_supervisor_edits_watchlist_terms_and_renews_it(server: Server, page: Any) -> None:
    with server.client("supervisor") as c:
        body = {
            "name": "terms-wl",
            "kind": "watchlist",
            "purpose": "terms UI test",
            "legal_basis": "order 1",
            "authorized_by": "judge B",
            "expires_on": EXPIRES,
        }
        assert c.post("/api/galleries", json=body).status_code == 201
    login(page, server, "supervisor")
    page.goto(server.url + "/#/galleries/terms-wl")
    page.get_by_role("button", name="Edit terms").click()
    form = page.get_by_role("form", name="Edit watchlist terms")
    form.get_by_label("Legal basis").fill("court order 2")
    form.get_by_label("Limited to sites").fill("gate, hall")
    form.get_by_label("Retention days").fill("30")
    form.get_by_label("Confirmations required").select_option("2")
    form.get_by_role("button", name="Save terms").click()
    expect(form).to_be_hidden()
    main = page.get_by_role("main")
    expect(main.locator("dl.facts")).to_contain_text("court order 2")
    expect(main.locator("dl.facts")).to_contain_text("gate, hall")
    expect(main.locator("dl.facts")).to_contain_text("30 days")
    with server.client("supervisor") as c:
        g = c.get("/api/galleries/terms-wl").json()
    assert (g["legal_basis"], g["sites"], g["retention_days"], g["confirmations_required"]) == (
        "court order 2",
        ["gate", "hall"],
        30,
        2,
    )

    # A watchlist past its expiry is shown as EXPIRED with a Renew action (the answer is doctored: the
    # server refuses to create a watchlist that is already expired).
    yesterday = (date.today() - timedelta(days=1)).isoformat()

    def expired(route: Any) -> None:
        if route.request.method != "GET":
            route.continue_()
            return
        data = route.fetch().json()
        route.fulfill(json={**data, "expired": True, "expires_on": yesterday})

    page.route("**/api/galleries/terms-wl", expired)
    page.reload()
    banner = main.get_by_role("alert").filter(has_text="EXPIRED")
    expect(banner).to_contain_text("raises no alarms")
    banner.get_by_role("button", name="Renew").click()
    dialog = page.get_by_role("dialog", name="Renew terms-wl")
    renewed = (date.today() + timedelta(days=90)).isoformat()
    dialog.get_by_label("New expiry date").fill(renewed)
    page.unroute("**/api/galleries/terms-wl")
    dialog.get_by_role("button", name="Renew").click()
    expect(main.get_by_text("EXPIRED")).to_have_count(0)
    expect(main.locator("dl.facts")).to_contain_text(renewed)
    page.get_by_role("link", name="← Galleries").click()
    row = page.get_by_role("table", name="Galleries").get_by_role("row").filter(has_text="terms-wl")
    expect(row).to_contain_text("sites: gate, hall")
    expect(row).to_contain_text(renewed)
    logout(page)

    # The auditor sees the change with the terms before and after.
    login(page, server, "auditor")
    filters = page.get_by_role("form", name="Filter the audit log")
    filters.get_by_label("Action").fill("gallery_update")
    filters.get_by_role("button", name="Apply filters").click()
    entries = page.get_by_role("table", name="Audit entries")
    updates = entries.get_by_role("row").filter(has_text="terms-wl")
    expect(updates).to_have_count(2)  # the terms, then the renewal (newest first)
    expect(updates.first).to_contain_text(renewed)
    change = updates.last
    expect(change).to_contain_text("user:supervisor")
    change.locator("summary").click()
    detail = change.locator("pre")
    expect(detail).to_be_visible()
    terms = json.loads(detail.inner_text())
    assert terms["before"]["legal_basis"] == "order 1" and terms["after"]["legal_basis"] == "court order 2"
    assert terms["after"]["sites"] == ["gate", "hall"]


def test_sensitive_metadata_is_refused_and_other_metadata_kept(
    server: Server, page: Any, people: Path
) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "staff-ui", "kind": "reference"}).status_code == 201
    login(page, server, "supervisor")
    page.goto(server.url + "/#/galleries/staff-ui")
    form = page.get_by_role("form", name="Enrol a person")
    form.get_by_label("Person's name").fill("Barack Obama")
    form.get_by_label("Photos").set_input_files(str(people / "obama.jpg"))
    form.get_by_label("Field 1 name").fill("ethnicity")
    form.get_by_label("Field 1 value").fill("any")
    form.get_by_role("button", name="Enrol").click()
    alert = form.get_by_role("alert")
    expect(alert).to_contain_text("Refused: vigil does not record sensitive traits")
    expect(alert).to_contain_text("'ethnicity' names a sensitive trait (racial or ethnic origin)")
    expect(alert).to_contain_text("Nothing was saved")
    expect(form.get_by_label("Field 1 name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("main")).to_contain_text("Nobody is enrolled yet")
    with server.client("supervisor") as c:
        assert c.get("/api/galleries/staff-ui/identities").json() == []

    # An ordinary key is kept, shown and editable on the person's page.
    dismiss_toasts(page)
    form.get_by_label("Field 1 name").fill("employee_no")
    form.get_by_label("Field 1 value").fill("4711")
    form.get_by_role("button", name="Enrol").click()
    expect(form).to_contain_text("Enrolled Barack Obama", timeout=60_000)
    page.get_by_role("table", name="People").get_by_role("link", name="Barack Obama").click()
    expect(page.get_by_role("list", name="Metadata")).to_contain_text("employee_no: 4711")
    details = page.get_by_role("form", name="Edit details")
    details.get_by_role("button", name="Add a field").click()
    details.get_by_label("Field 2 name").fill("mood")
    details.get_by_label("Field 2 value").fill("calm")
    details.get_by_role("button", name="Save details").click()
    expect(details.get_by_role("alert")).to_contain_text("'mood' names a sensitive trait (emotion)")
    dismiss_toasts(page)
    details.get_by_role("button", name="Remove field 2").click()
    details.get_by_label("Field 1 value").fill("4712")
    details.get_by_role("button", name="Save details").click()
    expect(page.get_by_role("list", name="Metadata")).to_contain_text("employee_no: 4712")
    with server.client("supervisor") as c:
        (person,) = c.get("/api/galleries/staff-ui/identities").json()
    assert person["attributes"] == {"employee_no": "4712"}


def test_erasure_from_the_person_page(server: Server, page: Any, people: Path) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "erase-ui", "kind": "reference"}).status_code == 201
        with (people / "biden.jpg").open("rb") as fh:
            r = c.post(
                "/api/galleries/erase-ui/identities",
                data={"identity": "Joe Biden"},
                files=[("files", ("b.jpg", fh))],
            )
        assert r.status_code == 201, r.text
        identity_id = r.json()["identity_id"]
    login(page, server, "supervisor")
    page.goto(server.url + f"/#/people/{identity_id}")
    expect(page.get_by_role("heading", name="Joe Biden")).to_be_visible()
    expect(page.get_by_role("button", name="Remove person")).to_be_visible()
    page.get_by_role("button", name="Erase (GDPR Art. 17)").click()
    dialog = page.get_by_role("dialog", name="Erase Joe Biden?")
    for deleted in (
        "templates",
        "alarms, with the face crops and frame snapshots",
        "sightings",
        "search index",
    ):
        expect(dialog).to_contain_text(deleted)
    expect(dialog).to_contain_text("pseudonymous record")
    dialog.get_by_role("button", name="Erase").click()
    expect(dialog.get_by_role("alert")).to_contain_text("Give the reason")
    dialog.get_by_label("Reason").fill("Art. 17 request 2026-114")
    dialog.get_by_label("I understand that this cannot be undone").check()
    dialog.get_by_role("button", name="Erase").click()
    expect(page.get_by_role("heading", name="Person erased")).to_be_visible()
    pseudonym = page.get_by_label("Pseudonym").inner_text()
    assert re.fullmatch(r"erased-[0-9a-f]{20}", pseudonym), pseudonym
    expect(page.get_by_role("main")).to_contain_text("Templates deleted")
    page.get_by_role("link", name="← Gallery erase-ui").click()
    expect(page.get_by_role("main")).to_contain_text("Nobody is enrolled yet")
    with server.client("auditor") as c:
        (entry,) = c.get("/api/audit", params={"action": "erasure"}).json()
    assert entry["target_id"] == pseudonym and "Biden" not in json.dumps(entry)


def test_camera_retention_at_creation_and_in_the_edit_form(server: Server, page: Any) -> None:
    login(page, server, "supervisor")
    go(page, "Cameras")
    add = page.get_by_role("form", name="Add a camera")
    add.get_by_label("Camera name").fill("lobby")
    add.get_by_label("Address").fill("webcam:9")
    add.get_by_label("Retention days").fill("7")
    add.get_by_label("Keep sightings (investigations)").check()
    add.get_by_label("Start it now").uncheck()
    add.get_by_role("button", name="Add camera").click()
    expect(add.get_by_role("status")).to_contain_text("Camera added")
    row = page.get_by_role("table", name="Cameras").get_by_role("row").filter(has_text="lobby")
    expect(row).to_contain_text("7 days")
    expect(row).to_contain_text("keeps sightings")
    row.get_by_role("button", name="Edit camera lobby").click()
    dialog = page.get_by_role("dialog", name="Edit camera lobby")
    expect(dialog.get_by_label("Retention days")).to_have_value("7")
    dialog.get_by_label("Retention days").fill("14")
    dialog.get_by_label("Keep sightings (investigations)").uncheck()
    dialog.get_by_label("Site").fill("hq")
    dialog.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("14 days")
    expect(row).not_to_contain_text("keeps sightings")
    with server.client("supervisor") as c:
        cam = c.get("/api/cameras/lobby").json()
    assert (cam["retention_days"], cam["keep_sightings"], cam["site"]) == (14, False, "hq")


def test_admin_webhooks_secret_shown_once_and_purge(server: Server, page: Any) -> None:
    login(page, server, "admin")
    go(page, "Webhooks")
    form = page.get_by_role("form", name="New webhook")
    form.get_by_label("URL").fill("http://127.0.0.1:9/vigil-hook")
    form.get_by_label("camera_offline").check()
    form.get_by_role("button", name="Create webhook").click()
    dialog = page.get_by_role("dialog", name=re.compile(r"Webhook \d+ created"))
    secret = dialog.get_by_label("Signing secret").inner_text().strip()
    assert len(secret) >= 16
    expect(dialog).to_contain_text("shown once")
    dialog.get_by_role("button", name="Done").click()
    hooks = page.get_by_role("table", name="Webhooks")
    row = hooks.get_by_role("row").filter(has_text="127.0.0.1:9/vigil-hook")
    expect(row).to_contain_text("alarm, camera_offline")
    page.reload()
    expect(row).to_be_visible()
    assert secret not in page.content()
    with server.client("admin") as c:
        (hook,) = [w for w in c.get("/api/webhooks").json() if w["url"].endswith("/vigil-hook")]
    assert "secret" not in hook

    row.get_by_label(re.compile(r"Webhook \d+ is enabled")).uncheck()
    expect(page.locator("#toasts")).to_contain_text("disabled")
    with server.client("admin") as c:
        assert c.get("/api/webhooks").json()[0]["enabled"] is False
    row.get_by_role("button", name=re.compile("Test webhook")).click()
    expect(page.locator("#toasts")).to_contain_text("Test event queued")
    expect(page.get_by_role("region", name="Dead letters")).to_be_visible()
    row.get_by_role("button", name=re.compile("Delete webhook")).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("main")).to_contain_text("No webhooks yet")

    go(page, "Users & keys")
    page.get_by_role("button", name="Purge now").click()
    page.get_by_role("dialog", name="Purge now?").get_by_role("button", name="Purge now").click()
    report = page.get_by_role("region", name="Retention")
    expect(report).to_contain_text("Purge done")
    expect(report).to_contain_text("Dead letters")


def test_transparency_report_shows_figures(server: Server, page: Any, people: Path) -> None:
    with server.client("supervisor") as c, (people / "obama2.jpg").open("rb") as fh:
        assert c.post("/api/search", files={"file": ("o.jpg", fh)}).status_code == 200
    with server.client("auditor") as c:
        expected = c.get("/api/reports/transparency").json()
    login(page, server, "auditor")
    go(page, "Transparency")
    expect(page.get_by_role("heading", name="Transparency report")).to_be_visible()
    summary = page.get_by_role("table", name="Summary")

    def figure(name: str) -> Any:
        return summary.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))

    for name, value in (
        ("Alarms", expected["alarms"]),
        ("Enrolments", expected["enrolments"]),
        ("Erasures (GDPR Art. 17)", expected["erasures"]),
    ):
        expect(figure(name)).to_have_text(re.compile(rf"^\s*{re.escape(name)}\s*{value}\s*$"))
    expect(figure("Audit chain")).to_contain_text("intact")
    assert expected["searches"].get("search", 0) >= 1
    searches = page.get_by_role("table", name="Searches").get_by_role("row")
    expect(searches.filter(has=page.get_by_role("cell", name="search", exact=True))).to_have_text(
        re.compile(rf"^\s*search\s*{expected['searches']['search']}\s*$")
    )
    if expected["per_watchlist_camera"]:  # the slow test's alarm
        expect(page.get_by_role("img", name="Chart: alarms per watchlist and camera")).to_be_visible()
        expect(page.get_by_role("table", name="Alarms per watchlist and camera")).to_contain_text("wanted")
    else:
        expect(page.get_by_role("main")).to_contain_text("No alarms in this period")

    # A period with nothing in it, and the HTML download for that period.
    form = page.get_by_role("form", name="Report period")
    form.get_by_label("From").fill("2000-01-01")
    form.get_by_label("Until (inclusive)").fill("2000-01-31")
    form.get_by_role("button", name="Show report").click()
    expect(figure("Audit entries in the period")).to_have_text(re.compile(r".*period\s*0\s*$"))
    link = page.get_by_role("link", name="Download HTML")
    href = link.get_attribute("href") or ""
    assert "format=html" in href and "since=" in href and "until=" in href
    answer = page.request.get(server.url + href)
    assert answer.ok and "Transparency report" in answer.text()
    assert "data:image/png;base64," in answer.text()
