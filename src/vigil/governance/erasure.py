"""Erasure of a person (GDPR Art. 17): templates, photos, alarm crops and snapshots, sightings (those
matched to the person, and unmatched ones whose face matches theirs at the model's 1:1 threshold) with
their crops, and index entries go, and the files are deleted; the audit log records that an erasure
happened under a pseudonymous id, without the name or the face."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import NotFoundError
from vigil.gallery.enroll import bump_generation, delete_unreferenced_blobs, unindex
from vigil.investigation import sightings as sighting_store
from vigil.storage import audit
from vigil.storage.tables import AlarmRecord, Gallery, Identity, Photo, Sighting, Template


class ErasureReport(BaseModel):
    pseudonym: str
    gallery: str
    templates: int
    photos: int
    alarms: int
    files_deleted: int
    files_left: int
    """Files of the person still on disk (0 unless another identity uses the very same photo)."""
    sightings: int = 0
    """Sightings removed: those matched to the person, and unmatched ones whose face matches theirs."""


def _pseudonym_key(app: App) -> bytes:
    path: Path = app.settings.data_dir / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def pseudonym(app: App, identity_id: int) -> str:
    """A stable id for an erased identity that cannot be turned back into it without the key."""
    mac = hmac.new(_pseudonym_key(app), f"identity:{identity_id}".encode(), hashlib.sha256)
    return "erased-" + mac.hexdigest()[:20]


def find_identity(app: App, who: str, gallery: str | None = None) -> int:
    """The id of the identity ``who`` (an id, or a name within ``gallery``)."""
    with app.db.session() as s:
        if who.isdigit() and gallery is None:
            if s.get(Identity, int(who)) is None:
                raise NotFoundError(f"no identity with id {who}", hint="see `vigil people list`")
            return int(who)
        q = select(Identity.id, Gallery.name).join(Gallery).where(Identity.name == who)
        if gallery is not None:
            q = q.where(Gallery.name == gallery)
        rows = s.execute(q).all()
        if not rows:
            raise NotFoundError(f"no identity named {who!r}" + (f" in {gallery!r}" if gallery else ""))
        if len(rows) > 1:
            raise NotFoundError(
                f"{who!r} is in several galleries ({', '.join(r[1] for r in rows)})",
                hint="name one with --gallery, or give the identity id",
            )
        return int(rows[0][0])


def _sightings_of(app: App, s: Session, identity_id: int) -> list[int]:
    """The person's sightings: those matched to them, and the unmatched ones whose template reaches the
    model's 1:1 threshold (``threshold_for_fmr(target_fmr)``) against any of their templates."""
    card = app.engine.card
    ids = set(s.scalars(select(Sighting.id).where(Sighting.identity_id == identity_id)))
    rows = s.execute(
        select(Template.vector, Template.dimension).where(
            Template.identity_id == identity_id, Template.model_id == card.id
        )
    ).all()
    if rows:
        templates = np.stack([np.frombuffer(v, "<f4", count=d) for v, d in rows]).astype(np.float32)
        threshold = card.threshold_for_fmr(app.settings.target_fmr)
        ids |= set(sighting_store.matching_ids(s, templates, card.id, threshold))
    return sorted(ids)


def erase_identity(app: App, identity_id: int, actor: str, *, reason: str | None = None) -> ErasureReport:
    with app.db.session() as s:
        identity = s.get(Identity, identity_id)
        if identity is None:
            raise NotFoundError(f"no identity with id {identity_id}", hint="see `vigil people list`")
        gallery = s.get(Gallery, identity.gallery_id)
        assert gallery is not None
        by_model: dict[str, list[int]] = {}
        for tid, mid in s.execute(
            select(Template.id, Template.model_id).where(Template.identity_id == identity_id)
        ):
            by_model.setdefault(mid, []).append(tid)
        shas = set(s.scalars(select(Photo.sha256).where(Photo.identity_id == identity_id)))
        n_photos = len(shas)
        alarms = s.execute(
            select(AlarmRecord.id, AlarmRecord.crop_sha256, AlarmRecord.thumbnail_sha256).where(
                AlarmRecord.identity_id == identity_id
            )
        ).all()
        shas |= {sha for _, crop, thumb in alarms for sha in (crop, thumb) if sha}
        s.execute(delete(AlarmRecord).where(AlarmRecord.identity_id == identity_id))
        sighting_ids = _sightings_of(app, s, identity_id)
        shas |= sighting_store.delete_sightings(s, sighting_ids)
        s.delete(identity)
        s.flush()
        change = bump_generation(s, gallery.id)
        gallery_id, gallery_name = gallery.id, gallery.name
    unindex(app, gallery_id, change, by_model)
    deleted = delete_unreferenced_blobs(app, shas)
    left = sum(app.blobs.exists(sha) for sha in shas)
    report = ErasureReport(
        pseudonym=pseudonym(app, identity_id),
        gallery=gallery_name,
        templates=sum(len(v) for v in by_model.values()),
        photos=n_photos,
        alarms=len(alarms),
        files_deleted=deleted,
        files_left=left,
        sightings=len(sighting_ids),
    )
    audit.record(
        app,
        actor,
        "erasure",
        target_type="identity",
        target_id=report.pseudonym,
        gallery=gallery_name,
        templates=report.templates,
        photos=report.photos,
        alarms=report.alarms,
        sightings=report.sightings,
        files_deleted=deleted,
        reason=reason,
    )
    return report
