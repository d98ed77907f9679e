"""``vigil worker``: the camera worker on an edge machine (a pole, a site's box).

A worker is an ordinary vigil data directory plus three files of its own:

- ``device.json`` (mode 0600): the server's address, the device's name, its credential and signing
  key, written once when the worker pairs with its one-time token (later runs need no token);
- ``outbox.sqlite3``: the events waiting for the broker (:class:`~vigil.fleet.outbox.Outbox`);
- its catalog, a mirror of what the server allows it (:mod:`vigil.fleet.mirror`).

:class:`Worker` then loops until stopped:

- every ``fleet_poll_s`` it asks the server for its configuration (``If-None-Match``: a 304 while
  nothing changed), mirrors a change, and starts or stops one camera thread per assigned, enabled
  camera. Each thread runs :func:`vigil.video.watch.watch` with a
  :class:`~vigil.fleet.transport.Forwarder` as its sink, so every event goes to the outbox;
- a :class:`~vigil.fleet.transport.Publisher` drains the outbox to ``VIGIL_NATS_URL``;
- every ``fleet_heartbeat_s`` it reports its version, queue depth, cameras and outbox.

The server or the broker being down stops nothing: the cameras keep running and their events wait
in the outbox; polling and heartbeats try again with a back-off (logged once per outage). A revoked
device is told so by the server (403) and the worker ends with :class:`DeviceRevokedError`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from vigil import __version__
from vigil.accounts import AuthError
from vigil.app import App
from vigil.core.errors import ConfigError, ForbiddenError, InputError, VigilError
from vigil.events.schemas import Alarm, public
from vigil.fleet.config import DeviceCamera, DeviceConfig
from vigil.fleet.mirror import apply_config, check_model
from vigil.fleet.outbox import Outbox
from vigil.fleet.transport import Forwarder, Publisher
from vigil.storage.tables import Camera

log = logging.getLogger(__name__)

DEVICE_FILE = "device.json"
OUTBOX_FILE = "outbox.sqlite3"
MAX_BACKOFF_S = 10.0
"""Polls and heartbeats that fail are tried again after 1, 2, 4 ... up to this many seconds."""
REFRESH_WAIT_S = 2.0
"""How long a mirror change waits for the running cameras to look the watchlists up again."""
CAMERA_RESTART_S = 5.0
"""A camera thread that failed starts again after this long."""


class DeviceRevokedError(ForbiddenError):
    title = "device revoked"


class ServerUnreachableError(VigilError):
    title = "server unreachable"


class DeviceFile(BaseModel):
    """What pairing gave this device, kept in ``<data dir>/device.json``."""

    server: str
    device: str
    site: str | None
    credential: str
    signing_key: str
    """Hex."""
    paired_at: datetime


def device_file(data_dir: Path) -> Path:
    return data_dir / DEVICE_FILE


def save_device(path: Path, device: DeviceFile) -> None:
    """Write ``device.json`` readable by its owner only (mode 0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(device.model_dump_json(indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_device(path: Path) -> DeviceFile | None:
    """The saved pairing, None if there is none; :class:`ConfigError` if the file is damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return DeviceFile.model_validate_json(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{path} is damaged ({exc.error_count()} problems)",
            hint="delete it and pair again with a new token (`vigil devices token NAME` on the server)",
        ) from exc


class ServerClient:
    """The device's calls to its server (``/api/fleet/*``), errors translated to vigil's."""

    def __init__(self, server: str, credential: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Device {credential}"} if credential else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ServerUnreachableError(f"{self.server}: {type(exc).__name__}: {exc}") from exc
        if r.status_code in (401, 403):
            detail = _detail(r)
            if r.status_code == 403 or "revoked" in detail:
                raise DeviceRevokedError(
                    f"the server refused this device: {detail}",
                    hint="an admin revoked it; add the device again and pair with the new token",
                )
            raise AuthError(
                f"the server refused the credential: {detail}", hint="pair again with a new token"
            )
        if r.status_code >= 500 or r.status_code == 429:
            raise ServerUnreachableError(f"{self.server}{path}: HTTP {r.status_code}: {_detail(r)}")
        if r.status_code >= 400:
            raise InputError(f"{self.server}{path}: HTTP {r.status_code}: {_detail(r)}")
        return r

    def pair(self, token: str) -> dict[str, Any]:
        r = self._call("POST", "/api/fleet/pair", json={"token": token, "version": __version__})
        data: dict[str, Any] = r.json()
        return data

    def config(self, etag: str | None) -> tuple[DeviceConfig | None, str | None]:
        """The configuration, or None when it did not change since ``etag``; and the new etag."""
        headers = {"If-None-Match": etag} if etag else {}
        r = self._call("GET", "/api/fleet/config", headers=headers)
        if r.status_code == 304:
            return None, etag
        try:
            return DeviceConfig.model_validate_json(r.content), r.headers.get("ETag")
        except ValidationError as exc:
            raise InputError(
                f"{self.server} sent a configuration this worker cannot read ({exc.error_count()} problems)",
                hint="run the same vigil version on the server and the worker",
            ) from exc

    def heartbeat(self, body: dict[str, Any]) -> None:
        self._call("POST", "/api/fleet/heartbeat", json=body)


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    return str(body.get("detail") or body.get("title") or body)[:300] if isinstance(body, dict) else str(body)


def pair(data_dir: Path, server: str | None, token: str | None) -> DeviceFile:
    """The device's pairing: the saved one, or a new one made with ``token`` (and saved).

    A saved pairing for another server, or none and no token, is a :class:`ConfigError`.
    """
    path = device_file(data_dir)
    saved = load_device(path)
    if saved is not None:
        if server and server.rstrip("/") != saved.server:
            raise ConfigError(
                f"this data directory is paired with {saved.server}, not {server}",
                hint=f"use another --data-dir, or delete {path} to pair again",
            )
        return saved
    if not server or not token:
        raise ConfigError(
            f"this worker is not paired yet ({path} does not exist)",
            hint="give --server URL and --token TOKEN (from `vigil devices add NAME --site SITE`)",
        )
    client = ServerClient(server)
    try:
        got = client.pair(token)
    finally:
        client.close()
    device = DeviceFile(
        server=server.rstrip("/"),
        device=got["device"],
        site=got.get("site"),
        credential=got["credential"],
        signing_key=got["signing_key"],
        paired_at=datetime.now(UTC),
    )
    save_device(path, device)
    return device


class _RefreshHook:
    """An annotator that only asks the camera's pipeline to look its watchlists up again when told:
    it runs in the camera's own thread, once per frame (see :meth:`Pipeline.refresh_watchlists`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._wanted = 0
        self._done = 0

    def request(self) -> int:
        with self._cond:
            self._wanted += 1
            return self._wanted

    def wait(self, ticket: int, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._done >= ticket, timeout=timeout_s)

    def draw(self, frame: Any, tracked: Any, pipeline: Any) -> None:
        wanted = self._wanted
        if wanted != self._done:
            pipeline.refresh_watchlists()
            with self._cond:
                self._done = wanted
                self._cond.notify_all()

    def close(self) -> None:
        pass


class CameraRunner:
    """One camera's thread: :func:`~vigil.video.watch.watch` with the forwarder as its sink, started
    again after a failure; a file played to its end stays finished."""

    def __init__(
        self, app: App, camera: DeviceCamera, sink: Forwarder, on_alarm: Callable[[Alarm], None]
    ) -> None:
        self.app = app
        self.camera = camera
        self.sink = sink
        self.on_alarm = on_alarm
        self.stop_event = threading.Event()
        self.hook = _RefreshHook()
        self.state = "starting"
        self.frames = 0
        self.alarms = 0
        self.restarts = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._main, name=f"vigil-camera-{camera.name}", daemon=True)

    def start(self) -> CameraRunner:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout_s)
        self.state = "stopped"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def refresh(self, timeout_s: float) -> None:
        """Have the pipeline look its watchlists up again; wait for it while it is running frames."""
        ticket = self.hook.request()
        if self.alive and self.state == "running":
            self.hook.wait(ticket, timeout_s)

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "frames": self.frames,
            "alarms": self.alarms,
            "restarts": self.restarts,
            "error": self.last_error,
        }

    def _main(self) -> None:
        from vigil.video.cameras import check_media_path
        from vigil.video.watch import watch

        while not self.stop_event.is_set():
            try:
                check_media_path(self.app.settings, self.camera.url)
                self.state = "running"
                summary = watch(
                    self.app,
                    None,
                    camera=self.camera.name,
                    realtime=True,
                    resume=True,
                    fail_fast=False,
                    sink=self.sink,
                    stop=self.stop_event,
                    annotator=self.hook,
                    on_event=self._event,
                    on_metrics=self._metrics,
                    on_warning=lambda m: log.warning("camera %s: %s", self.camera.name, m),
                    actor=f"camera:{self.camera.name}",
                )
                self._metrics(summary)
                if not self.stop_event.is_set():
                    self.state = "finished"
                return
            except Exception as exc:  # a camera that fails is tried again; the others run on
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:  # logged once, not every try
                    log.error(
                        "camera %s failed (%s); tried again every %.0f s",
                        self.camera.name,
                        exc,
                        CAMERA_RESTART_S,
                    )
                self.last_error = error
                self.state = "failed"
                self.restarts += 1
                self.stop_event.wait(CAMERA_RESTART_S)

    def _event(self, event: Any) -> None:
        if isinstance(event, Alarm):
            self.on_alarm(event)
        elif getattr(event, "type", None) == "camera_offline":
            self.state = "offline"
        elif getattr(event, "type", None) == "camera_online":
            self.state = "running"

    def _metrics(self, m: dict[str, Any]) -> None:
        """The running summary of the current run (frames and alarms since this thread started it)."""
        self.frames = int(m.get("frames") or 0)
        self.alarms = int(m.get("alarms") or 0)


class _Backoff:
    """When to try a failing call again (1, 2, 4 ... ``MAX_BACKOFF_S``), logging once per outage."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.delay_s = 0.0
        self.failing_since: float | None = None

    def failed(self, exc: Exception) -> float:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("%s failed (%s); trying again with a back-off", self.what, exc)
        self.delay_s = min(max(1.0, self.delay_s * 2), MAX_BACKOFF_S)
        return self.delay_s

    def ok(self) -> None:
        if self.failing_since is not None:
            log.warning("%s works again after %.0f s", self.what, time.monotonic() - self.failing_since)
        self.failing_since, self.delay_s = None, 0.0


class Worker:
    """The edge worker's loop (see the module). ``run(stop)`` until ``stop`` is set.

    Args:
        app: the worker's application context (its own data directory).
        device: its pairing (:func:`pair`).
        on_status: called every ``fleet_heartbeat_s`` with :meth:`status`.
        on_alarm: called (from a camera thread) with each alarm sent to the outbox.
    """

    def __init__(
        self,
        app: App,
        device: DeviceFile,
        *,
        on_status: Callable[[dict[str, Any]], None] | None = None,
        on_alarm: Callable[[Alarm], None] | None = None,
    ) -> None:
        settings = app.settings
        if not settings.nats_url:
            raise ConfigError(
                "the worker sends its events through NATS and VIGIL_NATS_URL is not set",
                hint="set VIGIL_NATS_URL to the broker the server consumes from, e.g. nats://server:4222",
            )
        self.app = app
        self.device = device
        self.on_status = on_status or (lambda s: None)
        self.on_alarm = on_alarm or (lambda a: None)
        self.client = ServerClient(device.server, device.credential)
        self.outbox = Outbox(settings.data_dir / OUTBOX_FILE, int(settings.outbox_max_mb * 2**20))
        self.forwarder = Forwarder(self.outbox, device.device, bytes.fromhex(device.signing_key))
        self.publisher = Publisher(self.outbox, settings.nats_url, stream=settings.nats_stream)
        self.cameras: dict[int, CameraRunner] = {}
        self.config: DeviceConfig | None = None
        self.etag: str | None = None
        self.server_ok = False
        self._poll = _Backoff(f"asking {device.server} for the configuration")
        self._beat = _Backoff(f"reporting to {device.server}")

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Poll, mirror, run the cameras and report until ``stop`` is set; everything stopped after.

        Raises :class:`DeviceRevokedError` (or :class:`AuthError`) when the server refuses the device,
        and :class:`ConfigError` when this machine's face model is not the server's.
        """
        self.app.db  # noqa: B018 - open and migrate the catalog first
        self.publisher.start()
        self.start_mirrored()
        next_poll = next_beat = next_status = time.monotonic()
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + self._poll_once()
                if now >= next_beat:
                    next_beat = now + self._beat_once()
                if now >= next_status:  # shown on time, whether the server hears it or not
                    next_status = now + self.app.settings.fleet_heartbeat_s
                    self.on_status(self.status())
                stop.wait(max(0.05, min(next_poll, next_beat, next_status) - time.monotonic()))
        finally:
            self.close()

    def _poll_once(self) -> float:
        """One configuration poll; seconds to the next."""
        try:
            config, etag = self.client.config(self.etag)
        except ServerUnreachableError as exc:
            self.server_ok = False
            return self._poll.failed(exc)
        self._poll.ok()
        self.server_ok = True
        if config is not None:
            self.apply(config)
            self.etag = etag
        return self.app.settings.fleet_poll_s

    def start_mirrored(self) -> None:
        """Start the cameras the local mirror holds, before the server is asked: a device restarted
        while its server is away runs what it ran before (the first answer then brings it up to date)."""
        with self.app.db.session() as s:
            cams = [c for c in s.scalars(select(Camera).order_by(Camera.id)) if c.enabled]
            mirrored = [DeviceCamera(**{k: getattr(c, k) for k in DeviceCamera.model_fields}) for c in cams]
        for cam in mirrored:
            self.cameras[cam.id] = CameraRunner(self.app, cam, self.forwarder, self.on_alarm).start()

    def apply(self, config: DeviceConfig) -> None:
        """Mirror ``config`` and bring the camera threads in line with it."""
        check_model(self.app, config)
        change = apply_config(self.app, config, before_delete=self._refresh_all)
        self.config = config
        if change.changed:
            log.warning("configuration: %s", change.summary())
        wanted = {c.id: c for c in config.cameras if c.enabled}
        for cid in list(self.cameras):
            runner = self.cameras[cid]
            if cid not in wanted or not _same_run(wanted[cid], runner.camera):
                runner.stop()
                del self.cameras[cid]
        for cid, cam in wanted.items():
            if cid not in self.cameras:
                self.cameras[cid] = CameraRunner(self.app, cam, self.forwarder, self.on_alarm).start()
        if change.galleries_added or change.galleries_replaced:
            for runner in self.cameras.values():
                runner.refresh(timeout_s=0)

    def _refresh_all(self) -> None:
        for runner in self.cameras.values():
            runner.refresh(REFRESH_WAIT_S)

    def _beat_once(self) -> float:
        status = self.status()
        body = {
            "version": __version__,
            "queue_depth": status["outbox"]["depth"],
            "cameras": status["cameras"],
            "outbox": status["outbox"],
        }
        try:
            self.client.heartbeat(body)
        except ServerUnreachableError as exc:
            return self._beat.failed(exc)
        self._beat.ok()
        return self.app.settings.fleet_heartbeat_s

    def status(self) -> dict[str, Any]:
        """The device's state: cameras (state, frames, alarms), outbox and link."""
        pub = self.publisher.stats()
        outbox = {
            **self.outbox.stats(),
            "sent": pub.sent,
            "connected": pub.connected,
            "error": pub.last_error,
        }
        return {
            "device": self.device.device,
            "server": self.device.server,
            "server_ok": self.server_ok,
            "cameras": {r.camera.name: r.status() for r in self.cameras.values()},
            "outbox": json.loads(json.dumps(outbox, default=str)),
        }

    def close(self) -> None:
        for runner in self.cameras.values():
            runner.stop_event.set()
        for runner in self.cameras.values():
            runner.stop()
        self.cameras.clear()
        self.publisher.stop()
        self.outbox.close()
        self.client.close()


def _same_run(a: DeviceCamera, b: DeviceCamera) -> bool:
    """Whether a camera thread can go on: only ``keep_sightings`` differs, if anything (the pipeline
    looks that up again by itself; a device that keeps no templates turns it on in its mirror)."""
    return a.model_dump(exclude={"keep_sightings"}) == b.model_dump(exclude={"keep_sightings"})


def alarm_line(alarm: Alarm) -> dict[str, Any]:
    """An alarm as ``vigil worker --json`` prints it (no images)."""
    return {"type": "alarm", **public(alarm)}
