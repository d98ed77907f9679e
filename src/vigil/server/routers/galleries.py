"""Galleries, their people and enrolment photos."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import select

from vigil.core.errors import NotFoundError
from vigil.gallery import enroll as enrolment
from vigil.gallery import galleries as svc
from vigil.gallery.models import Gallery, GalleryKind, Identity, Photo
from vigil.server.deps import Live, Manage, State, read_upload

router = APIRouter(prefix="/api", tags=["galleries"])


class NewGallery(BaseModel):
    name: str
    kind: GalleryKind
    purpose: str | None = None
    legal_basis: str | None = None
    authorized_by: str | None = None
    expires_on: date | None = None
    confirmations_required: int = 1


class PhotoInfo(BaseModel):
    id: int
    sha256: str
    original_name: str | None
    width_px: int
    height_px: int


class IdentityDetail(enrolment.IdentityInfo):
    gallery_id: int
    photo_list: list[PhotoInfo]


@router.get("/galleries", summary="List galleries")
def list_galleries(st: State, _: Live) -> list[svc.GalleryInfo]:
    return svc.list_galleries(st.app)


@router.post("/galleries", status_code=201, summary="Create a gallery (watchlists need their legal basis)")
def create_gallery(body: NewGallery, st: State, _: Manage) -> svc.GalleryInfo:
    return svc.create_gallery(st.app, svc.validate_spec(**body.model_dump()))


@router.get("/galleries/{name}", summary="One gallery")
def show_gallery(name: str, st: State, _: Live) -> svc.GalleryInfo:
    return svc.show_gallery(st.app, name)


@router.delete("/galleries/{name}", summary="Delete a gallery with its people, templates and photos")
def delete_gallery(name: str, st: State, _: Manage) -> svc.GalleryInfo:
    with st.face_lock:
        return svc.delete_gallery(st.app, name)


@router.get("/galleries/{name}/identities", summary="People of a gallery")
def list_identities(name: str, st: State, _: Live) -> list[enrolment.IdentityInfo]:
    return enrolment.list_identities(st.app, name)


@router.post(
    "/galleries/{name}/identities",
    status_code=201,
    summary="Enrol a person by uploading photos (multipart: identity, files, optional external_id, notes)",
)
def enrol(
    name: str,
    st: State,
    _: Manage,
    identity: Annotated[str, Form(description="the person's name")],
    files: Annotated[list[UploadFile] | None, File(description="one or more photos, one face each")] = None,
    external_id: Annotated[str | None, Form()] = None,
    notes: Annotated[str | None, Form()] = None,
    largest: Annotated[bool, Form(description="take the largest face of a group photo")] = False,
) -> enrolment.EnrolResult:
    enrolment.check_gallery_open(st.app, name)
    images = [read_upload(st, f, "files") for f in files or [None]]  # type: ignore[list-item]
    with st.face_lock:
        return enrolment.enroll(
            st.app, name, identity, images, largest=largest, external_id=external_id, notes=notes
        )


def _identity(st: State, identity_id: int) -> tuple[Identity, Gallery]:
    with st.app.db.session() as s:
        row = (
            s.execute(select(Identity, Gallery).join(Gallery).where(Identity.id == identity_id))
            .tuples()
            .first()
        )
        if row is None:
            raise NotFoundError(f"no identity with id {identity_id}")
        return row


@router.get("/identities/{identity_id}", summary="A person with their photos")
def show_identity(identity_id: int, st: State, _: Live) -> IdentityDetail:
    gallery = _identity(st, identity_id)[1]
    info = next(i for i in enrolment.list_identities(st.app, gallery.name) if i.id == identity_id)
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


@router.post("/identities/{identity_id}/photos", status_code=201, summary="Enrol more photos of a person")
def add_photos(
    identity_id: int,
    st: State,
    _: Manage,
    files: Annotated[list[UploadFile] | None, File()] = None,
    largest: Annotated[bool, Form()] = False,
) -> enrolment.EnrolResult:
    identity, gallery = _identity(st, identity_id)
    enrolment.check_gallery_open(st.app, gallery.name)
    images = [read_upload(st, f, "files") for f in files or [None]]  # type: ignore[list-item]
    with st.face_lock:
        return enrolment.enroll(st.app, gallery.name, identity.name, images, largest=largest)


@router.delete("/identities/{identity_id}", summary="Remove a person: templates, photos and index entries")
def remove_identity(identity_id: int, st: State, _: Manage) -> enrolment.IdentityInfo:
    gallery = _identity(st, identity_id)[1]
    with st.face_lock:
        return enrolment.remove_identity(st.app, gallery.name, str(identity_id))


@router.get(
    "/media/{sha256}",
    summary="A stored image (enrolment photo, alarm crop or frame thumbnail) by its SHA-256",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def media(sha256: str, st: State, _: Live) -> Response:
    if (
        len(sha256) != 64
        or any(c not in "0123456789abcdef" for c in sha256)
        or not st.app.blobs.exists(sha256)
    ):
        raise NotFoundError(f"no stored image {sha256[:16]}")
    data = st.app.blobs.get(sha256)
    kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})
