"""Cameras: add, start, stop, health, and a live MJPEG preview with boxes and names drawn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.errors import NotFoundError
from vigil.gallery.galleries import MAX_RETENTION_DAYS
from vigil.server.deps import Live, Manage, ServerState, State, WholeServer
from vigil.server.supervisor import CameraHealth
from vigil.video import cameras as svc
from vigil.video.strangers import MAX_GALLERIES, StrangerRule

# Cameras serve every gallery (previews draw the names of all), so no gallery-bound key reaches them.
router = APIRouter(prefix="/api/cameras", tags=["cameras"], dependencies=[WholeServer])

BOUNDARY = "vigilframe"


class StrangerRuleBody(BaseModel):
    """A stranger rule: alarm on a face that matches none of ``galleries`` during ``hours``."""

    model_config = ConfigDict(extra="forbid")
    galleries: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=MAX_GALLERIES
    )
    """The galleries of the people who belong here (any kind)."""
    hours: str | None = Field(default=None, max_length=200)
    """``[DAYS] [HH:MM-HH:MM]`` local time, e.g. ``mon-fri 07:00-19:00``; None: always."""
    min_quality: float | None = Field(default=None, ge=0, le=1)
    """Faces below this quality are never strangers; None: the server's ``stranger_min_quality``."""

    def rule(self) -> StrangerRule:
        return StrangerRule(galleries=self.galleries, hours=self.hours, min_quality=self.min_quality)


class NewCamera(BaseModel):
    name: str
    url: str
    """rtsp://, rtmp://, http(s):// (MJPEG too), webcam:N, or a video file or image folder on the server."""
    site: str | None = None
    location: str | None = None
    """LAT,LON in decimal degrees."""
    kind: str = "fixed"
    retention_days: int | None = Field(default=None, le=MAX_RETENTION_DAYS)
    """Frame snapshots (and sightings) of this camera are purged this many days after capture."""
    keep_sightings: bool = False
    device: str | None = Field(default=None, max_length=200)
    """The edge device that runs it (see /api/devices); a file is then on the device. None: this server."""
    strangers: StrangerRuleBody | None = None
    """A stranger rule for a restricted place (see docs/cameras.md); None: none."""
    start: bool = True


class CameraChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str | None = None
    kind: str | None = None
    location: str | None = None
    retention_days: int | None = Field(default=None, le=MAX_RETENTION_DAYS)
    keep_sightings: bool | None = None
    strangers: StrangerRuleBody | None = None
    """Replace the stranger rule; null turns it off."""


class CameraStatus(svc.CameraInfo):
    health: CameraHealth


def _status(st: ServerState, info: svc.CameraInfo) -> CameraStatus:
    return CameraStatus(**info.model_dump(), health=st.supervisor.health(info.name))


@router.get("", summary="Cameras with their health")
def list_cameras(st: State, _: Live) -> list[CameraStatus]:
    return [_status(st, c) for c in svc.list_cameras(st.app)]


@router.post("", status_code=201, summary="Add a camera (and start it)")
def add_camera(body: NewCamera, st: State, me: Manage) -> CameraStatus:
    info = svc.add_camera(
        st.app,
        body.name,
        body.url,
        site=body.site,
        location=body.location,
        kind=body.kind,
        retention_days=body.retention_days,
        keep_sightings=body.keep_sightings,
        enabled=body.start,
        device=body.device,
        strangers=body.strangers.rule() if body.strangers is not None else None,
        actor=me.actor,
    )
    if body.start and info.device is None:
        st.supervisor.start_camera(info.name)
    return _status(st, info)


@router.get("/{name}", summary="One camera and its health")
def show_camera(name: str, st: State, _: Live) -> CameraStatus:
    return _status(st, svc.get_camera(st.app, name)[0])


@router.post(
    "/{name}/start",
    summary="Start (or restart) the camera's worker; a file continues where it was, or plays again if "
    "it had finished",
)
def start_camera(name: str, st: State, me: Manage) -> CameraStatus:
    info = svc.set_enabled(st.app, name, True, actor=me.actor)
    st.supervisor.stop_camera(name)
    st.supervisor.start_camera(name, replay=True)
    return _status(st, info)


@router.post("/{name}/stop", summary="Stop the camera's worker (it stays stopped after a restart)")
def stop_camera(name: str, st: State, me: Manage) -> CameraStatus:
    info = svc.set_enabled(st.app, name, False, actor=me.actor)
    st.supervisor.stop_camera(name)
    return _status(st, info)


@router.delete("/{name}", summary="Stop and remove a camera (its alarms are kept)")
def delete_camera(name: str, st: State, me: Manage) -> svc.CameraInfo:
    svc.get_camera(st.app, name)
    st.supervisor.forget(name)
    return svc.delete_camera(st.app, name, actor=me.actor)


@router.patch(
    "/{name}", summary="Change a camera's site, kind, location, retention, sightings opt-in or stranger rule"
)
def update_camera(name: str, body: CameraChange, st: State, me: Manage) -> CameraStatus:
    changes = body.model_dump(exclude_unset=True)
    _, after = svc.update_camera(
        st.app,
        name,
        site=changes.get("site"),
        kind=changes.get("kind"),
        location=changes.get("location"),
        retention_days=changes.get("retention_days"),
        clear_retention="retention_days" in changes and changes["retention_days"] is None,
        keep_sightings=changes.get("keep_sightings"),
        strangers=body.strangers.rule() if body.strangers is not None else None,
        clear_strangers="strangers" in changes and body.strangers is None,
        actor=me.actor,
    )
    return _status(st, after)


@router.get(
    "/{name}/snapshot.jpg",
    summary="The latest preview frame",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def snapshot(name: str, st: State, _: Live) -> Response:
    svc.get_camera(st.app, name)
    p = st.supervisor.preview(name)
    if p is None:
        raise NotFoundError(f"camera {name!r} has no frame yet", hint="start it, or wait a few seconds")
    return Response(p[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get(
    "/{name}/preview.mjpg",
    summary="Live MJPEG preview with boxes, track ids and decisions drawn",
    response_class=StreamingResponse,
    responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}}},
)
async def preview(name: str, request: Request, st: State, _: Live) -> StreamingResponse:
    await asyncio.to_thread(svc.get_camera, st.app, name)

    async def frames() -> AsyncIterator[bytes]:
        seq = 0
        while not await request.is_disconnected():
            p = await asyncio.to_thread(st.supervisor.wait_preview, name, seq, 2.0)
            if p is None:
                continue
            seq, jpeg = p
            yield (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                + jpeg
                + b"\r\n"
            )

    return StreamingResponse(
        frames(),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )
