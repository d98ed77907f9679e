"""Alarms as people see and review them: listing, detail, and the review workflow.

States: ``pending -> confirmed | dismissed (with a reason) -> closed``. A watchlist may require
several confirmations, each by a different person (EU AI Act Art. 14(5)): the alarm stays
``pending`` until enough people have confirmed it. People, not actor strings, are counted
(:attr:`Principal.person`): a user and the API keys they own are one person. Each step names the
alarm version it saw; a step on a newer state is refused with :class:`StaleStateError`, so two
reviewers cannot overwrite each other.

:func:`store_alarm` is where the camera pipeline stores an alarm (row, evidence blobs, audit entry);
storing the same alarm twice (a camera worker replaying frames after a restart) stores it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from vigil.accounts import Principal
from vigil.app import App
from vigil.core.errors import ConflictError, InputError, NotFoundError
from vigil.gallery.models import AlarmRecord, AlarmReview, AlarmState, Gallery, Photo, ReviewAction
from vigil.governance import audit


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
    gallery: str | None
    gallery_id: int | None
    identity: str
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


class AlarmDetail(AlarmInfo):
    enrolled_photos: list[str]
    """SHA-256 of the identity's enrolment photos (fetch them from the photos endpoint)."""
    reviews: list[ReviewInfo]


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _info(a: AlarmRecord, gallery: Gallery | None) -> AlarmInfo:
    return AlarmInfo(
        id=a.id,
        camera=a.camera_name,
        camera_id=a.camera_id,
        gallery=gallery.name if gallery else None,
        gallery_id=a.gallery_id,
        identity=a.identity_name,
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
) -> list[AlarmInfo]:
    """Newest first."""
    q = select(AlarmRecord, Gallery).outerjoin(Gallery, Gallery.id == AlarmRecord.gallery_id)
    if camera is not None:
        q = q.where(AlarmRecord.camera_name == camera)
    if gallery is not None:
        q = q.where(Gallery.name == gallery)
    if state is not None:
        q = q.where(AlarmRecord.state == state)
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
    return AlarmDetail(**_info(alarm, gallery).model_dump(), enrolled_photos=photos, reviews=reviews)


def review_alarm(
    app: App,
    alarm_id: int,
    action: ReviewAction,
    by: Principal,
    *,
    expected_version: int,
    reason: str | None = None,
) -> AlarmDetail:
    """Apply one review step by ``by``; see the module doc for the rules. Audited (``alarm_review``,
    with the state it led to) in the same transaction."""
    reason = (reason or "").strip() or None
    if action is ReviewAction.dismiss and reason is None:
        raise InputError("dismissing an alarm needs a reason", hint="say why it is not this person")
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


@dataclass(frozen=True)
class NewAlarm:
    """An alarm the pipeline raised, to store; ``crop_jpeg``, ``thumbnail_jpeg``: JPEG bytes (or empty)."""

    camera: str
    camera_id: int | None
    gallery: str
    identity: str
    identity_id: int
    track_id: int
    frame_index: int
    captured_at: datetime
    score: float
    threshold: float
    fpir: float
    model: str
    box_xyxy: list[float]
    quality: float
    crop_jpeg: bytes
    thumbnail_jpeg: bytes


@dataclass(frozen=True)
class StoredAlarm:
    id: int
    crop_sha256: str | None
    thumbnail_sha256: str | None
    created: bool
    """False when the same alarm was already stored (nothing was written)."""


def store_alarm(app: App, new: NewAlarm) -> StoredAlarm:
    """Store ``new`` with its evidence and audit it (``alarm``, by ``camera:NAME``) in the same
    transaction, once.

    The key of an alarm is (camera, identity, frame, capture time, box): a frame replayed with the
    same time (a file camera resumed after its worker died) finds the stored alarm and writes nothing.
    """
    box = ",".join(map(str, new.box_xyxy))
    with app.db.session() as s:
        existing = s.scalars(
            select(AlarmRecord).where(
                AlarmRecord.camera_name == new.camera,
                AlarmRecord.identity_id == new.identity_id,
                AlarmRecord.frame_index == new.frame_index,
                AlarmRecord.box_xyxy == box,
            )
        ).all()
        for a in existing:
            if _utc(a.captured_at) == _utc(new.captured_at):
                return StoredAlarm(a.id, a.crop_sha256, a.thumbnail_sha256, created=False)
        crop_sha = app.blobs.put(new.crop_jpeg) if new.crop_jpeg else None
        thumb_sha = app.blobs.put(new.thumbnail_jpeg) if new.thumbnail_jpeg else None
        row = AlarmRecord(
            camera_id=new.camera_id,
            camera_name=new.camera,
            gallery_id=s.scalar(select(Gallery.id).where(Gallery.name == new.gallery)),
            identity_id=new.identity_id,
            identity_name=new.identity,
            track_id=new.track_id,
            frame_index=new.frame_index,
            captured_at=new.captured_at,
            score=new.score,
            threshold=new.threshold,
            fpir=new.fpir,
            model_id=new.model,
            box_xyxy=box,
            quality=new.quality,
            crop_sha256=crop_sha,
            thumbnail_sha256=thumb_sha,
        )
        s.add(row)
        s.flush()
        alarm_id = row.id
        audit.append(
            s,
            f"camera:{new.camera}",
            "alarm",
            target_type="alarm",
            target_id=alarm_id,
            target_name=new.identity,
            camera=new.camera,
            frame=new.frame_index,
            captured_at=new.captured_at.isoformat(),
            gallery=new.gallery,
            identity_id=new.identity_id,
            score=round(new.score, 6),
            threshold=round(new.threshold, 6),
            fpir=new.fpir,
            model=new.model,
            crop_sha256=crop_sha,
        )
    return StoredAlarm(alarm_id, crop_sha, thumb_sha, created=True)
