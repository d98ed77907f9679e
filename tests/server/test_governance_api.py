"""The safeguards over the API of a real server: refusals on every route, the audit log and its roles,
watchlist terms, erasure and the transparency report."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Server

FUTURE = (date.today() + timedelta(days=30)).isoformat()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "sensitive trait" in r.json()["detail"]


def test_sensitive_keys_are_refused_on_every_route(server: Server, people: Path) -> None:
    with server.client("admin") as c:
        spec = c.get("/openapi.json").json()
        writes = [
            (m.upper(), _concrete(p))
            for p, methods in spec["paths"].items()
            for m in methods
            if m in ("post", "put", "patch")
        ]
        assert len(writes) >= 20
        for method, path in writes:
            _refused(c.request(method, path, json={"name": "x", "ethnicity": "any"}))
            _refused(c.request(method, path, json={"profile": {"nested": [{"skinColour": "any"}]}}))
        _refused(c.get("/api/alarms", params={"religion": "any"}))
        assert c.post("/api/galleries", json={"name": "staff", "kind": "reference"}).status_code == 201
        with (people / "obama.jpg").open("rb") as fh:
            photo = fh.read()
        _refused(
            c.post(
                "/api/galleries/staff/identities",
                data={"identity": "Barack Obama", "metadata": json.dumps({"health_status": "x"})},
                files=[("files", ("o.jpg", photo, "image/jpeg"))],
            )
        )
        _refused(
            c.post(
                "/api/galleries/staff/identities",
                data={"identity": "Barack Obama", "sexual_orientation": "x"},
                files=[("files", ("o.jpg", photo, "image/jpeg"))],
            )
        )
        assert c.get("/api/galleries/staff/identities").json() == []
        ok = c.post(
            "/api/galleries/staff/identities",
            data={"identity": "Barack Obama", "metadata": json.dumps({"employee_no": "4711"})},
            files=[("files", ("o.jpg", photo, "image/jpeg"))],
        )
        assert ok.status_code == 201, ok.text
        (person,) = c.get("/api/galleries/staff/identities").json()
        assert person["attributes"] == {"employee_no": "4711"}
        _refused(c.patch(f"/api/identities/{person['id']}", json={"metadata": {"mood": "calm"}}))


def test_audit_log_roles_and_chain(server: Server) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "audited", "kind": "reference"}).status_code == 201
    for who in ("operator", "supervisor"):
        with server.client(who) as c:
            assert c.get("/api/audit").status_code == 403
    with server.client("auditor") as c:
        entries = c.get("/api/audit", params={"action": "gallery_create"}).json()
        mine = [e for e in entries if e["target_name"] == "audited"]
        assert mine and mine[0]["actor"] == "key:test-supervisor"
        assert mine[0]["detail"]["terms"]["kind"] == "reference"
        check = c.get("/api/audit/verify").json()
        assert check["ok"] and check["entries"] >= 2 and len(check["head_hash"]) == 64
        exports = c.get("/api/audit", params={"action": "audit_export"}).json()
        assert exports and exports[0]["actor"] == "key:test-auditor"


def test_watchlist_terms_changes_are_audited(server: Server) -> None:
    body = {
        "name": "limited",
        "kind": "watchlist",
        "purpose": "p",
        "legal_basis": "order 5",
        "authorized_by": "judge",
        "expires_on": FUTURE,
    }
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json=body).status_code == 201
        r = c.patch("/api/galleries/limited", json={"sites": ["gate"], "retention_days": 30})
        assert r.status_code == 200, r.text
        assert r.json()["sites"] == ["gate"] and r.json()["retention_days"] == 30
        bad = c.patch("/api/galleries/limited", json={"legal_basis": ""})
        assert bad.status_code == 422 and "legal basis" in bad.json()["detail"]
        assert c.patch("/api/galleries/limited", json={"kind": "reference"}).status_code == 422
    with server.client("auditor") as c:
        (change,) = [
            e
            for e in c.get("/api/audit", params={"action": "gallery_update"}).json()
            if e["target_name"] == "limited"
        ]
    assert change["detail"]["before"]["sites"] is None and change["detail"]["after"]["sites"] == ["gate"]


def test_erasure_over_the_api(server: Server, people: Path) -> None:
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "erase-me", "kind": "reference"}).status_code == 201
        with (people / "biden.jpg").open("rb") as fh:
            r = c.post(
                "/api/galleries/erase-me/identities",
                data={"identity": "Joe Biden"},
                files=[("files", ("b.jpg", fh))],
            )
        identity_id = r.json()["identity_id"]
        sha = r.json()["photos"][0]["sha256"]
    with server.client("operator") as c:
        assert c.post(f"/api/identities/{identity_id}/erase", json={}).status_code == 403
    with server.client("supervisor") as c:
        report = c.post(f"/api/identities/{identity_id}/erase", json={"reason": "request 12"}).json()
        assert report["templates"] == 1 and report["files_left"] == 0
        assert report["pseudonym"].startswith("erased-")
        assert c.get(f"/api/identities/{identity_id}").status_code == 404
        assert c.get(f"/api/media/{sha}").status_code == 404
        with (people / "biden.jpg").open("rb") as fh:
            found = c.post(
                "/api/search", params={"gallery": "erase-me"}, files={"file": ("b.jpg", fh)}
            ).json()
        assert all(f["decision"] is None and not f["matches"] for f in found["faces"])
    with server.client("auditor") as c:
        (entry,) = c.get("/api/audit", params={"action": "erasure"}).json()
    assert entry["target_id"] == report["pseudonym"] and "Biden" not in json.dumps(entry)


def test_transparency_report_over_the_api(server: Server, people: Path) -> None:
    with server.client("operator") as c:
        before = c.get("/api/reports/transparency")
        assert before.status_code == 403
    with server.client("auditor") as c:
        start = c.get("/api/reports/transparency").json()
    with server.client("supervisor") as c:
        for _ in range(3):
            with (people / "obama2.jpg").open("rb") as fh:
                assert c.post("/api/search", files={"file": ("o.jpg", fh)}).status_code == 200
    with server.client("auditor") as c:
        r: dict[str, Any] = c.get("/api/reports/transparency").json()
        assert r["searches"].get("search", 0) - start["searches"].get("search", 0) == 3
        assert r["audit_chain_ok"]
        page = c.get("/api/reports/transparency", params={"format": "html"})
        assert page.headers["content-type"].startswith("text/html")
        assert "data:image/png;base64," in page.text


@pytest.mark.parametrize("who", ["admin", "auditor"])
def test_purge_is_admin_only(server: Server, who: str) -> None:
    with server.client(who) as c:
        r = c.post("/api/purge")
    assert r.status_code == (200 if who == "admin" else 403)
