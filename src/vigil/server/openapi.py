"""The API's OpenAPI schema, true to what the server answers.

FastAPI documents each route's success and a 422 of its own shape. vigil answers every error as RFC
9457 problem+json (:mod:`vigil.server.problems`) and refuses requests before they reach a route
(:mod:`vigil.server.limits`, :mod:`vigil.server.refusal`), so the schema is completed once, here: a
``Problem`` schema, and on every operation the errors it can answer. The fuzz test
(tests/server/test_fuzz.py) holds the server to it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from vigil.server.problems import PROBLEM

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; the CompreFace routes (/api/v1/) add `message` and `code`.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "hint": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
        "message": {"type": "string"},
        "code": {"type": "integer"},
    },
}

_WHY = {
    400: "The body could not be parsed (a broken multipart form)",
    401: "Not logged in, or the API key is unknown or revoked",
    403: "The caller's role or gallery binding may not do this, a safeguard refused it, or no CSRF token",
    404: "What the request names does not exist",
    409: "It conflicts with what is stored (a name taken, a review already made)",
    413: "The body or an uploaded file is over the limit",
    415: "The upload is not of a type this route takes",
    422: "The request is invalid: the problem's `errors` or `detail` say what and where",
    429: "Too many failed attempts; retry after the `Retry-After` seconds",
    502: "The camera could not be reached",
}
_WRITES = {"post", "put", "patch", "delete"}


def _errors_of(path: str, method: str, operation: dict[str, Any]) -> set[int]:
    if path == "/api/health":
        return set()
    codes = {401, 403, 404, 422}
    if method in _WRITES:
        codes |= {409, 413}
    if "requestBody" in operation:
        codes |= {400, 415}
    if path == "/api/auth/login":
        codes |= {429}
    if path.startswith("/api/cameras"):
        codes |= {502}
    return codes


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the Problem schema and every operation's problem responses to ``schema`` (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code in sorted(
                _errors_of(path, method, operation) | {int(c) for c in responses if c[0] in "45"}
            ):
                entry = responses.setdefault(str(code), {"description": _WHY.get(code, "Error")})
                entry["content"] = problem
    return schema


def install(api: FastAPI) -> None:
    """Serve the completed schema from ``api.openapi()`` (built once, on first use)."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            api.openapi_schema = complete(build())
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
