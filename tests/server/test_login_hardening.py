"""Log-in hardening (issue 16.8): throttling per account and per client with back-off, a bounded
audit of failed log-ins, password strength, admin-set passwords are one-time, a password change ends
the other sessions; the same rules from the CLI."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import PASSWORD, Server, start_server, stop_server
from typer.testing import CliRunner

from vigil import accounts
from vigil.app import App
from vigil.cli import cli
from vigil.core.config import Settings
from vigil.storage import audit

PROBLEM = "application/problem+json"
FREE, CLIENT_FREE = 3, 8
_clients = itertools.count(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose throttle engages after 3 failures of an account and 8 of a client, for 1 s."""
    env = {
        "VIGIL_LOGIN_FREE_FAILURES": str(FREE),
        "VIGIL_LOGIN_CLIENT_FREE_FAILURES": str(CLIENT_FREE),
        "VIGIL_LOGIN_BACKOFF_S": "1",
        "VIGIL_LOGIN_MAX_BACKOFF_S": "4",
    }
    s = start_server(tmp_path_factory.mktemp("login"), env)
    yield s
    stop_server(s)


def from_client() -> dict[str, str]:
    """Headers that make the next requests come from a client of their own: uvicorn takes the client
    address from X-Forwarded-For when the proxy is this machine (the tests' 127.0.0.1)."""
    n = next(_clients)
    return {"x-forwarded-for": f"10.0.{n // 250}.{n % 250 + 1}"}


def log_in(server: Server, username: str, password: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        server.url + "/api/auth/login",
        json={"username": username, "password": password},
        headers=headers,
        timeout=30,
    )


def audit_rows(server: Server, action: str) -> list[dict[str, Any]]:
    with server.client("auditor") as c:
        r = c.get("/api/audit", params={"action": action, "limit": 10_000})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def assert_throttled(r: httpx.Response) -> int:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["status"] == 429 and "too many failed log-ins" in r.json()["detail"]
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= 4
    return retry


def test_an_account_is_throttled_after_failures_even_for_the_right_password(server: Server) -> None:
    me = from_client()
    audited_before = len([e for e in audit_rows(server, "login_failed") if e["target_name"] == "operator"])
    for _ in range(FREE):
        assert log_in(server, "operator", "not the password", me).status_code == 401
    # The right password, refused without being checked; from another client too (the account counts).
    retry = assert_throttled(log_in(server, "operator", PASSWORD, me))
    assert_throttled(log_in(server, "operator", PASSWORD, from_client()))
    failed = [e for e in audit_rows(server, "login_failed") if e["target_name"] == "operator"]
    assert len(failed) - audited_before == FREE  # refused attempts are not audited
    assert failed[0]["detail"]["failures"] == FREE and failed[0]["detail"]["client"] == me["x-forwarded-for"]
    time.sleep(retry + 0.2)
    assert log_in(server, "operator", PASSWORD, me).status_code == 200
    # The success cleared the account's failures: a wrong password is a 401 again, not a 429.
    assert log_in(server, "operator", "not the password", me).status_code == 401
    assert log_in(server, "operator", PASSWORD, me).status_code == 200


def test_the_wait_doubles_with_each_failure(server: Server) -> None:
    me = from_client()
    for _ in range(FREE):
        assert log_in(server, "auditor", "not the password", me).status_code == 401
    first = assert_throttled(log_in(server, "auditor", "not the password", me))
    time.sleep(first + 0.2)
    assert log_in(server, "auditor", "not the password", me).status_code == 401
    second = assert_throttled(log_in(server, "auditor", PASSWORD, me))
    assert second >= 2 * first - 1
    time.sleep(second + 0.2)
    assert log_in(server, "auditor", PASSWORD, me).status_code == 200


def test_a_client_is_throttled_across_names(server: Server) -> None:
    me = from_client()
    for i in range(CLIENT_FREE):
        assert log_in(server, f"guess-{i}", "not the password", me).status_code == 401
    # Another account from the same client waits too, right password or not.
    assert_throttled(log_in(server, "supervisor", PASSWORD, me))
    # The account itself is fine from anywhere else.
    assert log_in(server, "supervisor", PASSWORD, from_client()).status_code == 200


def test_unknown_names_do_not_grow_the_audit_log(server: Server) -> None:
    names = [f"attacker-chosen-name-{i}" for i in range(40)]
    for name in names:  # each from its own client, so no throttle gets in the way
        assert log_in(server, name, "whatever it is", from_client()).status_code == 401
    with server.client("auditor") as c:
        everything = c.get("/api/audit", params={"limit": 10_000}).json()
    text = str(everything)
    assert not any(name in text for name in names)
    summaries = [e for e in everything if e["action"] == "login_failed_unknown"]
    assert len(summaries) <= 1, summaries  # at most one per VIGIL_LOGIN_UNKNOWN_AUDIT_S (an hour)
    assert all(e["detail"]["failures"] >= 1 for e in summaries)


@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("aaaaaaaaaa", ("too easy to guess", "repeats")),
        ("password12", ("too easy to guess", "common password")),
        (" " * 10, ("too easy to guess", "repeats")),
        ("qwertyuiop", ("too easy to guess", "common password")),
        ("short", ("too short",)),
        ("x" * 200, ("too long",)),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(
    server: Server, password: str, words: tuple[str, ...]
) -> None:
    with server.client("admin") as admin:
        r = admin.post("/api/users", json={"username": "weakling", "role": "operator", "password": password})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    for w in words:
        assert w in body["detail"], body
    if "too easy" in body["detail"]:
        assert "strength" in body["detail"] and body["hint"]  # zxcvbn's suggestion


def test_a_password_set_by_an_admin_must_be_changed(server: Server) -> None:
    with server.client("admin") as admin:
        r = admin.post(
            "/api/users",
            json={"username": "carol", "role": "operator", "password": "an admin chose this one"},
        )
    assert r.status_code == 201, r.text
    assert r.json()["must_change_password"] is True and r.json()["one_time_password"] is None
    c, csrf = server.login("carol", "an admin chose this one")
    assert c.get("/api/auth/me").json()["must_change_password"] is True
    assert c.get("/api/alarms").status_code == 403
    h = {"x-csrf-token": csrf}
    weak = c.post(
        "/api/auth/password",
        json={"current_password": "an admin chose this one", "new_password": "password12"},
        headers=h,
    )
    assert weak.status_code == 422 and "common password" in weak.json()["detail"]


def test_a_password_change_ends_the_other_sessions(server: Server) -> None:
    with server.client("admin") as admin:
        created = admin.post("/api/users", json={"username": "dave", "role": "operator"}).json()
    otp = created["one_time_password"]
    here, csrf = server.login("dave", otp)
    elsewhere, _ = server.login("dave", otp)
    r = here.post(
        "/api/auth/password",
        json={"current_password": otp, "new_password": "dave's own passphrase"},
        headers={"x-csrf-token": csrf},
    )
    assert r.status_code == 200, r.text
    assert here.get("/api/alarms").status_code == 200  # the session that changed it stays
    assert elsewhere.get("/api/auth/me").status_code == 401
    third, _ = server.login("dave", "dave's own passphrase")
    with server.client("admin") as admin:
        reset = admin.post(f"/api/users/{created['id']}/reset-password")
    assert reset.status_code == 200
    assert here.get("/api/auth/me").status_code == 401  # an admin reset ends every session
    assert third.get("/api/auth/me").status_code == 401
    c, _ = server.login("dave", reset.json()["one_time_password"])
    assert c.get("/api/auth/me").json()["must_change_password"] is True


def test_an_admin_reset_ends_an_accounts_lock_out(server: Server) -> None:
    me = from_client()
    with server.client("admin") as admin:
        created = admin.post("/api/users", json={"username": "erin", "role": "operator"}).json()
        for _ in range(FREE):
            assert log_in(server, "erin", "not the password", me).status_code == 401
        assert_throttled(log_in(server, "erin", created["one_time_password"], from_client()))
        otp = admin.post(f"/api/users/{created['id']}/reset-password").json()["one_time_password"]
    assert log_in(server, "erin", otp, from_client()).status_code == 200


# -- the same rules from the command line --------------------------------------------------------------


def test_the_cli_applies_the_same_rules(tmp_path: Path) -> None:
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["--data-dir", str(tmp_path / "data"), *args])

    weak = run("users", "create", "frank", "--role", "operator", "--password", "password12")
    assert weak.exit_code == 3, weak.output
    assert "too easy to guess" in weak.stderr and "common password" in weak.stderr
    ok = run("users", "create", "frank", "--role", "operator", "--password", "frank's long phrase", "--json")
    assert ok.exit_code == 0, ok.output
    assert '"must_change_password": true' in ok.stdout
    reset = run("users", "reset-password", "frank")
    assert reset.exit_code == 0 and "one-time password" in reset.stdout
    app = App(Settings(data_dir=tmp_path / "data"))
    try:
        actions = [e.action for e in audit.entries(app)]
    finally:
        app.close()
    assert actions == ["user_create", "password_reset"]


# -- the throttle itself, on a clock of our own --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: Clock, **kw: Any) -> accounts.LoginThrottle:
    settings = Settings(
        login_free_failures=2, login_backoff_s=1, login_max_backoff_s=4, login_forget_s=60, **kw
    )
    return accounts.LoginThrottle(settings, clock=clock)


def _wait(t: accounts.LoginThrottle, name: str = "ada", client: str | None = "c") -> int | None:
    try:
        t.attempt(name, client)
    except accounts.TooManyAttemptsError as e:
        return e.retry_after_s
    return None


def test_throttle_backs_off_exponentially_up_to_the_cap() -> None:
    clock = Clock()
    t = _throttle(clock)
    waits = []
    for _ in range(6):  # every attempt fails; try again the moment it is allowed
        wait = _wait(t)
        if wait is not None:
            waits.append(wait)
            clock.now += wait
            assert _wait(t) is None
    assert waits == [1, 2, 4, 4]
    assert t.failures("ada") == 6
    clock.now += 61  # forgotten after login_forget_s
    assert _wait(t) is None and t.failures("ada") == 1


def test_throttle_counts_a_burst_before_the_outcomes() -> None:
    clock = Clock()
    t = _throttle(clock)
    assert _wait(t) is None and _wait(t) is None
    assert _wait(t) == 1  # two attempts in flight already count as failures
    t.succeeded("ada", "c")
    assert _wait(t) is None  # a success clears the account (and takes back its client count)


def test_throttle_tables_are_bounded() -> None:
    t = _throttle(Clock())
    t.max_entries = 100
    for i in range(1000):
        _wait(t, f"name-{i}", f"client-{i}")
    assert len(t._accounts) == 100 and len(t._clients) == 100
