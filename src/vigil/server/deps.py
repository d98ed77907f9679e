"""What every route shares: the server state, who is calling, role checks, the gallery scope, CSRF,
uploads, and the bounded integer types of ids and offsets."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request, UploadFile
from starlette.convertors import Convertor, register_url_convertor

from vigil.accounts import AuthError, PermissionDeniedError, Principal, key_principal, session_principal
from vigil.app import App
from vigil.core.errors import ImageError
from vigil.gallery.scope import EVERY, GalleryScope
from vigil.server.bus import EventBus
from vigil.server.limits import credentials
from vigil.server.problems import PayloadTooLargeError
from vigil.storage.tables import Role
from vigil.vision.image import LoadedImage, decode_image

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
    key, token = credentials(request.headers)
    if key:
        p = key_principal(st.app, key)
        if p is None:
            raise AuthError("the API key is unknown or revoked", hint="ask an admin for a key")
        return p
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


def require(*roles: Role, whole_server: bool = False) -> Callable[[Principal], Principal]:
    """A dependency: the caller, if its role is one of ``roles``. ``whole_server``: the route acts on
    the whole server (users, keys, the audit log...), so a key bound to one gallery is refused too."""
    allowed = set(roles)

    def check(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if p.role not in allowed:
            raise PermissionDeniedError(
                f"the {p.role.value} role may not do this",
                hint="needs one of: " + ", ".join(sorted(r.value for r in allowed)),
            )
        if whole_server:
            refuse_gallery_keys(p)
        return p

    return check


def refuse_gallery_keys(p: Annotated[Principal, Depends(principal)]) -> Principal:
    """A dependency of the routes that act beyond any one gallery: a gallery-bound key gets 403."""
    if p.gallery_id is not None:
        raise PermissionDeniedError(
            f"the API key {p.name!r} is bound to one gallery and may not do this",
            hint="a gallery-bound key reaches only its gallery's people, photos, searches and alarms "
            "(see docs/server.md); use a key bound to no gallery",
        )
    return p


def gallery_scope(request: Request, p: Annotated[Principal, Depends(principal)]) -> GalleryScope:
    """The galleries the caller may see: all, or the one its API key is bound to."""
    if p.gallery_id is None:
        return EVERY
    return GalleryScope.bound_to(state(request).app, p.gallery_id)


Scope = Annotated[GalleryScope, Depends(gallery_scope)]
"""Every route that reads or changes a gallery's data takes this and checks through it."""
WholeServer = Depends(refuse_gallery_keys)
"""For ``dependencies=[WholeServer]`` of routes (or routers) that no gallery-bound key may call."""

MAX_ID = 2**63 - 1
"""The largest value an SQL integer column holds; larger ids and offsets are a 422, never a 500."""
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
"""A row id in the path, written ``{name:id}`` in the route: see :class:`IdConvertor`."""


class IdConvertor(Convertor[str]):
    """A path segment that is an integer, signed or not, of any size: ``/webhooks/dead-letters``
    is then not ``/webhooks/{webhook_id}`` with a bad id (a 405 for a method it lacks, not a 422),
    while ``-1`` or ``2^63`` still reach :data:`Id`'s bounds and get a 422 that says why."""

    regex = "-?[0-9]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="entries to skip")]


ANY_ROLE = (Role.admin, Role.supervisor, Role.operator, Role.auditor)
LIVE = (Role.admin, Role.supervisor, Role.operator)
MANAGE = (Role.admin, Role.supervisor)
ADMIN = (Role.admin,)

AnyRole = Annotated[Principal, Depends(require(*ANY_ROLE))]
Live = Annotated[Principal, Depends(require(*LIVE))]
Manage = Annotated[Principal, Depends(require(*MANAGE))]
Admin = Annotated[Principal, Depends(require(*ADMIN, whole_server=True))]
"""Admin routes (users, keys, webhooks, purge) all act on the whole server."""
Me = Annotated[Principal, Depends(principal)]


AUDIT = (Role.admin, Role.auditor)
Audit = Annotated[Principal, Depends(require(*AUDIT, whole_server=True))]
"""The audit log covers every gallery."""


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
