"""Enrolment: photos -> one face each -> templates, in one transaction per call.

Detection and embedding happen before anything is written; a bad photo aborts the whole call
and nothing is stored. Enrolling the same photo for the same identity again changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import (
    ConflictError,
    ForbiddenError,
    InputError,
    MultipleFacesError,
    NoFaceError,
    NotFoundError,
    VigilError,
)
from vigil.core.names import check_name
from vigil.core.refusals import check_metadata
from vigil.core.types import FaceDetections
from vigil.gallery.galleries import get_gallery
from vigil.storage import audit
from vigil.storage.index import IndexKey
from vigil.storage.tables import ActiveModel, AlarmRecord, Gallery, GalleryKind, Identity, Photo, Template
from vigil.vision.image import LoadedImage


@dataclass(frozen=True)
class PreparedFace:
    """The one face of an enrolment photo, embedded."""

    image: LoadedImage
    face: FaceDetections  # exactly one face, with quality and embedding
    faces_found: int


class EnrolledPhoto(BaseModel):
    name: str
    sha256: str
    status: str  # "enrolled" | "already-enrolled"
    quality: float
    xyxy: list[float]
    faces_found: int


class EnrolResult(BaseModel):
    gallery: str
    identity: str
    identity_id: int
    created: bool
    photos: list[EnrolledPhoto]
    consent_on: date | None = None
    consent_by: str | None = None
    warnings: list[str] = []
    """Stored all the same: a new photo that matches none of the person's other photos (likely someone
    else's; see :mod:`vigil.gallery.hygiene`)."""


def prepare_face(
    app: App, image: LoadedImage, *, largest: bool = False, min_score: float = 0.0
) -> PreparedFace:
    """Detect the single face of an enrolment photo and embed it.

    Faces whose detector score is below ``min_score`` are ignored.

    Raises:
        NoFaceError: no face found.
        MultipleFacesError: several faces and ``largest`` is False.
    """
    faces = app.engine.detect(image.bgr)
    if min_score > 0 and len(faces):
        faces = faces[faces.score >= min_score]
    if len(faces) == 0:
        raise NoFaceError(
            f"{image.name}: no face found", hint="use a sharp, frontal photo where the face is at least 80 px"
        )
    if len(faces) > 1 and not largest:
        raise MultipleFacesError(
            f"{image.name}: {len(faces)} faces found, enrolment needs exactly one",
            hint="crop the photo to the person, or pass --largest to take the largest face",
        )
    one = app.engine.embed(image.bgr, faces[0])
    return PreparedFace(image=image, face=one, faces_found=len(faces))


class PhotoError(BaseModel):
    """A photo of a bulk enrolment that was skipped, and why."""

    path: str
    error: str


class PersonOutcome(BaseModel):
    """One person of a bulk enrolment, once their transaction is committed (or all photos failed)."""

    person: str
    result: EnrolResult | None
    """None: no photo of theirs could be used, nothing was stored."""
    errors: list[PhotoError]


def enroll_people(
    app: App,
    gallery_name: str,
    people: Sequence[tuple[str, Sequence[Path]]],
    load: Callable[[Path], LoadedImage],
    *,
    largest: bool = False,
    on_photo: Callable[[int, int], None] | None = None,
    actor: str = audit.SYSTEM,
) -> Iterator[PersonOutcome]:
    """Enrol ``people`` (name, photo paths) one transaction per person, yielding each person's outcome
    as soon as it is stored, so that a caller can report it before the next person is started.

    A photo that cannot be loaded or has no usable face is skipped (its error is in the outcome);
    ``on_photo(done, total)`` follows the photos. Attendance galleries are refused (each person needs
    their own consent: enrol them one by one); the gallery is checked on the call, before any photo.
    Each person's enrolment is audited (``enrol``) with it."""
    check_gallery_open(app, gallery_name)
    check_consent(app, gallery_name, None, None, None)
    return _enroll_each(app, gallery_name, people, load, largest, on_photo, actor)


def _enroll_each(
    app: App,
    gallery_name: str,
    people: Sequence[tuple[str, Sequence[Path]]],
    load: Callable[[Path], LoadedImage],
    largest: bool,
    on_photo: Callable[[int, int], None] | None,
    actor: str,
) -> Iterator[PersonOutcome]:
    total = sum(len(photos) for _, photos in people)
    done = 0
    for person, photos in people:
        prepared: list[PreparedFace] = []
        errors: list[PhotoError] = []
        for path in photos:
            try:
                prepared.append(prepare_face(app, load(path), largest=largest))
            except VigilError as exc:
                errors.append(PhotoError(path=str(path), error=str(exc)))
            done += 1
            if on_photo is not None:
                on_photo(done, total)
        result = enroll_prepared(app, gallery_name, person, prepared, actor=actor) if prepared else None
        yield PersonOutcome(person=person, result=result, errors=errors)


def load_templates(
    app: App, gallery_id: int, model_id: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(n,) int64 template ids and (n, d) float32 vectors of one gallery and model, from the catalog."""
    with app.db.session() as s:
        rows = s.execute(
            select(Template.id, Template.vector, Template.dimension)
            .join(Identity)
            .where(Identity.gallery_id == gallery_id, Template.model_id == model_id)
            .order_by(Template.id)
        ).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, app.engine.card.dimension), np.float32)
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    vectors = np.stack([np.frombuffer(r[1], dtype="<f4", count=r[2]) for r in rows]).astype(np.float32)
    return ids, vectors


def bump_generation(s: Session, gallery_id: int) -> tuple[int, int]:
    s.execute(update(Gallery).where(Gallery.id == gallery_id).values(generation=Gallery.generation + 1))
    new = int(s.scalar(select(Gallery.generation).where(Gallery.id == gallery_id)) or 0)
    return new - 1, new


def enroll(
    app: App,
    gallery_name: str,
    identity_name: str,
    images: list[LoadedImage],
    *,
    largest: bool = False,
    external_id: str | None = None,
    notes: str | None = None,
    attributes: dict[str, str] | None = None,
    consent_on: date | None = None,
    consent_by: str | None = None,
    actor: str = audit.SYSTEM,
) -> EnrolResult:
    """Enrol ``images`` of one person into a gallery, all or nothing; audited (``enrol``) in the same
    transaction.

    An attendance gallery enrols only a person whose consent is recorded (``consent_on``, ``consent_by``;
    see :func:`check_consent`)."""
    check_metadata(attributes, "identity metadata")
    check_gallery_open(app, gallery_name)
    check_consent(app, gallery_name, identity_name, consent_on, consent_by)
    prepared = [prepare_face(app, image, largest=largest) for image in images]
    return enroll_prepared(
        app,
        gallery_name,
        identity_name,
        prepared,
        external_id=external_id,
        notes=notes,
        attributes=attributes,
        consent_on=consent_on,
        consent_by=consent_by,
        actor=actor,
    )


def photo_name(name: str) -> str:
    """What a photo's name keeps of where it came from: the file name, never the folders of the machine
    it was read on (a CLI path, or an upload's file name with ``../`` or ``C:\\`` in it); control and
    invisible characters are dropped."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    visible = "".join(c for c in base if c.isprintable())
    return visible.strip()[-200:] or "photo"


def check_gallery_open(app: App, gallery_name: str) -> int:
    """The gallery's id; raises if it does not exist or is an expired watchlist."""
    with app.db.session() as s:
        gallery = get_gallery(s, gallery_name)
        if gallery.is_expired():
            raise ForbiddenError(
                f"watchlist {gallery.name!r} expired on {gallery.expires_on}",
                hint="renew it before enrolling",
            )
        return gallery.id


CONSENT_HINT = (
    "record when the person consented and who recorded it: "
    "vigil enroll NAME PHOTO --gallery G --consent-on YYYY-MM-DD --consent-by NAME "
    "(API: the consent_on and consent_by form fields)"
)


def check_consent(
    app: App,
    gallery_name: str,
    identity_name: str | None,
    consent_on: date | None,
    consent_by: str | None,
) -> None:
    """Refuse an enrolment into an attendance gallery without the person's consent (the date and who
    recorded it), unless ``identity_name`` is already enrolled there with consent; refuse consent given
    for another kind of gallery. ``identity_name`` None: a new person."""
    with app.db.session() as s:
        gallery = get_gallery(s, gallery_name)
        existing = None
        if identity_name is not None and identity_name.strip():
            existing = s.scalar(
                select(Identity).where(
                    Identity.gallery_id == gallery.id, Identity.name == identity_name.strip()
                )
            )
        _consent_rule(gallery, existing, consent_on, consent_by)


def _consent_rule(
    gallery: Gallery, identity: Identity | None, consent_on: date | None, consent_by: str | None
) -> None:
    consent_by = (consent_by or "").strip() or None
    given = consent_on is not None or consent_by is not None
    if gallery.kind is not GalleryKind.attendance:
        if given:
            raise InputError(
                f"consent is recorded only for attendance galleries; {gallery.name!r} is a "
                f"{gallery.kind.value} gallery",
                hint="leave out the consent date and who recorded it",
            )
        return
    if consent_on is not None and consent_on > date.today():
        raise InputError(
            f"the consent date {consent_on} is in the future", hint="give the day consent was given"
        )
    if not given and identity is not None and identity.consent_on is not None and identity.consent_by:
        return  # more photos of a person whose consent is on record
    missing = [
        name for name, v in (("consent date", consent_on), ("who recorded it", consent_by)) if v is None
    ]
    if missing:
        raise ForbiddenError(
            f"attendance gallery {gallery.name!r} enrols only people who consented; missing: "
            + ", ".join(missing),
            hint=CONSENT_HINT,
        )


class IdentityExistsError(ConflictError):
    """The person to add as new is already in the gallery."""

    def __init__(self, name: str, gallery: str) -> None:
        super().__init__(f"{name!r} is already in gallery {gallery!r}")
        self.name = name


def enroll_prepared(
    app: App,
    gallery_name: str,
    identity_name: str,
    prepared: list[PreparedFace],
    *,
    external_id: str | None = None,
    notes: str | None = None,
    attributes: dict[str, str] | None = None,
    consent_on: date | None = None,
    consent_by: str | None = None,
    actor: str | None = audit.SYSTEM,
    new: bool = False,
) -> EnrolResult:
    """Store already detected and embedded faces of one person, in one transaction with its audit
    entry (``enrol``, by ``actor``; None: the caller records its own entry for the whole action, as a
    cluster's promotion does). ``new``: a person of that name already in the gallery is refused
    (:class:`IdentityExistsError`), and nothing is stored.

    ``attributes`` is operator-defined metadata; keys naming sensitive traits are refused.
    Attendance galleries need the person's consent (see :func:`check_consent`)."""
    check_metadata(attributes, "identity metadata")
    identity_name = check_name(identity_name, "person's name")
    gallery_id = check_gallery_open(app, gallery_name)
    model_id, dim = app.engine.card.id, app.engine.card.dimension

    new_blobs: list[str] = []
    added_ids: list[int] = []
    added_vecs: list[npt.NDArray[np.float32]] = []
    photos: list[EnrolledPhoto] = []
    try:
        with app.db.session() as s:
            identity = s.scalar(
                select(Identity).where(Identity.gallery_id == gallery_id, Identity.name == identity_name)
            )
            gallery = s.get(Gallery, gallery_id)
            if gallery is None:  # deleted since it was checked
                raise NotFoundError(f"no gallery named {gallery_name!r}")
            _consent_rule(gallery, identity, consent_on, consent_by)
            created = identity is None
            if new and not created:
                raise IdentityExistsError(identity_name, gallery_name)
            if identity is None:
                identity = Identity(
                    gallery_id=gallery_id,
                    name=identity_name,
                    external_id=external_id,
                    notes=notes,
                    attributes=json.dumps(attributes) if attributes else None,
                )
                s.add(identity)
            if consent_on is not None:
                identity.consent_on = consent_on
                identity.consent_by = (consent_by or "").strip()
            s.flush()
            _check_model_current(app, s, model_id)
            for p in prepared:
                photos.append(_add_photo(app, s, identity, p, model_id, new_blobs, added_ids, added_vecs))
            change = bump_generation(s, gallery_id) if added_ids else None
            warnings = _mismatches(app, s, identity.id, photos, added_ids, added_vecs)
            result = EnrolResult(
                gallery=gallery_name,
                identity=identity.name,
                identity_id=identity.id,
                created=created,
                photos=photos,
                consent_on=identity.consent_on,
                consent_by=identity.consent_by,
                warnings=warnings,
            )
            if actor is not None:
                _audit_enrol(s, actor, result)
    except BaseException:
        delete_unreferenced_blobs(app, new_blobs)
        raise
    if change is not None:
        app.indexes.apply(
            IndexKey(gallery_id, model_id),
            change,
            dim,
            (np.asarray(added_ids, np.int64), np.stack(added_vecs)),
            np.zeros(0, np.int64),
            lambda: load_templates(app, gallery_id, model_id),
        )
    return result


def _audit_enrol(s: Session, actor: str, result: EnrolResult) -> None:
    consent = (
        {"consent_on": result.consent_on.isoformat(), "consent_by": result.consent_by}
        if result.consent_on
        else {}
    )
    audit.append(
        s,
        actor,
        "enrol",
        target_type="identity",
        target_id=result.identity_id,
        target_name=result.identity,
        gallery=result.gallery,
        photos=[{"sha256": p.sha256, "status": p.status, "quality": p.quality} for p in result.photos],
        **consent,
    )


def _mismatches(
    app: App,
    s: Session,
    identity_id: int,
    photos: list[EnrolledPhoto],
    added_ids: list[int],
    added_vecs: list[npt.NDArray[np.float32]],
) -> list[str]:
    """A warning for each photo just added whose best score against the person's other templates of the
    model is below the 1:1 verification threshold (the card's, at ``target_fmr``)."""
    if not added_ids:
        return []
    card = app.engine.card
    rows = s.execute(
        select(Template.id, Template.vector, Template.dimension).where(
            Template.identity_id == identity_id, Template.model_id == card.id
        )
    ).all()
    if len(rows) < 2:
        return []
    ids = [r[0] for r in rows]
    vectors = np.stack([np.frombuffer(r[1], dtype="<f4", count=r[2]) for r in rows]).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    threshold = card.threshold_for_fmr(app.settings.target_fmr)
    enrolled = [p for p in photos if p.status == "enrolled"]
    warnings = []
    for tid, vec, photo in zip(added_ids, added_vecs, enrolled, strict=True):
        others = vectors[[i != tid for i in ids]]
        best = float((others @ (vec / max(float(np.linalg.norm(vec)), 1e-12))).max())
        if best < threshold:
            warnings.append(
                f"{photo_name(photo.name)}: matches none of the person's {len(others)} other photo(s) "
                f"(best score {best:.3f} < {threshold:.3f}, the 1:1 threshold at FMR "
                f"{app.settings.target_fmr:g}); "
                f"stored, but it is likely someone else's photo: see `vigil gallery check`"
            )
    return warnings


def _check_model_current(app: App, s: Session, model_id: str) -> None:
    """Refuse templates of a model that is no longer the active one (a model switch flipped while this
    process still ran the old engine): they would never be matched, and the switch is over."""
    if app.engine_override is not None or app.settings.model_pack is not None or app.pack == "custom":
        return
    active = s.get(ActiveModel, 1)
    if active is not None and active.model_id != model_id:
        raise ConflictError(
            f"the face model changed to {active.pack!r} while this enrolment ran; nothing was stored",
            hint="enrol the photos again (the server loads the new model within seconds)",
        )


def _add_photo(
    app: App,
    s: Session,
    identity: Identity,
    p: PreparedFace,
    model_id: str,
    new_blobs: list[str],
    added_ids: list[int],
    added_vecs: list[npt.NDArray[np.float32]],
) -> EnrolledPhoto:
    sha = p.image.sha256
    face = p.face
    assert face.quality is not None and face.embedding is not None  # set by prepare_face
    entry = EnrolledPhoto(
        name=p.image.name,
        sha256=sha,
        status="already-enrolled",
        quality=round(float(face.quality[0]), 4),
        xyxy=[round(float(v), 1) for v in face.xyxy[0]],
        faces_found=p.faces_found,
    )
    other = s.execute(
        select(Identity.name)
        .join(Template)
        .where(
            Identity.gallery_id == identity.gallery_id,
            Identity.id != identity.id,
            Template.source_sha256 == sha,
            Template.model_id == model_id,
        )
    ).first()
    if other is not None:
        raise ConflictError(
            f"{p.image.name}: this photo is already enrolled as {other[0]!r} in this gallery",
            hint="remove it from that identity first if it was enrolled under the wrong name",
        )
    exists = s.scalar(
        select(Template.id).where(
            Template.identity_id == identity.id, Template.model_id == model_id, Template.source_sha256 == sha
        )
    )
    if exists is not None:
        return entry
    photo = s.scalar(select(Photo).where(Photo.identity_id == identity.id, Photo.sha256 == sha))
    if photo is None:
        if not app.blobs.exists(sha):
            app.blobs.put(p.image.data)
            new_blobs.append(sha)
        w, h = p.image.size_wh
        photo = Photo(
            identity_id=identity.id,
            sha256=sha,
            original_name=photo_name(p.image.name),
            width_px=w,
            height_px=h,
        )
        s.add(photo)
        s.flush()
    vector = face.embedding[0].astype("<f4")
    template = Template(
        identity_id=identity.id,
        photo_id=photo.id,
        model_id=model_id,
        dimension=len(vector),
        vector=vector.tobytes(),
        quality=float(face.quality[0]),
        source_sha256=sha,
        box_xyxy=",".join(f"{v:.1f}" for v in face.xyxy[0]),
    )
    s.add(template)
    s.flush()
    added_ids.append(template.id)
    added_vecs.append(vector.astype(np.float32))
    return entry.model_copy(update={"status": "enrolled"})


def delete_unreferenced_blobs(app: App, shas: Iterable[str]) -> int:
    """Delete the blobs among ``shas`` that no photo or alarm references; the number deleted."""
    shas = set(shas)
    if not shas:
        return 0
    with app.db.session() as s:
        used = set(s.scalars(select(Photo.sha256).where(Photo.sha256.in_(shas))).all())
        for column in (AlarmRecord.crop_sha256, AlarmRecord.thumbnail_sha256):
            used |= {sha for sha in s.scalars(select(column).where(column.in_(shas))) if sha}
    return sum(app.blobs.delete(sha) for sha in shas - used)


def unindex(app: App, gallery_id: int, change: tuple[int, int], removed: dict[str, list[int]]) -> None:
    """Take removed template ids (by model) out of the gallery's indexes after a committed change."""
    for model_id, ids in removed.items():
        dim = app.engine.card.dimension if model_id == app.engine.card.id else 0
        if dim:
            app.indexes.apply(
                IndexKey(gallery_id, model_id),
                change,
                dim,
                (np.zeros(0, np.int64), np.zeros((0, dim), np.float32)),
                np.asarray(ids, np.int64),
                lambda m=model_id: load_templates(app, gallery_id, m),
            )
        else:
            app.indexes.drop([IndexKey(gallery_id, model_id)])
