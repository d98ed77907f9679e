"""What the CompreFace-compatible router needs besides its routes: CompreFace's error codes on vigil's
problem+json, the request parts (multipart or base64 JSON), and the similarity scale (see the router's
module doc and docs/compreface.md)."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from vigil.accounts import AuthError
from vigil.core.errors import (
    ConflictError,
    ForbiddenError,
    ImageError,
    InputError,
    MultipleFacesError,
    NoFaceError,
    NotFoundError,
    VigilError,
)
from vigil.core.modelcard import ModelCard
from vigil.server import problems

log = logging.getLogger(__name__)

ACCEPT_SIMILARITY = 0.6
"""The similarity of a score exactly at vigil's decision threshold (Double Take's default match cut)."""
SIMILARITY_PER_DECADE = 0.1
UNCALIBRATED_COS_PER_DECADE = 0.05
"""For a card without calibration: the cosine step taken as a tenfold change of FMR."""


# -- errors: problem+json that also carries CompreFace's ``message`` and ``code`` -------------------


class NoCollectionError(ForbiddenError):
    title = "no face collection"


class SubjectExistsError(ConflictError):
    title = "subject already exists"


class ImageNotFoundError(NotFoundError):
    title = "image not found"


class MissingPartError(ImageError):
    title = "missing request part"


# CompreFace's error codes (its CommonExceptionCode), first match wins.
_CODES: list[tuple[type[VigilError], int]] = [
    (problems.PayloadTooLargeError, 21),
    (NoCollectionError, 10),
    (ImageNotFoundError, 11),
    (AuthError, 20),
    (MissingPartError, 34),
    (ImageError, 21),
    (NoFaceError, 28),
    (MultipleFacesError, 31),
    (NotFoundError, 42),
    (SubjectExistsError, 43),
    (InputError, 26),
]


def _code(exc: VigilError) -> int:
    return next((code for cls, code in _CODES if isinstance(exc, cls)), 0)


def _error(request: Request, exc: VigilError) -> Response:
    if problems.status_of(exc) >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return error_response(request.url.path, exc)


def error_response(path: str, exc: VigilError) -> Response:
    """``exc`` as problem+json with CompreFace's ``message`` and ``code`` (for the /api/v1/ routes)."""
    return problems.problem(
        problems.status_of(exc),
        exc.title,
        exc.message,
        hint=exc.hint,
        instance=path,
        message=str(exc),
        code=_code(exc),
    )


def _invalid(request: Request, exc: RequestValidationError) -> Response:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    missing = any(e["type"] == "missing" for e in errors)
    return problems.problem(
        422,
        "invalid request",
        detail,
        errors=[{"loc": e["loc"], "msg": e["msg"]} for e in errors],
        instance=request.url.path,
        message=detail,
        code=33 if missing else 26,
    )


class CompreFaceRoute(APIRoute):
    """Renders vigil errors of these routes as problem+json with CompreFace's ``message`` and ``code``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except VigilError as exc:
                return _error(request, exc)
            except RequestValidationError as exc:
                return _invalid(request, exc)

        return handle


# -- request parts ----------------------------------------------------------------------------------


def b64(text: str, name: str) -> bytes:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{name!r} is not valid base64", hint="send the image bytes base64-encoded") from exc


async def _parts(request: Request, names: tuple[str, ...]) -> dict[str, UploadFile]:
    """The named images of a multipart upload, or of a JSON body of base64 strings."""
    content_type = request.headers.get("content-type", "").lower()
    found: dict[str, UploadFile] = {}
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as exc:
            raise InputError("the body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise InputError("the JSON body must be an object", hint='e.g. {"file": "<base64>"}')
        for name in names:
            value = body.get(name)
            if isinstance(value, str):
                found[name] = UploadFile(io.BytesIO(b64(value, name)), filename=name)
            elif value is not None:
                raise InputError(f"{name!r} must be a base64 string")
    elif content_type.startswith("multipart/form-data"):
        try:
            form = await request.form()
        except HTTPException as exc:  # a malformed multipart body
            raise InputError(f"the multipart body cannot be read: {exc.detail}") from exc
        for name in names:
            value = form.get(name)
            if value is not None and not isinstance(value, str):
                found[name] = UploadFile(value.file, filename=value.filename, size=value.size)
    for name in names:
        if name not in found:
            raise MissingPartError(
                f"no {name!r} image in the request",
                hint=f"send multipart/form-data with a {name!r} file, or JSON {{{name!r}: base64}}",
            )
    return found


async def _file(request: Request) -> UploadFile:
    return (await _parts(request, ("file",)))["file"]


async def _pair(request: Request) -> dict[str, UploadFile]:
    return await _parts(request, ("source_image", "target_image"))


File = Annotated[UploadFile, Depends(_file)]
Pair = Annotated[dict[str, UploadFile], Depends(_pair)]


def upload_doc(*names: str) -> dict[str, Any]:
    props = {n: {"type": "string", "format": "binary"} for n in names}
    b64 = {n: {"type": "string", "format": "byte"} for n in names}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": props, "required": names}},
                "application/json": {"schema": {"type": "object", "properties": b64, "required": names}},
            },
        }
    }


# -- scores ---------------------------------------------------------------------------------------


def _log10_fmr(card: ModelCard, cosine: float) -> float:
    """log10 of the calibrated false-match rate at a cosine score (the inverse of
    ``ModelCard.threshold_for_fmr``: log-linear between calibration points, end segments extended)."""
    cal = card.calibration
    points = sorted({(t, math.log10(f)) for f, t in cal.fmr_thresholds}) if cal else []
    if len(points) < 2:
        return min(0.0, -3.0 - (cosine - card.default_threshold) / UNCALIBRATED_COS_PER_DECADE)
    segment = next(
        (i for i in range(len(points) - 1) if cosine <= points[i + 1][0]),
        len(points) - 2,
    )
    (t0, l0), (t1, l1) = points[segment], points[segment + 1]
    if t1 == t0:
        return min(0.0, l0)
    return min(0.0, l0 + (cosine - t0) * (l1 - l0) / (t1 - t0))


def similarity(card: ModelCard, cosine: float, threshold: float) -> float:
    """A CompreFace-style similarity in [0, 1]; ``threshold`` (vigil's decision) maps to 0.6."""
    at, here = _log10_fmr(card, threshold), _log10_fmr(card, cosine)
    if cosine >= threshold:
        value = ACCEPT_SIMILARITY + SIMILARITY_PER_DECADE * max(0.0, at - here)
    else:
        value = ACCEPT_SIMILARITY * here / at if at < 0 else 0.0
    return round(min(1.0, max(0.0, value)), 5)
