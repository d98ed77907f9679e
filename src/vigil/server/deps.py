"""What every route shares: the server state, who is calling, role checks, CSRF, and uploads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, UploadFile

from vigil.accounts import AuthError, PermissionDeniedError, Principal, key_principal, session_principal
from vigil.app import App
from vigil.core.errors import ImageError
from vigil.gallery.models import Role
from vigil.server.bus import EventBus
from vigil.server.problems import PayloadTooLargeError
from vigil.vision.image import LoadedImage, decode_image

SESSION_COOKIE = "vigil_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# Paths a user who must change their password may still call.
PASSWORD_CHANGE_PATHS = {"/api/auth/me", "/api/auth/password", "/api/auth/logout"}


@dataclass
class ServerState:
    app: App
    bus: EventBus
    supervisor: Any  # vigil.server.supervisor.Supervisor (Any: it is optional in tests)
    face_lock: threading.Lock = field(default_factory=threading.Lock)
    """Face engine calls are serialised: the native detectors are not thread-safe."""
    extras: dict[str, Any] = field(default_factory=dict)


def state(request: Request) -> ServerState:
    return request.app.state.vigil  # type: ignore[no-any-return]


State = Annotated[ServerState, Depends(state)]


def principal(request: Request) -> Principal:
    """The caller, from an API key (``x-api-key`` or ``Authorization: Bearer``) or the session cookie."""
    st = state(request)
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if key:
        p = key_principal(st.app, key)
        if p is None:
            raise AuthError("the API key is unknown or revoked", hint="ask an admin for a key")
        return p
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise AuthError("log in, or send an API key in the x-api-key header")
    p = session_principal(st.app, token)
    if p is None:
        raise AuthError("your session has expired", hint="log in again")
    if request.method in UNSAFE and request.headers.get(CSRF_HEADER) != p.csrf_token:
        raise PermissionDeniedError(
            "missing or wrong CSRF token",
            hint=f"send the token from /api/auth/me in the {CSRF_HEADER} header",
        )
    if p.must_change_password and request.url.path not in PASSWORD_CHANGE_PATHS:
        raise PermissionDeniedError(
            "you must change your one-time password first", hint="POST /api/auth/password (or use the UI)"
        )
    return p


def require(*roles: Role) -> Callable[[Request], Principal]:
    allowed = set(roles)

    def check(request: Request) -> Principal:
        p = principal(request)
        if p.role not in allowed:
            raise PermissionDeniedError(
                f"the {p.role.value} role may not do this",
                hint="needs one of: " + ", ".join(sorted(r.value for r in allowed)),
            )
        return p

    return check


ANY_ROLE = (Role.admin, Role.supervisor, Role.operator, Role.auditor)
LIVE = (Role.admin, Role.supervisor, Role.operator)
MANAGE = (Role.admin, Role.supervisor)
ADMIN = (Role.admin,)

AnyRole = Annotated[Principal, Depends(require(*ANY_ROLE))]
Live = Annotated[Principal, Depends(require(*LIVE))]
Manage = Annotated[Principal, Depends(require(*MANAGE))]
Admin = Annotated[Principal, Depends(require(*ADMIN))]
Me = Annotated[Principal, Depends(principal)]


def audited(st: ServerState, who: Principal, action: str, **kw: Any) -> None:
    """Append an audit entry for ``who`` (see vigil.governance.audit.record)."""
    from vigil.governance import audit

    audit.record(st.app, who.actor, action, **kw)


AUDIT = (Role.admin, Role.auditor)
Audit = Annotated[Principal, Depends(require(*AUDIT))]


def read_upload(st: ServerState, upload: UploadFile | None, field_name: str = "file") -> LoadedImage:
    """Decode an uploaded image, refusing empty, oversized and non-image files."""
    if upload is None:
        raise ImageError(
            f"no {field_name!r} file in the upload", hint="send multipart/form-data with a photo"
        )
    limit = st.app.settings.max_upload_bytes
    data = upload.file.read(limit + 1)
    name = upload.filename or field_name
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"{name}: over the {limit:,}-byte upload limit",
            hint="resize the photo or raise VIGIL_MAX_UPLOAD_BYTES",
        )
    s = st.app.settings
    return decode_image(
        data,
        name=name,
        max_pixels=s.max_image_pixels,
        max_bytes=limit,
        max_memory_bytes=s.max_image_memory_bytes,
    )
