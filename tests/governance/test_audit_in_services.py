"""The audit entry is written by the service, whoever calls it (docs/governance.md, "Tamper-evident
audit log").

Each service is called directly on an ``App`` (no CLI, no API): the call appends exactly one entry
with its action and its actor. A service that changes the catalog writes the entry in the same
transaction as the change: made to fail right after appending it, the call leaves neither the
change nor the entry. Every action that docs/governance.md lists has a case here, or names the test
that drives it (the pipeline's and the model switch's own actions). And the front ends write no
entry: the CLI's and the routers' source call no audit-writing function.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from vigil import accounts
from vigil.accounts import Principal
from vigil.app import App
from vigil.attendance import report as attendance
from vigil.core.config import Settings
from vigil.core.errors import ConfigError
from vigil.events.schemas import Alarm, new_event_id
from vigil.fleet import devices
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries, hygiene, identities, matching, negatives
from vigil.governance import backup, erasure, report, retention
from vigil.notify import webhooks
from vigil.storage import audit
from vigil.storage.tables import (
    AlarmNegative,
    AlarmRecord,
    AuditEntry,
    Base,
    Photo,
    ReviewAction,
    Role,
)
from vigil.video import alarms, cameras
from vigil.vision.image import LoadedImage, load_image

pytestmark = pytest.mark.catalogs

ROOT = Path(__file__).resolve().parents[2]
ACTOR = "test:direct"
FUTURE = date.today() + timedelta(days=30)
PASSWORD = "a long password for tests"


@dataclass
class World:
    """One catalog shared by the cases: a watchlist with Lin-Manuel Miranda, a camera, an admin."""

    app: App
    lin: LoadedImage
    clip: str
    admin: Principal
    n: Iterator[int] = field(default_factory=lambda: iter(range(1_000_000)))

    def name(self, prefix: str) -> str:
        return f"{prefix}-{next(self.n)}"

    def gallery(self, kind: str = "reference", **terms: Any) -> str:
        name = self.name("g")
        if kind == "watchlist":
            terms = {"purpose": "t", "legal_basis": "t", "authorized_by": "t", "expires_on": FUTURE, **terms}
        galleries.create_gallery(self.app, galleries.validate_spec(name=name, kind=kind, **terms))
        return name

    def person(self, gallery: str = "wanted") -> int:
        return enrolment.enroll_prepared(self.app, gallery, self.name("p"), []).identity_id

    def camera(self) -> str:
        return cameras.add_camera(self.app, self.name("c"), self.clip).name

    def user(self) -> accounts.UserInfo:
        return accounts.create_user(self.app, self.name("u"), Role.operator, PASSWORD)

    def alarm(self) -> int:
        stored = alarms.store_alarm(self.app, _new_alarm(self, self.camera()))
        assert stored is not None and stored.alarm_id is not None
        return stored.alarm_id


def _new_alarm(w: World, camera: str, gallery: str = "wanted") -> Alarm:
    with w.app.db.session() as s:
        iid = s.scalar(select(Photo.identity_id).limit(1))
    assert iid is not None
    return Alarm(
        event_id=new_event_id(),
        camera=camera,
        camera_id=None,
        gallery=gallery,
        identity="Lin-Manuel Miranda",
        identity_id=iid,
        track_id=1,
        frame=next(w.n),
        ts=datetime.now(UTC),
        score=0.9,
        threshold=0.5,
        fpir=0.01,
        model=w.app.engine.model_id,
        xyxy=[1.0, 2.0, 3.0, 4.0],
        quality=0.8,
        latency_ms=1.0,
    )


@pytest.fixture(scope="module")
def world(  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory, engine, shared_data: Path, module_catalog: str | None
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("audit-in-services")
    settings = Settings(data_dir=tmp / "data", media_dirs=[tmp, shared_data], database_url=module_catalog)
    app = App(settings, engine_override=engine)
    lin = load_image(shared_data / "people" / "lin-manuel-miranda.png")
    admin = accounts.create_user(app, "admin", Role.admin, PASSWORD)
    w = World(app, lin, str(shared_data / "video" / "short_hamilton_clip.mp4"), _principal(admin))
    galleries.create_gallery(
        app,
        galleries.validate_spec(
            name="wanted",
            kind="watchlist",
            purpose="t",
            legal_basis="t",
            authorized_by="t",
            expires_on=FUTURE,
        ),
    )
    enrolment.enroll(app, "wanted", "Lin-Manuel Miranda", [lin])
    yield w
    app.close()


def _principal(u: accounts.UserInfo) -> Principal:
    return Principal("user", u.id, u.username, u.role)


# -- the cases: (action, prepare) where prepare(world) sets up and returns (call, expected actor) ---

Call = Callable[[], object]
Prepare = Callable[[World], tuple[Call, str]]


def _gallery_create(w: World) -> tuple[Call, str]:
    spec = galleries.validate_spec(name=w.name("g"), kind="reference")
    return lambda: galleries.create_gallery(w.app, spec, actor=ACTOR), ACTOR


def _gallery_update(w: World) -> tuple[Call, str]:
    g = w.gallery("watchlist")
    return lambda: galleries.update_gallery(w.app, g, {"purpose": "another"}, actor=ACTOR), ACTOR


def _gallery_delete(w: World) -> tuple[Call, str]:
    g = w.gallery()
    return lambda: galleries.delete_gallery(w.app, g, actor=ACTOR), ACTOR


def _enrol(w: World) -> tuple[Call, str]:
    g = w.gallery()
    return lambda: enrolment.enroll(w.app, g, "Lin", [w.lin], actor=ACTOR), ACTOR


def _enrol_prepared(w: World) -> tuple[Call, str]:
    g = w.gallery()
    face = enrolment.prepare_face(w.app, w.lin)
    return lambda: enrolment.enroll_prepared(w.app, g, "Lin", [face], actor=ACTOR, new=True), ACTOR


def _identity_update(w: World) -> tuple[Call, str]:
    iid = w.person()
    return lambda: identities.update_identity(w.app, iid, notes="seen", actor=ACTOR), ACTOR


def _identity_rename(w: World) -> tuple[Call, str]:
    iid = w.person()
    return lambda: identities.rename_identity(w.app, "wanted", str(iid), w.name("p"), actor=ACTOR), ACTOR


def _identity_remove(w: World) -> tuple[Call, str]:
    iid = w.person()
    return lambda: identities.remove_identity(w.app, "wanted", str(iid), actor=ACTOR), ACTOR


def _photo_remove(w: World) -> tuple[Call, str]:
    g = w.gallery()
    enrolment.enroll(w.app, g, "Lin", [w.lin])
    with w.app.db.session() as s:
        pid = s.scalar(select(Photo.id).order_by(Photo.id.desc()).limit(1))
    assert pid is not None
    return lambda: identities.remove_photos(w.app, g, [pid], actor=ACTOR), ACTOR


def _gallery_check(w: World) -> tuple[Call, str]:
    return lambda: hygiene.check_gallery(w.app, "wanted", actor=ACTOR), ACTOR


def _camera_add(w: World) -> tuple[Call, str]:
    return lambda: cameras.add_camera(w.app, w.name("c"), w.clip, actor=ACTOR), ACTOR


def _camera_start(w: World) -> tuple[Call, str]:
    c = w.camera()
    return lambda: cameras.set_enabled(w.app, c, True, actor=ACTOR), ACTOR


def _camera_stop(w: World) -> tuple[Call, str]:
    c = w.camera()
    return lambda: cameras.set_enabled(w.app, c, False, actor=ACTOR), ACTOR


def _camera_update(w: World) -> tuple[Call, str]:
    c = w.camera()
    return lambda: cameras.update_camera(w.app, c, site="gate", actor=ACTOR), ACTOR


def _camera_delete(w: World) -> tuple[Call, str]:
    c = w.camera()
    return lambda: cameras.delete_camera(w.app, c, actor=ACTOR), ACTOR


def _user_create(w: World) -> tuple[Call, str]:
    return lambda: accounts.add_user(w.app, w.name("u"), Role.operator, by=ACTOR), ACTOR


def _user_update(w: World) -> tuple[Call, str]:
    u = w.user()
    return lambda: accounts.update_user(w.app, u.id, role=Role.auditor, by=w.admin), w.admin.actor


def _password_reset(w: World) -> tuple[Call, str]:
    u = w.user()
    return lambda: accounts.reset_password(w.app, u.id, by=ACTOR), ACTOR


def _password_change(w: World) -> tuple[Call, str]:
    u = w.user()
    new = PASSWORD + " changed"
    return lambda: accounts.change_password(w.app, u.id, PASSWORD, new), f"user:{u.username}"


def _login(w: World) -> tuple[Call, str]:
    u = w.user()
    return lambda: accounts.authenticate(w.app, u.username, PASSWORD), f"user:{u.username}"


def _login_failed(w: World) -> tuple[Call, str]:
    u = w.user()

    def call() -> None:
        with pytest.raises(accounts.AuthError):
            accounts.authenticate(w.app, u.username, "not the password at all")

    return call, "anonymous"


def _key_create(w: World) -> tuple[Call, str]:
    name = w.name("k")
    return lambda: accounts.create_api_key(w.app, name, Role.operator, created_by=ACTOR), ACTOR


def _key_revoke(w: World) -> tuple[Call, str]:
    key = accounts.create_api_key(w.app, w.name("k"), Role.operator)
    return lambda: accounts.revoke_api_key(w.app, key.id, actor=ACTOR), ACTOR


HOOK = "https://hooks.example.org/vigil?token=t"


def _webhook_create(w: World) -> tuple[Call, str]:
    return lambda: webhooks.create_webhook(w.app, HOOK, ["alarm"], actor=ACTOR), ACTOR


def _webhook_update(w: World) -> tuple[Call, str]:
    hook = webhooks.create_webhook(w.app, HOOK, ["alarm"])
    return lambda: webhooks.update_webhook(w.app, hook.id, enabled=False, actor=ACTOR), ACTOR


def _webhook_delete(w: World) -> tuple[Call, str]:
    hook = webhooks.create_webhook(w.app, HOOK, ["alarm"])
    return lambda: webhooks.delete_webhook(w.app, hook.id, actor=ACTOR), ACTOR


def _search(w: World) -> tuple[Call, str]:
    return lambda: matching.identify(w.app, w.lin, ["wanted"], actor=ACTOR, action="search"), ACTOR


def _identify(w: World) -> tuple[Call, str]:
    return lambda: matching.identify(w.app, w.lin, ["wanted"], actor=ACTOR), ACTOR


def _verify(w: World) -> tuple[Call, str]:
    return lambda: matching.verify(w.app, w.lin, w.lin, actor=ACTOR), ACTOR


def _verify_faces(w: World) -> tuple[Call, str]:
    faces = w.app.engine.embed(w.lin.bgr, w.app.engine.detect(w.lin.bgr))
    assert faces.embedding is not None
    emb, sha = faces.embedding, w.lin.sha256
    return lambda: matching.verify_faces(w.app, emb[0], emb, photos_sha256=(sha, sha), actor=ACTOR), ACTOR


def _compreface_recognize(w: World) -> tuple[Call, str]:
    faces = w.app.engine.embed(w.lin.bgr, w.app.engine.detect(w.lin.bgr))
    return lambda: matching.search_faces(
        w.app, faces, w.lin.sha256, ["wanted"], actor=ACTOR, action="compreface_recognize"
    ), ACTOR


def _erasure(w: World) -> tuple[Call, str]:
    iid = w.person()
    return lambda: erasure.erase_identity(w.app, iid, ACTOR, reason="request 1"), ACTOR


def _alarm(w: World) -> tuple[Call, str]:
    new = _new_alarm(w, w.camera())
    return lambda: alarms.store_alarm(w.app, new), f"camera:{new.camera}"


def _alarm_view(w: World) -> tuple[Call, str]:
    aid = w.alarm()
    return lambda: alarms.view_alarm(w.app, aid, actor=ACTOR), ACTOR


def _alarm_review(w: World) -> tuple[Call, str]:
    aid = w.alarm()
    return lambda: alarms.review_alarm(
        w.app, aid, ReviewAction.dismiss, w.admin, expected_version=0, reason="not him"
    ), w.admin.actor


def _negative(w: World) -> int:
    """A negative example of the alarmed person (set up directly: the dismissal that keeps one is
    tested in tests/gallery/test_negatives.py)."""
    aid = w.alarm()
    with w.app.db.session() as s:
        alarm = s.get(AlarmRecord, aid)
        assert alarm is not None and alarm.gallery_id is not None and alarm.identity_id is not None
        v = np.random.default_rng(aid).normal(size=w.app.engine.card.dimension).astype("<f4")
        row = AlarmNegative(
            alarm_id=aid,
            gallery_id=alarm.gallery_id,
            identity_id=alarm.identity_id,
            model_id=alarm.model_id,
            dimension=v.shape[0],
            vector=(v / np.linalg.norm(v)).astype("<f4").tobytes(),
            created_by=ACTOR,
        )
        s.add(row)
        s.flush()
        return row.id


def _negative_undone(w: World) -> tuple[Call, str]:
    nid = _negative(w)
    return lambda: negatives.undo_negative(w.app, nid, ACTOR), ACTOR


def _alarm_suppressed(w: World) -> tuple[Call, str]:
    new = _new_alarm(w, w.camera()).model_copy(update={"suppressed_by": [_negative(w)]})
    return lambda: alarms.store_alarm(w.app, new), f"camera:{new.camera}"


def _audit_export(w: World) -> tuple[Call, str]:
    return lambda: audit.export(w.app, ACTOR, audit.Query(action="enrol")), ACTOR


def _report(w: World) -> tuple[Call, str]:
    return lambda: report.build(w.app, actor=ACTOR), ACTOR


def _backup_create(w: World) -> tuple[Call, str]:
    out = w.app.settings.data_dir.parent / f"{w.name('backup')}.vbk"
    return lambda: backup.create_backup(w.app, out, actor=ACTOR), ACTOR


def _purge(w: World) -> tuple[Call, str]:
    alarms.store_alarm(w.app, _new_alarm(w, w.camera(), w.gallery("watchlist", retention_days=1)))
    later = datetime.now(UTC) + timedelta(days=3)
    return lambda: retention.purge(w.app, now=later, actor=ACTOR), ACTOR


def _attendance_report(w: World) -> tuple[Call, str]:
    g = w.gallery("attendance", attendance_start="09:00")
    return lambda: attendance.attendance_report(w.app, g, date.today(), actor=ACTOR, fmt="csv"), ACTOR


def _device_add(w: World) -> tuple[Call, str]:
    name = w.name("d")
    return lambda: devices.add_device(w.app, name, site="s", actor=ACTOR), ACTOR


def _device_token(w: World) -> tuple[Call, str]:
    name = w.name("d")
    devices.add_device(w.app, name, site="s", actor=ACTOR)
    return lambda: devices.reissue_token(w.app, name, actor=ACTOR), ACTOR


def _device_pair(w: World) -> tuple[Call, str]:
    name = w.name("d")
    _, token = devices.add_device(w.app, name, site="s", actor=ACTOR)
    return lambda: devices.pair_device(w.app, token, version="1"), f"device:{name}"


def _device_revoke(w: World) -> tuple[Call, str]:
    name = w.name("d")
    devices.add_device(w.app, name, site="s", actor=ACTOR)
    return lambda: devices.revoke_device(w.app, name, actor=ACTOR), ACTOR


CASES: list[tuple[str, Prepare]] = [
    ("gallery_create", _gallery_create),
    ("gallery_update", _gallery_update),
    ("gallery_delete", _gallery_delete),
    ("enrol", _enrol),
    ("enrol", _enrol_prepared),
    ("identity_update", _identity_update),
    ("identity_update", _identity_rename),
    ("identity_remove", _identity_remove),
    ("photo_remove", _photo_remove),
    ("gallery_check", _gallery_check),
    ("camera_add", _camera_add),
    ("camera_start", _camera_start),
    ("camera_stop", _camera_stop),
    ("camera_update", _camera_update),
    ("camera_delete", _camera_delete),
    ("user_create", _user_create),
    ("user_update", _user_update),
    ("password_reset", _password_reset),
    ("password_change", _password_change),
    ("login", _login),
    ("login_failed", _login_failed),
    ("key_create", _key_create),
    ("key_revoke", _key_revoke),
    ("webhook_create", _webhook_create),
    ("webhook_update", _webhook_update),
    ("webhook_delete", _webhook_delete),
    ("search", _search),
    ("identify", _identify),
    ("verify", _verify),
    ("verify", _verify_faces),
    ("compreface_recognize", _compreface_recognize),
    ("erasure", _erasure),
    ("alarm", _alarm),
    ("alarm_view", _alarm_view),
    ("alarm_review", _alarm_review),
    ("negative_undone", _negative_undone),
    ("alarm_suppressed", _alarm_suppressed),
    ("audit_export", _audit_export),
    ("report", _report),
    ("purge", _purge),
    ("backup_create", _backup_create),
    ("attendance_report", _attendance_report),
    ("device_add", _device_add),
    ("device_token", _device_token),
    ("device_pair", _device_pair),
    ("device_revoke", _device_revoke),
]

SAME_TRANSACTION = {
    "gallery_create",
    "gallery_update",
    "gallery_delete",
    "enrol",
    "identity_update",
    "identity_remove",
    "photo_remove",
    "camera_add",
    "camera_start",
    "camera_stop",
    "camera_update",
    "camera_delete",
    "user_create",
    "user_update",
    "password_reset",
    "password_change",
    "login",
    "key_create",
    "key_revoke",
    "webhook_create",
    "webhook_update",
    "webhook_delete",
    "alarm",
    "alarm_review",
    "negative_undone",
    "alarm_suppressed",
    "device_add",
    "device_token",
    "device_pair",
    "device_revoke",
}
"""The actions whose service changes the catalog and appends the entry in that transaction."""

ELSEWHERE: dict[str, tuple[str, str]] = {
    "negative_kept": (  # with the review's own alarm_review entry, in its transaction
        "gallery/test_negatives.py",
        "test_a_dismissal_suppresses_the_lookalike_not_the_person",
    ),
    "fleet_sync": (
        "fleet/test_mirror.py",
        "test_the_mirror_keeps_the_servers_ids_and_matches_as_the_server_does",
    ),
    "redact": ("video/test_redact.py", "test_keep_leaves_the_named_person_and_blurs_the_rest"),
    "alarm_export": ("video/test_evidence_export.py", "test_export_blurs_the_bystander_and_verifies"),
    "backup_restore": (
        "governance/test_backup.py",
        "test_round_trip_restores_the_same_people_photos_and_audit_log",
    ),
    "camera_run": ("video/test_watch.py", "test_hamilton_one_alarm_per_appearance_and_stored_for_review"),
    "attendance_mark": ("attendance/test_entrance.py", "test_entrance_marks_in_and_out_and_never_an_alarm"),
    "login_failed_unknown": (
        "server/test_login_hardening.py",
        "test_unknown_names_do_not_grow_the_audit_log",
    ),
    "model_install": (
        "vision/test_packs.py",
        "test_install_from_a_folder_then_the_engine_embeds_a_real_face",
    ),
    "model_remove": ("vision/test_packs.py", "test_remove_refuses"),
    "model_pack_initial": (
        "vision/test_packs.py",
        "test_the_first_use_choice_is_recorded_and_the_hint_not_repeated",
    ),
    "model_switch_start": (
        "gallery/test_model_switch.py",
        "test_a_switch_reembeds_every_photo_and_flips_only_at_the_end",
    ),
    "model_switch_gallery": (
        "gallery/test_model_switch.py",
        "test_a_switch_reembeds_every_photo_and_flips_only_at_the_end",
    ),
    "model_switch_flip": (
        "gallery/test_model_switch.py",
        "test_a_run_killed_right_after_the_flip_audits_it_later",
    ),
    "model_switch_cancel": ("gallery/test_model_switch.py", "test_refusals_cancel_and_a_second_runner"),
    "model_switch_failed": ("gallery/test_model_switch.py", "test_refusals_cancel_and_a_second_runner"),
    "retrospective_search": (
        "investigation/test_search.py",
        "test_every_search_is_audited_with_its_case_and_a_search_without_one_is_refused",
    ),
    "compare": ("investigation/test_compare.py", "test_the_audit_entry_carries_the_case"),
    "cluster_update": (
        "investigation/test_clusters.py",
        "test_three_unknown_people_twice_each_make_three_clusters",
    ),
    "cluster_promote": (
        "investigation/test_clusters.py",
        "test_promote_enrols_the_crops_and_the_person_is_then_recognised",
    ),
    "cluster_dismiss": (
        "investigation/test_clusters.py",
        "test_promote_enrols_the_crops_and_the_person_is_then_recognised",
    ),
}
"""Actions a service records inside a longer run (a camera's pipeline, a model switch, a download, an
investigation over sightings); the named test drives that service directly and checks the entry."""


def _ids(case: tuple[str, Prepare]) -> str:
    return f"{case[0]}:{case[1].__name__.strip('_')}"


def _after(app: App, last_id: int) -> list[AuditEntry]:
    with app.db.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.id > last_id).order_by(AuditEntry.id)))


def _head_id(app: App) -> int:
    with app.db.session() as s:
        return s.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)) or 0


def _catalog(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: what a rolled-back call must leave as it was."""
    with app.db.session() as s:
        return {
            t.name: sorted(map(tuple, s.execute(select(t)).all()), key=repr)
            for t in Base.metadata.sorted_tables
        }


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_the_service_appends_exactly_one_entry_with_its_action_and_actor(
    world: World, case: tuple[str, Prepare]
) -> None:
    action, prepare = case
    call, actor = prepare(world)
    last = _head_id(world.app)
    if action == "backup_create" and world.app.db.engine.dialect.name == "postgresql":
        with pytest.raises(ConfigError, match="pg_dump"):  # PostgreSQL is backed up with its own tools
            call()
        assert _after(world.app, last) == []
        return
    call()
    new = _after(world.app, last)
    assert [(e.action, e.actor) for e in new] == [(action, actor)]
    assert audit.verify(world.app).ok


class _CrashError(Exception):
    pass


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in SAME_TRANSACTION], ids=_ids)
def test_a_call_that_fails_after_its_entry_leaves_neither_the_change_nor_the_entry(
    world: World, case: tuple[str, Prepare], monkeypatch: pytest.MonkeyPatch
) -> None:
    action, prepare = case
    call, _ = prepare(world)
    before = _catalog(world.app)
    real = audit.append

    def append_then_fail(*args: Any, **kwargs: Any) -> AuditEntry:
        real(*args, **kwargs)
        raise _CrashError(action)

    monkeypatch.setattr(audit, "append", append_then_fail)
    with pytest.raises(_CrashError):
        call()
    monkeypatch.undo()
    assert _catalog(world.app) == before, "the change outlived its failed audit entry"


def _documented_actions() -> set[str]:
    text = (ROOT / "docs" / "governance.md").read_text(encoding="utf-8")
    listed = text[text.index("Actions: ") : text.index("A chain can be")]
    found: set[str] = set()
    for token in re.findall(r"`([a-z_/]+)`", listed):
        head, *rest = token.split("/")
        found.add(head)
        found.update(head.rsplit("_", 1)[0] + "_" + r for r in rest)
    return found


def test_every_documented_action_has_a_service_test() -> None:
    documented = _documented_actions()
    assert len(documented) >= 45, sorted(documented)
    covered = {action for action, _ in CASES} | set(ELSEWHERE)
    assert documented - covered == set(), "documented actions with no service test"
    assert covered - documented == set(), "actions tested here but missing from docs/governance.md"
    for path, name in ELSEWHERE.values():
        source = (ROOT / "tests" / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name} is missing"


WRITERS = {"record", "append", "audit_pending"}
"""The functions of vigil.governance that write audit entries."""


def _audit_writes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "vigil.storage.audit":
            found += [f"imports {a.name}" for a in node.names if a.name in WRITERS]
        if (
            isinstance(node, ast.Attribute)
            and node.attr in WRITERS
            and isinstance(node.value, ast.Name)
            and node.value.id in ("audit", "modelstate")
        ):
            found.append(f"calls {node.value.id}.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.FunctionDef) and node.name in ("audited", "_audit"):
            found.append(f"defines {node.name} (line {node.lineno})")
    return found


def test_the_cli_and_the_routers_write_no_audit_entry() -> None:
    sources = [*(ROOT / "src/vigil/cli").rglob("*.py"), *(ROOT / "src/vigil/server/routers").rglob("*.py")]
    assert len(sources) > 20
    offenders = {str(p.relative_to(ROOT)): w for p in sources if (w := _audit_writes(p))}
    assert offenders == {}
