"""Every endpoint refuses the roles it does not allow: each route's declared roles are read from the
application, and every other role is tried against the real server."""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute
from harness import ROLES, Server

from vigil.core.config import Settings
from vigil.server.app import create_app
from vigil.server.deps import principal

OPEN = {"/api/health", "/api/auth/login", "/"}  # "/" is the UI shell: the log-in page, no data
DEVICES = {"/api/fleet/pair", "/api/fleet/config", "/api/fleet/heartbeat"}
"""The edge devices' routes: no user role, a device's pairing token or credential (test_devices_api)."""


def _roles(dependant: Any) -> set[str] | None:
    """The roles a route's dependencies allow (None: any logged-in caller)."""
    found: set[str] | None = None
    for dep in dependant.dependencies:
        call = dep.call
        cells = dict(zip(call.__code__.co_freevars, call.__closure__ or (), strict=True)) if call else {}
        if "allowed" in cells:
            roles = {r.value for r in cells["allowed"].cell_contents}
            found = roles if found is None else found & roles
        elif call is principal:
            found = found if found is not None else set(ROLES)
        sub = _roles(dep)
        if sub is not None:
            found = sub if found is None else found & sub
    return found


def _flatten(routes: list[Any]) -> list[Any]:
    """Routes, with those of included routers (FastAPI keeps them behind the router)."""
    flat = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        flat.extend(_flatten(inner.routes) if inner is not None else [r])
    return flat


def _routes(tmp_path_factory: Any) -> list[tuple[str, str, set[str]]]:
    api = create_app(Settings(data_dir=tmp_path_factory.mktemp("introspect")), start_cameras=False)
    out = []
    for route in _flatten(api.routes):
        if not isinstance(route, APIRoute) or route.path in OPEN | DEVICES:
            continue
        roles = _roles(route.dependant)
        assert roles is not None, f"{route.path} has no access check"
        for method in route.methods - {"HEAD"}:
            out.append((method, route.path, roles))
    return out


def test_every_route_checks_its_roles(server: Server, tmp_path_factory: Any) -> None:
    routes = _routes(tmp_path_factory)
    assert len(routes) >= 40
    tried = 0
    for method, path, allowed in routes:
        url = re.sub(r"\{[^}]+\}", "1", path)
        for role in set(ROLES) - allowed:
            with server.client(role) as c:
                r = c.request(method, url)
            assert r.status_code == 403, (role, method, path, r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith("application/problem+json")
            tried += 1
    assert tried >= 60
