"""The auditor's endpoints: the audit log, its verification, the transparency report; and the purge."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from vigil.accounts import Principal
from vigil.governance import report, retention
from vigil.server.deps import Admin, Audit, Offset, State, require
from vigil.storage import audit
from vigil.storage.tables import Role

router = APIRouter(prefix="/api", tags=["governance"])

# The report counts every watchlist and camera: no gallery-bound key reads it.
Oversight = Annotated[
    Principal, Depends(require(Role.admin, Role.auditor, Role.supervisor, whole_server=True))
]


@router.get("/audit", summary="Audit log entries (auditors and admins); each read is itself audited")
def audit_log(
    st: State,
    me: Audit,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
    offset: Offset = 0,
) -> list[audit.AuditRecord]:
    query = audit.Query(
        since=since, until=until, action=action, actor=actor, limit=limit, offset=offset, newest_first=True
    )
    return audit.export(st.app, me.actor, query)


@router.get("/audit/verify", summary="Check the hash chain; names the first broken entry")
def audit_verify(st: State, _: Audit) -> audit.VerifyReport:
    return audit.verify(st.app)


@router.get(
    "/reports/transparency",
    summary="Searches, alarms, confirmations and dismissals per watchlist and camera, thresholds and FPIR "
    "in force, camera running periods (JSON, or HTML with a chart with format=html)",
    response_model=None,
    responses={200: {"content": {"application/json": {}, "text/html": {}}}},
)
def transparency(
    st: State,
    me: Oversight,
    since: datetime | None = None,
    until: datetime | None = None,
    format: Annotated[str, Query(pattern="^(json|html)$")] = "json",
) -> report.TransparencyReport | HTMLResponse:
    r = report.build(st.app, since, until, actor=me.actor)
    if format == "html":
        return HTMLResponse(report.to_html(r))
    return r


@router.post("/purge", summary="Delete now everything past its retention (the server also does this hourly)")
def purge(st: State, me: Admin) -> retention.PurgeReport:
    return retention.purge(st.app, actor=me.actor)
