"""Re-embedding stored enrolment photos with another engine: the photo-level work of a model switch
(:mod:`vigil.gallery.modelstate` drives it, gallery by gallery, and owns the switch's state).

A photo is *pending* for a switch to model M while it has no template of M (the unique key
identity, model, source photo) and is not counted as failed in that switch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from vigil.app import App
from vigil.core.errors import ConflictError, ImageError, NoFaceError, NotFoundError
from vigil.core.types import FaceDetections
from vigil.storage.index import IndexKey
from vigil.storage.tables import Identity, ModelSwitchFailure, Photo, Template
from vigil.vision.engine import FaceEngine
from vigil.vision.image import decode_image


@contextmanager
def one_run(lock_path: Path) -> Iterator[None]:
    """Hold the lock file ``lock_path`` while a switch runs: one run at a time per data directory (the
    kernel releases it when the process dies, even by ``kill -9``). ConflictError if it is held."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the partial unique index still keeps to one running switch
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            raise ConflictError(
                f"the model switch is being run by process {holder}",
                hint="it goes on there; follow its progress (GET /api/models/switch)",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- what is left to do ----------------------------------------------------------------------------
def has_template(model_id: str) -> ColumnElement[bool]:
    """The photo (of the enclosing query) has a template of ``model_id``."""
    return exists().where(
        Template.identity_id == Photo.identity_id,
        Template.source_sha256 == Photo.sha256,
        Template.model_id == model_id,
    )


def has_failed(switch_id: int) -> ColumnElement[bool]:
    """The photo (of the enclosing query) is counted as failed in the switch."""
    return exists().where(ModelSwitchFailure.switch_id == switch_id, ModelSwitchFailure.photo_id == Photo.id)


def count_pending(s: Session, model_id: str, switch_id: int, gallery_id: int | None = None) -> int:
    """Photos (of one gallery, or all) left to re-embed."""
    q = select(func.count(Photo.id)).where(~has_template(model_id), ~has_failed(switch_id))
    if gallery_id is not None:
        q = q.join(Identity, Identity.id == Photo.identity_id).where(Identity.gallery_id == gallery_id)
    return int(s.scalar(q) or 0)


def gallery_counts(s: Session, gallery_id: int, model_id: str, switch_id: int) -> tuple[int, int, int]:
    """(photos, photos with a template of ``model_id``, photos failed in the switch) of a gallery."""
    base = select(func.count(Photo.id)).join(Identity, Identity.id == Photo.identity_id)
    base = base.where(Identity.gallery_id == gallery_id)
    photos = int(s.scalar(base) or 0)
    embedded = int(s.scalar(base.where(has_template(model_id))) or 0)
    failed = int(s.scalar(base.where(has_failed(switch_id), ~has_template(model_id))) or 0)
    return photos, embedded, failed


class PendingPhoto(NamedTuple):
    photo_id: int
    identity_id: int
    sha256: str
    name: str | None
    old_box: str | None
    """``x1,y1,x2,y2`` of the face the old model enrolled (None: no template of it)."""


@dataclass(frozen=True)
class SwitchTarget:
    """What a switch makes: templates of ``model_id``, counted in switch ``switch_id``."""

    switch_id: int
    model_id: str
    from_model_id: str | None
    pack: str


def pending_photos(s: Session, target: SwitchTarget, gallery_id: int, limit: int) -> list[PendingPhoto]:
    """The next ``limit`` photos of the gallery left to re-embed, oldest first."""
    old_box = (
        select(Template.box_xyxy)
        .where(Template.photo_id == Photo.id, Template.model_id == (target.from_model_id or ""))
        .limit(1)
        .scalar_subquery()
    )
    rows = s.execute(
        select(Photo.id, Photo.identity_id, Photo.sha256, Photo.original_name, old_box)
        .join(Identity, Identity.id == Photo.identity_id)
        .where(
            Identity.gallery_id == gallery_id,
            ~has_template(target.model_id),
            ~has_failed(target.switch_id),
        )
        .order_by(Photo.id)
        .limit(limit)
    ).all()
    return [PendingPhoto(int(a), int(b), str(c), d, e) for a, b, c, d, e in rows]


# -- one photo ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    photo: PendingPhoto
    face: FaceDetections | None
    """One face with quality and embedding; None when the photo could not be used (``reason``)."""
    reason: str | None = None


def reembed_photo(app: App, engine: FaceEngine, photo: PendingPhoto, pack: str) -> Outcome:
    """Detect and embed the photo's face with ``engine``. The photo comes from the blob store (unsealed
    when encryption at rest is on); a missing, unreadable or faceless photo is an outcome, not an error."""
    settings = app.settings
    try:
        data = app.blobs.get(photo.sha256)
        image = decode_image(
            data,
            name=photo.name or photo.sha256[:12],
            max_pixels=settings.max_image_pixels,
            max_bytes=len(data) + 1,  # accepted at enrolment (the CLI takes larger files than uploads)
            max_memory_bytes=settings.max_image_memory_bytes,
        )
        faces = engine.detect(image.bgr)
        if len(faces) == 0:
            raise NoFaceError(f"{image.name}: the {pack} pack's detector found no face")
        face = engine.embed(image.bgr, faces[pick_face(faces, photo.old_box)])
    except (NoFaceError, ImageError, NotFoundError) as exc:
        return Outcome(photo, None, exc.message)
    return Outcome(photo, face)


def pick_face(faces: FaceDetections, box: str | None) -> int:
    """The face that overlaps the enrolled one most (``box``: the old template's), else the largest
    (``faces`` come largest first)."""
    if box is None or len(faces) == 1:
        return 0
    try:
        x1, y1, x2, y2 = (float(v) for v in box.split(","))
    except ValueError:
        return 0
    b = faces.xyxy
    iw = np.clip(np.minimum(b[:, 2], x2) - np.maximum(b[:, 0], x1), 0, None)
    ih = np.clip(np.minimum(b[:, 3], y2) - np.maximum(b[:, 1], y1), 0, None)
    inter = iw * ih
    union = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) + (x2 - x1) * (y2 - y1) - inter
    iou = inter / np.maximum(union, 1e-6)
    return int(np.argmax(iou)) if float(iou.max()) > 0 else 0


def store_outcomes(s: Session, target: SwitchTarget, outcomes: list[Outcome]) -> tuple[int, int]:
    """Add the templates and failures of ``outcomes`` in ``s``; (templates added, failures added).

    Photos deleted meanwhile, and photos that got a template of the model meanwhile, are left out."""
    ids = [o.photo.photo_id for o in outcomes]
    alive = {
        (int(pid), int(iid), str(sha))
        for pid, iid, sha in s.execute(
            select(Photo.id, Photo.identity_id, Photo.sha256).where(Photo.id.in_(ids)).with_for_update()
        )
    }
    have = {
        (int(iid), str(sha))
        for iid, sha in s.execute(
            select(Template.identity_id, Template.source_sha256).where(
                Template.model_id == target.model_id,
                Template.identity_id.in_({o.photo.identity_id for o in outcomes}),
            )
        )
    }
    added = failed = 0
    for o in outcomes:
        p = o.photo
        if (p.photo_id, p.identity_id, p.sha256) not in alive or (p.identity_id, p.sha256) in have:
            continue
        if o.face is None:
            reason = o.reason or "unusable"
            s.add(
                ModelSwitchFailure(
                    switch_id=target.switch_id, photo_id=p.photo_id, identity_id=p.identity_id, reason=reason
                )
            )
            failed += 1
        else:
            s.add(_template(p, o.face, target.model_id))
            added += 1
    return added, failed


def _template(p: PendingPhoto, face: FaceDetections, model_id: str) -> Template:
    if face.embedding is None or face.quality is None:
        raise ValueError("the engine returned a face without its embedding or quality")
    vector = face.embedding[0].astype("<f4")
    return Template(
        identity_id=p.identity_id,
        photo_id=p.photo_id,
        model_id=model_id,
        dimension=len(vector),
        vector=vector.tobytes(),
        quality=float(face.quality[0]),
        source_sha256=p.sha256,
        box_xyxy=",".join(f"{v:.1f}" for v in face.xyxy[0]),
    )


# -- indexes -------------------------------------------------------------------------------------------
def refresh_indexes(
    app: App, gallery_id: int, change: tuple[int, int], target: SwitchTarget, dimension: int
) -> None:
    """After a completion moved the gallery from generation ``change[0]`` to ``change[1]``: the new
    model's index is built now (the first search after the flip finds it ready), and the old model's
    is carried to the new generation (its templates did not change, so the server's next search reads
    it instead of rebuilding it from the catalog)."""
    new, old = target.model_id, target.from_model_id
    app.indexes.rebuild(
        IndexKey(gallery_id, new), change[1], dimension, gallery_templates(app, gallery_id, new, dimension)
    )
    if not old:
        return
    with app.db.session() as s:
        old_dim = s.scalar(select(Template.dimension).where(Template.model_id == old).limit(1))
    if not old_dim:
        return
    empty = (np.zeros(0, np.int64), np.zeros((0, old_dim), np.float32))
    app.indexes.apply(
        IndexKey(gallery_id, old),
        change,
        old_dim,
        empty,
        empty[0],
        lambda: gallery_templates(app, gallery_id, old, old_dim),
    )


def gallery_templates(
    app: App, gallery_id: int, model_id: str, dimension: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """(n,) int64 template ids and (n, ``dimension``) float32 vectors of a gallery's model."""
    with app.db.session() as s:
        rows = s.execute(
            select(Template.id, Template.vector)
            .join(Identity, Identity.id == Template.identity_id)
            .where(Identity.gallery_id == gallery_id, Template.model_id == model_id)
            .order_by(Template.id)
        ).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, dimension), np.float32)
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    vectors = np.stack([np.frombuffer(r[1], dtype="<f4", count=dimension) for r in rows]).astype(np.float32)
    return ids, vectors
