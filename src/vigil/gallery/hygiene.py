"""Gallery hygiene: wrong photos, people enrolled twice, weak photos and people with one photo.

:func:`check_gallery` compares the active model's templates of a gallery with each other and with the
other galleries the caller may see, and lists what a person should look at:

- ``wrong-photo``: a photo of a person with two or more photos whose best score against that person's
  other photos is below the 1:1 verification threshold (the card's threshold at ``target_fmr``, 1e-3
  by default): it matches none of them, so it is likely someone else's photo;
- ``same-person``: two identities, in this gallery or across galleries, with a pair of templates that
  match above the strict threshold at FMR 1e-5 (:data:`SAME_PERSON_FMR`): probably one person;
- ``low-quality``: a photo whose face quality is below ``video_min_quality``, the quality the video
  pipeline needs before it embeds a shot;
- ``single-photo`` / ``no-photo``: a person with one photo (or none) of the active model.

Each finding carries its fix, one command (and the same as an action for :func:`apply_fix`, which the
API's fix route calls). Nothing is changed by the check: a person decides. The check is audited
(``gallery_check``), as it compares people's templates with each other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.gallery import identities
from vigil.gallery.galleries import get_gallery
from vigil.gallery.scope import EVERY, GalleryScope
from vigil.storage import audit
from vigil.storage.tables import Gallery, Identity, Photo, Template

SAME_PERSON_FMR = 1e-5
"""Two identities are "probably one person" when two of their templates match at this FMR's threshold."""
PREFILTER_FMR = 1e-4
"""Pairs of people whose averaged templates score below this FMR's threshold are not compared further."""
BLOCK = 1024
"""Identities compared at once (1024 x 20k averages in float32: 80 MB)."""

Kind = Literal["wrong-photo", "same-person", "low-quality", "single-photo", "no-photo"]


class PhotoRef(BaseModel):
    """One enrolment photo named in a finding."""

    photo_id: int
    sha256: str
    identity_id: int
    identity: str
    gallery: str
    quality: float


class Fix(BaseModel):
    """A fix as an action: ``remove-photo`` [photo id], ``merge`` [keep id, other id] (same gallery),
    ``remove-identity`` [identity id] (its gallery in ``gallery``), ``add-photos`` (enrol more)."""

    action: Literal["remove-photo", "merge", "remove-identity", "add-photos"]
    gallery: str
    ids: list[int]
    command: str


class Finding(BaseModel):
    kind: Kind
    message: str
    identities: list[str]
    identity_ids: list[int]
    photos: list[PhotoRef]
    score: float | None = None
    threshold: float | None = None
    fixes: list[Fix]


class HygieneReport(BaseModel):
    gallery: str
    model_id: str
    identities: int
    photos: int
    compared_with: list[str]
    """The other galleries searched for people enrolled twice."""
    wrong_photo_threshold: float
    wrong_photo_fmr: float
    same_person_threshold: float
    same_person_fmr: float
    min_quality: float
    seconds: float
    findings: list[Finding]


@dataclass
class _Set:
    """The active model's templates of some galleries, one row per photo."""

    refs: list[PhotoRef]
    ident: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]


def check_gallery(
    app: App, name: str, *, scope: GalleryScope = EVERY, actor: str = audit.SYSTEM
) -> HygieneReport:
    """Check gallery ``name`` (within ``scope``) and its people against the other galleries in scope;
    audited (``gallery_check``, the numbers of findings by kind)."""
    started = time.perf_counter()
    scope.gallery(name)
    card, model_id = app.engine.card, app.engine.card.id
    fmr = app.settings.target_fmr
    verify_t, same_t = card.threshold_for_fmr(fmr), card.threshold_for_fmr(SAME_PERSON_FMR)
    prefilter = min(same_t, card.threshold_for_fmr(PREFILTER_FMR))
    min_q = app.settings.video_min_quality
    with app.db.session() as s:
        gallery = get_gallery(s, name)
        others = [g for g in s.scalars(select(Gallery).order_by(Gallery.name)) if g.id != gallery.id]
        others = [g for g in others if scope.allows(g.id)]
        own = _load(s, [gallery.id], model_id)
        rest = _load(s, [g.id for g in others], model_id)
        people = list(s.execute(select(Identity.id, Identity.name).where(Identity.gallery_id == gallery.id)))
    findings = _wrong_photos(own, name, fmr, verify_t)
    findings += _same_people(own, rest, name, same_t, prefilter)
    findings += _low_quality(own, name, min_q)
    findings += _few_photos(own, people, name)
    report = HygieneReport(
        gallery=name,
        model_id=model_id,
        identities=len(people),
        photos=len(own.refs),
        compared_with=[g.name for g in others],
        wrong_photo_threshold=round(verify_t, 4),
        wrong_photo_fmr=fmr,
        same_person_threshold=round(same_t, 4),
        same_person_fmr=SAME_PERSON_FMR,
        min_quality=min_q,
        seconds=round(time.perf_counter() - started, 3),
        findings=findings,
    )
    _audit_check(app, actor, report)
    return report


def _audit_check(app: App, actor: str, report: HygieneReport) -> None:
    counts: dict[str, int] = {}
    for f in report.findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    with app.db.session() as s:
        audit.append(
            s,
            actor,
            "gallery_check",
            target_type="gallery",
            target_name=report.gallery,
            gallery=report.gallery,
            compared_with=report.compared_with,
            findings=counts,
        )


def _load(s: Session, gallery_ids: Sequence[int], model_id: str) -> _Set:
    if not gallery_ids:
        return _Set([], np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    rows = s.execute(
        select(Template, Photo.sha256, Identity.name, Gallery.name)
        .join(Identity, Identity.id == Template.identity_id)
        .join(Gallery, Gallery.id == Identity.gallery_id)
        .join(Photo, Photo.id == Template.photo_id)
        .where(Identity.gallery_id.in_(list(gallery_ids)), Template.model_id == model_id)
        .order_by(Template.id)
    ).all()
    refs = [
        PhotoRef(
            photo_id=t.photo_id or 0,
            sha256=sha,
            identity_id=t.identity_id,
            identity=iname,
            gallery=gname,
            quality=round(float(t.quality), 4),
        )
        for t, sha, iname, gname in rows
    ]
    if not rows:
        return _Set([], np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    vectors = np.stack([np.frombuffer(t.vector, dtype="<f4", count=t.dimension) for t, *_ in rows])
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    ident = np.fromiter((r.identity_id for r in refs), np.int64, len(refs))
    return _Set(refs, ident, vectors.astype(np.float32))


def _by_identity(own: _Set) -> dict[int, list[int]]:
    """The rows of each identity."""
    rows: dict[int, list[int]] = {}
    for i, r in enumerate(own.refs):
        rows.setdefault(r.identity_id, []).append(i)
    return rows


def _remove_photo_fix(gallery: str, photo_id: int) -> Fix:
    return Fix(
        action="remove-photo",
        gallery=gallery,
        ids=[photo_id],
        command=f"vigil gallery check {gallery} --fix remove-photo {photo_id}",
    )


def _wrong_photos(own: _Set, gallery: str, fmr: float, threshold: float) -> list[Finding]:
    """Photos whose best score against the rest of their person's photos is below ``threshold``."""
    findings: list[Finding] = []
    for rows in _by_identity(own).values():
        if len(rows) < 2:
            continue
        scores = own.vectors[rows] @ own.vectors[rows].T
        np.fill_diagonal(scores, -1.0)
        best = scores.max(axis=1)
        for k in np.flatnonzero(best < threshold):
            ref = own.refs[rows[k]]
            others = [own.refs[r] for j, r in enumerate(rows) if j != k]
            findings.append(
                Finding(
                    kind="wrong-photo",
                    message=(
                        f"photo {ref.photo_id} of {ref.identity!r} matches none of their other "
                        f"{len(others)} photo(s) (best {best[k]:.3f} < {threshold:.3f}, the 1:1 "
                        f"threshold at FMR {fmr:g}): likely someone else's photo"
                    ),
                    identities=[ref.identity],
                    identity_ids=[ref.identity_id],
                    photos=[ref, *others],
                    score=round(float(best[k]), 4),
                    threshold=round(threshold, 4),
                    fixes=[_remove_photo_fix(gallery, ref.photo_id)],
                )
            )
    return findings


def _same_people(own: _Set, rest: _Set, gallery: str, threshold: float, prefilter: float) -> list[Finding]:
    """Pairs of identities (own x own, own x rest) with two templates scoring at least ``threshold``.

    Each identity's templates are averaged first; only pairs whose averages score at least ``prefilter``
    (the threshold at :data:`PREFILTER_FMR`) have their templates compared one by one. A person's
    average is nearer their other photos than any one photo is, so this passes the pairs that matter
    while 10,000 people cost 10,000 x N averages, not every photo against every photo."""
    if not own.refs:
        return []
    pool = _Set(own.refs + rest.refs, np.concatenate([own.ident, rest.ident]), _stack(own, rest))
    own_rows, pool_rows = _by_identity(own), _by_identity(pool)
    own_ids, pool_ids = list(own_rows), list(pool_rows)
    own_c, pool_c = _centroids(own, own_rows), _centroids(pool, pool_rows)
    n_own = {i: k for k, i in enumerate(own_ids)}
    best: list[Finding] = []
    for start in range(0, len(own_ids), BLOCK):
        scores = own_c[start : start + BLOCK] @ pool_c.T
        for r, j in np.argwhere(scores >= prefilter):
            a_id, b_id = own_ids[start + int(r)], pool_ids[int(j)]
            if a_id == b_id or (b_id in n_own and n_own[b_id] < start + int(r)):
                continue  # the same person, or a pair within the gallery already seen
            found = _best_pair(pool, pool_rows[a_id], pool_rows[b_id])
            if found[0] >= threshold:
                best.append(_same_finding(gallery, found[0], found[1], found[2], threshold))
    return best


def _stack(own: _Set, rest: _Set) -> npt.NDArray[np.float32]:
    return own.vectors if not rest.refs else np.vstack([own.vectors, rest.vectors])


def _centroids(s: _Set, rows: dict[int, list[int]]) -> npt.NDArray[np.float32]:
    """Each identity's templates averaged and normalised, in the order of ``rows``."""
    c = np.stack([s.vectors[r].mean(axis=0) for r in rows.values()]).astype(np.float32)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return c


def _best_pair(pool: _Set, a: list[int], b: list[int]) -> tuple[float, PhotoRef, PhotoRef]:
    """The best-scoring pair of templates between rows ``a`` and ``b``."""
    scores = pool.vectors[a] @ pool.vectors[b].T
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(scores[i, j]), pool.refs[a[int(i)]], pool.refs[b[int(j)]]


def _same_finding(gallery: str, score: float, a: PhotoRef, b: PhotoRef, threshold: float) -> Finding:
    where = "in this gallery" if b.gallery == a.gallery else f"in gallery {b.gallery!r}"
    if b.gallery == a.gallery:
        fixes = [
            Fix(
                action="merge",
                gallery=gallery,
                ids=[a.identity_id, b.identity_id],
                command=f"vigil gallery check {gallery} --fix merge {a.identity_id} {b.identity_id}",
            ),
            Fix(
                action="merge",
                gallery=gallery,
                ids=[b.identity_id, a.identity_id],
                command=f"vigil gallery check {gallery} --fix merge {b.identity_id} {a.identity_id}",
            ),
        ]
    else:
        fixes = [
            Fix(
                action="remove-identity",
                gallery=g,
                ids=[r.identity_id],
                command=f"vigil people remove {r.identity_id} --gallery {g}",
            )
            for g, r in ((b.gallery, b), (a.gallery, a))
        ]
    return Finding(
        kind="same-person",
        message=(
            f"{a.identity!r} and {b.identity!r} ({where}) are probably one person: photos {a.photo_id} "
            f"and {b.photo_id} score {score:.3f} >= {threshold:.3f} (FMR {SAME_PERSON_FMR:g}); "
            "merge them, or remove one if they are enrolled twice by mistake"
        ),
        identities=[a.identity, b.identity],
        identity_ids=[a.identity_id, b.identity_id],
        photos=[a, b],
        score=round(score, 4),
        threshold=round(threshold, 4),
        fixes=fixes,
    )


def _low_quality(own: _Set, gallery: str, min_quality: float) -> list[Finding]:
    return [
        Finding(
            kind="low-quality",
            message=(
                f"photo {r.photo_id} of {r.identity!r} has face quality {r.quality:.2f}, below the "
                f"{min_quality:.2f} the matcher needs (video_min_quality)"
            ),
            identities=[r.identity],
            identity_ids=[r.identity_id],
            photos=[r],
            score=r.quality,
            threshold=min_quality,
            fixes=[_remove_photo_fix(gallery, r.photo_id)],
        )
        for r in own.refs
        if r.quality < min_quality
    ]


def _few_photos(own: _Set, people: Sequence[tuple[int, str]], gallery: str) -> list[Finding]:
    findings: list[Finding] = []
    rows = _by_identity(own)
    for identity_id, name in sorted(people, key=lambda p: p[1]):
        photos = [own.refs[r] for r in rows.get(identity_id, [])]
        if len(photos) > 1:
            continue
        kind: Kind = "single-photo" if photos else "no-photo"
        findings.append(
            Finding(
                kind=kind,
                message=f"{name!r} has {'one photo' if photos else 'no photo'} of the active model: "
                "enrol more photos (several angles and lighting) so a wrong one can be noticed",
                identities=[name],
                identity_ids=[identity_id],
                photos=photos,
                fixes=[
                    Fix(
                        action="add-photos",
                        gallery=gallery,
                        ids=[identity_id],
                        command=f"vigil enroll {_quote(name)} PHOTO... --gallery {gallery}",
                    )
                ],
            )
        )
    return findings


def _quote(text: str) -> str:
    return text if text.replace("_", "").replace("-", "").isalnum() else "'" + text.replace("'", "") + "'"


class FixResult(BaseModel):
    action: str
    gallery: str
    ids: list[int]
    done: str


def apply_fix(
    app: App,
    gallery: str,
    action: str,
    ids: Sequence[int],
    *,
    scope: GalleryScope = EVERY,
    actor: str = audit.SYSTEM,
) -> FixResult:
    """Apply one finding's fix to gallery ``gallery``: ``remove-photo`` [photo id], ``merge`` [keep id,
    other id] (other's photos and templates move to keep, other is deleted) or ``remove-identity``
    [identity id]. Each is audited by the service it calls (``photo_remove``, ``identity_update``,
    ``identity_remove``)."""
    scope.gallery(gallery)
    wanted = {"remove-photo": 1, "merge": 2, "remove-identity": 1}
    if action not in wanted:
        raise InputError(
            f"unknown fix {action!r}",
            hint="use remove-photo PHOTO_ID, merge KEEP_ID OTHER_ID or remove-identity IDENTITY_ID",
        )
    if len(ids) != wanted[action]:
        raise InputError(f"the fix {action} takes {wanted[action]} id(s), got {len(ids)}")
    if action == "remove-photo":
        removed = identities.remove_photos(app, gallery, ids, actor=actor)
        if not removed:
            raise NotFoundError(f"no photo with id {ids[0]} in gallery {gallery!r}")
        done = f"removed photo {ids[0]} of {removed[0].identity!r}"
    elif action == "merge":
        return merge_identities(app, gallery, ids[0], ids[1], actor=actor)
    else:
        info = identities.remove_identity(app, gallery, _identity_name(app, gallery, ids[0]), actor=actor)
        done = f"removed {info.name!r} ({info.photos} photos)"
    return FixResult(action=action, gallery=gallery, ids=list(ids), done=done)


def _identity_name(app: App, gallery: str, identity_id: int) -> str:
    with app.db.session() as s:
        g = get_gallery(s, gallery)
        name = s.scalar(select(Identity.name).where(Identity.gallery_id == g.id, Identity.id == identity_id))
    if name is None:
        raise NotFoundError(f"no identity with id {identity_id} in gallery {gallery!r}")
    return name


def _named(app: App, gallery: str, name: str) -> bool:
    with app.db.session() as s:
        g = get_gallery(s, gallery)
        return (
            s.scalar(select(Identity.id).where(Identity.gallery_id == g.id, Identity.name == name))
            is not None
        )


def merge_identities(
    app: App, gallery: str, keep: int, other: int, *, actor: str = audit.SYSTEM
) -> FixResult:
    """Move identity ``other``'s photos and templates to ``keep`` (both of ``gallery``) and delete
    ``other``; audited (``identity_update``, ``renamed_from``) by the rename that merges them."""
    if keep == other:
        raise InputError("merge needs two different identities")
    keep_name, other_name = _identity_name(app, gallery, keep), _identity_name(app, gallery, other)
    if other_name != str(other) and _named(app, gallery, str(other)):
        raise ConflictError(  # the rename finds a person by name before id
            f"a person of gallery {gallery!r} is named {str(other)!r}, like the id of {other_name!r}",
            hint=f"rename one of them first, or merge with `vigil gallery check {gallery} --fix merge`"
            f" {other} {keep} (keeping {other_name!r})",
        )
    info = identities.rename_identity(app, gallery, str(other), keep_name, actor=actor)
    return FixResult(
        action="merge",
        gallery=gallery,
        ids=[keep, other],
        done=f"merged {other_name!r} into {keep_name!r} ({info.photos} photos)",
    )
