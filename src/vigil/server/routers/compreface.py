"""CompreFace-compatible endpoints (REST API 1.x, ``/api/v1``), so Double Take and other CompreFace
clients can use vigil unchanged. See docs/compreface.md.

A CompreFace API key names one face collection; here it is the gallery the API key is bound to.
A *subject* is an identity of that gallery, a *face* (``image_id``) one of its enrolment photos.

Similarity: CompreFace clients compare a similarity in [0, 1] with a fixed cut (Double Take:
``detect.match.confidence`` 60 %). vigil's decision compares a cosine score with a threshold that
depends on the model's calibration and the gallery's size, so the cosine is mapped through the
calibrated false-match rate (FMR) at that score: the decision threshold maps to exactly
``ACCEPT_SIMILARITY`` (0.6); above it every tenfold drop of the FMR adds 0.1 (1.0 at 10^-4 times
the threshold's FMR); below it the similarity falls in proportion to log FMR, to 0 where every
impostor scores as high.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel
from sqlalchemy import func, select

from vigil.accounts import Principal
from vigil.core.errors import (
    NoFaceError,
    NotFoundError,
)
from vigil.core.types import FaceDetections
from vigil.gallery import enroll as enrolment
from vigil.gallery import identities, matching
from vigil.server.compreface_support import (
    CompreFaceRoute,
    File,
    ImageNotFoundError,
    NoCollectionError,
    Pair,
    SubjectExistsError,
    similarity,
    upload_doc,
)
from vigil.server.deps import MAX_ID, Live, Manage, ServerState, State, read_upload
from vigil.storage.tables import Gallery, Identity, Photo
from vigil.vision.image import LoadedImage

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["compreface"], route_class=CompreFaceRoute)


def _collection(st: ServerState, p: Principal) -> str:
    """The gallery the caller's API key is bound to."""
    bind = "create a key bound to a gallery: `vigil keys create NAME --role supervisor --gallery G`"
    if p.gallery_id is None:
        raise NoCollectionError(
            f"the {p.kind} {p.name!r} is not bound to a gallery; the CompreFace endpoints work on the "
            "one gallery (face collection) an API key is bound to",
            hint=bind + ' or POST /api/keys {"name", "role", "gallery"}',
        )
    with st.app.db.session() as s:
        name = s.scalar(select(Gallery.name).where(Gallery.id == p.gallery_id))
    if name is None:
        raise NoCollectionError(f"the gallery of API key {p.name!r} no longer exists", hint=bind)
    return name


# -- responses ------------------------------------------------------------------------------------


class Box(BaseModel):
    probability: float
    x_max: int
    y_max: int
    x_min: int
    y_min: int


class SubjectMatch(BaseModel):
    subject: str
    similarity: float
    accepted: bool
    """vigil's open-set decision: this subject is the identification at vigil's threshold."""


class DetectedFace(BaseModel):
    box: Box
    landmarks: list[list[int]] | None = None
    execution_time: dict[str, float]


class RecognizedFace(DetectedFace):
    subjects: list[SubjectMatch]


class DetectResponse(BaseModel):
    result: list[DetectedFace]
    plugins_versions: dict[str, str]


class RecognizeResponse(BaseModel):
    result: list[RecognizedFace]
    plugins_versions: dict[str, str]


class FaceMatch(BaseModel):
    box: Box
    similarity: float
    accepted: bool


class VerifyItem(BaseModel):
    source_image_face: DetectedFace
    face_matches: list[FaceMatch]
    plugins_versions: dict[str, str]


class VerifyResponse(BaseModel):
    result: list[VerifyItem]


class SubjectName(BaseModel):
    subject: str


class SubjectList(BaseModel):
    subjects: list[str]


class Updated(BaseModel):
    updated: bool


class Deleted(BaseModel):
    deleted: int


class FaceRef(BaseModel):
    image_id: str
    subject: str


class FacePage(BaseModel):
    faces: list[FaceRef]
    page_number: int
    page_size: int
    total_pages: int
    total_elements: int


# -- the face engine --------------------------------------------------------------------------------


class Found:
    """Faces of one image, filtered (and embedded unless ``embed`` is False), with each stage's time."""

    def __init__(
        self, st: ServerState, image: LoadedImage, min_score: float | None, limit: int, *, embed: bool = True
    ) -> None:
        engine = st.app.engine
        t0 = time.perf_counter()
        faces = engine.detect(image.bgr)
        if min_score is not None and len(faces):
            faces = faces[faces.score >= min_score]
        if limit and len(faces) > limit:
            faces = faces[:limit]  # largest first
        t1 = time.perf_counter()
        if len(faces) == 0:
            raise NoFaceError(f"{image.name}: no face is found in the given image")
        self.faces: FaceDetections = engine.embed(image.bgr, faces) if embed else faces
        self.size_wh = image.size_wh
        self.ms = {
            "detector": round((t1 - t0) * 1000, 1),
            "calculator": round((time.perf_counter() - t1) * 1000, 1),
        }

    def face(self, i: int, plugins: set[str]) -> DetectedFace:
        x1, y1, x2, y2 = (float(v) for v in self.faces.xyxy[i])
        w, h = self.size_wh
        box = Box(
            probability=round(float(self.faces.score[i]), 5),
            x_min=max(0, round(x1)),
            y_min=max(0, round(y1)),
            x_max=min(w, round(x2)),
            y_max=min(h, round(y2)),
        )
        landmarks = None
        if "landmarks" in plugins and self.faces.landmarks is not None:
            landmarks = [[round(float(x)), round(float(y))] for x, y in self.faces.landmarks[i]]
        return DetectedFace(box=box, landmarks=landmarks, execution_time=self.ms)


def _plugins(face_plugins: str) -> set[str]:
    return {p.strip().lower() for p in face_plugins.split(",") if p.strip()}


def _versions(st: ServerState) -> dict[str, str]:
    return {"detector": f"vigil.{st.app.settings.detector}", "calculator": st.app.engine.model_id}


Limit = Annotated[int, Query(ge=0, le=MAX_ID, description="most faces to handle, largest first (0: all)")]
DetProb = Annotated[
    float | None, Query(ge=0, le=1, description="drop faces whose detector confidence is lower")
]
Plugins = Annotated[str, Query(description="only `landmarks` is provided; other plugins are ignored")]
StatusFlag = Annotated[bool, Query(description="accepted; timings are always included")]


# -- recognition ------------------------------------------------------------------------------------


@router.post(
    "/recognition/recognize",
    summary="Recognize faces in a photo against the key's gallery (CompreFace)",
    response_model_exclude_none=True,
    openapi_extra=upload_doc("file"),
)
def recognize(
    st: State,
    p: Live,
    file: File,
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    prediction_count: Annotated[int, Query(ge=1, le=100)] = 1,
    face_plugins: Plugins = "",
    status: StatusFlag = False,
) -> RecognizeResponse:
    gallery = _collection(st, p)
    image = read_upload(st, file)
    with st.face_lock:
        found = Found(st, image, det_prob_threshold, limit)
        identified = matching.search_faces(
            st.app,
            found.faces,
            image.sha256,
            [gallery],
            prediction_count,
            actor=p.actor,
            action="compreface_recognize",
        )
    card, plugins = st.app.engine.card, _plugins(face_plugins)
    result = []
    for i, face in enumerate(identified.faces):
        subjects = [
            SubjectMatch(
                subject=m.identity,
                similarity=similarity(card, m.score, m.threshold),
                accepted=m.above_threshold and m.identity == face.decision,
            )
            for m in face.matches
        ]
        result.append(RecognizedFace(**found.face(i, plugins).model_dump(), subjects=subjects))
    return RecognizeResponse(result=result, plugins_versions=_versions(st))


@router.post(
    "/detection/detect",
    summary="Detect faces in a photo (CompreFace)",
    response_model_exclude_none=True,
    openapi_extra=upload_doc("file"),
)
def detect(
    st: State,
    _: Live,
    file: File,
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: StatusFlag = False,
) -> DetectResponse:
    image = read_upload(st, file)
    with st.face_lock:
        found = Found(st, image, det_prob_threshold, limit, embed=False)
    plugins = _plugins(face_plugins)
    faces = [found.face(i, plugins) for i in range(len(found.faces))]
    return DetectResponse(result=faces, plugins_versions=_versions(st))


@router.post(
    "/verification/verify",
    summary="Compare the largest face of source_image with the faces of target_image (CompreFace)",
    response_model_exclude_none=True,
    openapi_extra=upload_doc("source_image", "target_image"),
)
def verify(
    st: State,
    p: Live,
    images: Pair,
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: StatusFlag = False,
) -> VerifyResponse:
    source = read_upload(st, images["source_image"], "source_image")
    target = read_upload(st, images["target_image"], "target_image")
    with st.face_lock:
        a = Found(st, source, det_prob_threshold, 1)
        b = Found(st, target, det_prob_threshold, limit)
    assert a.faces.embedding is not None and b.faces.embedding is not None  # set by Found
    scores, threshold = matching.verify_faces(
        st.app,
        a.faces.embedding[0],
        b.faces.embedding,
        photos_sha256=(source.sha256, target.sha256),
        actor=p.actor,
    )
    card, plugins = st.app.engine.card, _plugins(face_plugins)
    matches = [
        FaceMatch(
            box=b.face(i, plugins).box,
            similarity=similarity(card, float(score), threshold),
            accepted=float(score) >= threshold,
        )
        for i, score in enumerate(scores)
    ]
    matches.sort(key=lambda m: -m.similarity)
    item = VerifyItem(
        source_image_face=a.face(0, plugins), face_matches=matches, plugins_versions=_versions(st)
    )
    return VerifyResponse(result=[item])


# -- subjects ---------------------------------------------------------------------------------------


def _require_subject(st: ServerState, gallery: str, name: str) -> None:
    """Refuse a subject not in the gallery, by exact name (vigil's own lookup also accepts ids)."""
    with st.app.db.session() as s:
        query = select(Identity.id).join(Gallery).where(Gallery.name == gallery, Identity.name == name)
        if s.scalar(query) is None:
            raise NotFoundError(f"subject {name!r} is not found", hint=f"in gallery {gallery!r}")


@router.post("/recognition/subjects", status_code=201, summary="Add a subject with no face yet (CompreFace)")
def add_subject(body: SubjectName, st: State, p: Manage) -> SubjectName:
    gallery = _collection(st, p)
    with st.face_lock:
        try:
            result = enrolment.enroll_prepared(st.app, gallery, body.subject, [], actor=p.actor, new=True)
        except enrolment.IdentityExistsError as exc:
            raise SubjectExistsError(f"subject {exc.name!r} already exists") from None
    return SubjectName(subject=result.identity)


@router.get("/recognition/subjects", summary="List the subjects (CompreFace)")
def list_subjects(st: State, p: Live) -> SubjectList:
    return SubjectList(subjects=[i.name for i in identities.list_identities(st.app, _collection(st, p))])


@router.put(
    "/recognition/subjects/{subject}", summary="Rename a subject; merge into an existing one (CompreFace)"
)
def rename_subject(subject: str, body: SubjectName, st: State, p: Manage) -> Updated:
    gallery = _collection(st, p)
    _require_subject(st, gallery, subject)
    with st.face_lock:
        identities.rename_identity(st.app, gallery, subject, body.subject, actor=p.actor)
    return Updated(updated=True)


@router.delete("/recognition/subjects/{subject}", summary="Delete a subject with its faces (CompreFace)")
def delete_subject(subject: str, st: State, p: Manage) -> SubjectName:
    gallery = _collection(st, p)
    _require_subject(st, gallery, subject)
    with st.face_lock:
        info = identities.remove_identity(st.app, gallery, subject, actor=p.actor)
    return SubjectName(subject=info.name)


@router.delete("/recognition/subjects", summary="Delete every subject of the gallery (CompreFace)")
def delete_subjects(st: State, p: Manage) -> Deleted:
    gallery = _collection(st, p)
    deleted = 0
    with st.face_lock:
        for info in identities.list_identities(st.app, gallery):
            identities.remove_identity(st.app, gallery, info.name, actor=p.actor)
            deleted += 1
    return Deleted(deleted=deleted)


# -- faces (enrolment photos) -----------------------------------------------------------------------


def _photo_ids(st: ServerState, gallery: str, subject: str | None) -> list[int]:
    with st.app.db.session() as s:
        query = select(Photo.id).join(Identity).join(Gallery).where(Gallery.name == gallery)
        if subject is not None:
            query = query.where(Identity.name == subject)
        return list(s.scalars(query.order_by(Photo.id)))


def _db_id(image_id: str) -> int | None:
    """The photo id an ``image_id`` names, or None when it cannot name one (not ASCII digits, too big)."""
    if not (image_id.isascii() and image_id.isdigit()):
        return None
    value = int(image_id)
    return value if value <= MAX_ID else None


def _photo(st: ServerState, gallery: str, image_id: str) -> tuple[int, str]:
    """(photo id, sha256) of the image ``image_id`` of the gallery."""
    row = None
    photo_id = _db_id(image_id)
    if photo_id is not None:
        with st.app.db.session() as s:
            query = select(Photo.id, Photo.sha256).join(Identity).join(Gallery)
            row = s.execute(query.where(Gallery.name == gallery, Photo.id == photo_id)).first()
    if row is None:
        raise ImageNotFoundError(f"image {image_id!r} is not found", hint=f"in gallery {gallery!r}")
    return row


@router.post(
    "/recognition/faces",
    status_code=201,
    summary="Enrol a photo of a subject, created if new (CompreFace)",
    openapi_extra=upload_doc("file"),
)
def add_face(
    st: State,
    p: Manage,
    subject: Annotated[str, Query(min_length=1)],
    file: File,
    det_prob_threshold: DetProb = None,
) -> FaceRef:
    gallery = _collection(st, p)
    enrolment.check_gallery_open(st.app, gallery)
    image = read_upload(st, file)
    with st.face_lock:
        prepared = enrolment.prepare_face(st.app, image, min_score=det_prob_threshold or 0.0)
        result = enrolment.enroll_prepared(st.app, gallery, subject, [prepared], actor=p.actor)
    with st.app.db.session() as s:
        photo_id = s.scalar(
            select(Photo.id).where(Photo.identity_id == result.identity_id, Photo.sha256 == image.sha256)
        )
    return FaceRef(image_id=str(photo_id), subject=result.identity)


@router.get("/recognition/faces", summary="List the enrolled faces, a page at a time (CompreFace)")
def list_faces(
    st: State,
    p: Live,
    page: Annotated[int, Query(ge=0, le=MAX_ID // 1000)] = 0,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    subject: str | None = None,
) -> FacePage:
    gallery = _collection(st, p)
    with st.app.db.session() as s:
        query = select(Photo.id, Identity.name).join(Identity).join(Gallery).where(Gallery.name == gallery)
        if subject is not None:
            query = query.where(Identity.name == subject)
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = s.execute(query.order_by(Photo.id).offset(page * size).limit(size)).all()
    return FacePage(
        faces=[FaceRef(image_id=str(pid), subject=name) for pid, name in rows],
        page_number=page,
        page_size=size,
        total_pages=math.ceil(total / size),
        total_elements=total,
    )


@router.delete(
    "/recognition/faces", summary="Delete the faces of a subject (all faces without one) (CompreFace)"
)
def delete_faces(st: State, p: Manage, subject: str | None = None) -> Deleted:
    gallery = _collection(st, p)
    ids = _photo_ids(st, gallery, subject)
    with st.face_lock:
        removed = identities.remove_photos(st.app, gallery, ids, actor=p.actor)
    return Deleted(deleted=len(removed))


@router.post(
    "/recognition/faces/delete", summary="Delete faces by image_id; unknown ids are skipped (CompreFace)"
)
def delete_face_list(st: State, p: Manage, image_ids: Annotated[list[str], Body()]) -> list[FaceRef]:
    gallery = _collection(st, p)
    ids = [i for i in map(_db_id, image_ids) if i is not None]
    with st.face_lock:
        removed = identities.remove_photos(st.app, gallery, ids, actor=p.actor)
    return [FaceRef(image_id=str(r.photo_id), subject=r.identity) for r in removed]


@router.delete("/recognition/faces/{image_id}", summary="Delete one face (CompreFace)")
def delete_face(image_id: str, st: State, p: Manage) -> FaceRef:
    gallery = _collection(st, p)
    photo_id, _ = _photo(st, gallery, image_id)
    with st.face_lock:
        removed = identities.remove_photos(st.app, gallery, [photo_id], actor=p.actor)
    if not removed:
        raise ImageNotFoundError(f"image {image_id!r} is not found")
    return FaceRef(image_id=image_id, subject=removed[0].identity)


@router.get(
    "/recognition/faces/{image_id}/img",
    summary="The enrolled photo (CompreFace)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def face_image(image_id: str, st: State, p: Live) -> Response:
    sha256 = _photo(st, _collection(st, p), image_id)[1]
    if not st.app.blobs.exists(sha256):
        raise ImageNotFoundError(f"the file of image {image_id!r} is missing")
    data = st.app.blobs.get(sha256)
    kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})
