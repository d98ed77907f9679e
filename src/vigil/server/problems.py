"""Errors as RFC 9457 problem details (``application/problem+json``), mapped once for the whole API."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil.accounts import AuthError, PermissionDeniedError
from vigil.core.errors import (
    ConfigError,
    ConflictError,
    DecodeError,
    ForbiddenError,
    InputError,
    ModelError,
    NotFoundError,
    NotSupportedError,
    SourceUnavailableError,
    VigilError,
)

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
TYPE_BASE = "https://vigil.example/problems/"

_STATUS: list[tuple[type[VigilError], int]] = [
    (AuthError, 401),
    (PermissionDeniedError, 403),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (InputError, 422),
    (DecodeError, 422),
    (SourceUnavailableError, 502),
    (ModelError, 500),
    (NotSupportedError, 501),
    (ConfigError, 500),
]


class PayloadTooLargeError(InputError):
    title = "payload too large"


class UnsupportedMediaError(InputError):
    title = "unsupported media type"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + title.replace(" ", "-"),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    body.update(extra)
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="vigil"')
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


def status_of(exc: VigilError) -> int:
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, UnsupportedMediaError):
        return 415
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405 (RFC 9110): the methods of every route whose path matches. FastAPI
    makes one route per method, and Starlette's 405 names only the first route's."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path) and getattr(route, "methods", None):
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(VigilError)
    async def _vigil(request: Request, exc: VigilError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return problem(status, exc.title, exc.message, hint=exc.hint, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem(422, "invalid request", detail, errors=errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "not found", 405: "method not allowed", 401: "not authenticated"}.get(
            exc.status_code, "error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only those of the route that matched
            headers["Allow"] = allowed_methods(request)
        return problem(
            exc.status_code, title, str(exc.detail), instance=request.url.path, headers=headers or None
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "internal error", "an unexpected error happened; it has been logged")
