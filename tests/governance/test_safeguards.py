"""The safeguards as features: each test fails without the safeguard it names (docs/governance.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from vigil.app import App
from vigil.core.errors import ForbiddenError
from vigil.core.refusals import check_metadata, sensitive_trait
from vigil.events.schemas import Alarm
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, identities, matching
from vigil.governance import erasure, report, retention
from vigil.storage import audit
from vigil.storage.db import make_engine
from vigil.storage.index import IndexKey
from vigil.storage.tables import AlarmRecord, Gallery, Identity, Template
from vigil.video import cameras
from vigil.video.watch import watch
from vigil.vision.image import load_image

FUTURE = date.today() + timedelta(days=30)
pytestmark = pytest.mark.catalogs


def make_watchlist(app: App, name: str, **terms: object) -> None:
    galleries.create_gallery(
        app,
        galleries.validate_spec(
            name=name,
            kind="watchlist",
            purpose="test",
            legal_basis="test order",
            authorized_by="test judge",
            expires_on=FUTURE,
            **terms,
        ),
    )


@pytest.fixture(scope="module")
def clip(shared_data: Path) -> Path:
    return shared_data / "video" / "short_hamilton_clip.mp4"


@pytest.fixture
def lin(people: Path):  # type: ignore[no-untyped-def]
    return load_image(people / "lin-manuel-miranda.png")


def _tamper(engine: Engine, *statements: str, unguard: tuple[str, ...] = ()) -> None:
    """Run SQL as someone with the database (the file, the owner's role), first dropping the audit
    log's guard triggers named in ``unguard`` (``update``, ``delete``)."""
    on = " ON audit_log" if engine.dialect.name == "postgresql" else ""
    with engine.begin() as conn:
        for event in unguard:
            conn.exec_driver_sql(f"DROP TRIGGER audit_log_no_{event}{on}")
        for sql in statements:
            conn.exec_driver_sql(sql)


# -- audit log ---------------------------------------------------------------------------------------


def _some_entries(app: App, n: int = 5) -> None:
    for i in range(n):
        audit.record(app, "user:test", "search", target_type="photo", target_id=f"sha{i}", faces=[i])


def test_audit_log_is_append_only_in_the_database(app: App) -> None:
    _some_entries(app)
    refused = ["UPDATE audit_log SET actor = 'x' WHERE id = 2", "DELETE FROM audit_log WHERE id = 2"]
    if app.db.engine.dialect.name == "postgresql":
        refused.append("TRUNCATE audit_log")
    for sql in refused:
        with pytest.raises(IntegrityError, match="append-only"):
            _tamper(app.db.engine, sql)
    assert audit.verify(app).ok and audit.count(app) == 5


@pytest.mark.parametrize(
    ("tamper", "broken", "words"),
    [
        ("UPDATE audit_log SET detail = '{\"faces\": [99]}' WHERE id = 3", 3, "edited"),
        ("UPDATE audit_log SET actor = 'user:someone-else' WHERE id = 5", 5, "edited"),
        ("UPDATE audit_log SET at = '2020-01-01 00:00:00.000000' WHERE id = 1", 1, "edited"),
        ("DELETE FROM audit_log WHERE id = 2", 2, "missing"),
        ("DELETE FROM audit_log WHERE id IN (3, 4)", 3, "missing"),
    ],
)
def test_editing_or_deleting_any_audit_row_is_detected(
    app: App, tamper: str, broken: int, words: str
) -> None:
    _some_entries(app)
    assert audit.verify(app).ok
    _tamper(app.db.engine, tamper, unguard=("update", "delete"))  # around the triggers
    result = audit.verify(app)
    assert not result.ok and result.first_broken_id == broken
    assert result.problem and words in result.problem


def test_a_rewritten_chain_is_caught_by_its_anchor(app: App) -> None:
    """Rewriting every hash after an edit yields a valid chain, but not the head hash kept elsewhere."""
    _some_entries(app)
    anchor = audit.verify(app).head_hash
    _tamper(app.db.engine, "DELETE FROM audit_log WHERE id = 5", unguard=("delete",))  # truncate the tail
    after = audit.verify(app)
    assert after.ok and after.head_hash != anchor


def test_cli_audit_verify_names_the_broken_entry(run, catalog: str | None) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    run("gallery", "create", "visitors", "--kind", "reference")
    out, _ = run("audit", "verify", "--json")
    assert '"ok":true' in out.replace(" ", "")
    engine = make_engine(catalog or f"sqlite:///{run.data_dir / 'vigil.db'}")
    _tamper(engine, "UPDATE audit_log SET target_name = 'other' WHERE id = 1", unguard=("update",))
    engine.dispose()
    _, err = run("audit", "verify", code=1)
    assert "BROKEN at entry 1" in err


def test_audit_export_carries_the_hashes(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    out_file = tmp_path / "audit.csv"
    run("audit", "export", "--since", "2000-01-01", "--format", "csv", "--out", str(out_file))
    lines = out_file.read_text().splitlines()
    assert lines[0].startswith("id,at,actor,action") and "gallery_create" in lines[1]
    out, _ = run("audit", "export", "--action", "audit_export")
    assert '"action":"audit_export"' in out.replace(" ", "")  # the export itself was audited


# -- watchlists --------------------------------------------------------------------------------------


def test_only_lawful_watchlists_alarm(app: App, lin, clip: Path) -> None:  # type: ignore[no-untyped-def]
    """Expired, limited-elsewhere and non-watchlist galleries raise nothing; an active watchlist does."""
    make_watchlist(app, "active")
    make_watchlist(app, "expired")
    make_watchlist(app, "other-site", sites=["airport"])
    make_watchlist(app, "other-camera", cameras=["gate-9"])
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
    for g in ("active", "expired", "other-site", "other-camera", "staff"):
        enrolment.enroll(app, g, "Lin-Manuel Miranda", [lin])
    with app.db.session() as s:
        s.query(Gallery).filter_by(name="expired").update({"expires_on": date.today() - timedelta(days=1)})
    assert next(g for g in galleries.list_galleries(app) if g.name == "expired").expired
    cameras.add_camera(app, "stage", str(clip), site="theatre")
    events: list[Alarm] = []
    warnings: list[str] = []
    summary = watch(
        app,
        None,
        camera="stage",
        on_event=lambda e: events.append(e) if isinstance(e, Alarm) else None,
        on_warning=warnings.append,
    )
    assert summary["alarms"] >= 1
    assert {e.gallery for e in events} == {"active"}
    assert summary["watchlists"] == ["active"]
    for name, why in (("expired", "expired"), ("other-site", "sites"), ("other-camera", "cameras")):
        assert any(w.startswith(name) and why in w for w in warnings), warnings
    run = audit.entries(app, action="camera_run")[-1]
    assert run.detail["watchlists"] == ["active"] and run.target_name == "stage"
    alarms = audit.entries(app, action="alarm")
    assert len(alarms) == summary["alarms"]
    assert all(a.detail["gallery"] == "active" and a.detail["threshold"] > 0 for a in alarms)


def test_watchlist_changes_are_validated_and_renew(app: App) -> None:
    make_watchlist(app, "w")
    with pytest.raises(Exception, match="legal"):
        galleries.update_gallery(app, "w", {"legal_basis": ""})
    with app.db.session() as s:
        s.query(Gallery).filter_by(name="w").update({"expires_on": date.today() - timedelta(days=1)})
    before, after = galleries.update_gallery(app, "w", {"expires_on": FUTURE + timedelta(days=1)})
    assert before.expired and not after.expired


# -- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "race",
        "Ethnicity",
        "skin_colour",
        "skinColor",
        "religion",
        "political_party",
        "sexual_orientation",
        "health_status",
        "emotion",
        "mood",
        "facial_expression",
        "trade_union",
    ],
)
def test_sensitive_metadata_keys_are_refused(app: App, lin, key: str) -> None:  # type: ignore[no-untyped-def]
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
    with pytest.raises(ForbiddenError, match="sensitive trait"):
        enrolment.enroll(app, "staff", "Someone", [lin], attributes={key: "x"})
    assert identities.list_identities(app, "staff") == []
    with pytest.raises(ForbiddenError, match="sensitive trait"):
        check_metadata({"profile": {"nested": [{key: 1}]}})


def test_ordinary_metadata_is_kept(app: App, lin) -> None:  # type: ignore[no-untyped-def]
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="reference"))
    enrolment.enroll(
        app, "staff", "Someone", [lin], attributes={"employee_no": "4711", "department": "stage"}
    )
    (info,) = identities.list_identities(app, "staff")
    assert info.attributes == {"employee_no": "4711", "department": "stage"}
    for harmless in ("party_size", "orientation", "traceback", "expression_id", "name"):
        assert sensitive_trait(harmless) is None


def test_cli_refuses_sensitive_metadata(run, people: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    photo = str(people / "lin-manuel-miranda.png")
    _, err = run("enroll", "X", photo, "--gallery", "staff", "--meta", "ethnicity=any", code=7)
    assert "sensitive trait" in err and "racial or ethnic origin" in err
    out, _ = run("people", "list", "--gallery", "staff", "--json")
    assert out.strip() == "[]"


def test_no_attribute_classifier_exists() -> None:
    import vigil

    src = Path(vigil.__file__).parent
    code = "\n".join(p.read_text() for p in src.rglob("*.py") if "governance" not in p.parts)
    for word in ("predict_race", "predict_gender", "emotion_model", "age_gender", "ethnicity_model"):
        assert word not in code


# -- retention ---------------------------------------------------------------------------------------


def _blob_files(app: App) -> set[str]:
    root = app.settings.blob_dir
    return {p.parent.name + p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_purge_past_retention_leaves_no_row_or_file(app: App, lin, clip: Path) -> None:  # type: ignore[no-untyped-def]
    make_watchlist(app, "kept-1-day", retention_days=1)
    make_watchlist(app, "kept-forever")
    for g in ("kept-1-day", "kept-forever"):
        enrolment.enroll(app, g, "Lin-Manuel Miranda", [lin])
    cameras.add_camera(app, "stage", str(clip), retention_days=3)
    watch(app, None, camera="stage")
    with app.db.session() as s:
        rows = s.query(AlarmRecord).all()
        short = [
            (a.crop_sha256, a.thumbnail_sha256) for a in rows if a.gallery_id and a.camera_name == "stage"
        ]
    assert len(rows) >= 2 and short
    enrolled = {lin.sha256}
    assert retention.purge(app).alarms == 0  # nothing is old yet

    later = retention.purge(app, now=datetime.now(UTC) + timedelta(days=2))
    assert later.alarms >= 1
    with app.db.session() as s:
        left = s.query(AlarmRecord).all()
        assert {s.get(Gallery, a.gallery_id).name for a in left} == {"kept-forever"}  # type: ignore[union-attr]
        kept_files = {sha for a in left for sha in (a.crop_sha256, a.thumbnail_sha256) if sha}
    assert _blob_files(app) == enrolled | kept_files  # the 1-day gallery's crops and snapshots are gone

    much_later = retention.purge(app, now=datetime.now(UTC) + timedelta(days=4))
    assert much_later.snapshots == len(left)  # the camera keeps no frame snapshot past 3 days
    with app.db.session() as s:
        assert all(a.thumbnail_sha256 is None and a.crop_sha256 for a in s.query(AlarmRecord))
        crops = {a.crop_sha256 for a in s.query(AlarmRecord)}
    assert _blob_files(app) == enrolled | crops
    purges = audit.entries(app, action="purge")
    assert [p.detail["alarms"] for p in purges] == [later.alarms, 0]


def test_cli_purge(run) -> None:  # type: ignore[no-untyped-def]
    out, _ = run("purge", "--now", "2100-01-01", "--json")
    assert '"alarms":0' in out.replace(" ", "")


# -- erasure -----------------------------------------------------------------------------------------


def test_erasure_leaves_nothing_that_can_match(app: App, lin, people: Path, clip: Path) -> None:  # type: ignore[no-untyped-def]
    make_watchlist(app, "wanted")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [lin])
    enrolment.enroll(app, "wanted", "Barack Obama", [load_image(people / "obama.jpg")])
    cameras.add_camera(app, "stage", str(clip))
    watch(app, None, camera="stage")
    with app.db.session() as s:
        ident = s.query(Identity).filter_by(name="Lin-Manuel Miranda").one()
        template_ids = {t.id for t in s.query(Template).filter_by(identity_id=ident.id)}
        gallery_id = ident.gallery_id
        alarms = s.query(AlarmRecord).filter_by(identity_id=ident.id).all()
        files = {lin.sha256} | {sha for a in alarms for sha in (a.crop_sha256, a.thumbnail_sha256) if sha}
    assert alarms and len(files) >= 3
    before = matching.identify(app, lin, ["wanted"])
    assert before.faces[0].decision == "Lin-Manuel Miranda"

    r = erasure.erase_identity(app, ident.id, "user:dpo", reason="GDPR Art. 17 request 7")
    assert r.templates == 1 and r.photos == 1 and r.alarms == len(alarms) and r.files_left == 0

    for sha in files:
        assert not app.blobs.path(sha).exists()
    with app.db.session() as s:
        assert s.get(Identity, ident.id) is None
        assert not s.query(Template).filter(Template.id.in_(template_ids)).count()
        assert not s.query(AlarmRecord).filter_by(identity_name="Lin-Manuel Miranda").count()
        generation = s.get(Gallery, gallery_id).generation  # type: ignore[union-attr]
    index = app.indexes.get(
        IndexKey(gallery_id, app.engine.card.id),
        generation,
        app.engine.card.dimension,
        lambda: enrolment.load_templates(app, gallery_id, app.engine.card.id),
    )
    assert not set(index.ids().tolist()) & template_ids
    after = matching.identify(app, lin, None)
    assert after.faces[0].decision is None
    assert all(m.identity != "Lin-Manuel Miranda" for m in after.faces[0].matches)
    # the audit keeps that it happened, under a pseudonym, without the name or the face
    (entry,) = audit.entries(app, action="erasure")
    assert entry.target_id == r.pseudonym and r.pseudonym.startswith("erased-")
    assert "Lin-Manuel" not in entry.model_dump_json() and lin.sha256 not in entry.model_dump_json()
    assert entry.detail["reason"] == "GDPR Art. 17 request 7"
    assert audit.verify(app).ok
    # the other person is untouched
    assert (
        matching.identify(app, load_image(people / "obama2.jpg"), ["wanted"]).faces[0].decision
        == "Barack Obama"
    )


def test_cli_people_erase(run, people: Path) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    run("enroll", "Barack Obama", str(people / "obama.jpg"), "--gallery", "staff")
    out, _ = run("people", "erase", "Barack Obama", "--reason", "request 9", "--json")
    assert '"templates":1' in out.replace(" ", "")
    out, _ = run("people", "list", "--json")
    assert out.strip() == "[]"


# -- transparency report -----------------------------------------------------------------------------


def test_transparency_report_counts_equal_the_events(app: App, lin, people: Path, clip: Path) -> None:  # type: ignore[no-untyped-def]
    from vigil.accounts import Principal
    from vigil.storage.tables import ReviewAction, Role
    from vigil.video.alarms import review_alarm

    make_watchlist(app, "wanted")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [lin])
    audit.record(app, "user:a", "search", faces=[])
    audit.record(app, "user:a", "search", faces=[])
    cameras.add_camera(app, "stage", str(clip))
    summary = watch(app, None, camera="stage")
    n = summary["alarms"]
    assert n >= 2, "the clip shows him twice"
    with app.db.session() as s:
        ids = [a.id for a in s.query(AlarmRecord).order_by(AlarmRecord.id)]
    from vigil.accounts import create_user

    user = create_user(app, "reviewer", Role.supervisor, "a long password here")
    me = Principal("user", user.id, user.username, user.role)
    review_alarm(app, ids[0], ReviewAction.confirm, me, expected_version=0)  # audited by the service
    review_alarm(app, ids[1], ReviewAction.dismiss, me, expected_version=0, reason="not him")
    r = report.build(app)
    assert r.searches == {"search": 2}
    assert r.alarms == n and r.confirmed == 1 and r.dismissed == 1 and r.dismissed_share == 0.5
    (row,) = r.per_watchlist_camera
    assert (row.watchlist, row.camera, row.alarms) == ("wanted", "stage", n)
    assert row.fpir == [app.settings.target_fpir] and len(row.thresholds) == 1
    (run_,) = r.camera_runs
    assert run_.camera == "stage" and run_.watchlists == ["wanted"] and run_.alarms == n
    assert r.enrolments == 1  # the enrolment service audits itself, whoever calls it
    assert r.audit_chain_ok
    page = report.to_html(r)
    assert "data:image/png;base64," in page and "wanted" in page
    png = report.chart_png(r)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    empty = report.build(app, since=datetime.now(UTC) + timedelta(days=1))
    assert empty.alarms == 0 and empty.searches == {}
    assert np.isclose(r.dismissed_share or 0, 0.5)


def test_bulk_import_takes_only_folders_the_operator_supplies(run) -> None:  # type: ignore[no-untyped-def]
    run("gallery", "create", "staff", "--kind", "reference")
    for source in ("https://example.com/faces/", "http://cctv.local/export"):
        _, err = run("enroll-dir", source, "--gallery", "staff", code=7)
        assert "never downloads or crawls" in err
