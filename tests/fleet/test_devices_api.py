"""The devices' HTTP routes on a real `vigil serve`: the admin's /api/devices and the devices'
/api/fleet (pair once, config with ETag, heartbeat, refused at once when revoked)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from harness import Server, start_server, stop_server

FUTURE = (date.today() + timedelta(days=30)).isoformat()
CLIP = "/media/pole/street.mp4"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("devices-api"), env={"VIGIL_START_CAMERAS": "false"})
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def admin(server: Server) -> Iterator[httpx.Client]:
    with server.client("admin") as c:
        yield c


def _add(admin: httpx.Client, name: str, site: str = "market-street", **kw: object) -> str:
    r = admin.post("/api/devices", json={"name": name, "site": site, **kw})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["device"]["name"] == name and body["device"]["state"] == "pending"
    return str(body["token"])


def _pair(server: Server, token: str) -> dict[str, str]:
    with server.client(None) as anon:
        r = anon.post("/api/fleet/pair", json={"token": token, "version": "1.0"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _device(server: Server, credential: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Device {credential}"}, timeout=30)


def _watchlist(admin: httpx.Client, name: str, **terms: object) -> None:
    body = {
        "name": name,
        "kind": "watchlist",
        "purpose": "t",
        "legal_basis": "t",
        "authorized_by": "t",
        "expires_on": FUTURE,
        **terms,
    }
    r = admin.post("/api/galleries", json=body)
    assert r.status_code == 201, r.text


def test_pair_config_etag_heartbeat_and_revoke(server: Server, admin: httpx.Client) -> None:
    token = _add(admin, "pole-1")
    pairing = _pair(server, token)
    assert pairing["device"] == "pole-1" and len(bytes.fromhex(pairing["signing_key"])) == 32
    with server.client(None) as anon:
        again = anon.post("/api/fleet/pair", json={"token": token, "version": "1.0"})
    assert again.status_code == 401 and again.headers["content-type"] == "application/problem+json"
    r = admin.post("/api/cameras", json={"name": "street", "url": CLIP, "device": "pole-1"})
    assert r.status_code == 201, r.text
    assert r.json()["device"] == "pole-1" and r.json()["health"]["state"] == "stopped"
    _watchlist(admin, "market", sites=["market-street"])
    _watchlist(admin, "station", sites=["station"])
    with _device(server, pairing["credential"]) as dev:
        cfg = dev.get("/api/fleet/config")
        assert cfg.status_code == 200, cfg.text
        body = cfg.json()
        assert [c["name"] for c in body["cameras"]] == ["street"] and body["cameras"][0]["url"] == CLIP
        assert [g["name"] for g in body["galleries"]] == ["market"]  # never the station's
        etag = cfg.headers["etag"]
        assert etag == f'"{body["etag"]}"'
        same = dev.get("/api/fleet/config", headers={"If-None-Match": etag})
        assert same.status_code == 304 and same.headers["etag"] == etag and not same.content
        bare = dev.get("/api/fleet/config", headers={"If-None-Match": f'"other", {body["etag"]}'})
        assert bare.status_code == 304
        _watchlist(admin, "everywhere")
        changed = dev.get("/api/fleet/config", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert "everywhere" in [g["name"] for g in changed.json()["galleries"]]
        beat = {"version": "1.1", "queue_depth": 3, "cameras": {"street": {"state": "running"}}, "outbox": {}}
        r = dev.post("/api/fleet/heartbeat", json=beat)
        assert r.status_code == 200, r.text
        listed = {d["name"]: d for d in admin.get("/api/devices").json()}
        one = listed["pole-1"]
        assert (one["online"], one["version"], one["queue_depth"], one["cameras"]) == (
            True,
            "1.1",
            3,
            ["street"],
        )
        assert dev.post("/api/fleet/heartbeat", json={**beat, "queue_depht": 1}).status_code == 422
        assert admin.post("/api/devices/pole-1/revoke").status_code == 200
        for refused in (dev.get("/api/fleet/config"), dev.post("/api/fleet/heartbeat", json=beat)):
            assert refused.status_code == 403
            assert "device pole-1 was revoked" in refused.json()["detail"]
    assert admin.get("/api/devices/pole-1").json()["state"] == "revoked"
    assert admin.post("/api/devices/pole-1/revoke").status_code == 409


def test_templates_stay_on_the_server_for_a_site_that_keeps_none(server: Server, admin: httpx.Client) -> None:
    pairing = _pair(server, _add(admin, "pole-2", keeps_templates=False))
    with _device(server, pairing["credential"]) as dev:
        body = dev.get("/api/fleet/config").json()
    assert body["keeps_templates"] is False
    assert all(i["templates"] == [] for g in body["galleries"] for i in g["identities"])


def test_who_may_do_what(server: Server, admin: httpx.Client) -> None:
    with server.client("supervisor") as sup:
        assert sup.get("/api/devices").status_code == 403
        assert sup.post("/api/devices", json={"name": "x", "site": "s"}).status_code == 403
    with server.client(None) as anon:
        assert anon.get("/api/devices").status_code == 401
        assert anon.post("/api/devices", json={"name": "x", "site": "s"}).status_code == 401
        assert anon.get("/api/fleet/config").status_code == 401
        for header in ("Bearer vgd_x", "Device", "Device vgd_unknown", "Device " + "x" * 5000):
            r = anon.get("/api/fleet/config", headers={"Authorization": header})
            assert r.status_code in (401, 431), (header[:20], r.text)
        r = anon.post("/api/fleet/heartbeat", json={"version": "1"})
        assert r.status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "", "site": "s"}, 422),
        ({"name": "a/b", "site": "s"}, 422),
        ({"name": "pole\u0000", "site": "s"}, 422),
        ({"name": "p" * 201, "site": "s"}, 422),
        ({"name": "ok", "site": "s", "kept_templates": False}, 422),
        ({"name": "ok", "site": "s\nx"}, 422),
    ],
)
def test_hostile_devices_are_refused(admin: httpx.Client, body: dict[str, object], status: int) -> None:
    r = admin.post("/api/devices", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_a_camera_for_an_unknown_device_is_a_404(admin: httpx.Client) -> None:
    r = admin.post("/api/cameras", json={"name": "nowhere", "url": CLIP, "device": "nobody"})
    assert r.status_code == 404 and "vigil devices list" in r.json()["hint"]


def test_pairing_bodies_are_bounded_and_guesses_throttled(server: Server) -> None:
    with server.client(None) as anon:
        huge = anon.post(
            "/api/fleet/pair",
            content=b'{"token": "' + b"x" * 200_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        assert anon.post("/api/fleet/pair", json={"token": "vgp_" + "x" * 300}).status_code == 422
        codes = [anon.post("/api/fleet/pair", json={"token": f"vgp_guess{i}"}).status_code for i in range(12)]
    assert codes[0] == 401 and codes[-1] == 429, codes
