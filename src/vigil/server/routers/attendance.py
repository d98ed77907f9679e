"""Attendance reports of attendance galleries (marks come from entrance cameras)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from vigil.attendance import report as svc
from vigil.server.deps import Manage, Scope, State

router = APIRouter(prefix="/api/attendance", tags=["attendance"])


@router.get(
    "/report",
    summary="Per person and day: first in, last out, late arrivals and absences (JSON or CSV); audited",
    response_model=svc.AttendanceReport,
    responses={200: {"content": {"text/csv": {}}}},
)
def attendance_report(
    st: State,
    me: Manage,
    scope: Scope,
    gallery: Annotated[str, Query(description="the attendance gallery")],
    day: Annotated[date, Query(alias="date", description="the day (local time), YYYY-MM-DD")],
    until: Annotated[date | None, Query(description="last day of a range (inclusive)")] = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> svc.AttendanceReport | Response:
    r = svc.attendance_report(st.app, scope.gallery(gallery), day, until, actor=me.actor, fmt=fmt)
    if fmt == "csv":
        filename = f"attendance-{r.gallery}-{r.date_from}-{r.date_until}.csv"
        return Response(
            svc.to_csv(r),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return r
