"""`vigil worker` before it runs anything: what it needs (VIGIL_NATS_URL, a pairing), its device file
(mode 0600, a damaged one refused), and clear errors when the server cannot be reached or refuses it.
The worker running for real is in test_fleet_e2e.py."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from natsserver import free_port
from server.harness import wait_for
from vigil.accounts import AuthError
from vigil.app import App
from vigil.cli import cli
from vigil.core.config import Settings
from vigil.core.errors import ConfigError, InputError
from vigil.fleet import devices as fleet
from vigil.fleet.config import device_config
from vigil.fleet.mirror import apply_config
from vigil.fleet.worker import (
    DeviceFile,
    DeviceRevokedError,
    ServerClient,
    ServerUnreachableError,
    Worker,
    device_file,
    load_device,
    pair,
    save_device,
)
from vigil.video import cameras


def _device(server: str = "http://127.0.0.1:9") -> DeviceFile:
    return DeviceFile(
        server=server,
        device="pole-17",
        site="market-street",
        credential="vgd_x",
        signing_key="00" * 32,
        paired_at=datetime.now(UTC),
    )


def _worker(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["worker", "--data-dir", str(tmp_path / "pole"), *args], env=env)
    return result.exit_code, result.stdout + result.stderr


def test_the_worker_needs_the_nats_url(tmp_path: Path) -> None:
    code, text = _worker(
        tmp_path, "--server", "http://127.0.0.1:9", "--token", "vgp_x", env={"VIGIL_NATS_URL": ""}
    )
    assert code == 2 and "VIGIL_NATS_URL is not set" in text, text


def test_a_first_run_needs_a_server_and_a_token(tmp_path: Path) -> None:
    code, text = _worker(tmp_path, env={"VIGIL_NATS_URL": "nats://127.0.0.1:9"})
    assert code == 2 and "not paired yet" in text and "--token" in text, text


def test_an_unreachable_server_at_pairing_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, text = _worker(
        tmp_path, "--server", url, "--token", "vgp_x", env={"VIGIL_NATS_URL": "nats://127.0.0.1:9"}
    )
    assert code != 0 and url in text and "ConnectError" in text, text
    assert not device_file(tmp_path / "pole").exists()


def test_the_device_file_is_private_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    path = device_file(tmp_path)
    save_device(path, _device())
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_device(path)
    assert loaded is not None and (loaded.device, loaded.credential) == ("pole-17", "vgd_x")
    assert pair(tmp_path, None, None).device == "pole-17", "a paired worker needs no token"
    with pytest.raises(ConfigError, match=re.escape("paired with http://127.0.0.1:9, not http://other:8080")):
        pair(tmp_path, "http://other:8080", "vgp_x")
    path.write_text('{"server": "http://x", "device": "\\u0000"')
    with pytest.raises(ConfigError, match="damaged"):
        load_device(path)


def test_server_errors_are_translated(tmp_path: Path) -> None:
    client = ServerClient(f"http://127.0.0.1:{free_port()}", "vgd_x", timeout_s=1)
    with pytest.raises(ServerUnreachableError):
        client.config(None)
    client.close()


@pytest.mark.parametrize(
    ("status", "body", "error", "text"),
    [
        (200, b'{"device": "pole-17"}', InputError, "cannot read"),
        (200, b"\x00" * 100_000, InputError, "cannot read"),
        (403, b'{"detail": "device pole-17 was revoked"}', DeviceRevokedError, "revoked"),
        (401, b'{"detail": "unknown device credential"}', AuthError, "refused the credential"),
        (503, b"busy", ServerUnreachableError, "HTTP 503"),
        (404, b'{"detail": "Not Found"}', InputError, "HTTP 404"),
    ],
)
def test_what_the_server_answers_is_checked(
    status: int, body: bytes, error: type[Exception], text: str
) -> None:
    """A real HTTP server on 127.0.0.1 answering the config poll with each of these."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    client = ServerClient(f"http://127.0.0.1:{httpd.server_address[1]}", "vgd_x", timeout_s=5)
    try:
        with pytest.raises(error, match=text):
            client.config(None)
    finally:
        client.close()
        httpd.shutdown()


def test_a_worker_started_while_its_server_is_away_runs_its_mirrored_cameras(
    tmp_path: Path,
    engine,
    shared_data: Path,  # type: ignore[no-untyped-def]
) -> None:
    """A pole rebooted during an outage: nothing answers (no server, no broker), yet the cameras of its
    last configuration run and their events wait in the outbox."""
    server = App(Settings(data_dir=tmp_path / "server"), engine_override=engine)
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    fleet.add_device(server, "pole-17", site="market-street", actor="test")
    cameras.add_camera(server, "stage", str(clip), device="pole-17")
    config = device_config(server, "pole-17")
    server.close()
    nowhere = f"127.0.0.1:{free_port()}"
    settings = Settings(
        data_dir=tmp_path / "pole",
        nats_url=f"nats://{nowhere}",
        media_dirs=[shared_data],
        fleet_heartbeat_s=0.5,
    )
    app = App(settings, engine_override=engine)
    apply_config(app, config)
    statuses: list[dict[str, Any]] = []
    worker = Worker(app, _device(f"http://{nowhere}"), on_status=statuses.append)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: statuses and statuses[-1]["cameras"].get("stage", {}).get("frames", 0) > 30, 60, 0.1)
        wait_for(lambda: statuses[-1]["outbox"]["depth"] > 0, 30, 0.1)
        assert not statuses[-1]["server_ok"] and not statuses[-1]["outbox"]["connected"]
    finally:
        stop.set()
        thread.join(30)
        app.close()
    assert not thread.is_alive(), "stopped cleanly"
