"""A key bound to one gallery reaches that gallery only: every route of the OpenAPI schema has a decision
here (a new route without one fails), and keys of every role bound to ``staff`` are tried against each,
naming the other gallery's data; nothing of the other gallery may appear in any answer."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi.routing import APIRoute
from harness import ROLES, Server, wait_for

from vigil.core.config import Settings
from vigil.server.app import create_app

OWN, OTHER = "staff", "wanted-zq"
OTHER_PERSON = "Lin-Manuel Miranda"

# What a bound key gets, per route: "whole" 403 (acts beyond one gallery), "other" 404 (the request names
# the other gallery's data), "own" (works on its own gallery only), "free" (touches no gallery's data).
DECISIONS: dict[tuple[str, str], str] = {
    ("GET", "/api/health"): "free",
    ("POST", "/api/auth/login"): "free",
    ("POST", "/api/auth/logout"): "free",
    ("GET", "/api/auth/me"): "free",
    ("POST", "/api/auth/password"): "free",
    ("GET", "/api/users"): "whole",
    ("POST", "/api/users"): "whole",
    ("PATCH", "/api/users/{user_id}"): "whole",
    ("POST", "/api/users/{user_id}/reset-password"): "whole",
    ("GET", "/api/keys"): "whole",
    ("POST", "/api/keys"): "whole",
    ("DELETE", "/api/keys/{key_id}"): "whole",
    ("GET", "/api/galleries"): "own",
    ("POST", "/api/galleries"): "whole",
    ("PATCH", "/api/galleries/{name}"): "other",
    ("GET", "/api/galleries/{name}"): "other",
    ("DELETE", "/api/galleries/{name}"): "other",
    ("GET", "/api/galleries/{name}/identities"): "other",
    ("GET", "/api/galleries/{name}/check"): "other",
    ("POST", "/api/galleries/{name}/check/fix"): "other",
    ("POST", "/api/galleries/{name}/identities"): "other",
    ("PATCH", "/api/identities/{identity_id}"): "other",
    ("GET", "/api/identities/{identity_id}"): "other",
    ("DELETE", "/api/identities/{identity_id}"): "other",
    ("POST", "/api/identities/{identity_id}/photos"): "other",
    ("POST", "/api/identities/{identity_id}/erase"): "other",
    ("GET", "/api/media/{sha256}"): "other",
    ("GET", "/api/cameras"): "whole",
    ("POST", "/api/cameras"): "whole",
    ("GET", "/api/cameras/{name}"): "whole",
    ("DELETE", "/api/cameras/{name}"): "whole",
    ("PATCH", "/api/cameras/{name}"): "whole",
    ("POST", "/api/cameras/{name}/start"): "whole",
    ("POST", "/api/cameras/{name}/stop"): "whole",
    ("GET", "/api/cameras/{name}/snapshot.jpg"): "whole",
    ("GET", "/api/cameras/{name}/preview.mjpg"): "whole",
    ("GET", "/api/alarms"): "own",
    ("GET", "/api/alarms/{alarm_id}"): "other",
    ("GET", "/api/alarms/{alarm_id}/export"): "other",
    ("POST", "/api/alarms/{alarm_id}/review"): "other",
    ("POST", "/api/alarms/negatives/{negative_id}/undo"): "other",
    ("GET", "/api/attendance/report"): "other",
    ("GET", "/api/events"): "whole",
    ("POST", "/api/search"): "own",
    ("POST", "/api/verify"): "free",
    ("GET", "/api/compare"): "own",
    ("POST", "/api/compare"): "other",
    ("GET", "/api/compare/{job_id}.csv"): "other",
    ("GET", "/api/compare/{job_id}"): "other",
    ("GET", "/api/audit"): "whole",
    ("GET", "/api/audit/verify"): "whole",
    ("GET", "/api/reports/transparency"): "whole",
    ("POST", "/api/purge"): "whole",
    ("POST", "/api/backup"): "whole",
    ("POST", "/api/redactions"): "whole",
    ("GET", "/api/redactions/{job_id}"): "whole",
    ("GET", "/api/redactions/{job_id}/file"): "whole",
    ("POST", "/api/v1/recognition/recognize"): "own",
    ("POST", "/api/v1/detection/detect"): "free",
    ("POST", "/api/v1/verification/verify"): "free",
    ("GET", "/api/v1/recognition/subjects"): "own",
    ("POST", "/api/v1/recognition/subjects"): "own",
    ("DELETE", "/api/v1/recognition/subjects"): "own",
    ("PUT", "/api/v1/recognition/subjects/{subject}"): "own",
    ("DELETE", "/api/v1/recognition/subjects/{subject}"): "own",
    ("POST", "/api/v1/recognition/faces"): "own",
    ("GET", "/api/v1/recognition/faces"): "own",
    ("DELETE", "/api/v1/recognition/faces"): "own",
    ("POST", "/api/v1/recognition/faces/delete"): "own",
    ("DELETE", "/api/v1/recognition/faces/{image_id}"): "own",
    ("GET", "/api/v1/recognition/faces/{image_id}/img"): "own",
    ("GET", "/api/webhooks"): "whole",
    ("POST", "/api/webhooks"): "whole",
    ("GET", "/api/webhooks/dead-letters"): "whole",
    ("PATCH", "/api/webhooks/{webhook_id}"): "whole",
    ("DELETE", "/api/webhooks/{webhook_id}"): "whole",
    ("POST", "/api/webhooks/{webhook_id}/test"): "whole",
    ("GET", "/metrics"): "whole",
    ("POST", "/api/investigations/search"): "whole",
    ("GET", "/api/investigations/sightings"): "own",
    ("GET", "/api/investigations/clusters"): "whole",
    ("POST", "/api/investigations/clusters/update"): "whole",
    ("GET", "/api/investigations/clusters/{cluster_id}"): "whole",
    ("POST", "/api/investigations/clusters/{cluster_id}/promote"): "whole",
    ("POST", "/api/investigations/clusters/{cluster_id}/dismiss"): "whole",
    ("GET", "/api/models"): "whole",
    ("GET", "/api/models/switch"): "whole",
    ("POST", "/api/models/switch"): "whole",
    ("POST", "/api/models/switch/cancel"): "whole",
    ("POST", "/api/models/{name}/install"): "whole",
    ("GET", "/api/devices"): "whole",
    ("POST", "/api/devices"): "whole",
    ("GET", "/api/devices/{name}"): "whole",
    ("POST", "/api/devices/{name}/token"): "whole",
    ("POST", "/api/devices/{name}/revoke"): "whole",
    ("POST", "/api/fleet/pair"): "free",  # the devices' routes: a device's token or credential, no key
    ("GET", "/api/fleet/config"): "free",
    ("POST", "/api/fleet/heartbeat"): "free",
}


def _allowed(dependant: Any) -> set[str]:
    """The roles a route's dependencies allow (the closures of ``require`` hold them)."""
    roles = set(ROLES)
    for dep in dependant.dependencies:
        code = getattr(dep.call, "__code__", None)
        if code is not None:
            cells = dict(zip(code.co_freevars, dep.call.__closure__ or (), strict=True))
            if "allowed" in cells:
                roles &= {r.value for r in cells["allowed"].cell_contents}
        roles &= _allowed(dep)
    return roles


def _flatten(routes: list[Any]) -> list[Any]:
    flat = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        flat.extend(_flatten(inner.routes) if inner is not None else [r])
    return flat


@pytest.fixture(scope="module")
def world(server: Server, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``staff`` (Barack Obama) and the watchlist ``wanted-zq`` (Lin-Manuel Miranda, real alarms and
    sightings from the hamilton clip), a comparison of the other gallery, and keys of every role bound
    to ``staff``; with the ids, hashes and names of the other gallery's data."""
    people = shared_data / "people"
    expires = (date.today() + timedelta(days=30)).isoformat()
    with server.client("admin") as c:
        assert c.post("/api/galleries", json={"name": OWN, "kind": "reference"}).status_code == 201
        watchlist = {
            "name": OTHER,
            "kind": "watchlist",
            "purpose": "test",
            "legal_basis": "test order 1",
            "authorized_by": "test judge",
            "expires_on": expires,
        }
        assert c.post("/api/galleries", json=watchlist).status_code == 201
        own = _enrol(c, OWN, "Barack Obama", people / "obama.jpg")
        other = _enrol(c, OTHER, OTHER_PERSON, people / "lin-manuel-miranda.png")
        clip = shared_data / "video" / "short_hamilton_clip.mp4"
        # Its stranger rule names the own gallery: Lin-Manuel Miranda's close-up is a stranger there.
        rule = {"galleries": [OWN]}
        camera = {"name": "hamilton", "url": str(clip), "keep_sightings": True, "strangers": rule}
        assert c.post("/api/cameras", json=camera).status_code == 201, "camera"
        wait_for(lambda: c.get("/api/cameras/hamilton").json()["health"]["state"] == "finished", 180)
        alarms = c.get("/api/alarms", params={"gallery": OTHER}).json()
        assert len(alarms) >= 2, "the clip raised fewer than two alarms"
        oldest = alarms[-1]  # dismissed as not this person: a negative example of the other gallery
        review = {"action": "dismiss", "version": 0, "reason": "test", "not_this_person": True}
        r = c.post(f"/api/alarms/{oldest['id']}/review", json=review)
        assert r.status_code == 200 and r.json()["negative"], r.text
        negative = (r.json()["negative"]["id"], oldest["id"])
        strangers = c.get("/api/alarms", params={"kind": "stranger"}).json()
        assert [a["kind"] for a in strangers] == ["stranger"], strangers
        sightings = c.get("/api/investigations/sightings").json()
        job = c.post("/api/compare", json={"case": "c-1", "gallery_a": OTHER, "gallery_b": OTHER})
        assert job.status_code == 202, job.text
        keys = {}
        for role in ROLES:
            r = c.post("/api/keys", json={"name": f"bound-{role}", "role": role, "gallery": OWN})
            keys[role] = r.json()["key"]
    shown = alarms + strangers  # a stranger alarm has no gallery: no bound key sees it
    shas = {other["sha"]} | {a[k] for a in shown for k in ("crop_sha256", "thumbnail_sha256") if a[k]}
    shas |= {s["crop_sha256"] for s in sightings if s["crop_sha256"] and s["identity"] == OTHER_PERSON}
    api = create_app(Settings(data_dir=tmp_path_factory.mktemp("introspect")), start_cameras=False)
    roles = {
        (m, r.path_format): _allowed(r.dependant)  # the path as the schema writes it (no {x:id})
        for r in _flatten(api.routes)
        if isinstance(r, APIRoute)
        for m in r.methods - {"HEAD"}
    }
    return {
        "own": own,
        "other": other,
        "alarm": alarms[0],
        "stranger": strangers[0],
        "negative": negative,
        "job": job.json()["id"],
        "shas": shas,
        "keys": keys,
        "roles": roles,
        "photo": (people / "lin-manuel-miranda.png").read_bytes(),
        "obama2": (people / "obama2.jpg").read_bytes(),
    }


def _enrol(c: httpx.Client, gallery: str, name: str, photo: Path) -> dict[str, Any]:
    with photo.open("rb") as fh:
        r = c.post(
            f"/api/galleries/{gallery}/identities",
            data={"identity": name},
            files=[("files", (photo.name, fh, "image/png"))],
        )
    assert r.status_code == 201, r.text
    return {"id": r.json()["identity_id"], "sha": r.json()["photos"][0]["sha256"]}


def _bound(server: Server, world: dict[str, Any], role: str = "admin") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-api-key": world["keys"][role]}, timeout=60)


def _no_leak(r: httpx.Response, world: dict[str, Any]) -> None:
    """Nothing of the other gallery in the answer, but what the request itself named (echoed back)."""
    kind = r.headers.get("content-type", "")
    text = r.text if "json" in kind or "text" in kind else ""
    asked = unquote(str(r.request.url)) + r.request.read().decode(errors="replace")
    where = (r.request.method, str(r.request.url), r.status_code, text[:300])
    for marker in (OTHER_PERSON, OTHER, *world["shas"]):
        assert marker in asked or marker not in text, (marker, where)


def _request(method: str, path: str, w: dict[str, Any]) -> dict[str, Any]:
    """The request a bound key makes of a route: for "other" routes, naming the other gallery's data."""
    image = {"file": ("p.png", w["photo"], "image/png")}
    url = (
        path.replace("{name}", OTHER if path.startswith("/api/galleries") else "hamilton")
        .replace("{identity_id}", str(w["other"]["id"]))
        .replace("{alarm_id}", str(w["alarm"]["id"]))
        .replace("{sha256}", w["alarm"]["crop_sha256"] or w["other"]["sha"])
        .replace("{job_id}", w["job"])
        .replace("{subject}", OTHER_PERSON)
        .replace("{image_id}", "1")
        .replace("{user_id}", "1")
        .replace("{key_id}", "1")
        .replace("{webhook_id}", "1")
        .replace("{cluster_id}", "1")
        .replace("{negative_id}", str(w["negative"][0]))
    )
    kw: dict[str, Any] = {"url": url}
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/galleries"): {"json": {"name": "new-by-key", "kind": "reference"}},
        ("PATCH", "/api/galleries/{name}"): {"json": {"purpose": "taken over"}},
        ("POST", "/api/galleries/{name}/identities"): {
            "data": {"identity": "Intruder"},
            "files": [("files", ("p.png", w["photo"], "image/png"))],
        },
        ("PATCH", "/api/identities/{identity_id}"): {"json": {"notes": "taken over"}},
        ("POST", "/api/galleries/{name}/check/fix"): {
            "json": {"action": "remove-identity", "ids": [w["other"]["id"]]}
        },
        ("POST", "/api/identities/{identity_id}/photos"): {
            "files": [("files", ("p.png", w["photo"], "image/png"))]
        },
        ("POST", "/api/identities/{identity_id}/erase"): {"json": {"reason": "x"}},
        ("POST", "/api/alarms/{alarm_id}/review"): {
            "json": {"action": "confirm", "version": w["alarm"]["version"]}
        },
        ("GET", "/api/attendance/report"): {"params": {"gallery": OTHER, "date": date.today().isoformat()}},
        ("POST", "/api/search"): {"files": image},
        ("POST", "/api/compare"): {"json": {"case": "c-2", "gallery_a": OWN, "gallery_b": OTHER}},
        ("POST", "/api/v1/recognition/recognize"): {"files": image},
        ("POST", "/api/v1/recognition/subjects"): {"json": {"subject": "Somebody"}},
        ("PUT", "/api/v1/recognition/subjects/{subject}"): {"json": {"subject": "Renamed"}},
        ("POST", "/api/v1/recognition/faces/delete"): {"json": ["1", "2", "3"]},
    }
    kw.update(bodies.get((method, path), {}))
    return kw


def test_every_route_has_a_decision(server: Server) -> None:
    with server.client("admin") as c:
        schema = c.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert routes - DECISIONS.keys() == set(), "decide what a gallery-bound key may do (and document it)"
    assert DECISIONS.keys() - routes == set(), "a decided route is gone"


def test_a_bound_key_sees_its_own_gallery(server: Server, world: dict[str, Any]) -> None:
    with _bound(server, world, "operator") as c:
        r = c.get("/api/galleries")
        assert [g["name"] for g in r.json()] == [OWN]
        r = c.get(f"/api/galleries/{OWN}/identities")
        assert [i["name"] for i in r.json()] == ["Barack Obama"]
        assert c.get(f"/api/identities/{world['own']['id']}").status_code == 200
        assert c.get(f"/api/media/{world['own']['sha']}").status_code == 200
        found = c.post("/api/search", files={"file": ("p.jpg", world["obama2"], "image/jpeg")})
        assert [f["decision"] for f in found.json()["faces"]] == ["Barack Obama"]
        # Lin-Manuel Miranda is enrolled in the other gallery only: a bound key's search does not find him.
        found = c.post("/api/search", files={"file": ("p.png", world["photo"], "image/png")})
        assert found.status_code == 200 and [f["decision"] for f in found.json()["faces"]] == [None]
        _no_leak(found, world)
        for url in ("/api/alarms", "/api/alarms?kind=stranger", "/api/investigations/sightings"):
            r = c.get(url)
            assert r.status_code == 200 and r.json() == [], (url, r.text[:300])
        stranger = world["stranger"]
        for url in (f"/api/alarms/{stranger['id']}", f"/api/media/{stranger['crop_sha256']}"):
            assert c.get(url).status_code == 404, url
        review = {"action": "confirm", "version": stranger["version"]}
        assert c.post(f"/api/alarms/{stranger['id']}/review", json=review).status_code == 404
    with _bound(server, world, "supervisor") as c:
        assert c.get("/api/compare").json() == []
        r = c.post("/api/compare", json={"case": "c-3", "gallery_a": OWN, "gallery_b": OWN})
        assert r.status_code == 202, r.text
        assert [j["id"] for j in c.get("/api/compare").json()] == [r.json()["id"]]


def test_naming_an_unknown_gallery_reveals_no_other(server: Server, world: dict[str, Any]) -> None:
    with _bound(server, world) as c:
        for r in (c.get("/api/galleries/nobody"), c.get("/api/alarms", params={"gallery": "nobody"})):
            assert r.status_code == 404
            _no_leak(r, world)


@pytest.mark.parametrize("role", ROLES)
def test_route_matrix(server: Server, world: dict[str, Any], role: str) -> None:
    """Each route for a key of ``role`` bound to ``staff``: 403 where the role or the binding forbids it,
    404 where it names the other gallery's data, never a 500, and never the other gallery's data."""
    tried = 0
    with _bound(server, world, role) as c:
        for (method, path), decision in DECISIONS.items():
            allowed = role in world["roles"].get((method, path), set(ROLES))
            kw = _request(method, path, world)
            r = c.request(method, **kw)
            where = (role, method, path, r.status_code, r.text[:200])
            assert r.status_code < 500, where
            if not allowed or decision == "whole":
                assert r.status_code == 403, where
            elif decision == "other":
                assert r.status_code == 404, where
            _no_leak(r, world)
            tried += 1
    assert tried == len(DECISIONS)


def test_the_other_gallery_is_untouched(server: Server, world: dict[str, Any]) -> None:
    """After every bound key has tried every route, the other gallery is as it was."""
    with server.client("admin") as c:
        g = c.get(f"/api/galleries/{OTHER}").json()
        assert g["identities"] == 1 and g["purpose"] == "test"
        person = c.get(f"/api/identities/{world['other']['id']}").json()
        assert person["name"] == OTHER_PERSON and person["notes"] is None
        alarm = c.get(f"/api/alarms/{world['alarm']['id']}").json()
        assert alarm["state"] == "pending" and alarm["version"] == world["alarm"]["version"]
        dismissed = c.get(f"/api/alarms/{world['negative'][1]}").json()
        assert dismissed["negative"]["id"] == world["negative"][0]
        assert dismissed["negative"]["undone_at"] is None  # no bound key undid it
        assert c.get("/api/galleries/new-by-key").status_code == 404


def test_deleting_its_gallery_revokes_a_bound_key(server: Server) -> None:
    """Deleting the gallery must not leave its keys bound to nothing, that is to every gallery."""
    with server.client("admin") as c:
        assert c.post("/api/galleries", json={"name": "short-lived", "kind": "reference"}).status_code == 201
        key = c.post("/api/keys", json={"name": "short", "role": "operator", "gallery": "short-lived"})
        assert c.delete("/api/galleries/short-lived").status_code == 200
    with httpx.Client(base_url=server.url, headers={"x-api-key": key.json()["key"]}) as c:
        assert c.get("/api/galleries").status_code == 401
