"""The investigation API over a real `vigil serve` on the seeded catalog: search (case, roles, plot,
crops), sightings, clusters (update, detail, promote, dismiss)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sighting_seed import TESTS, Seed, copy_seed, load_module

harness = load_module("vigil_test_server_harness", TESTS / "server" / "harness.py")


@pytest.fixture(scope="module")
def server(seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = copy_seed(seed, tmp_path_factory.mktemp("investigation-server") / "data")
    s = harness.start_server(data, {"VIGIL_START_CAMERAS": "false"})
    yield s
    harness.stop_server(s)


@pytest.mark.slow
def test_search_api(server: Any, seed: Seed, people: Path) -> None:
    photo = (people / "lin-manuel-miranda.png").read_bytes()
    form = {"since": seed.since.isoformat(), "until": seed.until.isoformat(), "camera": ["hall"]}
    files = {"file": ("lin.png", photo, "image/png")}
    with server.client("operator") as c:
        refused = c.post("/api/investigations/search", data=form, files=files)
        assert refused.status_code == 422 and "case reference" in refused.json()["detail"]
        assert refused.headers["content-type"].startswith("application/problem+json")
        r = c.post("/api/investigations/search", data={**form, "case": "INC-9", "plot": "true"}, files=files)
        assert r.status_code == 200, r.text
        result = r.json()
        assert result["case"] == "INC-9" and len(result["hits"]) >= 2 and result["searched"] >= 2
        assert base64.b64decode(result["timeline_png"]).startswith(b"\x89PNG")
        hit = result["hits"][0]
        assert hit["camera"] == "hall" and hit["score"] >= result["threshold"] and hit["first_seen"]
        crop = c.get(f"/api/media/{hit['crop_sha256']}")
        assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
        by_id = c.post(
            "/api/investigations/search", data={**form, "case": "INC-9", "identity_id": str(seed.lin_id)}
        )
        assert by_id.status_code == 200 and len(by_id.json()["hits"]) >= 2
        lobby = c.post(
            "/api/investigations/search", data={**form, "camera": ["lobby"], "case": "INC-9"}, files=files
        )
        assert lobby.json()["hits"] == [] and lobby.json()["searched"] == 6
        listed = c.get("/api/investigations/sightings", params={"camera": "lobby"}).json()
        assert len(listed) == 6
    with server.client("auditor") as c:
        assert (
            c.post("/api/investigations/search", data={**form, "case": "x"}, files=files).status_code == 403
        )
        entries = c.get("/api/audit", params={"action": "retrospective_search"}).json()
        assert sorted(e["detail"]["case"] for e in entries) == ["INC-9"] * 3
        assert all(e["actor"] == "key:test-operator" for e in entries)


@pytest.mark.slow
def test_clusters_api(server: Any) -> None:
    with server.client("operator") as c:
        report = c.post("/api/investigations/clusters/update")
        assert report.status_code == 200, report.text
        assert report.json()["new_clusters"] == 3
        listed = c.get("/api/investigations/clusters").json()
        assert [x["size"] for x in listed] == [2, 2, 2]
        detail = c.get(f"/api/investigations/clusters/{listed[0]['id']}").json()
        assert len(detail["members"]) == 2
        for m in detail["members"]:
            assert c.get(f"/api/media/{m['crop_sha256']}").status_code == 200
        body = {"gallery": "visitors", "name": "Visitor 1"}
        url = f"/api/investigations/clusters/{listed[0]['id']}"
        assert c.post(url + "/promote", json=body).status_code == 403  # promotion needs Manage
        assert c.post(url + "/dismiss", json={}).status_code == 403
    with server.client("supervisor") as c:
        assert c.post("/api/galleries", json={"name": "visitors", "kind": "reference"}).status_code == 201
        promoted = c.post(url + "/promote", json=body)
        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["enrolled"] >= 1
        assert c.post(url + "/promote", json=body).status_code == 409
        other = f"/api/investigations/clusters/{listed[1]['id']}/dismiss"
        assert c.post(other, json={"reason": "staff"}).json()["state"] == "dismissed"
        assert len(c.get("/api/investigations/clusters").json()) == 1
        assert len(c.get("/api/investigations/clusters", params={"state": "all"}).json()) == 3
        assert c.get("/api/investigations/clusters/999").status_code == 404
    with server.client("auditor") as c:
        actions = [e["action"] for e in c.get("/api/audit", params={"limit": 50}).json()]
        assert {"cluster_update", "cluster_promote", "cluster_dismiss"} <= set(actions)


@pytest.mark.slow
def test_serve_clusters_on_its_schedule(seed: Seed, tmp_path: Path) -> None:
    """With `cluster_interval_s`, `vigil serve` clusters the unmatched sightings by itself (audited)."""
    s = harness.start_server(
        copy_seed(seed, tmp_path / "data"), {"VIGIL_START_CAMERAS": "false", "VIGIL_CLUSTER_INTERVAL_S": "2"}
    )
    try:
        with s.client("supervisor") as c:
            deadline = time.monotonic() + 60
            listed: list[Any] = []
            while time.monotonic() < deadline and len(listed) < 3:
                time.sleep(0.5)
                listed = c.get("/api/investigations/clusters").json()
            assert sorted(x["size"] for x in listed) == [2, 2, 2]
            # Nothing new afterwards: no second run makes more.
            time.sleep(2.5)
            assert len(c.get("/api/investigations/clusters").json()) == 3
        with s.client("auditor") as c:
            entries = c.get("/api/audit", params={"action": "cluster_update"}).json()
            assert [e["actor"] for e in entries] == ["system:scheduler"]
    finally:
        harness.stop_server(s)
