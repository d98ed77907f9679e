"""Integers SQL cannot hold (2^63) and negative ids or offsets are a 422 problem+json, never a 500: every
integer path and query parameter of every route is tried, read from the server's OpenAPI schema, and the
integers of request bodies that reach SQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Server

PROBLEM = "application/problem+json"
HUGE = 2**63


def _is_int(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(s.get("type") == "integer" for s in schema.get("anyOf", []))


def _int_params(server: Server) -> list[tuple[str, str, str, str]]:
    """(method, path, parameter, where) of every integer path or query parameter."""
    with server.client("admin") as c:
        schema = c.get("/openapi.json").json()
    found = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if p["in"] in ("path", "query") and _is_int(p["schema"]):
                    found.append((method.upper(), path, p["name"], p["in"]))
    return found


def _assert_422(r: httpx.Response, *loc: str) -> None:
    assert r.status_code == 422, (r.request.method, r.request.url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    if "errors" in body:
        assert any(e["loc"][-len(loc) :] == list(loc) for e in body["errors"]), body
    else:  # the CompreFace routes answer in CompreFace's words (message, code), naming the field
        assert loc[-1] in body["detail"], body


@pytest.mark.parametrize("value", [HUGE, -1])
def test_every_integer_parameter_is_bounded(server: Server, people: Path, value: int) -> None:
    photo = (people / "obama.jpg").read_bytes()
    # The CompreFace routes read their images before the query: send real ones, so the integer decides.
    images = {n: ("p.jpg", photo, "image/jpeg") for n in ("file", "source_image", "target_image")}
    params = _int_params(server)
    assert {(m, p, n) for m, p, n, _ in params} >= {
        ("GET", "/api/audit", "offset"),
        ("GET", "/api/alarms", "offset"),
        ("GET", "/api/webhooks/dead-letters", "offset"),
        ("POST", "/api/users/{user_id}/reset-password", "user_id"),
        ("GET", "/api/alarms/{alarm_id}", "alarm_id"),
        ("DELETE", "/api/keys/{key_id}", "key_id"),
        ("GET", "/api/investigations/clusters/{cluster_id}", "cluster_id"),
    }
    with server.client("admin") as c:
        for method, path, name, where in params:
            if where == "path":
                url = path.replace("{" + name + "}", str(value))
                query = {}
            else:
                url, query = path, {name: str(value)}
            url = re.sub(r"\{[^}]+\}", "1", url)
            files = images if method == "POST" and path.startswith("/api/v1/") else None
            _assert_422(c.request(method, url, params=query, files=files), where, name)


def test_body_and_form_integers_are_bounded(server: Server) -> None:
    with server.client("admin") as c:
        r = c.post("/api/alarms/1/review", json={"action": "confirm", "version": HUGE})
        _assert_422(r, "body", "version")
        r = c.post("/api/galleries", json={"name": "g", "kind": "reference", "retention_days": HUGE})
        assert r.status_code == 422 and "retention_days" in r.json()["detail"], r.text
        assert c.get("/api/galleries/g").status_code == 404
        r = c.post("/api/cameras", json={"name": "cam", "url": "webcam:0", "retention_days": HUGE})
        _assert_422(r, "body", "retention_days")
        r = c.post(
            "/api/investigations/search",
            data={"case": "c-1", "since": "2026-01-01T00:00:00", "identity_id": str(HUGE)},
        )
        _assert_422(r, "body", "identity_id")


def test_compreface_image_ids_too_big_for_sql_are_not_found(server: Server) -> None:
    """CompreFace image ids are text: one SQL cannot hold names no image (404, or skipped in a list)."""
    with server.client("admin") as c:
        assert c.post("/api/galleries", json={"name": "cf-ints", "kind": "reference"}).status_code == 201
        r = c.post("/api/keys", json={"name": "cf-ints", "role": "supervisor", "gallery": "cf-ints"})
        key = r.json()["key"]
    with httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30) as c:
        r = c.delete(f"/api/v1/recognition/faces/{HUGE}")
        assert r.status_code == 404, r.text
        r = c.get(f"/api/v1/recognition/faces/{HUGE}/img")
        assert r.status_code == 404, r.text
        r = c.post("/api/v1/recognition/faces/delete", json=[str(HUGE), "\u00b2", "1"])
        assert r.status_code == 200 and r.json() == [], r.text
