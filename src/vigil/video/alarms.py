"""Alarms as people see and review them: listing, detail, and the review workflow.

States: ``pending -> confirmed | dismissed (with a reason) -> closed``. A watchlist may require
several confirmations, each by a different person (EU AI Act Art. 14(5)): the alarm stays
``pending`` until enough people have confirmed it. People, not actor strings, are counted
(:attr:`Principal.person`): a user and the API keys they own are one person. Each step names the
alarm version it saw; a step on a newer state is refused with :class:`StaleStateError`, so two
reviewers cannot overwrite each other.

:func:`store_alarm` is where the catalog writer (:class:`vigil.video.sinks.CatalogWriter`) stores an
alarm event (row, evidence blobs, audit entry, in one transaction); storing the same event twice (a
camera worker or a device replaying frames after a restart) stores it once: the key is its ``event_id``.
:func:`reviewed_event` is the ``alarm_reviewed`` event a review step publishes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.accounts import Principal
from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.events.schemas import Alarm, AlarmReviewed
from vigil.gallery import negatives
from vigil.storage import audit
from vigil.storage.tables import (
    AlarmKind,
    AlarmRecord,
    AlarmReview,
    AlarmState,
    Camera,
    Gallery,
    Identity,
    Photo,
    ReviewAction,
)


class StaleStateError(ConflictError):
    title = "stale alarm state"


class ReviewInfo(BaseModel):
    actor: str
    action: ReviewAction
    reason: str | None
    at: datetime


class AlarmInfo(BaseModel):
    id: int
    camera: str
    camera_id: int | None
    device: str | None
    """The edge device that raised it (None: a camera of this server, or ``vigil watch``)."""
    gallery: str | None
    gallery_id: int | None
    identity: str | None
    """None for a stranger alarm (``kind`` stranger: nobody is identified)."""
    identity_id: int | None
    track_id: int
    frame: int
    captured_at: datetime
    score: float
    threshold: float
    fpir: float
    model: str
    box_xyxy: list[float]
    quality: float
    state: AlarmState
    version: int
    confirmations: int
    confirmations_required: int
    dismiss_reason: str | None
    crop_sha256: str | None
    thumbnail_sha256: str | None
    kind: AlarmKind = AlarmKind.match
    """``match`` (a watchlist hit) or ``stranger`` (a camera's stranger rule; no gallery, no identity)."""
    suppressed_by: list[int] = []
    """State ``suppressed``: the negative examples (ids) that stopped it (issue 17.1)."""


class AlarmDetail(AlarmInfo):
    enrolled_photos: list[str]
    """SHA-256 of the identity's enrolment photos (fetch them from the photos endpoint)."""
    reviews: list[ReviewInfo]
    negative: negatives.NegativeInfo | None = None
    """Dismissed as not this person: the negative example kept from it."""
    suppressions: list[negatives.NegativeInfo] = []
    """State ``suppressed``: the negatives that stopped it, each with the dismissed alarm it came from
    (a purged one is left out)."""


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _info(a: AlarmRecord, gallery: Gallery | None) -> AlarmInfo:
    return AlarmInfo(
        id=a.id,
        camera=a.camera_name,
        camera_id=a.camera_id,
        device=a.device_name,
        gallery=gallery.name if gallery else None,
        gallery_id=a.gallery_id,
        identity=None if a.kind is AlarmKind.stranger else a.identity_name,
        identity_id=a.identity_id,
        track_id=a.track_id,
        frame=a.frame_index,
        captured_at=_utc(a.captured_at),
        score=a.score,
        threshold=a.threshold,
        fpir=a.fpir,
        model=a.model_id,
        box_xyxy=[float(v) for v in a.box_xyxy.split(",")] if a.box_xyxy else [],
        quality=a.quality,
        state=a.state,
        version=a.version,
        confirmations=a.confirmations,
        confirmations_required=gallery.confirmations_required if gallery else 1,
        dismiss_reason=a.dismiss_reason,
        crop_sha256=a.crop_sha256,
        thumbnail_sha256=a.thumbnail_sha256,
        kind=a.kind,
        suppressed_by=negatives.parse_ids(a.suppressed_by),
    )


def list_alarms(
    app: App,
    *,
    camera: str | None = None,
    gallery: str | None = None,
    state: AlarmState | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
    kind: AlarmKind | None = None,
) -> list[AlarmInfo]:
    """Newest first."""
    q = select(AlarmRecord, Gallery).outerjoin(Gallery, Gallery.id == AlarmRecord.gallery_id)
    if camera is not None:
        q = q.where(AlarmRecord.camera_name == camera)
    if gallery is not None:
        q = q.where(Gallery.name == gallery)
    if state is not None:
        q = q.where(AlarmRecord.state == state)
    if kind is not None:
        q = q.where(AlarmRecord.kind == kind)
    if since is not None:
        q = q.where(AlarmRecord.captured_at >= since)
    if until is not None:
        q = q.where(AlarmRecord.captured_at < until)
    q = q.order_by(AlarmRecord.captured_at.desc(), AlarmRecord.id.desc()).limit(limit).offset(offset)
    with app.db.session() as s:
        return [_info(a, g) for a, g in s.execute(q)]


def _get(s: Session, alarm_id: int) -> tuple[AlarmRecord, Gallery | None]:
    alarm = s.get(AlarmRecord, alarm_id)
    if alarm is None:
        raise NotFoundError(f"no alarm with id {alarm_id}")
    gallery = s.get(Gallery, alarm.gallery_id) if alarm.gallery_id is not None else None
    return alarm, gallery


def alarm_detail(app: App, alarm_id: int) -> AlarmDetail:
    """One alarm with its evidence and reviews (not audited: :func:`view_alarm` shows it to a person)."""
    with app.db.session() as s:
        return _detail(s, alarm_id)


def view_alarm(app: App, alarm_id: int, *, actor: str) -> AlarmDetail:
    """:func:`alarm_detail` shown to ``actor``; audited (``alarm_view``)."""
    with app.db.session() as s:
        detail = _detail(s, alarm_id)
        audit.append(
            s,
            actor,
            "alarm_view",
            target_type="alarm",
            target_id=alarm_id,
            target_name=detail.identity,
            gallery=detail.gallery,
            camera=detail.camera,
            state=detail.state.value,
        )
        return detail


def _detail(s: Session, alarm_id: int) -> AlarmDetail:
    alarm, gallery = _get(s, alarm_id)
    photos: list[str] = []
    if alarm.identity_id is not None:
        photos = list(
            s.scalars(select(Photo.sha256).where(Photo.identity_id == alarm.identity_id).order_by(Photo.id))
        )
    reviews = [
        ReviewInfo(actor=r.actor, action=r.action, reason=r.reason, at=_utc(r.at)) for r in alarm.reviews
    ]
    info = _info(alarm, gallery)
    return AlarmDetail(
        **info.model_dump(),
        enrolled_photos=photos,
        reviews=reviews,
        negative=negatives.negative_of_alarm(s, alarm_id),
        suppressions=negatives.negatives_by_id(s, info.suppressed_by),
    )


def review_alarm(
    app: App,
    alarm_id: int,
    action: ReviewAction,
    by: Principal,
    *,
    expected_version: int,
    reason: str | None = None,
    not_this_person: bool = False,
) -> AlarmDetail:
    """Apply one review step by ``by``; see the module doc for the rules. Audited (``alarm_review``,
    with the state it led to) in the same transaction.

    ``not_this_person`` (a dismissal only): the face is someone else, and its template is kept as a
    negative example for the identity in that watchlist (:mod:`vigil.gallery.negatives`, audited
    ``negative_kept``), in the same transaction."""
    reason = (reason or "").strip() or None
    if action is ReviewAction.dismiss and reason is None:
        raise InputError("dismissing an alarm needs a reason", hint="say why it is not this person")
    if not_this_person and action is not ReviewAction.dismiss:
        raise InputError(
            f"'not this person' goes with a dismissal, not with {action.value}",
            hint="dismiss the alarm with a reason and 'not this person'",
        )
    template = negatives.negative_template(app, alarm_id) if not_this_person else None
    with app.db.session() as s:
        alarm, gallery = _get(s, alarm_id)
        required = gallery.confirmations_required if gallery else 1
        if alarm.version != expected_version:
            raise StaleStateError(
                f"alarm {alarm_id} changed since you loaded it (version {alarm.version}, "
                f"you saw {expected_version}); it is now {alarm.state.value}",
                hint="reload the alarm and review it again",
            )
        confirmations = alarm.confirmations
        dismiss_reason = alarm.dismiss_reason
        if action is ReviewAction.confirm:
            if alarm.state is not AlarmState.pending:
                raise ConflictError(
                    f"alarm {alarm_id} is {alarm.state.value}; only a pending alarm is confirmed"
                )
            already = s.scalar(
                select(AlarmReview.actor).where(
                    AlarmReview.alarm_id == alarm_id,
                    AlarmReview.action == ReviewAction.confirm,
                    or_(AlarmReview.person == by.person, AlarmReview.actor == by.actor),
                )
            )
            if already is not None:
                who = "" if already == by.actor else f" (as {already})"
                raise ConflictError(
                    f"you have already confirmed alarm {alarm_id}{who}",
                    hint=f"this watchlist needs {required} confirmations by different people; "
                    "a user and their API keys are one person",
                )
            confirmations += 1
            new_state = AlarmState.confirmed if confirmations >= required else AlarmState.pending
        elif action is ReviewAction.dismiss:
            if alarm.state is not AlarmState.pending:
                raise ConflictError(
                    f"alarm {alarm_id} is {alarm.state.value}; only a pending alarm is dismissed"
                )
            new_state, dismiss_reason = AlarmState.dismissed, reason
        else:
            if alarm.state not in (AlarmState.confirmed, AlarmState.dismissed):
                raise ConflictError(
                    f"alarm {alarm_id} is {alarm.state.value}; only a confirmed or dismissed alarm is closed"
                )
            new_state = AlarmState.closed
        # Compare-and-set on the version: of two concurrent reviews exactly one wins.
        done = s.execute(
            update(AlarmRecord)
            .where(AlarmRecord.id == alarm_id, AlarmRecord.version == expected_version)
            .values(
                state=new_state,
                version=expected_version + 1,
                confirmations=confirmations,
                dismiss_reason=dismiss_reason,
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleStateError(
                f"alarm {alarm_id} was reviewed by someone else a moment ago", hint="reload it"
            )
        s.add(
            AlarmReview(
                alarm_id=alarm_id,
                user_id=by.id if by.kind == "user" else None,
                actor=by.actor,
                person=by.person,
                action=action,
                reason=reason,
            )
        )
        if template is not None:
            negatives.keep_negative(s, alarm, template, by.actor)
        s.flush()
        s.expire_all()  # the compare-and-set above went around the session
        detail = _detail(s, alarm_id)
        _audit_review(s, by.actor, detail, action, reason)
        return detail


def _audit_review(
    s: Session, actor: str, detail: AlarmDetail, action: ReviewAction, reason: str | None
) -> None:
    audit.append(
        s,
        actor,
        "alarm_review",
        target_type="alarm",
        target_id=detail.id,
        target_name=detail.identity,
        review=action.value,
        reason=reason,
        state=detail.state.value,
        confirmations=detail.confirmations,
        confirmations_required=detail.confirmations_required,
        gallery=detail.gallery,
        camera=detail.camera,
        score=detail.score,
        threshold=detail.threshold,
        fpir=detail.fpir,
    )


# -- storing (the camera pipeline's sink) ---------------------------------------------------------


def store_alarm(app: App, alarm: Alarm, *, device: str | None = None) -> Alarm | None:
    """Store ``alarm`` with its evidence (crop and thumbnail into the blob store) and audit it
    (``alarm``, by ``camera:NAME``) in one transaction, once.

    The key is the alarm's ``event_id`` (a unique index): the same alarm stored again (a camera worker
    or a device replaying frames after a restart) writes nothing and returns None. Otherwise the
    stored copy: ``alarm_id``, the digests and ``device`` (the edge device that raised it) set.
    An alarm for an identity no longer in the catalog (erased or deleted since the match) is a
    :class:`NotFoundError`: nothing is stored.
    """
    box = ",".join(map(str, alarm.xyxy))
    device = device or alarm.device
    crop_sha = app.blobs.put(alarm.crop_jpeg) if alarm.crop_jpeg else None
    thumb_sha = app.blobs.put(alarm.thumbnail_jpeg) if alarm.thumbnail_jpeg else None
    try:
        with app.db.session() as s:
            _check_identity(s, alarm.identity_id, alarm.event_id)
            stranger = alarm.kind == "stranger"
            row = AlarmRecord(
                event_id=alarm.event_id,
                device_name=device,
                camera_id=_camera_id(s, alarm.camera_id),
                camera_name=alarm.camera,
                gallery_id=s.scalar(select(Gallery.id).where(Gallery.name == alarm.gallery)),
                identity_id=alarm.identity_id,
                identity_name=alarm.identity or "",
                track_id=alarm.track_id,
                frame_index=alarm.frame,
                captured_at=alarm.ts,
                score=alarm.score,
                threshold=alarm.threshold,
                fpir=alarm.fpir,
                model_id=alarm.model,
                box_xyxy=box,
                quality=alarm.quality,
                crop_sha256=crop_sha,
                thumbnail_sha256=thumb_sha,
                kind=AlarmKind(alarm.kind),
                retention_days=stranger_retention(app, s, alarm.camera_id) if stranger else None,
            )
            suppressed_by = _suppressed_by(s, alarm)
            if suppressed_by:
                row.state, row.suppressed_by = AlarmState.suppressed, json.dumps(suppressed_by)
                negatives.record_uses(s, suppressed_by)
            s.add(row)
            s.flush()
            alarm_id = row.id
            audit.append(
                s,
                f"camera:{alarm.camera}",
                "alarm_suppressed" if suppressed_by else "alarm",
                target_type="alarm",
                target_id=alarm_id,
                target_name=alarm.identity,
                camera=alarm.camera,
                device=device,
                frame=alarm.frame,
                captured_at=alarm.ts.isoformat(),
                gallery=alarm.gallery,
                identity_id=alarm.identity_id,
                score=alarm.score,
                threshold=alarm.threshold,
                fpir=alarm.fpir,
                model=alarm.model,
                crop_sha256=crop_sha,
                event_id=alarm.event_id,
                **({"kind": alarm.kind, "galleries_checked": alarm.galleries_checked} if stranger else {}),
                **({"suppressed_by": suppressed_by} if suppressed_by else {}),
            )
    except IntegrityError:
        if alarm_stored(app, alarm.event_id):
            return None
        raise
    update = {"alarm_id": alarm_id, "crop_sha256": crop_sha, "thumbnail_sha256": thumb_sha, "device": device}
    return alarm.model_copy(update=update | {"suppressed_by": suppressed_by or None})


def _suppressed_by(s: Session, alarm: Alarm) -> list[int]:
    """The negatives the event names that are in the catalog for its identity: an id that is not (a
    negative purged meanwhile, or an event made up) cannot suppress it, and the alarm is raised."""
    if not alarm.suppressed_by:
        return []
    return [
        n.id
        for n in negatives.negatives_by_id(s, alarm.suppressed_by)
        if n.identity_id == alarm.identity_id and n.model == alarm.model
    ]


def _check_identity(s: Session, identity_id: int | None, event_id: str) -> None:
    if identity_id is not None and s.get(Identity, identity_id) is None:
        raise NotFoundError(
            f"alarm event {event_id}: identity {identity_id} is not in the catalog",
            hint="the person was erased or deleted after the match; the alarm is not stored",
        )


def stranger_retention(app: App, s: Session, camera_id: int | None) -> int:
    """A stranger alarm's own retention (days): its camera's ``retention_days``, else the
    ``stranger_retention_days`` setting."""
    cam = s.get(Camera, camera_id) if camera_id is not None else None
    if cam is not None and cam.retention_days is not None:
        return cam.retention_days
    return app.settings.stranger_retention_days


def _camera_id(s: Session, camera_id: int | None) -> int | None:
    """``camera_id`` if that camera is registered here (a device's camera may have been deleted)."""
    if camera_id is None:
        return None
    return camera_id if s.get(Camera, camera_id) is not None else None


def alarm_stored(app: App, event_id: str) -> bool:
    """Whether an alarm with this event id is in the catalog."""
    with app.db.session() as s:
        return s.scalar(select(AlarmRecord.id).where(AlarmRecord.event_id == event_id)) is not None


def reviewed_event(detail: AlarmDetail, action: ReviewAction, by: str) -> AlarmReviewed:
    """The ``alarm_reviewed`` event of a review step that led to ``detail``."""
    return AlarmReviewed(
        camera=detail.camera,
        alarm_id=detail.id,
        action=action.value,
        state=detail.state.value,
        confirmations=detail.confirmations,
        confirmations_required=detail.confirmations_required,
        by=by,
    )
