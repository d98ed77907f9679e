"""Decisions: 1:1 verification and 1:N open-set identification with calibrated thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import distinct, func, select

from vigil.app import App
from vigil.core.errors import ForbiddenError, MultipleFacesError, NoFaceError
from vigil.core.types import FaceDetections
from vigil.gallery.enroll import load_templates
from vigil.gallery.galleries import get_gallery
from vigil.storage import audit
from vigil.storage.index import IndexKey
from vigil.storage.tables import Gallery, Identity, Template
from vigil.vision.image import LoadedImage


class VerifyResult(BaseModel):
    same_person: bool
    score: float
    threshold: float
    model: str
    fmr: float


class Match(BaseModel):
    identity: str
    identity_id: int
    gallery: str
    score: float
    threshold: float
    above_threshold: bool


class FaceResult(BaseModel):
    xyxy: list[float]
    quality: float
    matches: list[Match]
    decision: str | None
    decision_gallery: str | None = None


class IdentifyResult(BaseModel):
    faces: list[FaceResult]
    model: str
    fpir: float
    galleries: list[str]


def _one_face(app: App, image: LoadedImage, largest: bool) -> FaceDetections:
    faces = app.engine.detect(image.bgr)
    if len(faces) == 0:
        raise NoFaceError(f"{image.name}: no face found", hint="use a photo where the face is at least 80 px")
    if len(faces) > 1 and not largest:
        raise MultipleFacesError(
            f"{image.name}: {len(faces)} faces found, verification compares one face per photo",
            hint="crop the photo, or pass --largest to use the largest face",
        )
    return app.engine.embed(image.bgr, faces[0])


def verify(
    app: App, a: LoadedImage, b: LoadedImage, *, largest: bool = False, actor: str = audit.SYSTEM
) -> VerifyResult:
    """Are the faces in photos ``a`` and ``b`` the same person, at the target false-match rate?
    Audited (``verify``: both photos' SHA-256, the score, threshold and rate)."""
    fa, fb = _one_face(app, a, largest), _one_face(app, b, largest)
    if fa.embedding is None or fb.embedding is None:
        raise ValueError("the engine returned faces without embeddings")
    score = float(fa.embedding[0] @ fb.embedding[0])
    fmr = app.settings.target_fmr
    threshold = app.engine.card.threshold_for_fmr(fmr)
    result = VerifyResult(
        same_person=score >= threshold,
        score=round(score, 6),
        threshold=round(threshold, 6),
        model=app.engine.model_id,
        fmr=fmr,
    )
    audit.record(
        app,
        actor,
        "verify",
        target_type="photo",
        target_id=a.sha256,
        other_photo=b.sha256,
        same_person=result.same_person,
        score=result.score,
        threshold=result.threshold,
        fmr=result.fmr,
    )
    return result


def verify_faces(
    app: App,
    source: npt.NDArray[np.float32],
    targets: npt.NDArray[np.float32],
    *,
    photos_sha256: tuple[str, str],
    actor: str = audit.SYSTEM,
) -> tuple[npt.NDArray[np.float32], float]:
    """Scores (n,) of the embedded ``targets`` (n, d) against one ``source`` (d,), and the threshold
    at the target false-match rate. Audited (``verify``: the photos' SHA-256 (source, target), the
    scores, threshold and rate)."""
    scores = (targets @ source).astype(np.float32)
    fmr = app.settings.target_fmr
    threshold = app.engine.card.threshold_for_fmr(fmr)
    audit.record(
        app,
        actor,
        "verify",
        target_type="photo",
        target_id=photos_sha256[0],
        other_photo=photos_sha256[1],
        scores=[round(float(x), 6) for x in scores],
        threshold=threshold,
        fmr=fmr,
    )
    return scores, threshold


def _searchable(app: App, names: list[str] | None) -> list[tuple[int, str, int]]:
    """(gallery id, name, generation) of the galleries to search; expired watchlists refused or skipped."""
    with app.db.session() as s:
        if names:
            galleries = [get_gallery(s, n) for n in names]
            for g in galleries:
                if g.is_expired():
                    raise ForbiddenError(
                        f"watchlist {g.name!r} expired on {g.expires_on} and can no longer be searched",
                        hint="renew its legal basis and expiry date",
                    )
        else:
            galleries = [g for g in s.scalars(select(Gallery).order_by(Gallery.name)) if not g.is_expired()]
        return [(g.id, g.name, g.generation) for g in galleries]


def identify_faces(
    app: App, faces: FaceDetections, galleries: list[str] | None = None, top_k: int = 5
) -> IdentifyResult:
    """Search embedded ``faces`` in galleries; decisions at the target FPIR for each gallery's size."""
    if faces.embedding is None:
        raise ValueError("faces must be embedded before identification")
    card = app.engine.card
    fpir = app.settings.target_fpir
    targets = _searchable(app, galleries)
    per_face: list[list[Match]] = [[] for _ in range(len(faces))]
    for gallery_id, gname, generation in targets:
        with app.db.session() as s:
            n_identities = (
                s.scalar(
                    select(func.count(distinct(Template.identity_id)))
                    .join(Identity)
                    .where(Identity.gallery_id == gallery_id, Template.model_id == card.id)
                )
                or 0
            )
        if n_identities == 0:
            continue
        threshold = card.threshold_for_fpir(fpir, n_identities)
        index = app.indexes.get(
            IndexKey(gallery_id, card.id),
            generation,
            card.dimension,
            lambda gid=gallery_id: load_templates(app, gid, card.id),
        )
        ids, scores = index.search(
            faces.embedding,
            k=min(len(index), max(top_k * 4, 16)),
            recheck_above=threshold - app.settings.index_recheck_margin,  # near a decision: exact
        )
        names = _identities_of(app, gallery_id, ids)
        identity_names = dict(names.values())
        for i in range(len(faces)):
            best: dict[int, float] = {}
            for tid, score in zip(ids[i], scores[i], strict=True):
                if tid < 0 or int(tid) not in names:
                    continue
                iid = names[int(tid)][0]
                best[iid] = max(best.get(iid, -1.0), float(score))
            for iid, score in best.items():
                per_face[i].append(
                    Match(
                        identity=identity_names[iid],
                        identity_id=iid,
                        gallery=gname,
                        score=round(score, 6),
                        threshold=round(threshold, 6),
                        above_threshold=score >= threshold,
                    )
                )
    results = []
    quality = faces.quality if faces.quality is not None else np.zeros(len(faces), np.float32)
    for i, matches in enumerate(per_face):
        matches.sort(key=lambda m: -m.score)
        matches = matches[:top_k]
        decided = next((m for m in matches if m.above_threshold), None)
        results.append(
            FaceResult(
                xyxy=[round(float(v), 1) for v in faces.xyxy[i]],
                quality=round(float(quality[i]), 4),
                matches=matches,
                decision=decided.identity if decided else None,
                decision_gallery=decided.gallery if decided else None,
            )
        )
    return IdentifyResult(faces=results, model=card.id, fpir=fpir, galleries=[t[1] for t in targets])


def audit_summary(result: IdentifyResult) -> dict[str, Any]:
    """What the audit log keeps of a search: galleries, rate, each face's decision and top scores."""
    return {
        "galleries": result.galleries,
        "fpir": result.fpir,
        "model": result.model,
        "faces": [
            {
                "decision": f.decision,
                "gallery": f.decision_gallery,
                "matches": [
                    {"identity": m.identity, "gallery": m.gallery, "score": m.score} for m in f.matches[:3]
                ],
            }
            for f in result.faces
        ],
    }


def _identities_of(
    app: App, gallery_id: int, template_ids: npt.NDArray[np.int64]
) -> dict[int, tuple[int, str]]:
    """template id -> (identity id, name), for the templates that belong to the gallery searched: an
    index that is out of step with the catalog can only miss a match, never name someone else."""
    wanted = sorted({int(t) for t in template_ids.ravel() if t >= 0})
    if not wanted:
        return {}
    with app.db.session() as s:
        rows = s.execute(
            select(Template.id, Identity.id, Identity.name)
            .join(Identity)
            .where(Template.id.in_(wanted), Identity.gallery_id == gallery_id)
        ).all()
    return {tid: (iid, name) for tid, iid, name in rows}


def identify(
    app: App,
    image: LoadedImage,
    galleries: list[str] | None = None,
    top_k: int = 5,
    *,
    actor: str = audit.SYSTEM,
    action: str = "identify",
) -> IdentifyResult:
    """Every face in the photo, searched in the galleries (all unexpired ones by default); audited
    as ``action`` (``identify``; the API's search: ``search``) with :func:`audit_summary`.

    A photo with no face is refused (:class:`NoFaceError`), as enrolment refuses it."""
    faces = app.engine.detect(image.bgr)
    if len(faces) == 0:
        raise NoFaceError(
            f"{image.name}: no face found, so there is nothing to search for",
            hint="use a photo where the face is at least 80 px",
        )
    embedded = app.engine.embed(image.bgr, faces)
    return search_faces(app, embedded, image.sha256, galleries, top_k, actor=actor, action=action)


def search_faces(
    app: App,
    faces: FaceDetections,
    photo_sha256: str,
    galleries: list[str] | None = None,
    top_k: int = 5,
    *,
    actor: str = audit.SYSTEM,
    action: str = "identify",
) -> IdentifyResult:
    """:func:`identify_faces` for the embedded ``faces`` of the photo ``photo_sha256``, audited as
    ``action`` (the CompreFace route's ``compreface_recognize``)."""
    result = identify_faces(app, faces, galleries, top_k)
    audit.record(app, actor, action, target_type="photo", target_id=photo_sha256, **audit_summary(result))
    return result
