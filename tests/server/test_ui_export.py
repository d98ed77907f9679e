"""The alarm page's "Export evidence", in a real browser (Chromium driven by Playwright) against a
real `vigil serve` holding a real alarm: the reviewer clicks it, the browser saves the zip, and its
files check against the manifest and the server's audit log; an auditor (who may not review) gets
no alarm page and no button."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import Server, start_server, stop_server
from test_ui import browser, login, page, screenshot  # noqa: F401 (fixtures)

from vigil.app import App
from vigil.core.config import Settings
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.video import export
from vigil.video.watch import watch
from vigil.vision.image import load_image

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine, people: Path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("export-ui")
    app = App(Settings(data_dir=root / "data"), engine_override=engine)
    terms = {
        "legal_basis": "court order 12",
        "authorized_by": "Judge A",
        "expires_on": date.today() + timedelta(30),
    }
    galleries.create_gallery(
        app, galleries.validate_spec(name="wanted", kind="watchlist", purpose="test", **terms)
    )
    enrolment.enroll(app, "wanted", "Barack Obama", [load_image(people / "obama.jpg")])
    (root / "cam").mkdir()
    shutil.copy(people / "two_people.jpg", root / "cam" / "a.jpg")
    watch(app, str(root / "cam"), on_event=lambda e: None)
    app.close()
    s = start_server(root / "data", {"VIGIL_START_CAMERAS": "false"})
    yield s
    stop_server(s)


def test_a_reviewer_exports_the_evidence(server: Server, page: Any, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    login(page, server, "operator")
    page.goto(server.url + "/#/alarms/1")
    section = page.get_by_role("region", name="Evidence")
    expect(section).to_contain_text("hand it over only under the watchlist's legal basis")
    with page.expect_download() as download:
        section.get_by_role("button", name="Export evidence").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "alarm-1-evidence.zip"
    expect(section).to_contain_text("Evidence exported")
    screenshot(page, "alarm-evidence-exported")
    zipfile.ZipFile(saved).extractall(tmp_path / "ev")
    app = App(Settings(data_dir=server.data_dir), engine_override=engine)
    try:
        check = export.verify_export(tmp_path / "ev", app)
    finally:
        app.close()
    assert check.ok, check
    expect(section).to_contain_text(str(check.manifest_sha256))


def test_an_auditor_has_no_export_button(server: Server, page: Any) -> None:  # noqa: F811
    login(page, server, "auditor")
    page.goto(server.url + "/#/alarms/1")
    expect(page.get_by_role("main")).to_contain_text("Auditors see the alarm list only")
    expect(page.get_by_role("button", name="Export evidence")).to_have_count(0)
