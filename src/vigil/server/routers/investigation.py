"""Investigations: retrospective search of the sightings (with a case reference, audited), the
sightings themselves, and unknown-face clusters (update, review, promote, dismiss)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import BaseModel, ConfigDict

from vigil.core.errors import InputError
from vigil.investigation import clusters, search, sightings
from vigil.server.deps import MAX_ID, Id, Live, Manage, Scope, State, WholeServer, read_upload
from vigil.storage.tables import ClusterState

router = APIRouter(prefix="/api/investigations", tags=["investigations"])


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


# Retrospective search and the clusters reach faces of no gallery (unknown people): no gallery-bound key
# calls them. The sightings list is scoped: a bound key sees the sightings of its gallery's people.


@router.post(
    "/search",
    summary="Search the sightings for a face (photo or identity), ranked by score, open set; needs a case "
    "reference and is audited",
    dependencies=[WholeServer],
)
def search_sightings(
    st: State,
    me: Live,
    case: Annotated[str, Form(description="the case or incident reference (required, audited)")] = "",
    since: Annotated[datetime | None, Form(description="start of the window (UTC unless stated)")] = None,
    until: Annotated[datetime | None, Form(description="end of the window, exclusive (default: now)")] = None,
    camera: Annotated[list[str] | None, Form(description="cameras to search (default: all)")] = None,
    file: Annotated[UploadFile | None, File(description="the probe photo")] = None,
    identity_id: Annotated[
        int | None, Form(ge=1, le=MAX_ID, description="or: an enrolled identity's templates")
    ] = None,
    largest: Annotated[bool, Form(description="use the largest face of a group photo")] = False,
    limit: Annotated[int, Form(ge=1, le=1000)] = 100,
    plot: Annotated[bool, Form(description="add the timeline plot (base64 PNG) as timeline_png")] = False,
) -> search.SearchResult:
    case = search.check_case(case)
    if since is None:
        raise InputError("a retrospective search needs a window", hint="give 'since' (and 'until')")
    image = read_upload(st, file) if file is not None else None
    probe = search.Probe(image=image, identity_id=identity_id, largest=largest)
    request = search.SearchRequest(
        case=case,
        since=_utc(since),
        until=_utc(until) if until is not None else datetime.now(UTC),
        cameras=tuple(camera or ()),
        limit=limit,
    )
    result = search.search(st.app, probe, request, me.actor, engine_lock=st.face_lock)
    return search.with_timeline(result) if plot else result


@router.get("/sightings", summary="Sightings kept by cameras that opted in, newest first")
def list_sightings(
    st: State,
    _: Live,
    scope: Scope,
    camera: Annotated[list[str] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[sightings.SightingInfo]:
    return sightings.list_sightings(
        st.app,
        cameras=camera,
        since=_utc(since) if since else None,
        until=_utc(until) if until else None,
        limit=limit,
        gallery_id=scope.gallery_id,
    )


@router.get(
    "/clusters",
    summary="Unknown-face clusters (open ones by default), largest first",
    dependencies=[WholeServer],
)
def list_clusters(
    st: State, _: Live, state: Literal["open", "promoted", "dismissed", "all"] = "open"
) -> list[clusters.ClusterInfo]:
    return clusters.list_clusters(st.app, None if state == "all" else ClusterState(state))


@router.post(
    "/clusters/update",
    summary="Cluster the sightings that matched no one: join open clusters, form new ones (audited)",
    dependencies=[WholeServer],
)
def update_clusters(st: State, me: Live) -> clusters.UpdateReport:
    return clusters.update(st.app, me.actor)


@router.get(
    "/clusters/{cluster_id:id}",
    summary="A cluster with its member sightings (their face crops)",
    dependencies=[WholeServer],
)
def cluster_detail(cluster_id: Id, st: State, _: Live) -> clusters.ClusterDetail:
    return clusters.get_cluster(st.app, cluster_id)


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gallery: str
    name: str
    consent_on: date | None = None
    """Attendance galleries: the day the person consented."""
    consent_by: str | None = None
    """Attendance galleries: who recorded the consent."""


class Dismissal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = None


@router.post(
    "/clusters/{cluster_id:id}/promote",
    summary="Enrol the cluster's crops as a new identity of a gallery (crops without a face are skipped)",
    dependencies=[WholeServer],
)
def promote_cluster(cluster_id: Id, body: Promotion, st: State, me: Manage) -> clusters.PromoteReport:
    with st.face_lock:
        return clusters.promote(
            st.app,
            cluster_id,
            body.gallery,
            body.name,
            me.actor,
            consent_on=body.consent_on,
            consent_by=body.consent_by,
        )


@router.post(
    "/clusters/{cluster_id:id}/dismiss",
    summary="Mark a cluster as not of interest (audited)",
    dependencies=[WholeServer],
)
def dismiss_cluster(
    cluster_id: Id, st: State, me: Manage, body: Dismissal | None = None
) -> clusters.ClusterInfo:
    return clusters.dismiss(st.app, cluster_id, me.actor, body.reason if body else None)
