"""Request bodies are bounded while they stream, before anything buffers them.

A pure ASGI middleware, outside every other reader of the body (the refusal of sensitive traits, the
form and JSON parsers). For a POST, PUT, PATCH or DELETE it decides before reading a byte:

- a caller without credentials may send a body only to the few routes that take one anonymously (the
  login) and then only a small one; anywhere else the answer is 401, unread;
- credentials that are unknown, revoked or expired get a 401, unread;
- a ``Content-Length`` over the limit gets a 413, unread;
- a body that streams (chunked, or longer than it said) is counted as it arrives and cut off with a
  413 the moment it passes the limit.

The limit of a known caller is the upload limit (as base64 in JSON, with room for the multipart
envelope); an anonymous one gets :data:`ANONYMOUS_BODY_BYTES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil import accounts
from vigil.accounts import AuthError
from vigil.core.config import Settings
from vigil.core.errors import VigilError
from vigil.server import compreface_support, problems

ANONYMOUS_BODY_PATHS = frozenset({"/api/auth/login", "/api/fleet/pair", "/api/fleet/heartbeat"})
"""Routes that take a body from a caller who is not (yet) known: the log-in, and the edge devices'
(their token or credential is checked by the route; the body stays small)."""
ANONYMOUS_BODY_BYTES = 64 * 1024
ENVELOPE_BYTES = 1_000_000
"""Room beyond the upload limit for the multipart envelope and the other form fields."""
SESSION_COOKIE = "vigil_session"
WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def credentials(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(API key, session token) as the request carries them (``x-api-key`` or ``Authorization:
    Bearer``; the session cookie)."""
    key = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    token = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE)
    return key or None, token or None


def body_limit(settings: Settings) -> int:
    """The largest body a known caller may send: one upload, as base64 (CompreFace's JSON), plus
    the envelope."""
    return settings.max_upload_bytes * 4 // 3 + ENVELOPE_BYTES


class BodyTooLargeError(HTTPException):
    """Raised from ``receive`` when the body passes the limit. An HTTPException, so that the form and
    JSON parsers let it through instead of calling it a malformed body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the {limit:,}-byte limit")


class BodyLimit:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.limit = body_limit(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WITH_BODY or not _routed(scope):
            # No route takes this method here: the router answers 404 or 405 without reading the body.
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key, token = credentials(headers)
        path: str = scope.get("path", "")
        if path in ANONYMOUS_BODY_PATHS:  # whatever stale cookie the browser still sends
            limit = ANONYMOUS_BODY_BYTES
        elif (key or token) and await self._known(scope, key, token):
            limit = self.limit
        else:
            await _unauthenticated(path, key, token)(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await self._too_large(path, limit, int(length))(scope, receive, send)
            return
        await self._stream(scope, receive, send, limit)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:
                        refused = True
                        await self._too_large(scope.get("path", ""), limit, None)(scope, receive, send)
                    raise BodyTooLargeError(limit)
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if refused:  # the 413 is out; whatever the application answers now is dropped
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except BodyTooLargeError:
            if not refused:
                raise

    async def _known(self, scope: Scope, key: str | None, token: str | None) -> bool:
        vigil_app = scope["app"].state.vigil.app

        def lookup() -> bool:
            if key:
                return accounts.key_principal(vigil_app, key) is not None
            return token is not None and accounts.session_principal(vigil_app, token) is not None

        return await anyio.to_thread.run_sync(lookup)

    def _too_large(self, path: str, limit: int, length: int | None) -> Response:
        size = f"of {length:,} bytes " if length is not None else ""
        hint = (
            "resize the photo or raise VIGIL_MAX_UPLOAD_BYTES"
            if limit == self.limit
            else "log in first; an anonymous request may only send a small body"
        )
        return refusal(
            path,
            problems.PayloadTooLargeError(
                f"the request body {size}is over the {limit:,}-byte limit", hint=hint
            ),
        )


def _routed(scope: Scope) -> bool:
    """Whether a route of the application takes this method on this path."""
    return any(route.matches(scope)[0] is Match.FULL for route in scope["app"].router.routes)


def _unauthenticated(path: str, key: str | None, token: str | None) -> Response:
    if key:
        error = AuthError("the API key is unknown or revoked", hint="ask an admin for a key")
    elif token:
        error = AuthError("your session has expired", hint="log in again")
    else:
        error = AuthError("log in, or send an API key in the x-api-key header", hint="POST /api/auth/login")
    return refusal(path, error)


def refusal(path: str, exc: VigilError) -> Response:
    """``exc`` rendered as the route at ``path`` would render it (CompreFace's routes add their codes)."""
    if path.startswith("/api/v1/"):
        return compreface_support.error_response(path, exc)
    return problems.problem(problems.status_of(exc), exc.title, exc.message, hint=exc.hint, instance=path)


def install(api: Any, settings: Settings) -> None:
    """Add the middleware outside the ones that read the body (call after :func:`refusal.install`)."""
    api.add_middleware(BodyLimit, settings=settings)
