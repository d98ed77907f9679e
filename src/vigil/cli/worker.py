"""`vigil worker`: run this machine's cameras for a vigil server (see :mod:`vigil.fleet.worker`)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from vigil.cli import common
from vigil.cli.common import JsonOpt, handle_errors, out
from vigil.events.schemas import Alarm


def _status_line(status: dict[str, Any]) -> str:
    """``pole-17 | server ok | nats up | outbox 0 waiting, 12 sent | gate: running, 240 frames, 1 alarm``."""
    box = status["outbox"]
    parts = [
        status["device"],
        "server ok" if status["server_ok"] else "server unreachable",
        "nats up" if box.get("connected") else "nats down",
        f"outbox {box.get('depth', 0)} waiting, {box.get('sent', 0)} sent",
    ]
    for name, cam in sorted(status["cameras"].items()):
        alarms = cam["alarms"]
        parts.append(f"{name}: {cam['state']}, {cam['frames']} frames, {alarms} alarm{'s' * (alarms != 1)}")
    if not status["cameras"]:
        parts.append("no camera assigned")
    return " | ".join(parts)


@handle_errors
def worker(
    server: Annotated[
        str | None, typer.Option(help="the vigil server, e.g. http://10.0.0.5:8080 (needed to pair)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="VIGIL_PAIRING_TOKEN", help="the one-time token of `vigil devices add` (first run)"
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="this worker's own data directory (default VIGIL_DATA_DIR)"),
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Run the cameras a vigil server assigned to this device and send it their events.

    The first run pairs (--server, --token); the credential is kept in <data dir>/device.json (0600).
    Later runs need neither. Needs VIGIL_NATS_URL. Ctrl-C or SIGTERM stops it cleanly.
    """
    from vigil.fleet.worker import Worker, alarm_line, pair

    if data_dir is not None:
        common.set_data_dir(data_dir)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    settings = common.settings()
    if not settings.nats_url:
        from vigil.core.errors import ConfigError

        raise ConfigError(
            "the worker sends its events through NATS and VIGIL_NATS_URL is not set",
            hint="set VIGIL_NATS_URL to the broker the server consumes from, e.g. nats://server:4222",
        )
    device = pair(settings.data_dir, server, token)
    lock = threading.Lock()

    def say(line: dict[str, Any] | str) -> None:
        with lock:
            if isinstance(line, str):
                out.print(line, markup=False)
            else:
                sys.stdout.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
                sys.stdout.flush()

    def on_status(status: dict[str, Any]) -> None:
        say({"type": "status", **status} if as_json else _status_line(status))

    def on_alarm(alarm: Alarm) -> None:
        if as_json:
            say(alarm_line(alarm))
        else:
            say(
                f"alarm: {alarm.identity or 'stranger'} ({alarm.gallery or '-'}) on {alarm.camera}, "
                f"score {alarm.score:.3f}"
            )

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not as_json:
        site = device.site or "-"
        say(f"vigil worker: device {device.device} (site {site}) of {device.server}; Ctrl-C stops")
    Worker(common.app(), device, on_status=on_status, on_alarm=on_alarm).run(stop)
    if not as_json:
        say("stopped")
