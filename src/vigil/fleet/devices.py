"""Edge devices, on the server: register, pair once, authenticate, revoke, and their heartbeats.

An admin adds a device (``vigil devices add pole-17 --site market-street``) and gets a one-time
pairing token, valid :data:`PAIRING_TTL` (24 h). The device sends it once (``vigil worker --server
URL --token TOKEN``) and gets back its long-lived credential and the key that signs its events
(:class:`Pairing`). The catalog keeps only the SHA-256 of the token and of the credential (a stolen
database opens no device), and the signing key sealed when encryption at rest is on.

A revoked device is refused at once, everywhere: its credential gets a :class:`ForbiddenError`, its
signing key is gone (its events are refused), and it cannot pair again. Adding, pairing, reissuing a
token and revoking are audited in the same transaction (``device_add``, ``device_pair``,
``device_token``, ``device_revoke``); heartbeats are telemetry and are not.

>>> info, token = add_device(app, "pole-17", site="market-street", actor="cli:alice")  # doctest: +SKIP
>>> pairing = pair_device(app, token, version="0.9.0")  # on the device, through the API  # doctest: +SKIP
>>> authenticate_device(app, pairing.credential).name  # doctest: +SKIP
'pole-17'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.accounts import AuthError
from vigil.app import App
from vigil.core.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from vigil.core.names import check_name
from vigil.fleet.config import NO_DEVICE_HINT
from vigil.fleet.config import DeviceConfig as DeviceConfig  # re-exported: what a device runs
from vigil.fleet.config import config_etag as config_etag
from vigil.fleet.config import device_config as device_config
from vigil.storage import audit
from vigil.storage.tables import AlarmRecord, Camera, Device, DeviceState

TOKEN_PREFIX = "vgp_"  # noqa: S105 (a prefix, not a secret)
"""Pairing tokens start with this (``vgp_`` + 43 URL-safe characters): recognisable in a log or a paste."""
CREDENTIAL_PREFIX = "vgd_"
"""Device credentials start with this."""
PAIRING_TTL = timedelta(hours=24)
"""How long a pairing token may be used."""
SIGNING_KEY_BYTES = 32
MAX_TOKEN_CHARS = 200
"""Longer pairing tokens and credentials are refused before they are hashed."""
MAX_STATUS_BYTES = 64 * 1024
"""The largest heartbeat status kept (cameras and outbox, as JSON)."""
MAX_HEARTBEAT_CAMERAS = 1000


class DeviceInfo(BaseModel):
    """A device as the CLI, the API and the UI show it."""

    name: str
    site: str | None
    state: DeviceState
    keeps_templates: bool
    online: bool
    """Heard from within ``device_offline_s`` (setting ``VIGIL_DEVICE_OFFLINE_S``)."""
    last_seen_at: datetime | None
    version: str | None
    queue_depth: int | None
    """Events waiting in the device's outbox at its last heartbeat."""
    cameras: list[str]
    """The cameras assigned to it."""
    alarms: int
    """Alarms it raised (stored on the server)."""
    created_at: datetime
    created_by: str
    paired_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None = None
    status: dict[str, Any] | None = None
    """Its last heartbeat's cameras and outbox."""


class Pairing(BaseModel):
    """What a device gets once, when it pairs: keep the credential and the key, they are not shown again."""

    device: str
    site: str | None
    credential: str
    """Send it as ``Authorization: Device <credential>``."""
    signing_key: str
    """Hex, 32 bytes: HMAC-SHA256 key of the device's events."""


class HeartbeatIn(BaseModel):
    """A device's periodic report (``POST /api/fleet/heartbeat``)."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, max_length=50)
    queue_depth: int = Field(default=0, ge=0, le=2**53)
    cameras: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=MAX_HEARTBEAT_CAMERAS)
    """Per camera: whatever the worker reports (state, frames, fps, last error)."""
    outbox: dict[str, Any] = Field(default_factory=dict, max_length=50)
    """The outbox's stats (events, bytes, dropped)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_device_name(name: str) -> str:
    """``name`` trimmed, or :class:`InputError` saying what is wrong (empty, control characters,
    ``/``, over 200 characters): a device name is part of URLs and of NATS subjects."""
    name = check_name(name, "device name", segment=True)
    if any(c.isspace() or c in ".*>" for c in name):
        raise InputError(
            f"the device name {name!r} cannot hold spaces, '.', '*' or '>' (it is part of event subjects)",
            hint="use letters, digits, '-' or '_', e.g. pole-17",
        )
    return name


def _site(site: str | None) -> str | None:
    """A site as watchlists name them (``sites``): no comma, no ``/``; empty is none."""
    if site is None or not site.strip():
        return None
    site = check_name(site, "site", segment=True)
    if "," in site:
        raise InputError(f"the site {site!r} cannot contain a comma", hint="watchlists list sites by commas")
    return site


def _alarm_counts(s: Session, names: list[str]) -> dict[str, int]:
    rows = s.execute(
        select(AlarmRecord.device_name, func.count())
        .where(AlarmRecord.device_name.in_(names))
        .group_by(AlarmRecord.device_name)
    )
    return {str(name): int(n) for name, n in rows}


def _camera_names(s: Session, ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {i: [] for i in ids}
    rows = s.execute(
        select(Camera.device_id, Camera.name).where(Camera.device_id.in_(ids)).order_by(Camera.name)
    )
    for owner, name in rows:
        if owner is not None:
            found[owner].append(name)
    return found


def _infos(app: App, s: Session, devices: list[Device]) -> list[DeviceInfo]:
    cameras = _camera_names(s, [d.id for d in devices])
    alarms = _alarm_counts(s, [d.name for d in devices])
    offline_after = timedelta(seconds=app.settings.device_offline_s)
    now = _now()
    return [
        DeviceInfo(
            name=d.name,
            site=d.site,
            state=d.state,
            keeps_templates=d.keeps_templates,
            online=d.state == DeviceState.active
            and d.last_seen_at is not None
            and now - d.last_seen_at <= offline_after,
            last_seen_at=d.last_seen_at,
            version=d.version,
            queue_depth=d.queue_depth,
            cameras=cameras[d.id],
            alarms=alarms.get(d.name, 0),
            created_at=d.created_at,
            created_by=d.created_by,
            paired_at=d.paired_at,
            revoked_at=d.revoked_at,
            revoked_by=d.revoked_by,
            status=json.loads(d.status_json) if d.status_json else None,
        )
        for d in devices
    ]


def _info(app: App, s: Session, d: Device) -> DeviceInfo:
    return _infos(app, s, [d])[0]


def _find(s: Session, name: str) -> Device:
    d = s.scalar(select(Device).where(Device.name == name.strip()))
    if d is None:
        raise NotFoundError(f"no device named {name!r}", hint=NO_DEVICE_HINT)
    return d


def _audit(s: Session, actor: str, action: str, d: Device, **detail: object) -> None:
    audit.append(s, actor, action, target_type="device", target_id=d.id, target_name=d.name, **detail)


def _new_token(d: Device) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    d.pairing_sha256 = _sha256(token)
    d.pairing_expires_at = _now() + PAIRING_TTL
    return token


def add_device(
    app: App, name: str, *, site: str | None, actor: str, keeps_templates: bool = True
) -> tuple[DeviceInfo, str]:
    """Register a device (state ``pending``) and make its one-time pairing token (shown once, valid
    24 h; only its SHA-256 is kept). ``keeps_templates`` False: no template is sent to the device, it
    sends embeddings and the server matches. Audited (``device_add``) in the same transaction.
    A name in use is a :class:`ConflictError`."""
    name = check_device_name(name)
    site = _site(site)
    try:
        with app.db.session() as s:
            d = Device(
                name=name,
                site=site,
                state=DeviceState.pending,
                keeps_templates=keeps_templates,
                created_by=actor,
                created_at=_now(),
            )
            token = _new_token(d)
            s.add(d)
            s.flush()
            _audit(s, actor, "device_add", d, site=site, keeps_templates=keeps_templates)
            return _info(app, s, d), token
    except IntegrityError:
        raise ConflictError(
            f"a device named {name!r} already exists",
            hint="choose another name, or `vigil devices token NAME` for a new pairing token",
        ) from None


def reissue_token(app: App, name: str, *, actor: str) -> tuple[DeviceInfo, str]:
    """A new pairing token for a device that has not paired yet (the old one stops working); audited
    (``device_token``). A paired or revoked device is a :class:`ConflictError`."""
    with app.db.session() as s:
        d = _find(s, name)
        if d.state != DeviceState.pending:
            raise ConflictError(
                f"device {d.name!r} is {d.state.value}; only a device that has not paired gets a new token",
                hint="revoke it and add a device under another name",
            )
        token = _new_token(d)
        _audit(s, actor, "device_token", d)
        return _info(app, s, d), token


def _check_secret(secret: str, prefix: str, what: str) -> str:
    secret = secret.strip()
    if not secret.startswith(prefix) or len(secret) > MAX_TOKEN_CHARS:
        raise AuthError(f"that is not a vigil {what} (it starts with {prefix})")
    return _sha256(secret)


def pair_device(app: App, token: str, *, version: str) -> Pairing:
    """Trade a pairing token for the device's credential and signing key (the token is used up).

    :class:`AuthError` for an unknown, used or expired token; :class:`ForbiddenError` for a revoked
    device. Audited (``device_pair``, actor ``device:<name>``) in the same transaction.
    """
    digest = _check_secret(token, TOKEN_PREFIX, "pairing token")
    version = version.strip()[:50] or "unknown"
    with app.db.session() as s:
        d = s.scalar(select(Device).where(Device.pairing_sha256 == digest))
        if d is None or d.pairing_sha256 is None or not hmac.compare_digest(d.pairing_sha256, digest):
            raise AuthError(
                "unknown pairing token (a token pairs once)",
                hint="ask an admin for a new token (`vigil devices token NAME`)",
            )
        if d.state == DeviceState.revoked:
            raise ForbiddenError(f"device {d.name} was revoked", hint="an admin must add a new device")
        expires = d.pairing_expires_at
        if expires is None or expires < _now():
            raise AuthError(
                f"the pairing token of device {d.name} expired at {expires}",
                hint="add the device again or ask for a new token (`vigil devices token NAME`)",
            )
        credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
        key = secrets.token_bytes(SIGNING_KEY_BYTES)
        d.pairing_sha256 = None
        d.pairing_expires_at = None
        d.credential_sha256 = _sha256(credential)
        d.signing_key = key
        d.state = DeviceState.active
        d.paired_at = _now()
        d.version = version
        _audit(s, f"device:{d.name}", "device_pair", d, version=version)
        return Pairing(device=d.name, site=d.site, credential=credential, signing_key=key.hex())


def _authenticated(s: Session, credential: str) -> Device:
    digest = _check_secret(credential, CREDENTIAL_PREFIX, "device credential")
    d = s.scalar(select(Device).where(Device.credential_sha256 == digest))
    if d is None or d.credential_sha256 is None or not hmac.compare_digest(d.credential_sha256, digest):
        raise AuthError("unknown device credential", hint="pair the device again with a new token")
    if d.state == DeviceState.revoked:
        raise ForbiddenError(f"device {d.name} was revoked", hint="an admin must add a new device")
    return d


def authenticate_device(app: App, credential: str) -> DeviceInfo:
    """The device whose credential this is. :class:`AuthError` if none; :class:`ForbiddenError` if
    it was revoked (its credential is recognised so that it is told, not just refused)."""
    with app.db.session() as s:
        return _info(app, s, _authenticated(s, credential))


def device_name_for(app: App, credential: str) -> str:
    """The name of the device whose credential this is, refused as :func:`authenticate_device` does;
    one indexed look-up (for the routes a device calls every few seconds)."""
    with app.db.session() as s:
        return _authenticated(s, credential).name


def revoke_device(app: App, name: str, *, actor: str) -> DeviceInfo:
    """Refuse the device from now on: its pairing token and signing key are cleared (its events are
    refused), its credential gets a 403. Its cameras stay assigned to it (and so are not run by the
    server). Audited (``device_revoke``) in the same transaction. Revoking twice is a no-op error:
    :class:`ConflictError`."""
    with app.db.session() as s:
        d = _find(s, name)
        if d.state == DeviceState.revoked:
            raise ConflictError(f"device {d.name!r} is already revoked")
        d.state = DeviceState.revoked
        d.signing_key = None
        d.pairing_expires_at = None
        d.revoked_at = _now()
        d.revoked_by = actor
        _audit(s, actor, "device_revoke", d)
        return _info(app, s, d)


def list_devices(app: App) -> list[DeviceInfo]:
    with app.db.session() as s:
        return _infos(app, s, list(s.scalars(select(Device).order_by(Device.name))))


def get_device(app: App, name: str) -> DeviceInfo:
    with app.db.session() as s:
        return _info(app, s, _find(s, name))


def device_id(app: App, name: str) -> int:
    """The catalog id of device ``name`` (:class:`NotFoundError` if none), for assigning cameras."""
    with app.db.session() as s:
        return _find(s, name).id


def record_heartbeat(app: App, name: str, status: HeartbeatIn) -> DeviceInfo:
    """Note that the device was heard from now, with its version, outbox depth and cameras (not
    audited: telemetry). A revoked device is a :class:`ForbiddenError`."""
    body = json.dumps({"cameras": status.cameras, "outbox": status.outbox}, default=str)
    if len(body) > MAX_STATUS_BYTES:
        raise InputError(
            f"the heartbeat's status is {len(body):,} bytes; at most {MAX_STATUS_BYTES:,}",
            hint="report fewer details per camera",
        )
    with app.db.session() as s:
        d = _find(s, name)
        if d.state == DeviceState.revoked:
            raise ForbiddenError(f"device {d.name} was revoked", hint="an admin must add a new device")
        d.last_seen_at = _now()
        d.version = status.version
        d.queue_depth = status.queue_depth
        d.status_json = body
        return _info(app, s, d)


def signing_key_for(app: App, name: str) -> bytes | None:
    """The key that signs device ``name``'s events; None if it is unknown, not paired or revoked."""
    with app.db.session() as s:
        d = s.scalar(select(Device).where(Device.name == name))
        if d is None or d.state != DeviceState.active:
            return None
        return d.signing_key
