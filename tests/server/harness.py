"""Helpers for server tests: a real `vigil serve` process, a fresh data directory, users and keys."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from vigil import accounts
from vigil.app import App
from vigil.core.config import Settings
from vigil.storage.tables import Role

SHARED_DATA = Path(
    os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")
).resolve()

PASSWORD = "a long test password"
ROLES = ("admin", "supervisor", "operator", "auditor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    keys: dict[str, str] = field(default_factory=dict)
    """role -> API key; also "supervisor2" (a second supervisor, for two-person review)."""

    def client(self, who: str | None = "admin", **kw: object) -> httpx.Client:
        """An API client authenticated with ``who``'s API key (None: anonymous)."""
        headers = {"x-api-key": self.keys[who]} if who else {}
        kw.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=headers, **kw)  # type: ignore[arg-type]

    def login(self, username: str, password: str = PASSWORD) -> tuple[httpx.Client, str]:
        """A browser-like client logged in as ``username`` and its CSRF token."""
        c = httpx.Client(base_url=self.url, timeout=30)
        r = c.post("/api/auth/login", json={"username": username, "password": password})
        r.raise_for_status()
        return c, r.json()["csrf_token"]

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    timeout_s: float = 60,
    keys: dict[str, str] | None = None,
) -> Server:
    """Users ``admin``, ``supervisor``, ``supervisor2``, ``operator``, ``auditor`` (password PASSWORD),
    an API key for each, then `vigil serve` in its own process. Camera files may come from the shared
    test data (``VIGIL_MEDIA_DIRS``). ``keys``: the keys of a server that ran on ``data_dir`` before
    (a restart: no user is made)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if keys is None:
        keys = {}
        app = App(Settings(data_dir=data_dir))
        try:
            for name in (*ROLES, "supervisor2"):
                role = Role(name.rstrip("2"))
                accounts.create_user(app, name, role, PASSWORD)
                keys[name] = accounts.create_api_key(app, f"test-{name}", role).key
        finally:
            app.close()
    port = free_port()
    log = data_dir / "server.log"
    media = json.dumps([str(data_dir / "media"), str(SHARED_DATA)])  # camera files: the test clips
    full_env = {
        **os.environ,
        "VIGIL_DATA_DIR": str(data_dir),
        "VIGIL_PORT": str(port),
        "VIGIL_MEDIA_DIRS": media,
        **(env or {}),
    }
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vigil", "serve"], env=full_env, stdout=fh, stderr=subprocess.STDOUT
        )
    server = Server(f"http://127.0.0.1:{port}", data_dir, proc, log, keys)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vigil serve exited with {proc.returncode}:\n{server.logs()}")
        try:
            if httpx.get(server.url + "/api/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"vigil serve did not answer in {timeout_s} s:\n{server.logs()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)


def wait_for(predicate, timeout_s: float = 60, interval_s: float = 0.3):  # type: ignore[no-untyped-def]
    """Poll ``predicate()`` until it returns something truthy; return it (or fail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")
