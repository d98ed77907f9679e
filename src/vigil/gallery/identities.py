"""Identities of a gallery: list, rename, merge, update, remove them and their photos.

Removal takes templates out of the indexes and deletes photos no one else refers to (see
:func:`vigil.gallery.enroll.unindex` and :func:`vigil.gallery.enroll.delete_unreferenced_blobs`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConflictError, NotFoundError
from vigil.core.names import check_name
from vigil.core.refusals import check_metadata
from vigil.gallery.enroll import bump_generation, delete_unreferenced_blobs, unindex
from vigil.gallery.galleries import get_gallery
from vigil.storage import audit
from vigil.storage.tables import Gallery, Identity, Photo, Template


class IdentityInfo(BaseModel):
    id: int
    gallery: str
    name: str
    external_id: str | None
    notes: str | None
    attributes: dict[str, str] | None = None
    photos: int
    templates: int
    consent_on: date | None = None
    """Attendance galleries: when the person consented, and who recorded it."""
    consent_by: str | None = None


def _find_identity(s: Session, gallery: Gallery, who: str) -> Identity:
    query = select(Identity).where(Identity.gallery_id == gallery.id)
    identity = s.scalar(query.where(Identity.name == who))
    if identity is None and who.isdigit():
        identity = s.scalar(query.where(Identity.id == int(who)))
    if identity is None:
        raise NotFoundError(
            f"no identity {who!r} in gallery {gallery.name!r}", hint="see `vigil people list`"
        )
    return identity


def remove_identity(app: App, gallery_name: str, who: str, *, actor: str = audit.SYSTEM) -> IdentityInfo:
    """Remove a person (by name or id) with their templates, photos and index entries; audited
    (``identity_remove``) in the same transaction."""
    with app.db.session() as s:
        gallery = get_gallery(s, gallery_name)
        identity = _find_identity(s, gallery, who)
        info = _identity_info(s, identity, gallery.name)
        by_model: dict[str, list[int]] = {}
        for tid, mid in s.execute(
            select(Template.id, Template.model_id).where(Template.identity_id == identity.id)
        ):
            by_model.setdefault(mid, []).append(tid)
        shas = set(s.scalars(select(Photo.sha256).where(Photo.identity_id == identity.id)).all())
        s.delete(identity)
        s.flush()
        change = bump_generation(s, gallery.id)
        gallery_id = gallery.id
        audit.append(
            s,
            actor,
            "identity_remove",
            target_type="identity",
            target_id=info.id,
            target_name=info.name,
            gallery=gallery.name,
            templates=info.templates,
            photos=info.photos,
        )
    unindex(app, gallery_id, change, by_model)
    delete_unreferenced_blobs(app, shas)
    return info


def _identity_info(s: Session, identity: Identity, gallery_name: str) -> IdentityInfo:
    photos = s.scalar(select(func.count(Photo.id)).where(Photo.identity_id == identity.id)) or 0
    templates = s.scalar(select(func.count(Template.id)).where(Template.identity_id == identity.id)) or 0
    return IdentityInfo(
        id=identity.id,
        gallery=gallery_name,
        name=identity.name,
        external_id=identity.external_id,
        notes=identity.notes,
        attributes=json.loads(identity.attributes) if identity.attributes else None,
        photos=photos,
        templates=templates,
        consent_on=identity.consent_on,
        consent_by=identity.consent_by,
    )


def list_identities(app: App, gallery_name: str | None = None) -> list[IdentityInfo]:
    with app.db.session() as s:
        query = select(Identity, Gallery.name).join(Gallery).order_by(Gallery.name, Identity.name)
        if gallery_name is not None:
            query = query.where(Gallery.id == get_gallery(s, gallery_name).id)
        return [_identity_info(s, identity, gname) for identity, gname in s.execute(query)]


class RemovedPhoto(BaseModel):
    photo_id: int
    identity: str
    sha256: str


def remove_photos(
    app: App, gallery_name: str, photo_ids: Iterable[int], *, actor: str = audit.SYSTEM
) -> list[RemovedPhoto]:
    """Remove enrolment photos of a gallery with the templates made from them; ids not in the
    gallery are skipped. The identities stay, even with no photo left. Each removal is audited
    (``photo_remove``) in the same transaction."""
    wanted = sorted(set(photo_ids))
    removed: list[RemovedPhoto] = []
    by_model: dict[str, list[int]] = {}
    with app.db.session() as s:
        gallery = get_gallery(s, gallery_name)
        rows = s.execute(
            select(Photo, Identity.name)
            .join(Identity)
            .where(Identity.gallery_id == gallery.id, Photo.id.in_(wanted))
            .order_by(Photo.id)
        )
        for photo, identity_name in rows:
            templates = s.scalars(
                select(Template).where(
                    Template.identity_id == photo.identity_id,
                    (Template.photo_id == photo.id) | (Template.source_sha256 == photo.sha256),
                )
            )
            for template in templates:
                by_model.setdefault(template.model_id, []).append(template.id)
                s.delete(template)
            removed.append(RemovedPhoto(photo_id=photo.id, identity=identity_name, sha256=photo.sha256))
            s.delete(photo)
        s.flush()
        for r in removed:
            audit.append(
                s,
                actor,
                "photo_remove",
                target_type="photo",
                target_id=r.photo_id,
                target_name=r.identity,
                gallery=gallery_name,
            )
        change = bump_generation(s, gallery.id) if by_model else None
        gallery_id = gallery.id
    if change is not None:
        unindex(app, gallery_id, change, by_model)
    delete_unreferenced_blobs(app, {r.sha256 for r in removed})
    return removed


def rename_identity(
    app: App, gallery_name: str, who: str, new_name: str, *, actor: str = audit.SYSTEM
) -> IdentityInfo:
    """Rename a person (by name or id). If ``new_name`` is taken in the gallery, the two are merged:
    photos and templates move to that person (duplicates of what it already has are dropped).
    Audited (``identity_update``, ``renamed_from``) in the same transaction."""
    new_name = check_name(new_name, "person's name")
    with app.db.session() as s:
        gallery = get_gallery(s, gallery_name)
        identity = _find_identity(s, gallery, who)
        audit.append(
            s,
            actor,
            "identity_update",
            target_type="identity",
            target_name=new_name,
            gallery=gallery_name,
            renamed_from=who,
        )
        target = s.scalar(
            select(Identity).where(Identity.gallery_id == gallery.id, Identity.name == new_name)
        )
        if target is None or target.id == identity.id:
            identity.name = new_name
            s.flush()
            return _identity_info(s, identity, gallery.name)
        change, by_model = _merge_into(s, identity, target)
        info = _identity_info(s, target, gallery.name)
        gallery_id = gallery.id
    unindex(app, gallery_id, change, by_model)
    return info


def _merge_into(
    s: Session, source: Identity, target: Identity
) -> tuple[tuple[int, int], dict[str, list[int]]]:
    """Move ``source``'s photos and templates to ``target`` and delete ``source``; the generation
    change and the template ids (by model) dropped as duplicates."""
    have = set(
        s.execute(
            select(Template.model_id, Template.source_sha256).where(Template.identity_id == target.id)
        ).all()
    )
    target_photos = {p.sha256: p.id for p in s.scalars(select(Photo).where(Photo.identity_id == target.id))}
    dropped: dict[str, list[int]] = {}
    moved: list[Template] = []
    for template in s.scalars(select(Template).where(Template.identity_id == source.id)).all():
        if (template.model_id, template.source_sha256) in have:
            dropped.setdefault(template.model_id, []).append(template.id)
            s.delete(template)
        else:
            moved.append(template)
    s.flush()
    for photo in s.scalars(select(Photo).where(Photo.identity_id == source.id)).all():
        if photo.sha256 in target_photos:
            for template in moved:
                if template.photo_id == photo.id:
                    template.photo_id = target_photos[photo.sha256]
            s.delete(photo)
        else:
            photo.identity_id = target.id
    s.flush()
    for template in moved:
        template.identity_id = target.id
    s.flush()
    s.delete(source)
    s.flush()
    return bump_generation(s, target.gallery_id), dropped


def update_identity(
    app: App,
    identity_id: int,
    *,
    name: str | None = None,
    external_id: str | None = None,
    notes: str | None = None,
    attributes: dict[str, str] | None = None,
    actor: str = audit.SYSTEM,
) -> tuple[IdentityInfo, IdentityInfo]:
    """Change a person's name, external id, notes or metadata; returns (before, after). Audited
    (``identity_update``, before and after) in the same transaction."""
    check_metadata(attributes, "identity metadata")
    with app.db.session() as s:
        identity = s.get(Identity, identity_id)
        if identity is None:
            raise NotFoundError(f"no identity with id {identity_id}", hint="see `vigil people list`")
        gallery = s.get(Gallery, identity.gallery_id)
        assert gallery is not None
        before = _identity_info(s, identity, gallery.name)
        if name is not None:
            name = check_name(name, "person's name")
        if name is not None and name != identity.name:
            taken = s.scalar(
                select(Identity.id).where(Identity.gallery_id == gallery.id, Identity.name == name)
            )
            if taken is not None:
                raise ConflictError(
                    f"{name!r} is already in gallery {gallery.name!r}", hint="choose another name"
                )
            identity.name = name
        if external_id is not None:
            identity.external_id = external_id or None
        if notes is not None:
            identity.notes = notes or None
        if attributes is not None:
            identity.attributes = json.dumps(attributes) if attributes else None
        s.flush()
        after = _identity_info(s, identity, gallery.name)
        audit.append(
            s,
            actor,
            "identity_update",
            target_type="identity",
            target_id=identity_id,
            target_name=after.name,
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
        )
        return before, after
