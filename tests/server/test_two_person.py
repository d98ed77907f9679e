"""The two-person rule counts people, not actor strings (issue 16.7): a user and the API keys they own
are one person; a key made by a key without an owner is that key's person; a key without an owner
is a person of its own. Over a real server, the CLI, and a catalog migrated from before."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from alembic.config import Config
from harness import Server
from sqlalchemy import select
from typer.testing import CliRunner

from vigil import accounts
from vigil.app import App
from vigil.cli import cli
from vigil.core.config import Settings
from vigil.storage import db
from vigil.storage.tables import AlarmRecord, AlarmReview, ApiKey, Gallery, Role

PROBLEM = "application/problem+json"
_galleries = itertools.count(1)


def pending_alarm(server: Server) -> dict[str, Any]:
    """A pending alarm on a new watchlist that needs two confirmations. The row is written as the
    camera pipeline writes it (tests/server/test_api.py raises real ones from a clip); here only the
    review rule matters."""
    name = f"two-person-{next(_galleries)}"
    spec = {
        "name": name,
        "kind": "watchlist",
        "purpose": "test",
        "legal_basis": "test order 1",
        "authorized_by": "test judge",
        "expires_on": (date.today() + timedelta(days=30)).isoformat(),
        "confirmations_required": 2,
    }
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json=spec).status_code == 201
    app = App(Settings(data_dir=server.data_dir))
    try:
        with app.db.session() as s:
            row = AlarmRecord(
                camera_name="door",
                gallery_id=s.scalar(select(Gallery.id).where(Gallery.name == name)),
                identity_name="Someone",
                track_id=1,
                frame_index=10,
                captured_at=datetime.now(UTC),
                score=0.9,
                threshold=0.6,
                fpir=0.01,
                model_id="test",
                box_xyxy="1,2,3,4",
                quality=0.8,
            )
            s.add(row)
            s.flush()
            alarm_id = row.id
    finally:
        app.close()
    with server.client("supervisor") as c:
        alarm: dict[str, Any] = c.get(f"/api/alarms/{alarm_id}").json()
    assert alarm["state"] == "pending" and alarm["confirmations_required"] == 2
    return alarm


def confirm(c: httpx.Client, alarm: dict[str, Any], **kw: Any) -> httpx.Response:
    return c.post(
        f"/api/alarms/{alarm['id']}/review", json={"action": "confirm", "version": alarm["version"]}, **kw
    )


def key_client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30)


def test_a_user_and_their_key_are_one_person(server: Server) -> None:
    alarm = pending_alarm(server)
    admin, csrf = server.login("admin")
    h = {"x-csrf-token": csrf}
    made = admin.post("/api/keys", json={"name": "k-admin", "role": "admin"}, headers=h)
    assert made.status_code == 201, made.text
    first = confirm(admin, alarm, headers=h)
    assert first.status_code == 200 and first.json()["confirmations"] == 1
    with key_client(server, made.json()["key"]) as own_key:
        again = confirm(own_key, first.json())
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith(PROBLEM)
    assert "already confirmed" in again.json()["detail"] and "user:admin" in again.json()["detail"]
    with server.client("supervisor") as other:
        done = confirm(other, first.json())
    assert done.status_code == 200 and done.json()["state"] == "confirmed"
    assert done.json()["confirmations"] == 2
    assert made.json()["owner"] == "admin"
    listed = {k["name"]: k for k in server.client("admin").get("/api/keys").json()}
    assert listed["k-admin"]["owner"] == "admin" and listed["test-admin"]["owner"] is None


def test_keys_made_by_a_key_without_an_owner_are_its_person(server: Server) -> None:
    alarm = pending_alarm(server)
    with server.client("admin") as admin:  # the harness's key, made without an owner
        made = admin.post("/api/keys", json={"name": "k-from-key", "role": "supervisor"}).json()
        assert made["created_by"] == "key:test-admin"
        first = confirm(admin, alarm)
        assert first.status_code == 200, first.text
    with key_client(server, made["key"]) as minted:
        again = confirm(minted, first.json())
    assert again.status_code == 409 and "already confirmed" in again.json()["detail"]
    # Two keys without an owner, made apart, are two people (the CLI vouches for them).
    with server.client("supervisor2") as other:
        assert confirm(other, first.json()).json()["state"] == "confirmed"
    assert made["owner"] is None


def _cli(server: Server, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--data-dir", str(server.data_dir), *args])


def test_cli_keys_belong_to_their_owner(server: Server) -> None:
    made = _cli(
        server, "keys", "create", "cli-supervisor", "--role", "supervisor", "--owner", "supervisor", "--json"
    )
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["owner"] == "supervisor"
    missing = _cli(server, "keys", "create", "cli-nobody", "--role", "operator", "--owner", "nobody")
    assert missing.exit_code == 5 and "no user named 'nobody'" in missing.stderr
    alarm = pending_alarm(server)
    person, csrf = server.login("supervisor")
    first = confirm(person, alarm, headers={"x-csrf-token": csrf})
    assert first.status_code == 200, first.text
    with key_client(server, key["key"]) as own_key:
        assert confirm(own_key, first.json()).status_code == 409
    listed = {k["name"]: k for k in json.loads(_cli(server, "keys", "list", "--json").stdout)}
    assert listed["cli-supervisor"]["owner"] == "supervisor"


def test_a_disabled_owner_disables_their_keys(server: Server) -> None:
    app = App(Settings(data_dir=server.data_dir))
    try:
        user = accounts.create_user(app, "leaver", Role.operator, "a long leaving password")
        key = accounts.create_api_key(app, "k-leaver", Role.operator, owner="leaver").key
    finally:
        app.close()
    with key_client(server, key) as c, server.client("admin") as admin:
        assert c.get("/api/alarms").status_code == 200
        assert admin.patch(f"/api/users/{user.id}", json={"active": False}).status_code == 200
        r = c.get("/api/alarms")
        assert r.status_code == 401, r.text
        assert admin.patch(f"/api/users/{user.id}", json={"active": True}).status_code == 200
        assert c.get("/api/alarms").status_code == 200


def test_migration_names_the_person_of_earlier_reviews(tmp_path: Path) -> None:
    """Reviews made before 0007 get the person their actor stood for; keys keep no owner."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    engine = db.make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        conn.exec_driver_sql(
            "INSERT INTO users (id, username, password_hash, role, active, must_change_password, created_at) "
            "VALUES (3, 'ann', 'x', 'supervisor', 1, 0, '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO api_keys (id, name, prefix, key_sha256, role, created_at, revoked) "
            "VALUES (4, 'old-key', 'vgl_', 'sha', 'supervisor', '2026-01-01', 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO alarms (id, camera_name, identity_name, track_id, frame_index, captured_at, score, "
            "threshold, fpir, model_id, box_xyxy, quality, state, created_at, version, confirmations) VALUES "
            "(1, 'door', 'X', 1, 1, '2026-01-01', 0.9, 0.6, 0.01, 'm', '1,2,3,4', 0.8, 'pending', "
            "'2026-01-01', 2, 2)"
        )
        conn.exec_driver_sql(
            "INSERT INTO alarm_reviews (id, alarm_id, user_id, actor, action, at) VALUES "
            "(1, 1, 3, 'user:ann', 'confirm', '2026-01-01'), (2, 1, NULL, 'key:old-key', 'confirm', "
            "'2026-01-01'), (3, 1, NULL, 'key:gone', 'confirm', '2026-01-01')"
        )
    engine.dispose()
    catalog = db.Database(url)
    try:
        with catalog.session() as s:
            people = dict(s.execute(select(AlarmReview.id, AlarmReview.person)).all())
            assert people == {1: "user:3", 2: "key:4", 3: None}
            owners = s.execute(select(ApiKey.owner_user_id, ApiKey.owner_key_id)).all()
            assert [tuple(o) for o in owners] == [(None, None)]
    finally:
        catalog.close()
