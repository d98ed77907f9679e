"""What a device must run: its cameras and the galleries allowed at its site (``GET /api/fleet/config``).

The galleries are chosen by the rules the server's own cameras follow
(:func:`vigil.video.pipeline.active_watchlists`, :func:`vigil.attendance.marks.entrance_galleries`):

- a watchlist that has expired is left out (the device deletes what it held of it);
- a gallery limited to some sites reaches only a device of one of those sites: a watchlist limited to
  other sites never reaches the device;
- a gallery limited to some cameras reaches only a device that runs one of them (enabled);
- attendance galleries reach only a device with an entrance camera, by the same rules;
- the galleries a stranger rule of one of its running cameras names (any kind) reach it by the same
  expiry, site and camera limits: the device tells who belongs there (see :mod:`vigil.video.strangers`).

Each gallery carries its people and, unless the device keeps no templates (a per-site choice), their
templates for the active model (float32 little-endian, base64). ``etag`` is a hash of the rest, so a
device polls with ``If-None-Match`` and gets a 304 while nothing changed.

>>> cfg = device_config(app, "pole-17")  # doctest: +SKIP
>>> [g.name for g in cfg.galleries]  # doctest: +SKIP
['wanted']
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import defaultdict
from datetime import date

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ForbiddenError, NotFoundError
from vigil.storage.tables import Camera, Device, DeviceState, Gallery, GalleryKind, Identity, Template
from vigil.vision.packs.active import active_model

ENTRANCE = "entrance"
"""The camera kind that records attendance (as :data:`vigil.attendance.marks.ENTRANCE`)."""
NO_DEVICE_HINT = "see `vigil devices list`"


class DeviceCamera(BaseModel):
    id: int
    name: str
    url: str
    """The full address (credentials included: the device connects to it); a file or folder is
    looked up in the device's own media folders."""
    kind: str
    site: str | None
    keep_sightings: bool
    enabled: bool
    retention_days: int | None
    stranger_galleries: str | None = None
    """The camera's stranger rule as the camera row stores it (JSON list of gallery names; None: off)."""
    stranger_hours: str | None = None
    stranger_min_quality: float | None = None


class DeviceIdentity(BaseModel):
    id: int
    name: str
    templates: list[str] = []
    """Base64 of float32 little-endian vectors of the active model; empty when the device keeps none."""


class DeviceGallery(BaseModel):
    id: int
    name: str
    kind: str
    sites: list[str]
    """Empty: every site."""
    cameras: list[str]
    """Empty: every camera."""
    expires_on: date | None
    generation: int
    confirmations_required: int
    attendance_start: str | None = None
    attendance_end: str | None = None
    attendance_days: str | None = None
    attendance_grace_min: int | None = None
    identities: list[DeviceIdentity]


class DeviceConfig(BaseModel):
    device: str
    site: str | None
    keeps_templates: bool
    pack: str | None
    model_id: str
    """The model whose templates are sent; the device must embed with it."""
    target_fpir: float
    cameras: list[DeviceCamera]
    galleries: list[DeviceGallery]
    etag: str = ""
    """A hash of everything above: send it back as ``If-None-Match``."""


def active_model_id(app: App) -> tuple[str | None, str]:
    """(pack, model id) in use: the catalog's record if it is for the process's pack, else the model
    of the engine in use (as the server's matching does)."""
    active = active_model(app)
    pack = app.pack or (active.pack if active else None)
    if active is not None and active.pack == pack:
        return pack, active.model_id
    return pack, app.engine.model_id


def _split(csv: str | None) -> list[str]:
    return sorted({part.strip() for part in (csv or "").split(",") if part.strip()})


def _stranger_names(cameras: list[Camera]) -> set[str]:
    """The galleries the stranger rules of ``cameras`` name."""
    return {n for c in cameras if c.stranger_galleries for n in json.loads(c.stranger_galleries)}


def _allowed(g: Gallery, site: str | None, cameras: list[Camera], today: date) -> bool:
    if g.is_expired(today):
        return False
    sites = _split(g.sites)
    if sites and site not in sites:
        return False
    named = [c for c in cameras if g.name in _stranger_names([c])]
    if named and _allowed_here(g, named):
        return True  # a stranger rule there needs to know who belongs
    if g.kind not in (GalleryKind.watchlist, GalleryKind.attendance):
        return False
    if g.kind == GalleryKind.attendance:
        cameras = [c for c in cameras if c.kind == ENTRANCE]
        if not cameras:
            return False
    return _allowed_here(g, cameras)


def _allowed_here(g: Gallery, cameras: list[Camera]) -> bool:
    names = _split(g.cameras)
    return not names or any(c.name in names for c in cameras)


def _templates(s: Session, gallery_ids: list[int], model_id: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = defaultdict(list)
    rows = s.execute(
        select(Template.identity_id, Template.vector)
        .join(Identity, Identity.id == Template.identity_id)
        .where(Identity.gallery_id.in_(gallery_ids), Template.model_id == model_id)
        .order_by(Template.id)
    )
    for identity_id, vector in rows:
        found[int(identity_id)].append(base64.b64encode(vector).decode("ascii"))
    return found


def _identities(s: Session, gallery_ids: list[int]) -> dict[int, list[DeviceIdentity]]:
    found: dict[int, list[DeviceIdentity]] = defaultdict(list)
    rows = s.execute(
        select(Identity.gallery_id, Identity.id, Identity.name)
        .where(Identity.gallery_id.in_(gallery_ids))
        .order_by(Identity.id)
    )
    for gallery_id, iid, name in rows:
        found[int(gallery_id)].append(DeviceIdentity(id=iid, name=name))
    return found


def _add_templates(s: Session, config: DeviceConfig) -> None:
    """Fill in the templates of every identity (the costly part: decrypting and encoding vectors)."""
    templates = _templates(s, [g.id for g in config.galleries], config.model_id)
    for g in config.galleries:
        for person in g.identities:
            person.templates = templates.get(person.id, [])


def _gallery(g: Gallery, identities: list[DeviceIdentity]) -> DeviceGallery:
    attendance = g.kind == GalleryKind.attendance
    return DeviceGallery(
        id=g.id,
        name=g.name,
        kind=g.kind.value,
        sites=_split(g.sites),
        cameras=_split(g.cameras),
        expires_on=g.expires_on,
        generation=g.generation,
        confirmations_required=g.confirmations_required,
        attendance_start=g.attendance_start if attendance else None,
        attendance_end=g.attendance_end if attendance else None,
        attendance_days=g.attendance_days if attendance else None,
        attendance_grace_min=g.attendance_grace_min if attendance else None,
        identities=identities,
    )


def _camera(c: Camera) -> DeviceCamera:
    return DeviceCamera(
        id=c.id,
        name=c.name,
        url=c.url,
        kind=c.kind,
        site=c.site,
        keep_sightings=c.keep_sightings,
        enabled=c.enabled,
        retention_days=c.retention_days,
        stranger_galleries=c.stranger_galleries,
        stranger_hours=c.stranger_hours,
        stranger_min_quality=c.stranger_min_quality,
    )


def device_config(app: App, name: str, today: date | None = None, *, templates: bool = True) -> DeviceConfig:
    """What device ``name`` must run now (see the module). :class:`NotFoundError` for an unknown
    device, :class:`ForbiddenError` for a revoked one. ``templates`` False: leave them out (to compare
    etags cheaply: the etag covers everything but the vectors, whose every change bumps their
    gallery's generation, which it covers)."""
    pack, model_id = active_model_id(app)
    today = today or date.today()
    with app.db.session() as s:
        d = s.scalar(select(Device).where(Device.name == name))
        if d is None:
            raise NotFoundError(f"no device named {name!r}", hint=NO_DEVICE_HINT)
        if d.state == DeviceState.revoked:
            raise ForbiddenError(f"device {d.name} was revoked", hint="an admin must add a new device")
        cams = list(s.scalars(select(Camera).where(Camera.device_id == d.id).order_by(Camera.name)))
        running = [c for c in cams if c.enabled]
        chosen = [
            g
            for g in s.scalars(select(Gallery).order_by(Gallery.name))
            if _allowed(g, d.site, running, today)
        ]
        people = _identities(s, [g.id for g in chosen])
        config = DeviceConfig(
            device=d.name,
            site=d.site,
            keeps_templates=d.keeps_templates,
            pack=pack,
            model_id=model_id,
            target_fpir=app.settings.target_fpir,
            cameras=[_camera(c) for c in cams],
            galleries=[_gallery(g, people.get(g.id, [])) for g in chosen],
        )
        config.etag = hashlib.sha256(config.model_dump_json(exclude={"etag"}).encode()).hexdigest()[:32]
        if templates and d.keeps_templates:
            _add_templates(s, config)
    return config


def config_etag(app: App, name: str) -> str:
    """The etag :func:`device_config` would give now, without reading a template."""
    return device_config(app, name, templates=False).etag
