"""The API's refusal of sensitive traits: every request's query keys, JSON keys (at any depth), form
field names and JSON-valued form fields are checked before any route sees them (see
:mod:`vigil.core.refusals`). A pure ASGI middleware: the body is read once, checked, and
replayed to the application unchanged. JSON nested deeper than :data:`MAX_JSON_DEPTH` is refused
here too (422), before a parser can overflow the stack on it. The body was bounded before it got
here (:mod:`vigil.server.limits`)."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil.core.errors import ForbiddenError, InputError
from vigil.core.refusals import all_keys, refuse_sensitive_keys
from vigil.server import problems

_FORM_NAME = re.compile(rb'Content-Disposition:[^\r\n]*?\bname="([^"]*)"', re.IGNORECASE)
_JSON_FIELDS = {"metadata", "attributes"}
MAX_JSON_DEPTH = 32
"""No request of the API nests deeper than a few levels; metadata is flat or nearly so."""


def parse_json(data: bytes | str) -> Any:
    """``json.loads``, refusing documents nested deeper than :data:`MAX_JSON_DEPTH`.

    Raises:
        ValueError: not JSON (the route reports it).
        InputError: nested too deeply.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        value, depth = None, MAX_JSON_DEPTH + 1
    else:
        depth = _depth(value)
    if depth > MAX_JSON_DEPTH:
        raise InputError(
            f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep",
            hint="send flat objects; no vigil request nests deeper than a few levels",
        )
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((c, level + 1) for c in children)
    return deepest


def _form_keys(body: bytes, boundary: bytes) -> list[str]:
    keys: list[str] = []
    for part in body.split(b"--" + boundary):
        head, _, value = part.partition(b"\r\n\r\n")
        m = _FORM_NAME.search(head)
        if not m:
            continue
        name = m.group(1).decode("utf-8", "replace")
        keys.append(name)
        if name in _JSON_FIELDS:
            with contextlib.suppress(ValueError, UnicodeDecodeError):  # the route reports it malformed
                keys.extend(all_keys(parse_json(value.rstrip(b"\r\n").decode())))
    return keys


def request_keys(scope: Scope, body: bytes) -> list[str]:
    keys = [k for k, _ in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)]
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    ctype = headers.get("content-type", "").lower()
    if not body:
        return keys
    if "json" in ctype:
        with contextlib.suppress(ValueError):
            keys.extend(all_keys(parse_json(body)))
    elif ctype.startswith("multipart/form-data"):
        m = re.search(r'boundary="?([^";]+)"?', headers.get("content-type", ""))
        if m:
            keys.extend(_form_keys(body, m.group(1).encode("latin-1")))
    elif ctype.startswith("application/x-www-form-urlencoded"):
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        keys.extend(k for k, _ in pairs)
        for k, v in pairs:
            if k in _JSON_FIELDS:
                with contextlib.suppress(ValueError):
                    keys.extend(all_keys(parse_json(v)))
    return keys


class RefuseSensitiveTraits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "GET", "DELETE"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more and scope["method"] in ("POST", "PUT", "PATCH"):
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            refuse_sensitive_keys(request_keys(scope, body), "request")
        except (ForbiddenError, InputError) as exc:
            status = 403 if isinstance(exc, ForbiddenError) else 422
            response = problems.problem(
                status, exc.title, exc.message, hint=exc.hint, instance=scope.get("path")
            )
            await response(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay if scope["method"] in ("POST", "PUT", "PATCH") else receive, send)


def install(api: Any) -> None:
    api.add_middleware(RefuseSensitiveTraits)
