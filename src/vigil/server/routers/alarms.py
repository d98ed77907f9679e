"""Alarms: list with filters, detail (crop, frame, enrolled photos, score, threshold, FPIR), review."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.gallery import negatives
from vigil.server.deps import MAX_ID, AnyRole, Id, Live, Offset, Scope, State
from vigil.storage.tables import AlarmKind, AlarmState, ReviewAction
from vigil.video import alarms as svc
from vigil.video import export

router = APIRouter(prefix="/api/alarms", tags=["alarms"])


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt "not_this_person" must not dismiss quietly

    action: ReviewAction
    version: int = Field(ge=0, le=MAX_ID)
    """The alarm version you reviewed; a newer state answers 409 (reload and look again)."""
    reason: str | None = None
    """Required to dismiss."""
    not_this_person: bool = False
    """With a dismissal: the face is someone else; keep it as a negative example, so that faces nearer
    to it than to the person raise no alarm for that identity (stored ``suppressed``)."""


@router.get("", summary="Alarms, newest first")
def list_alarms(
    st: State,
    _: AnyRole,
    scope: Scope,
    camera: str | None = None,
    gallery: str | None = None,
    state: AlarmState | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    kind: AlarmKind | None = None,
) -> list[svc.AlarmInfo]:
    """A gallery-bound key sees only its gallery's alarms (so no stranger alarm: they have no gallery).
    ``kind``: ``match`` (watchlist hits) or ``stranger`` (camera stranger rules)."""
    return svc.list_alarms(
        st.app,
        camera=camera,
        gallery=scope.gallery_filter(gallery),
        state=state,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
        kind=kind,
    )


@router.get("/{alarm_id:id}", summary="One alarm with its evidence and its reviews")
def show_alarm(alarm_id: Id, st: State, me: Live, scope: Scope) -> svc.AlarmDetail:
    scope.check_alarm(st.app, alarm_id)
    return svc.view_alarm(st.app, alarm_id, actor=me.actor)


@router.post("/{alarm_id:id}/review", summary="Confirm, dismiss (with a reason) or close an alarm")
def review(alarm_id: Id, body: Review, st: State, me: Live, scope: Scope) -> svc.AlarmDetail:
    scope.check_alarm(st.app, alarm_id)
    detail = svc.review_alarm(
        st.app,
        alarm_id,
        body.action,
        me,
        expected_version=body.version,
        reason=body.reason,
        not_this_person=body.not_this_person,
    )
    st.bus.publish(svc.reviewed_event(detail, body.action, me.actor))
    return detail


@router.post(
    "/negatives/{negative_id:id}/undo",
    summary="Stop a negative example (a dismissal as not this person) from suppressing alarms",
)
def undo_negative(negative_id: Id, st: State, me: Live, scope: Scope) -> negatives.NegativeInfo:
    """Those who may review the watchlist's alarms may undo; audited (``negative_undone``)."""
    gallery_id = negatives.negative_gallery_id(st.app, negative_id)
    scope.check(gallery_id, f"no negative example with id {negative_id}")
    return negatives.undo_negative(st.app, negative_id, me.actor)


@router.get(
    "/{alarm_id:id}/export",
    summary="The alarm's evidence as a zip: crop, frame with other faces blurred, manifest of hashes",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def export_evidence(alarm_id: Id, st: State, me: Live, scope: Scope) -> Response:
    """Those who may review the alarm may export it; audited (``alarm_export``) with the caller."""
    scope.check_alarm(st.app, alarm_id)
    data, digest = export.export_zip(st.app, alarm_id, actor=me.actor)
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="alarm-{alarm_id}-evidence.zip"',
            "X-Manifest-SHA256": digest,
        },
    )
