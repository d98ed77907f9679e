"""An alarm's evidence export (issue 17, item 4): the crop, the frame with the bystander blurred,
a manifest of hashes, the audit entry, and the check of a copy."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from vigil.app import App
from vigil.core.errors import InputError, NotFoundError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.storage.tables import AlarmRecord, AuditEntry
from vigil.video import export as svc
from vigil.video.watch import watch
from vigil.vision.image import load_image


@pytest.fixture
def alarm_id(app: App, people: Path, tmp_path: Path) -> int:
    """A real alarm: Obama enrolled in a watchlist, then seen beside a bystander (two_people.jpg)."""
    terms = {
        "legal_basis": "court order 12",
        "authorized_by": "Judge A",
        "expires_on": date.today() + timedelta(30),
    }
    galleries.create_gallery(
        app, galleries.validate_spec(name="wanted", kind="watchlist", purpose="test", **terms)
    )
    enrolment.enroll(app, "wanted", "Barack Obama", [load_image(people / "obama.jpg")])
    folder = tmp_path / "cam"
    folder.mkdir()
    shutil.copy(people / "two_people.jpg", folder / "a.jpg")
    watch(app, str(folder), on_event=lambda e: None)
    with app.db.session() as s:
        row = s.scalars(select(AlarmRecord)).one()
        return row.id


def _faces(app: App, png: Path) -> int:
    image = cv2.imread(str(png))
    big = np.asarray(cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC), np.uint8)
    return len(app.engine.detector.detect(big))


def test_export_blurs_the_bystander_and_verifies(app: App, alarm_id: int, tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    result = svc.export_alarm(app, alarm_id, out, actor="test:exporter")
    assert sorted(p.name for p in out.iterdir()) == ["crop.jpg", "frame.png", "manifest.json"]
    assert result.faces_blurred == 1
    assert _faces(app, out / "frame.png") == 1  # the alarm's own face only
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["identity"] == "Barack Obama" and manifest["exporter"] == "test:exporter"
    assert {f["name"] for f in manifest["files"]} == {"crop.jpg", "frame.png"}
    with app.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "alarm_export")).one()
    assert entry.actor == "test:exporter" and entry.target_id == str(alarm_id)
    assert json.loads(entry.detail)["manifest_sha256"] == result.manifest_sha256
    check = svc.verify_export(out, app)
    assert check.ok and check.audit_entry_id == entry.id, check
    # A changed file, or a changed manifest, is named.
    (out / "frame.png").write_bytes((out / "frame.png").read_bytes() + b"x")
    manifest["identity"] = "Someone Else"
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = svc.verify_export(out, app).problems
    assert any("frame.png" in p for p in problems) and any("manifest was changed" in p for p in problems)


def test_refusals(app: App, alarm_id: int, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        svc.export_alarm(app, 999_999, tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(InputError, match="not an empty folder"):
        svc.export_alarm(app, alarm_id, tmp_path / "full")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{\x00 not json")
    with pytest.raises(InputError, match="not a vigil export manifest"):
        svc.verify_export(tmp_path / "bad")
    with pytest.raises(InputError, match=r"no manifest\.json"):
        svc.verify_export(tmp_path / "full")


def test_cli_export_and_verify(run, people: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run(
        "gallery",
        "create",
        "wanted",
        "--kind",
        "watchlist",
        "--purpose",
        "test",
        "--legal-basis",
        "court order 12",
        "--authorized-by",
        "Judge A",
        "--expires",
        "2099-01-01",
    )
    run("enroll", "Barack Obama", str(people / "obama.jpg"), "--gallery", "wanted")
    folder = tmp_path / "cam"
    folder.mkdir()
    shutil.copy(people / "two_people.jpg", folder / "a.jpg")
    run("watch", "--gallery", "wanted", "--json", str(folder))
    out, _ = run("alarm", "export", "1", "--out", str(tmp_path / "ev"), "--json")
    digest = json.loads(out)["manifest_sha256"]
    out, _ = run("alarm", "verify-export", str(tmp_path / "ev"), "--json")
    assert json.loads(out)["ok"] and json.loads(out)["manifest_sha256"] == digest
    (tmp_path / "ev" / "crop.jpg").write_bytes(b"changed")
    out, _ = run("alarm", "verify-export", str(tmp_path / "ev"), "--json", code=1)
    assert "crop.jpg: changed" in out
    run("alarm", "export", "77", "--out", str(tmp_path / "ev2"), code=5)
