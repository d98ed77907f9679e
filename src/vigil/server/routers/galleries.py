"""Galleries, their people and enrolment photos."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vigil.core.errors import InputError, NotFoundError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries as svc
from vigil.gallery import hygiene, identities
from vigil.governance import erasure
from vigil.governance.erasure import ErasureReport
from vigil.server.deps import MAX_ID, Id, Live, Manage, Scope, State, WholeServer, read_upload
from vigil.storage.tables import Gallery, GalleryKind, Identity, Photo

router = APIRouter(prefix="/api", tags=["galleries"])


class NewGallery(BaseModel):
    name: str
    kind: GalleryKind
    purpose: str | None = None
    legal_basis: str | None = None
    authorized_by: str | None = None
    expires_on: date | None = None
    confirmations_required: int = 1
    sites: list[str] | None = None
    cameras: list[str] | None = None
    retention_days: int | None = None
    attendance_start: str | None = None
    """Attendance galleries: expected arrival, HH:MM local time (the ``timezone`` setting)."""
    attendance_end: str | None = None
    attendance_days: str | None = None
    """Working days, e.g. ``mon-fri`` or ``mon,wed,fri``."""
    attendance_grace_min: int | None = None


class GalleryChange(BaseModel):
    """Only the fields sent are changed; each change is audited with the terms before and after."""

    model_config = ConfigDict(extra="forbid")
    purpose: str | None = None
    legal_basis: str | None = None
    authorized_by: str | None = None
    expires_on: date | None = None
    confirmations_required: int | None = None
    sites: list[str] | None = None
    cameras: list[str] | None = None
    retention_days: int | None = None
    attendance_start: str | None = None
    attendance_end: str | None = None
    attendance_days: str | None = None
    attendance_grace_min: int | None = None


class Erasure(BaseModel):
    reason: str | None = None
    """Why (e.g. "GDPR Art. 17 request 2026-114"); kept in the audit log with the pseudonymous id."""


class PhotoInfo(BaseModel):
    id: int
    sha256: str
    original_name: str | None
    width_px: int
    height_px: int


class IdentityDetail(identities.IdentityInfo):
    gallery_id: int
    photo_list: list[PhotoInfo]


@router.get("/galleries", summary="List galleries")
def list_galleries(st: State, _: Live, scope: Scope) -> list[svc.GalleryInfo]:
    return [g for g in svc.list_galleries(st.app) if scope.allows(g.id)]


@router.post(
    "/galleries",
    status_code=201,
    summary="Create a gallery (watchlists need their legal basis)",
    dependencies=[WholeServer],
)
def create_gallery(body: NewGallery, st: State, me: Manage) -> svc.GalleryInfo:
    return svc.create_gallery(st.app, svc.validate_spec(**body.model_dump()), actor=me.actor)


@router.patch(
    "/galleries/{name}", summary="Change a gallery's terms (renew a watchlist, limit it to sites...)"
)
def update_gallery(name: str, body: GalleryChange, st: State, me: Manage, scope: Scope) -> svc.GalleryInfo:
    scope.gallery(name)
    changes = body.model_dump(exclude_unset=True)
    return svc.update_gallery(st.app, name, changes, actor=me.actor)[1]


@router.get("/galleries/{name}", summary="One gallery")
def show_gallery(name: str, st: State, _: Live, scope: Scope) -> svc.GalleryInfo:
    return svc.show_gallery(st.app, scope.gallery(name))


@router.delete("/galleries/{name}", summary="Delete a gallery with its people, templates and photos")
def delete_gallery(name: str, st: State, me: Manage, scope: Scope) -> svc.GalleryInfo:
    scope.gallery(name)
    with st.face_lock:
        return svc.delete_gallery(st.app, name, actor=me.actor)


@router.get(
    "/galleries/{name}/check",
    summary="Check a gallery: likely wrong photos, people enrolled twice (here or in another gallery the "
    "caller may see), photos below the quality the matcher needs, people with one photo; audited",
)
def check_gallery(name: str, st: State, me: Live, scope: Scope) -> hygiene.HygieneReport:
    return hygiene.check_gallery(st.app, scope.gallery(name), scope=scope, actor=me.actor)


class CheckFix(BaseModel):
    """One finding's fix: ``remove-photo`` [photo id], ``merge`` [keep id, other id], ``remove-identity``
    [identity id]; each audited by the change it makes."""

    model_config = ConfigDict(extra="forbid")
    action: str
    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(max_length=2)


@router.post("/galleries/{name}/check/fix", summary="Apply one finding's fix (a person decides)")
def fix_gallery(name: str, body: CheckFix, st: State, me: Manage, scope: Scope) -> hygiene.FixResult:
    scope.gallery(name)
    with st.face_lock:
        return hygiene.apply_fix(st.app, name, body.action, body.ids, scope=scope, actor=me.actor)


@router.get("/galleries/{name}/identities", summary="People of a gallery")
def list_identities(name: str, st: State, _: Live, scope: Scope) -> list[identities.IdentityInfo]:
    return identities.list_identities(st.app, scope.gallery(name))


@router.post(
    "/galleries/{name}/identities",
    status_code=201,
    summary="Enrol a person by uploading photos (multipart: identity, files, optional external_id, notes)",
)
def enrol(
    name: str,
    st: State,
    me: Manage,
    scope: Scope,
    identity: Annotated[str, Form(description="the person's name")],
    files: Annotated[list[UploadFile] | None, File(description="one or more photos, one face each")] = None,
    external_id: Annotated[str | None, Form()] = None,
    notes: Annotated[str | None, Form()] = None,
    largest: Annotated[bool, Form(description="take the largest face of a group photo")] = False,
    metadata: Annotated[
        str | None, Form(description='operator metadata, a JSON object such as {"employee_no": "4711"}')
    ] = None,
    consent_on: Annotated[
        date | None, Form(description="attendance galleries (required): the day the person consented")
    ] = None,
    consent_by: Annotated[
        str | None, Form(description="attendance galleries (required): who recorded the consent")
    ] = None,
) -> enrolment.EnrolResult:
    attributes = _metadata(metadata)
    enrolment.check_gallery_open(st.app, scope.gallery(name))
    enrolment.check_consent(st.app, name, identity, consent_on, consent_by)
    images = [read_upload(st, f, "files") for f in files or [None]]  # type: ignore[list-item]
    with st.face_lock:
        return enrolment.enroll(
            st.app,
            name,
            identity,
            images,
            largest=largest,
            external_id=external_id,
            notes=notes,
            attributes=attributes,
            consent_on=consent_on,
            consent_by=consent_by,
            actor=me.actor,
        )


def _metadata(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise InputError(
            "metadata is not JSON", hint='send a JSON object, e.g. {"employee_no": "4711"}'
        ) from None
    if not isinstance(value, dict) or not all(isinstance(v, str | int | float) for v in value.values()):
        raise InputError("metadata must be a JSON object of names to text or numbers")
    return {str(k): str(v) for k, v in value.items()}


class IdentityChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    external_id: str | None = None
    notes: str | None = None
    metadata: dict[str, str] | None = None


@router.patch(
    "/identities/{identity_id:id}", summary="Change a person's name, external id, notes or metadata"
)
def update_identity(
    identity_id: Id, body: IdentityChange, st: State, me: Manage, scope: Scope
) -> identities.IdentityInfo:
    _identity(st, scope, identity_id)
    return identities.update_identity(
        st.app,
        identity_id,
        name=body.name,
        external_id=body.external_id,
        notes=body.notes,
        attributes=body.metadata,
        actor=me.actor,
    )[1]


def _identity(st: State, scope: Scope, identity_id: int) -> tuple[Identity, Gallery]:
    """The person and their gallery; a person of a gallery out of scope is not found."""
    with st.app.db.session() as s:
        row = s.execute(select(Identity, Gallery).join(Gallery).where(Identity.id == identity_id)).first()
        if row is None or not scope.allows(row[1].id):
            raise NotFoundError(f"no identity with id {identity_id}")
        return row


@router.get("/identities/{identity_id:id}", summary="A person with their photos")
def show_identity(identity_id: Id, st: State, _: Live, scope: Scope) -> IdentityDetail:
    gallery = _identity(st, scope, identity_id)[1]
    info = next(i for i in identities.list_identities(st.app, gallery.name) if i.id == identity_id)
    with st.app.db.session() as s:
        photos = [
            PhotoInfo(
                id=p.id,
                sha256=p.sha256,
                original_name=p.original_name,
                width_px=p.width_px,
                height_px=p.height_px,
            )
            for p in s.scalars(select(Photo).where(Photo.identity_id == identity_id).order_by(Photo.id))
        ]
    return IdentityDetail(**info.model_dump(), gallery_id=gallery.id, photo_list=photos)


@router.post("/identities/{identity_id:id}/photos", status_code=201, summary="Enrol more photos of a person")
def add_photos(
    identity_id: Id,
    st: State,
    me: Manage,
    scope: Scope,
    files: Annotated[list[UploadFile] | None, File()] = None,
    largest: Annotated[bool, Form()] = False,
) -> enrolment.EnrolResult:
    identity, gallery = _identity(st, scope, identity_id)
    enrolment.check_gallery_open(st.app, gallery.name)
    images = [read_upload(st, f, "files") for f in files or [None]]  # type: ignore[list-item]
    with st.face_lock:
        return enrolment.enroll(st.app, gallery.name, identity.name, images, largest=largest, actor=me.actor)


@router.delete("/identities/{identity_id:id}", summary="Remove a person: templates, photos and index entries")
def remove_identity(identity_id: Id, st: State, me: Manage, scope: Scope) -> identities.IdentityInfo:
    gallery = _identity(st, scope, identity_id)[1]
    with st.face_lock:
        return identities.remove_identity(st.app, gallery.name, str(identity_id), actor=me.actor)


@router.post(
    "/identities/{identity_id:id}/erase",
    summary="Erase a person (GDPR Art. 17): templates, photos, alarms with their crops and snapshots, index "
    "entries; the audit keeps that it happened under a pseudonymous id",
)
def erase_identity(identity_id: Id, body: Erasure, st: State, me: Manage, scope: Scope) -> ErasureReport:
    _identity(st, scope, identity_id)
    with st.face_lock:
        return erasure.erase_identity(st.app, identity_id, me.actor, reason=body.reason)


@router.get(
    "/media/{sha256}",
    summary="A stored image (enrolment photo, alarm crop or frame thumbnail) by its SHA-256",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def media(sha256: str, st: State, _: Live, scope: Scope) -> Response:
    if (
        len(sha256) != 64
        or any(c not in "0123456789abcdef" for c in sha256)
        or not st.app.blobs.exists(sha256)
    ):
        raise NotFoundError(f"no stored image {sha256[:16]}")
    scope.check_media(st.app, sha256)
    data = st.app.blobs.get(sha256)
    kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})
