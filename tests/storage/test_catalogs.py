"""The catalog on each database it runs on (SQLite, PostgreSQL): the migrations from an empty database,
ids past 2^31, and two servers writing to one catalog at once (docs/deployment.md, "PostgreSQL")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from pgserver import catalog_url, drop_catalog
from vigil.app import App
from vigil.core.errors import VigilError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, matching
from vigil.storage import audit
from vigil.storage.db import MIGRATIONS, Database
from vigil.storage.tables import AuditEntry, Identity, Template
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs

NEWEST = max(p.name[:4] for p in (MIGRATIONS / "versions").glob("0*.py"))
BIG = 2**31 + 7
"""Past what a 32-bit INTEGER holds."""


def _guards(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass AND NOT tgisinternal"
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
        return {name for (name,) in conn.execute(text(sql))}


def test_the_migrations_run_from_an_empty_database(catalog_kind: str, tmp_path: Path) -> None:
    url = catalog_url(catalog_kind, empty=True) or f"sqlite:///{tmp_path / 'empty.db'}"
    try:
        db = Database(url)
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == NEWEST
        expected = {"audit_log_no_update", "audit_log_no_delete"}
        if catalog_kind == "postgresql":
            expected.add("audit_log_no_truncate")
            with db.engine.connect() as conn:
                kinds = conn.execute(
                    text(
                        "SELECT table_name, data_type FROM information_schema.columns "
                        "WHERE column_name = 'id' AND table_name IN "
                        "('templates', 'audit_log', 'alarms', 'sightings', 'alarm_negatives')"
                    )
                ).all()
            assert sorted(kinds) == [
                (t, "bigint") for t in ("alarm_negatives", "alarms", "audit_log", "sightings", "templates")
            ]
        assert _guards(db.engine) == expected
        db.close()
        Database(url).close()  # at the newest revision: opening again changes nothing
    finally:
        drop_catalog(url if catalog_kind == "postgresql" else None)


def _jump_template_ids(engine: Engine, to: int) -> None:
    """The next template gets id ``to``: the sequence (PostgreSQL), AUTOINCREMENT's counter (SQLite)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"ALTER SEQUENCE templates_id_seq RESTART WITH {to}"))
        else:
            conn.execute(text("DELETE FROM sqlite_sequence WHERE name = 'templates'"))
            conn.execute(text(f"INSERT INTO sqlite_sequence (name, seq) VALUES ('templates', {to - 1})"))


def _watchlist(app: App, name: str) -> None:
    terms = {"purpose": "t", "legal_basis": "t", "authorized_by": "t"}
    spec = galleries.validate_spec(
        name=name, kind="watchlist", expires_on=date.today() + timedelta(days=30), **terms
    )
    galleries.create_gallery(app, spec)


def test_ids_past_two_to_the_31_are_stored_and_matched(app: App, people: Path) -> None:
    _watchlist(app, "wanted")
    _jump_template_ids(app.db.engine, BIG)
    lin = load_image(people / "lin-manuel-miranda.png")
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [lin])
    with app.db.session() as s:
        assert s.scalars(select(Template.id)).all() == [BIG]
    result = matching.identify(app, lin, ["wanted"])
    assert result.faces[0].decision == "Lin-Manuel Miranda"


def _in_threads(*work: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def run(fn: Callable[[], None]) -> None:
        start.wait()
        try:
            fn()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def _lfw_faces(app: App, shared_data: Path, n: int) -> list[tuple[str, enrolment.PreparedFace]]:
    """The first ``n`` lfw-dev people whose first photo has one usable face, prepared for enrolment."""
    out = []
    for d in sorted(p for p in (shared_data / "lfw-dev").iterdir() if p.is_dir()):
        try:
            out.append((d.name, enrolment.prepare_face(app, load_image(next(iter(sorted(d.glob("*.jpg"))))))))
        except (VigilError, StopIteration):
            continue
        if len(out) == n:
            return out
    raise AssertionError(f"fewer than {n} lfw-dev people with a usable face")


def test_two_servers_enrol_and_audit_at_once_and_the_chain_holds(
    app: App, engine, shared_data: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Two App instances on one catalog (two servers, as behind a load balancer), each with two
    threads: one enrolling people into a shared watchlist, one writing audit entries of its own."""
    same_catalog = {"data_dir": tmp_path / "other", "database_url": app.settings.database}
    other = App(app.settings.model_copy(update=same_catalog), engine_override=engine)
    try:
        _watchlist(app, "shared")
        per_thread = 10
        people = _lfw_faces(app, shared_data, 2 * per_thread)

        def enrol(a: App, mine: list[tuple[str, enrolment.PreparedFace]]) -> Callable[[], None]:
            def go() -> None:
                for name, face in mine:
                    enrolment.enroll_prepared(a, "shared", name, [face], actor="test:enrol")

            return go

        def searches(a: App, tag: str) -> Callable[[], None]:
            def go() -> None:
                for i in range(per_thread):
                    audit.record(a, f"test:{tag}", "search", target_type="photo", target_id=f"{tag}{i}")

            return go

        before = audit.count(app)
        work = (
            enrol(app, people[0::2]),
            enrol(other, people[1::2]),
            searches(app, "a"),
            searches(other, "b"),
        )
        assert _in_threads(*work) == []
        report = audit.verify(other)
        assert report.ok, report
        assert report.entries == audit.count(app) == before + 4 * per_thread
        with app.db.session() as s:
            ids = s.scalars(select(AuditEntry.id).order_by(AuditEntry.id)).all()
            assert ids == list(range(1, len(ids) + 1))  # unique, none lost
            assert s.scalar(select(func.count(Identity.id))) == 2 * per_thread
            assert s.scalar(select(func.count(func.distinct(Template.id)))) == 2 * per_thread
        # each server's index holds the other's enrolments too (the gallery's generation moved on)
        for a in (app, other):
            for name, face in people[:2]:
                assert matching.identify_faces(a, face.face, ["shared"]).faces[0].decision == name
    finally:
        other.close()
