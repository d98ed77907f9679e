"""The gallery check over HTTP on a real server: an enrolment's answer carries the warning about a
wrong photo, GET /api/galleries/{name}/check lists it (for the roles that may view a gallery) and the
fix route removes it (for the roles that may change one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Server

LFW = "lfw-dev"


def _enrol(c: httpx.Client, gallery: str, name: str, photos: list[Path]) -> dict[str, Any]:
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    r = c.post(f"/api/galleries/{gallery}/identities", data={"identity": name}, files=files)
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def lfw(shared_data: Path) -> Path:
    if not (shared_data / LFW).is_dir():
        pytest.skip("lfw-dev not in the shared data")
    return shared_data / LFW


def test_check_and_fix_over_http(server: Server, lfw: Path) -> None:
    lagos = sorted((lfw / "Ricardo_Lagos").glob("*.jpg"))[:3]
    lopez = sorted((lfw / "Jennifer_Lopez").glob("*.jpg"))[:1]
    with server.client("admin") as c:
        assert c.post("/api/galleries", json={"name": "hyg", "kind": "reference"}).status_code == 201
        assert _enrol(c, "hyg", "ricardo", lagos)["warnings"] == []
        warned = _enrol(c, "hyg", "ricardo", lopez)
        assert len(warned["warnings"]) == 1 and "likely someone else's photo" in warned["warnings"][0]
    with server.client("operator") as c:
        r = c.get("/api/galleries/hyg/check")
        assert r.status_code == 200, r.text
        report = r.json()
        wrong = [f for f in report["findings"] if f["kind"] == "wrong-photo"]
        assert len(wrong) == 1 and wrong[0]["photos"][0]["sha256"] == warned["photos"][0]["sha256"]
        fix = wrong[0]["fixes"][0]
        assert fix["action"] == "remove-photo"
        body = {"action": fix["action"], "ids": fix["ids"]}
        assert c.post("/api/galleries/hyg/check/fix", json=body).status_code == 403  # operators look only
    with server.client("auditor") as c:
        assert c.get("/api/galleries/hyg/check").status_code == 403
    with server.client("supervisor") as c:
        r = c.post("/api/galleries/hyg/check/fix", json=body)
        assert r.status_code == 200, r.text
        assert "removed photo" in r.json()["done"]
        again = c.get("/api/galleries/hyg/check").json()
        assert [f for f in again["findings"] if f["kind"] == "wrong-photo"] == []
        audit = c.get("/api/audit", params={"action": "gallery_check"})
    with server.client("admin") as c:
        audit = c.get("/api/audit", params={"action": "gallery_check"})
        assert audit.status_code == 200, audit.text
        assert "user:operator" in audit.text or "key:test-operator" in audit.text


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"action": "drop-table", "ids": [1]}, 422, "unknown fix"),
        ({"action": "merge", "ids": [1]}, 422, "takes 2 id"),
        ({"action": "remove-photo", "ids": [2**62]}, 404, "no photo"),
        ({"action": "remove-photo", "ids": [2**64]}, 422, ""),
        ({"action": "remove-photo", "ids": [1, 2, 3]}, 422, ""),
        ({"action": "remove-photo", "ids": [1], "extra": 1}, 422, ""),
    ],
)
def test_bad_fixes_are_refused(server: Server, body: dict[str, Any], status: int, says: str) -> None:
    with server.client("admin") as c:
        c.post("/api/galleries", json={"name": "hyg-bad", "kind": "reference"})
        r = c.post("/api/galleries/hyg-bad/check/fix", json=body)
        assert r.status_code == status, r.text
        assert says in r.text


@pytest.mark.parametrize("name", ["no-such", "a%2Fb", "x" * 5000, "ctl%00%1b"])
def test_unknown_or_hostile_gallery_names(server: Server, name: str) -> None:
    with server.client("admin") as c:
        r = c.get(f"/api/galleries/{name}/check")
        assert r.status_code in (404, 422), r.text
