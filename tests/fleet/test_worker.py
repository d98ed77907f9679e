"""`vigil worker` before it runs anything: what it needs (VIGIL_NATS_URL, a pairing), its device file
(mode 0600, a damaged one refused), and clear errors when the server cannot be reached or refuses it.
The worker running for real is in test_fleet_e2e.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from natsserver import free_port
from vigil.cli import cli
from vigil.core.errors import ConfigError
from vigil.fleet.worker import (
    DeviceFile,
    ServerClient,
    ServerUnreachableError,
    device_file,
    load_device,
    pair,
    save_device,
)


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
