"""``GET /api/alarms/{id}/export`` against a real `vigil serve` holding a real alarm: a reviewer
downloads the evidence zip, its files check against the manifest and the catalog's audit entry names
the API caller; an auditor (who may not review) and an unknown alarm are refused."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from harness import Server, start_server, stop_server

from vigil.app import App
from vigil.core.config import Settings
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.video import export
from vigil.video.watch import watch
from vigil.vision.image import load_image

FUTURE = date.today() + timedelta(days=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, engine, people: Path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("export-api")
    app = App(Settings(data_dir=root / "data"), engine_override=engine)
    terms = {"legal_basis": "court order 12", "authorized_by": "Judge A", "expires_on": FUTURE}
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


def test_a_reviewer_downloads_evidence_that_verifies(server: Server, tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    with server.client("admin") as c:
        r = c.get("/api/alarms/1/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert "alarm-1-evidence.zip" in r.headers["content-disposition"]
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path / "ev")
    manifest = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert manifest["manifest_sha256"] == r.headers["x-manifest-sha256"]
    assert manifest["exporter"] == "key:test-admin" and manifest["bystanders_blurred"] == 1
    app = App(Settings(data_dir=server.data_dir), engine_override=engine)
    try:
        check = export.verify_export(tmp_path / "ev", app)
    finally:
        app.close()
    assert check.ok and check.audit_entry_id is not None, check


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [("auditor", "/api/alarms/1/export", 403), ("admin", "/api/alarms/999/export", 404)],
)
def test_refused(server: Server, role: str, path: str, status: int) -> None:
    with server.client(role) as c:
        r = c.get(path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
