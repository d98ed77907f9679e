"""Accounts over a real server: no anonymous access, roles, sessions with CSRF, one-time passwords."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness import PASSWORD, Server

PROBLEM = "application/problem+json"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_health_is_the_only_anonymous_endpoint(server: Server) -> None:
    with server.client(None) as anon:
        assert anon.get("/api/health").json()["status"] == "ok"
        spec = server.client("admin").get("/openapi.json").json()
        checked = 0
        for path, methods in spec["paths"].items():
            if path in ("/api/health", "/api/auth/login", "/api/fleet/pair"):
                continue  # the device's pairing takes its one-time token, no log-in (test_devices_api)
            for method in methods:
                r = anon.request(method.upper(), _concrete(path))
                assert r.status_code == 401, (method, path, r.status_code, r.text)
                assert r.headers["content-type"].startswith(PROBLEM)
                assert r.json()["status"] == 401
                checked += 1
        assert checked >= 30


def test_wrong_key_is_refused(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers={"x-api-key": "vgl_not-a-key"}) as c:
        r = c.get("/api/galleries")
    assert r.status_code == 401
    assert "unknown or revoked" in r.json()["detail"]


@pytest.mark.parametrize(
    ("who", "method", "path", "allowed"),
    [
        ("operator", "POST", "/api/galleries", False),
        ("auditor", "GET", "/api/galleries", False),
        ("operator", "GET", "/api/galleries", True),
        ("supervisor", "GET", "/api/users", False),
        ("operator", "POST", "/api/keys", False),
        ("auditor", "GET", "/api/alarms", True),
        ("auditor", "GET", "/api/cameras", False),
        ("operator", "POST", "/api/cameras", False),
        ("auditor", "POST", "/api/search", False),
        ("admin", "GET", "/api/users", True),
    ],
)
def test_roles(server: Server, who: str, method: str, path: str, allowed: bool) -> None:
    body = {"name": "x", "kind": "reference"} if path.endswith("galleries") else {}
    with server.client(who) as c:
        r = c.request(method, path, json=body if method == "POST" else None)
    if allowed:
        assert r.status_code < 400, r.text
    else:
        assert r.status_code == 403, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        assert who in r.json()["detail"]


def test_session_login_and_csrf(server: Server) -> None:
    c, csrf = server.login("supervisor")
    assert c.get("/api/auth/me").json()["role"] == "supervisor"
    spec = {"name": "csrf-test", "kind": "reference"}
    r = c.post("/api/galleries", json=spec)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert c.post("/api/galleries", json=spec, headers={"x-csrf-token": "wrong"}).status_code == 403
    assert c.post("/api/galleries", json=spec, headers={"x-csrf-token": csrf}).status_code == 201
    assert c.post("/api/auth/logout", headers={"x-csrf-token": csrf}).status_code == 200
    assert c.get("/api/galleries").status_code == 401


def test_wrong_password(server: Server) -> None:
    r = httpx.post(server.url + "/api/auth/login", json={"username": "operator", "password": "nope"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith(PROBLEM)
    r = httpx.post(server.url + "/api/auth/login", json={"username": "nobody", "password": PASSWORD})
    assert r.status_code == 401


def test_one_time_password_must_be_changed(server: Server) -> None:
    with server.client("admin") as admin:
        created = admin.post("/api/users", json={"username": "newbie", "role": "operator"})
    assert created.status_code == 201
    otp = created.json()["one_time_password"]
    c, csrf = server.login("newbie", otp)
    assert c.get("/api/auth/me").json()["must_change_password"] is True
    r = c.get("/api/alarms")
    assert r.status_code == 403 and "one-time password" in r.json()["detail"]
    h = {"x-csrf-token": csrf}
    short = c.post("/api/auth/password", json={"current_password": otp, "new_password": "short"}, headers=h)
    assert short.status_code == 422
    ok = c.post(
        "/api/auth/password", json={"current_password": otp, "new_password": "a better password"}, headers=h
    )
    assert ok.status_code == 200, ok.text
    assert c.get("/api/alarms").status_code == 200


def test_revoked_key_stops_working(server: Server) -> None:
    with server.client("admin") as admin:
        new = admin.post("/api/keys", json={"name": "temp", "role": "operator"}).json()
        with httpx.Client(base_url=server.url, headers={"x-api-key": new["key"]}) as c:
            assert c.get("/api/alarms").status_code == 200
            assert admin.delete(f"/api/keys/{new['id']}").status_code == 200
            assert c.get("/api/alarms").status_code == 401
        listed = admin.get("/api/keys").json()
        assert all("key" not in k for k in listed)


def test_api_docs_need_a_login_and_work_offline(server: Server) -> None:
    with server.client(None) as anon:
        assert anon.get("/openapi.json").status_code == 401
        assert anon.get("/docs").status_code == 401
    with server.client("operator") as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
        assert "cdn" not in page.text.lower()
        assert c.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert c.get("/openapi.json").json()["info"]["title"] == "vigil"


def test_config_file_rejects_unknown_keys(tmp_path: Path) -> None:
    good = tmp_path / "vigil.toml"
    good.write_text(f'data_dir = "{tmp_path / "data"}"\nport = 9123\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("port = 9123\nrace_field = true\n")
    run = [sys.executable, "-m", "vigil", "gallery", "list", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    ok = subprocess.run(run, env={**env, "VIGIL_CONFIG": str(good)}, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "data" / "vigil.db").is_file()
    refused = subprocess.run(run, env={**env, "VIGIL_CONFIG": str(bad)}, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "race_field" in refused.stderr and "Extra inputs are not permitted" in refused.stderr
    missing = subprocess.run(
        run, env={**env, "VIGIL_CONFIG": str(tmp_path / "nope.toml")}, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "not a file" in missing.stderr
