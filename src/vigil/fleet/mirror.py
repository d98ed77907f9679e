"""The worker's copy of what its server allows it: cameras, galleries, people and templates.

An edge worker is an ordinary vigil data directory whose catalog is a *mirror* of the device's
configuration (:class:`~vigil.fleet.config.DeviceConfig`, ``GET /api/fleet/config``):

- cameras, galleries and identities keep the **server's ids**, so the events the worker sends name
  the server's camera and identity;
- templates are inserted as they come (the config's model, no photo, nothing embedded again);
- a gallery that left the configuration (revoked, expired, deleted, limited to another site) is
  deleted at once with its people, templates and index files; one whose content changed (templates
  added or removed, a person renamed, its terms changed) is replaced in one transaction;
- anything in the local catalog that the configuration does not hold is deleted: the worker's catalog
  belongs to its server;
- on a device that keeps no templates, every camera records sightings (their templates go to the
  server, which matches them: :mod:`vigil.fleet.central`) and no camera keeps its stranger rule (the
  server decides strangers from the sightings).

Mirroring is not enrolment and is not audited as such: each sync that changes something records one
``fleet_sync`` entry in the worker's own audit log (actor ``fleet:<device>``) saying what was added,
replaced and removed, never a template.

A gallery going away is first expired locally (in the same transaction as the rest of the change),
so a running pipeline that matches before it looked the watchlists up again is refused and looks
them up (:meth:`vigil.video.pipeline.Pipeline.refresh_watchlists`); ``before_delete`` lets the caller
tell its pipelines to look up now, then the rows go.

>>> change = apply_config(app, config)  # doctest: +SKIP
>>> change.summary()  # doctest: +SKIP
'galleries +wanted; cameras +gate'
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from datetime import date, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConfigError
from vigil.fleet.config import DeviceCamera, DeviceConfig, DeviceGallery, DeviceIdentity
from vigil.storage import audit
from vigil.storage.tables import Camera, Gallery, GalleryKind, Identity, Template
from vigil.video.resume import discard

MIRRORED_FROM = "mirrored from the server (vigil worker)"
"""The ``purpose`` of a mirrored gallery: its terms live on the server."""


class MirrorChange(BaseModel):
    """What one :func:`apply_config` changed (names)."""

    galleries_added: list[str] = Field(default_factory=list)
    galleries_replaced: list[str] = Field(default_factory=list)
    galleries_removed: list[str] = Field(default_factory=list)
    cameras_added: list[str] = Field(default_factory=list)
    cameras_updated: list[str] = Field(default_factory=list)
    cameras_removed: list[str] = Field(default_factory=list)
    templates: int = 0
    """Templates written (added and replaced galleries)."""

    @property
    def changed(self) -> bool:
        return any(v for k, v in self.model_dump().items() if k != "templates")

    def summary(self) -> str:
        """``galleries +a ~b -c; cameras +d`` (``unchanged`` when nothing changed)."""
        parts = []
        for what, added, changed, removed in (
            ("galleries", self.galleries_added, self.galleries_replaced, self.galleries_removed),
            ("cameras", self.cameras_added, self.cameras_updated, self.cameras_removed),
        ):
            marks = [f"+{n}" for n in added] + [f"~{n}" for n in changed] + [f"-{n}" for n in removed]
            if marks:
                parts.append(f"{what} {' '.join(marks)}")
        return "; ".join(parts) or "unchanged"


def check_model(app: App, config: DeviceConfig) -> None:
    """Refuse to run with another face model than the server's: its templates (and the embeddings
    this device sends) would not compare. :class:`ConfigError` saying what to install and use."""
    local = app.engine.model_id
    if local == config.model_id:
        return
    pack = config.pack or "the server's pack"
    data_dir = app.settings.data_dir
    raise ConfigError(
        f"this worker embeds faces with {local!r} but its server uses {config.model_id!r} "
        f"(pack {pack}); the server's templates cannot be matched here",
        hint=f"run `vigil --data-dir {data_dir} models install {pack}` and "
        f"`vigil --data-dir {data_dir} models use {pack}` on this machine (or set VIGIL_MODEL_PACK={pack}), "
        "then start the worker again",
    )


def apply_config(
    app: App,
    config: DeviceConfig,
    *,
    before_delete: Callable[[], None] | None = None,
) -> MirrorChange:
    """Make the local catalog hold exactly ``config``'s cameras and galleries (see the module).

    ``before_delete()`` is called after the commit that expired the galleries that went away and
    before they are deleted (the worker tells its pipelines to look the watchlists up again).
    """
    change = MirrorChange()
    actor = f"fleet:{config.device}"
    with app.db.session() as s:
        removed_cameras = _mirror_cameras(s, config, change)
        gone = _mirror_galleries(s, config, change)
        if change.changed:
            audit.append(
                s,
                actor,
                "fleet_sync",
                target_type="device",
                target_name=config.device,
                model=config.model_id,
                **change.model_dump(),
            )
    for camera_id in removed_cameras:
        discard(app.settings, camera_id)
    for gallery_id in {gid for gid, _ in gone} | _replaced_ids(app, change):
        app.indexes.drop_gallery(gallery_id)
    if gone:
        if before_delete is not None:
            before_delete()
        with app.db.session() as s:
            s.execute(delete(Gallery).where(Gallery.id.in_([gid for gid, _ in gone])))
        for gallery_id, _ in gone:
            app.indexes.drop_gallery(gallery_id)
    return change


def _replaced_ids(app: App, change: MirrorChange) -> set[int]:
    names = change.galleries_replaced + change.galleries_added
    if not names:
        return set()
    with app.db.session() as s:
        return set(s.scalars(select(Gallery.id).where(Gallery.name.in_(names))))


# -- cameras ---------------------------------------------------------------------------------------


def _camera_fields(c: DeviceCamera, sightings: bool) -> dict[str, object]:
    return {
        "name": c.name,
        "url": c.url,
        "kind": c.kind,
        "site": c.site,
        "keep_sightings": c.keep_sightings or sightings,
        "enabled": c.enabled,
        "retention_days": c.retention_days,
        # A device that keeps no templates cannot tell who belongs: the server decides its strangers.
        "stranger_galleries": None if sightings else c.stranger_galleries,
        "stranger_hours": None if sightings else c.stranger_hours,
        "stranger_min_quality": None if sightings else c.stranger_min_quality,
    }


def _mirror_cameras(s: Session, config: DeviceConfig, change: MirrorChange) -> list[int]:
    """Upsert the config's cameras by id, delete the others; the ids deleted. On a device that keeps no
    templates every camera records sightings: the server matches their templates
    (:mod:`vigil.fleet.central`)."""
    wanted = {c.id: c for c in config.cameras}
    central = not config.keeps_templates
    local = {c.id: c for c in s.scalars(select(Camera))}
    removed = [cid for cid in local if cid not in wanted]
    for cid in removed:
        change.cameras_removed.append(local[cid].name)
        s.delete(local[cid])
    s.flush()
    updates: list[tuple[Camera, dict[str, object]]] = []
    for cid, c in wanted.items():
        fields = _camera_fields(c, central)
        cam = local.get(cid)
        if cam is None:
            continue
        if any(getattr(cam, k) != v for k, v in fields.items()):
            if cam.name != c.name:
                cam.name = f"\x00mirror-{cid}"  # frees the name for a camera renamed to it
            updates.append((cam, fields))
    s.flush()
    for cam, fields in updates:
        for key, value in fields.items():
            setattr(cam, key, value)
        change.cameras_updated.append(str(fields["name"]))
    s.flush()
    for cid, c in wanted.items():
        if cid not in local:
            s.add(Camera(id=cid, **_camera_fields(c, central)))
            change.cameras_added.append(c.name)
    s.flush()
    return removed


# -- galleries -------------------------------------------------------------------------------------


def _local_gallery(s: Session, g: Gallery, model_id: str) -> DeviceGallery:
    """The local gallery as the config would describe it (to compare with the server's)."""
    identities = []
    people = s.execute(
        select(Identity.id, Identity.name).where(Identity.gallery_id == g.id).order_by(Identity.id)
    )
    for iid, name in people.all():  # columns, not objects: the same ids are inserted again on a replace
        vectors = s.scalars(
            select(Template.vector)
            .where(Template.identity_id == iid, Template.model_id == model_id)
            .order_by(Template.id)
        )
        templates = [base64.b64encode(v).decode("ascii") for v in vectors]
        identities.append(DeviceIdentity(id=iid, name=name, templates=templates))
    return DeviceGallery(
        id=g.id,
        name=g.name,
        kind=g.kind.value,
        sites=sorted(_split(g.sites)),
        cameras=sorted(_split(g.cameras)),
        expires_on=g.expires_on,
        generation=g.generation,
        confirmations_required=g.confirmations_required,
        attendance_start=g.attendance_start,
        attendance_end=g.attendance_end,
        attendance_days=g.attendance_days,
        attendance_grace_min=g.attendance_grace_min,
        identities=identities,
    )


def _split(csv: str | None) -> set[str]:
    return {part.strip() for part in (csv or "").split(",") if part.strip()}


def _normalised(g: DeviceGallery) -> DeviceGallery:
    return g.model_copy(update={"sites": sorted(set(g.sites)), "cameras": sorted(set(g.cameras))})


def _mirror_galleries(s: Session, config: DeviceConfig, change: MirrorChange) -> list[tuple[int, str]]:
    """Replace changed galleries, add new ones, expire those that went away; (id, name) of the latter."""
    wanted = {g.id: _normalised(g) for g in config.galleries}
    local = {g.id: g for g in s.scalars(select(Gallery))}
    yesterday = date.today() - timedelta(days=1)
    gone: list[tuple[int, str]] = []
    replaced: list[tuple[DeviceGallery, int]] = []
    for gid, g in local.items():
        if gid not in wanted:
            gone.append((gid, g.name))
            change.galleries_removed.append(g.name)
            g.expires_on = yesterday  # matching stops at this commit; the rows go just after
            g.name = f"\x00gone-{gid}"  # frees the name for a gallery the config adds under it
        elif not _same(_local_gallery(s, g, config.model_id), wanted[gid]):
            replaced.append((wanted[gid], g.generation))
            s.delete(g)
    s.flush()
    for new, old_generation in replaced:
        change.templates += _insert_gallery(s, new, config.model_id, old_generation)
        change.galleries_replaced.append(new.name)
    for gid, added in wanted.items():
        if gid not in local:
            change.templates += _insert_gallery(s, added, config.model_id, -1)
            change.galleries_added.append(added.name)
    return gone


def _same(local: DeviceGallery, wanted: DeviceGallery) -> bool:
    return local.model_dump(exclude=_OWN) == wanted.model_dump(exclude=_OWN)


_OWN = {"generation"}
"""Not compared: the local generation is the worker's own (see :func:`_generation`)."""


def _generation(old: int) -> int:
    """A local generation no index of this gallery id was saved or cached under: above the old one and
    the seconds since 2023 (an id removed and added again gets a new one, so an index a running
    pipeline still held for the old gallery is never taken for the new one)."""
    return max(old + 1, int(time.time()) - _EPOCH_2023)


_EPOCH_2023 = 1_672_531_200


def _insert_gallery(s: Session, g: DeviceGallery, model_id: str, old_generation: int) -> int:
    """Insert the server's gallery with its ids, people and templates; the templates written."""
    s.add(
        Gallery(
            id=g.id,
            name=g.name,
            kind=GalleryKind(g.kind),
            purpose=MIRRORED_FROM,
            expires_on=g.expires_on,
            generation=_generation(old_generation),
            confirmations_required=g.confirmations_required,
            sites=",".join(g.sites) or None,
            cameras=",".join(g.cameras) or None,
            attendance_start=g.attendance_start,
            attendance_end=g.attendance_end,
            attendance_days=g.attendance_days,
            attendance_grace_min=g.attendance_grace_min,
        )
    )
    s.flush()
    written = 0
    for person in g.identities:
        s.add(Identity(id=person.id, gallery_id=g.id, name=person.name))
        s.flush()
        seen: set[str] = set()
        for encoded in person.templates:
            vector = base64.b64decode(encoded, validate=True)
            digest = hashlib.sha256(vector).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            if not vector or len(vector) % 4:
                raise ConfigError(
                    f"the server sent a template of {len(vector)} bytes for identity {person.id}",
                    hint="the server and the worker run different vigil versions?",
                )
            s.add(
                Template(
                    identity_id=person.id,
                    photo_id=None,
                    model_id=model_id,
                    dimension=len(vector) // 4,
                    vector=vector,
                    quality=1.0,
                    source_sha256=digest,
                )
            )
            written += 1
    s.flush()
    return written
