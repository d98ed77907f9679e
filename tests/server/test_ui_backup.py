"""The admin page's "Download a backup", in a real browser (Chromium driven by Playwright) against a real
`vigil serve`: the admin clicks it, the browser saves the file, it restores with its audit log intact;
an operator's navigation has no admin page to find it on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from harness import Server
from test_ui import browser, go, login, page, screenshot  # noqa: F401 (fixtures)

from vigil.app import App
from vigil.core.config import Settings
from vigil.governance import backup
from vigil.storage import audit

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


def test_the_admin_downloads_a_backup_that_restores(server: Server, page: Any, tmp_path: Path) -> None:  # noqa: F811
    login(page, server, "admin")
    go(page, "Users & keys")
    section = page.get_by_role("region", name="Backup")
    expect(section).to_contain_text("an erasure made after a backup is not in it")
    with page.expect_download() as download:
        section.get_by_role("button", name="Download a backup").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.startswith("vigil-backup-") and saved.suffix == ".vbk"
    expect(section).to_contain_text("Backup downloaded")
    expect(section).to_contain_text(hashlib.sha256(saved.read_bytes()).hexdigest())
    screenshot(page, "backup-downloaded")
    target = tmp_path / "restored"
    backup.restore_backup(saved, target)
    restored = App(Settings(data_dir=target))
    try:
        assert audit.verify(restored).ok
        assert [e.actor for e in audit.entries(restored, action="backup_restore")] == ["system"]
        assert any(e.action == "login" for e in audit.entries(restored))
    finally:
        restored.close()
    with server.client("auditor") as c:
        entries = c.get("/api/audit", params={"action": "backup_create"}).json()
    assert entries and entries[0]["actor"] == "user:admin"
