"""``POST /api/backup`` against a real `vigil serve` holding real enrolled people: an admin downloads
the archive, it restores and identifies the same people; other roles, gallery-bound keys and a browser
session without its CSRF token are refused; the server keeps no copy and audits the download."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Server, start_server, stop_server, wait_for

from vigil.app import App
from vigil.core.config import Settings
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.governance import backup
from vigil.storage import audit
from vigil.vision.image import load_image


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine, people: Path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("backup-api") / "data"
    app = App(Settings(data_dir=data), engine_override=engine)
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
    enrolment.enroll(app, "staff", "Barack Obama", [load_image(people / "obama.jpg")])
    enrolment.enroll(app, "staff", "Joe Biden", [load_image(people / "biden.jpg")])
    app.close()
    s = start_server(data, {"VIGIL_START_CAMERAS": "false"})
    yield s
    stop_server(s)


def test_an_admin_downloads_a_backup_that_restores(
    server: Server, tmp_path: Path, engine, people: Path
) -> None:  # type: ignore[no-untyped-def]
    with server.client("admin") as c:
        r = c.post("/api/backup")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert "attachment" in r.headers["content-disposition"] and ".vbk" in r.headers["content-disposition"]
    assert r.headers["x-backup-sha256"] == hashlib.sha256(r.content).hexdigest()
    # the server keeps no copy (deleted once sent)
    wait_for(lambda: not list((server.data_dir / ".backup-downloads").iterdir()), timeout_s=10)
    archive = tmp_path / "download.vbk"
    archive.write_bytes(r.content)
    target = tmp_path / "restored"
    backup.restore_backup(archive, target, actor="test:restore")
    again = App(Settings(data_dir=target), engine_override=engine)
    try:
        assert audit.verify(again).ok
        found = matching.identify(again, load_image(people / "obama2.jpg"), ["staff"])
        assert found.faces[0].decision == "Barack Obama"
    finally:
        again.close()
    with server.client("auditor") as c:
        entries = c.get("/api/audit", params={"action": "backup_create"}).json()
    assert entries[0]["actor"] == "key:test-admin"
    assert entries[0]["detail"]["sha256"] == r.headers["x-backup-sha256"]


def test_only_an_admin_may_and_a_browser_needs_its_csrf_token(server: Server) -> None:
    for role in ("supervisor", "operator", "auditor"):
        with server.client(role) as c:
            r = c.post("/api/backup")
        assert r.status_code == 403, (role, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    with server.client(None) as c:
        assert c.post("/api/backup").status_code == 401
    browser, csrf = server.login("admin")
    try:
        assert browser.post("/api/backup").status_code == 403  # no CSRF token
        r = browser.post("/api/backup", headers={"x-csrf-token": csrf})
        assert r.status_code == 200 and len(r.content) > 10_000
    finally:
        browser.close()
