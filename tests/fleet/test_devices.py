"""Edge devices on the server (vigil.fleet.devices): add, pair once, authenticate, revoke, heartbeats,
and what a device must run (its cameras, the galleries allowed at its site, their templates)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from vigil.accounts import AuthError
from vigil.app import App
from vigil.core.config import Settings
from vigil.core.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from vigil.fleet import devices as fleet
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries
from vigil.storage import audit
from vigil.storage.tables import AuditEntry, Device, Gallery, Template
from vigil.video import cameras
from vigil.vision.image import load_image

pytestmark = pytest.mark.catalogs

ACTOR = "test:admin"
FUTURE = date.today() + timedelta(days=30)
CLIP = "/media/pole/street.mp4"
"""A file on the device: the server does not have it and does not look for it."""


def _watchlist(app: App, name: str, **terms: object) -> None:
    terms = {"purpose": "t", "legal_basis": "t", "authorized_by": "t", "expires_on": FUTURE, **terms}
    spec = galleries.validate_spec(name=name, kind="watchlist", **terms)
    galleries.create_gallery(app, spec)


@pytest.fixture(scope="module")
def world(  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory, engine, shared_data: Path, module_catalog: str | None
) -> Iterator[App]:
    """One catalog: Lin-Manuel Miranda in watchlists for every site, market-street, another site, the
    camera ``gate-cam`` only, and one that will have expired; an attendance gallery."""
    tmp = tmp_path_factory.mktemp("devices")
    settings = Settings(data_dir=tmp / "data", media_dirs=[tmp], database_url=module_catalog)
    app = App(settings, engine_override=engine)
    lin = load_image(shared_data / "people" / "lin-manuel-miranda.png")
    _watchlist(app, "everywhere")
    _watchlist(app, "market", sites=["market-street"])
    _watchlist(app, "station-only", sites=["station"])
    _watchlist(app, "gate-only", cameras=["gate-cam"])
    _watchlist(app, "short", expires_on=date.today() + timedelta(days=1))
    galleries.create_gallery(app, galleries.validate_spec(name="staff", kind="attendance"))
    face = enrolment.prepare_face(app, lin)
    for g in ("everywhere", "market", "station-only", "gate-only", "short"):
        enrolment.enroll_prepared(app, g, "Lin-Manuel Miranda", [face])
    consent = {"consent_on": date.today(), "consent_by": "hr"}
    enrolment.enroll_prepared(app, "staff", "Lin-Manuel Miranda", [face], **consent)  # type: ignore[arg-type]
    yield app
    app.close()


_COUNTER = iter(range(10**6))


def _names() -> str:
    return f"pole-{next(_COUNTER)}"


def _paired(app: App, **kw: object) -> tuple[str, fleet.Pairing]:
    name = _names()
    _, token = fleet.add_device(app, name, site=str(kw.pop("site", "market-street")), actor=ACTOR, **kw)  # type: ignore[arg-type]
    return name, fleet.pair_device(app, token, version="1.2.3")


def _last_entries(app: App, n: int) -> list[AuditEntry]:
    with app.db.session() as s:
        rows = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(n)))
    return rows[::-1]


def test_add_pair_authenticate_and_the_audit_trail(world: App) -> None:
    info, token = fleet.add_device(world, "  pole-a  ", site="market-street", actor=ACTOR)
    assert (info.name, info.site, info.state, info.online) == ("pole-a", "market-street", "pending", False)
    assert token.startswith(fleet.TOKEN_PREFIX) and len(token) > 40
    with world.db.session() as s:
        row = s.scalar(select(Device).where(Device.name == "pole-a"))
        assert row is not None and row.pairing_sha256 is not None
        assert token not in (row.pairing_sha256, row.credential_sha256)  # only the hash is kept
    pairing = fleet.pair_device(world, token, version="1.0")
    assert (pairing.device, pairing.site) == ("pole-a", "market-street")
    assert len(bytes.fromhex(pairing.signing_key)) == 32
    assert fleet.signing_key_for(world, "pole-a") == bytes.fromhex(pairing.signing_key)
    me = fleet.authenticate_device(world, pairing.credential)
    assert (me.name, me.state, me.paired_at is not None) == ("pole-a", "active", True)
    assert [(e.action, e.actor) for e in _last_entries(world, 2)] == [
        ("device_add", ACTOR),
        ("device_pair", "device:pole-a"),
    ]
    assert audit.verify(world).ok


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("pole\x00", "U+0000"),
        ("pole\n17", "U+000A"),
        ("pole\u202e71", "U+202E"),
        ("a/b", "'/'"),
        ("..", "'/'"),
        ("p" * 201, "201 characters"),
        ("pole 17", "spaces"),
        ("pole.17", "spaces, '.'"),
        ("pole>", "'>'"),
    ],
)
def test_hostile_names_are_refused(world: App, name: str, error: str) -> None:
    with pytest.raises(InputError, match=re.escape(error)):
        fleet.add_device(world, name, site="x", actor=ACTOR)


@pytest.mark.parametrize(("site", "error"), [("a,b", "comma"), ("a/b", "'/'"), ("x\ty", "U+0009")])
def test_hostile_sites_are_refused(world: App, site: str, error: str) -> None:
    with pytest.raises(InputError, match=re.escape(error)):
        fleet.add_device(world, "sited", site=site, actor=ACTOR)


def test_a_name_in_use_is_a_conflict(world: App) -> None:
    fleet.add_device(world, "twice", site=None, actor=ACTOR)
    with pytest.raises(ConflictError, match="already exists"):
        fleet.add_device(world, "twice", site=None, actor=ACTOR)


def test_double_pairing_expiry_and_bad_tokens(world: App) -> None:
    _, token = fleet.add_device(world, "once", site="s", actor=ACTOR)
    fleet.pair_device(world, token, version="1")
    with pytest.raises(AuthError, match="pairs once"):
        fleet.pair_device(world, token, version="1")
    _, old = fleet.add_device(world, "late", site="s", actor=ACTOR)
    with world.db.session() as s:
        s.execute(
            update(Device)
            .where(Device.name == "late")
            .values(pairing_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(AuthError, match="expired") as exc:
        fleet.pair_device(world, old, version="1")
    assert exc.value.hint is not None and "ask for a new token" in exc.value.hint
    _, new = fleet.reissue_token(world, "late", actor=ACTOR)
    assert fleet.pair_device(world, new, version="1").device == "late"
    with pytest.raises(ConflictError, match="is active"):
        fleet.reissue_token(world, "late", actor=ACTOR)
    for bad in ("", "nonsense", fleet.TOKEN_PREFIX + "x" * 500, fleet.TOKEN_PREFIX + "\x00"):
        with pytest.raises(AuthError):
            fleet.pair_device(world, bad, version="1")


def test_a_revoked_device_is_refused_everywhere(world: App) -> None:
    name, pairing = _paired(world)
    gone = fleet.revoke_device(world, name, actor=ACTOR)
    assert (gone.state, gone.revoked_by) == ("revoked", ACTOR)
    assert _last_entries(world, 1)[0].action == "device_revoke"
    with pytest.raises(ForbiddenError, match=f"device {name} was revoked"):
        fleet.authenticate_device(world, pairing.credential)
    with pytest.raises(ForbiddenError, match="revoked"):
        fleet.record_heartbeat(world, name, fleet.HeartbeatIn(version="1"))
    with pytest.raises(ForbiddenError, match="revoked"):
        fleet.device_config(world, name)
    assert fleet.signing_key_for(world, name) is None
    with world.db.session() as s:
        row = s.scalar(select(Device).where(Device.name == name))
        assert row is not None and row.signing_key is None
    with pytest.raises(ConflictError, match="already revoked"):
        fleet.revoke_device(world, name, actor=ACTOR)
    # a device revoked before it paired cannot pair
    _, token = fleet.add_device(world, "never", site="s", actor=ACTOR)
    fleet.revoke_device(world, "never", actor=ACTOR)
    with pytest.raises(ForbiddenError, match="revoked"):
        fleet.pair_device(world, token, version="1")
    with pytest.raises(ConflictError):
        fleet.reissue_token(world, "never", actor=ACTOR)


def test_unknown_devices(world: App) -> None:
    with pytest.raises(AuthError, match="unknown"):
        fleet.authenticate_device(world, fleet.CREDENTIAL_PREFIX + "nope")
    with pytest.raises(NotFoundError, match="vigil devices list"):
        fleet.get_device(world, "nobody")
    with pytest.raises(NotFoundError):
        fleet.revoke_device(world, "nobody", actor=ACTOR)
    assert fleet.signing_key_for(world, "nobody") is None
    fleet.add_device(world, "pending-one", site=None, actor=ACTOR)
    assert fleet.signing_key_for(world, "pending-one") is None


def test_heartbeats_make_a_device_online_and_are_not_audited(world: App) -> None:
    name, _ = _paired(world)
    assert not fleet.get_device(world, name).online
    head = audit.count(world)
    status = fleet.HeartbeatIn(
        version="2.0", queue_depth=7, cameras={"gate": {"state": "running"}}, outbox={"bytes": 10}
    )
    info = fleet.record_heartbeat(world, name, status)
    assert (info.online, info.version, info.queue_depth) == (True, "2.0", 7)
    assert info.status == {"cameras": {"gate": {"state": "running"}}, "outbox": {"bytes": 10}}
    assert audit.count(world) == head
    deepest = fleet.HeartbeatIn(version="2.0", queue_depth=2**53)  # the most it may report, past 32 bits
    assert fleet.record_heartbeat(world, name, deepest).queue_depth == 2**53
    with world.db.session() as s:
        s.execute(
            update(Device)
            .where(Device.name == name)
            .values(last_seen_at=datetime.now(UTC) - timedelta(seconds=31))
        )
    assert not fleet.get_device(world, name).online
    huge = fleet.HeartbeatIn(version="2", cameras={f"c{i}": {"e": "x" * 100} for i in range(1000)})
    with pytest.raises(InputError, match="bytes"):
        fleet.record_heartbeat(world, name, huge)
    assert name in [d.name for d in fleet.list_devices(world)]


def test_cameras_on_a_device_and_its_alarm_count(world: App) -> None:
    name, _ = _paired(world)
    cam = cameras.add_camera(world, f"{name}-cam", CLIP, device=name, actor=ACTOR)
    assert (cam.device, cam.site) == (name, "market-street")
    assert fleet.get_device(world, name).cameras == [f"{name}-cam"]
    assert fleet.get_device(world, name).alarms == 0
    with pytest.raises(NotFoundError, match="vigil devices list"):
        cameras.add_camera(world, "orphan", CLIP, device="nobody")
    with pytest.raises(InputError, match="media folder"):
        cameras.add_camera(world, "server-cam", CLIP)  # without a device the file must be here


def _galleries(cfg: fleet.DeviceConfig) -> list[str]:
    return [g.name for g in cfg.galleries]


def test_the_config_holds_the_galleries_allowed_at_the_site(world: App) -> None:
    name, _ = _paired(world)
    cameras.add_camera(world, f"{name}-street", CLIP, device=name)
    cfg = fleet.device_config(world, name)
    assert (cfg.device, cfg.site, cfg.keeps_templates) == (name, "market-street", True)
    assert cfg.model_id == world.engine.model_id
    assert [c.name for c in cfg.cameras] == [f"{name}-street"]
    assert cfg.cameras[0].url == CLIP
    # not station-only (another site), not gate-only (another camera), not staff (no entrance camera)
    assert _galleries(cfg) == ["everywhere", "market", "short"]
    lin = cfg.galleries[0].identities[0]
    assert lin.name == "Lin-Manuel Miranda" and len(lin.templates) == 1
    vector = np.frombuffer(base64.b64decode(lin.templates[0]), dtype="<f4")
    with world.db.session() as s:
        stored = s.scalar(select(Template).where(Template.identity_id == lin.id))
    assert stored is not None and vector.shape == (stored.dimension,)
    assert vector.tobytes() == stored.vector
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
    # the day after "short" expires, it is gone, and the etag changed
    later = fleet.device_config(world, name, today=date.today() + timedelta(days=2))
    assert _galleries(later) == ["everywhere", "market"]
    assert later.etag != cfg.etag
    assert fleet.device_config(world, name).etag == cfg.etag
    assert fleet.config_etag(world, name) == cfg.etag  # the same, without reading a template
    bare = fleet.device_config(world, name, templates=False)
    assert bare.etag == cfg.etag and all(i.templates == [] for g in bare.galleries for i in g.identities)


def test_another_site_gets_none_of_market_street(world: App) -> None:
    name, _ = _paired(world, site="station")
    cameras.add_camera(world, f"{name}-gate", CLIP, device=name, kind="entrance")
    cfg = fleet.device_config(world, name)
    assert _galleries(cfg) == ["everywhere", "short", "staff", "station-only"]
    staff = next(g for g in cfg.galleries if g.name == "staff")
    assert staff.kind == "attendance"


def test_a_camera_named_by_a_watchlist_brings_it(world: App) -> None:
    name, _ = _paired(world, site="elsewhere")
    cameras.add_camera(world, "gate-cam", CLIP, device=name)
    assert "gate-only" in _galleries(fleet.device_config(world, name))
    cameras.set_enabled(world, "gate-cam", False)
    assert "gate-only" not in _galleries(fleet.device_config(world, name))


def test_a_device_that_keeps_no_templates_gets_none(world: App) -> None:
    name, _ = _paired(world, keeps_templates=False)
    cfg = fleet.device_config(world, name)
    assert not cfg.keeps_templates
    assert cfg.galleries and all(i.templates == [] for g in cfg.galleries for i in g.identities)
    assert "Lin-Manuel Miranda" in [i.name for g in cfg.galleries for i in g.identities]
    assert "AAAA" not in cfg.model_dump_json()


def test_the_etag_follows_the_watchlists_and_their_templates(world: App, shared_data: Path) -> None:
    name, _ = _paired(world)
    before = fleet.config_etag(world, name)
    _watchlist(world, "new-one", sites=["market-street"])
    after = fleet.device_config(world, name)
    assert after.etag != before and "new-one" in _galleries(after)
    face = enrolment.prepare_face(world, load_image(shared_data / "people" / "obama.jpg"))
    enrolment.enroll_prepared(world, "new-one", "Barack Obama", [face])
    assert fleet.config_etag(world, name) != after.etag
    etag = fleet.config_etag(world, name)
    with world.db.session() as s:  # a template changed: its gallery's generation is bumped
        s.execute(update(Gallery).where(Gallery.name == "new-one").values(generation=Gallery.generation + 1))
    assert fleet.config_etag(world, name) != etag
    with world.db.session() as s:
        s.execute(update(Gallery).where(Gallery.name == "new-one").values(sites="station"))
    assert "new-one" not in _galleries(fleet.device_config(world, name))
