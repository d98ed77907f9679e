"""Edge devices: the admin's register (``/api/devices``) and the routes devices call (``/api/fleet``).

A device pairs once with its one-time token (no user logs in on a pole: the token is the proof; failed
attempts are throttled per client), then sends ``Authorization: Device <credential>`` to fetch what
it must run (with ``If-None-Match``: a 304 while nothing changed) and to report its heartbeat. A
revoked device gets a 403 at once. Request bodies of these routes are small and bounded
(:data:`vigil.server.limits.ANONYMOUS_BODY_BYTES`).
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil import accounts
from vigil.accounts import AuthError
from vigil.fleet import devices as svc
from vigil.server.deps import Admin, ServerState, State, state
from vigil.server.problems import PROBLEM, problem

router = APIRouter(tags=["devices"])

DeviceName = Annotated[str, Path(min_length=1, max_length=200, description="a device, e.g. pole-17")]
SCHEME = "device"
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many failed pairings: wait `Retry-After` seconds", "content": {PROBLEM: {}}}
}


class NewDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=1000, examples=["pole-17"])
    site: str | None = Field(default=None, max_length=1000, examples=["market-street"])
    keeps_templates: bool = True
    """False: no biometric template is sent to the device; it sends embeddings and the server matches."""


class AddedDevice(BaseModel):
    device: svc.DeviceInfo
    token: str
    """The one-time pairing token: shown once, valid 24 h. On the device: ``vigil worker --server URL
    --token TOKEN``."""


class PairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=svc.MAX_TOKEN_CHARS)
    version: str = Field(default="unknown", max_length=50)


# -- the admin's routes ------------------------------------------------------------------------
@router.get("/api/devices", summary="Edge devices: state, online, last seen, version, queue, cameras, alarms")
def list_devices(st: State, _: Admin) -> list[svc.DeviceInfo]:
    return svc.list_devices(st.app)


@router.post("/api/devices", status_code=201, summary="Register a device; returns its one-time pairing token")
def add_device(body: NewDevice, st: State, me: Admin) -> AddedDevice:
    info, token = svc.add_device(
        st.app, body.name, site=body.site, actor=me.actor, keeps_templates=body.keeps_templates
    )
    return AddedDevice(device=info, token=token)


@router.get("/api/devices/{name}", summary="One device")
def show_device(name: DeviceName, st: State, _: Admin) -> svc.DeviceInfo:
    return svc.get_device(st.app, name)


@router.post("/api/devices/{name}/token", summary="A new pairing token for a device that has not paired")
def new_token(name: DeviceName, st: State, me: Admin) -> AddedDevice:
    info, token = svc.reissue_token(st.app, name, actor=me.actor)
    return AddedDevice(device=info, token=token)


@router.post("/api/devices/{name}/revoke", summary="Refuse the device from now on (it cannot pair again)")
def revoke_device(name: DeviceName, st: State, me: Admin) -> svc.DeviceInfo:
    return svc.revoke_device(st.app, name, actor=me.actor)


# -- the devices' routes -----------------------------------------------------------------------
_making = threading.Lock()


def _pair_throttle(st: ServerState) -> accounts.LoginThrottle:
    """Failed pairings per client, with the log-in throttle's back-off (made at the first use)."""
    with _making:
        found = st.extras.get("pair_throttle")
        if not isinstance(found, accounts.LoginThrottle):
            found = accounts.LoginThrottle(st.app.settings)
            st.extras["pair_throttle"] = found
        return found


@router.post(
    "/api/fleet/pair",
    summary="A device trades its one-time token for its credential and signing key (shown once)",
    response_model=svc.Pairing,
    responses=TOO_MANY,
)
def pair(body: PairRequest, request: Request, st: State) -> svc.Pairing | JSONResponse:
    client = request.client.host if request.client else "unknown"
    throttle = _pair_throttle(st)
    try:
        throttle.attempt(f"pair:{client}", client)
    except accounts.TooManyAttemptsError as e:
        refused = problem(429, e.title, "too many failed pairings", hint=e.hint, instance=request.url.path)
        refused.headers["Retry-After"] = str(e.retry_after_s)
        return refused
    pairing = svc.pair_device(st.app, body.token, version=body.version)
    throttle.succeeded(f"pair:{client}", client)
    return pairing


def device(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The calling device's name, from ``Authorization: Device <credential>``; 401 if unknown, 403 if
    revoked."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    if scheme.lower() != SCHEME or not credential.strip():
        raise AuthError(
            "send the device credential as `Authorization: Device <credential>`",
            hint="pair the device first: vigil worker --server URL --token TOKEN",
        )
    return svc.device_name_for(state(request).app, credential)


Me = Annotated[str, Depends(device)]
"""The calling device's name."""


@router.get(
    "/api/fleet/config",
    summary="What the calling device runs: its cameras and the galleries allowed at its site",
    response_model=svc.DeviceConfig,
    responses={304: {"description": "Not modified since the ETag sent in If-None-Match"}},
)
def config(
    me: Me, st: State, if_none_match: Annotated[str | None, Header(max_length=200)] = None
) -> svc.DeviceConfig | Response:
    sent = {t.strip().removeprefix("W/").strip('"') for t in (if_none_match or "").split(",")} - {""}
    if sent:  # the etag first: no template is read while nothing changed
        etag = svc.config_etag(st.app, me)
        if etag in sent:  # quoted as sent back from the header, or bare from the body's etag
            return Response(status_code=304, headers={"ETag": f'"{etag}"', "Cache-Control": "no-store"})
    cfg = svc.device_config(st.app, me)
    headers = {"ETag": f'"{cfg.etag}"', "Cache-Control": "no-store"}
    return JSONResponse(cfg.model_dump(mode="json"), headers=headers)


@router.post("/api/fleet/heartbeat", summary="The calling device reports its version, outbox and cameras")
def heartbeat(body: svc.HeartbeatIn, me: Me, st: State) -> svc.DeviceInfo:
    return svc.record_heartbeat(st.app, me, body)
