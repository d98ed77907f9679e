"""The fleet end to end, real processes on 127.0.0.1: a real nats-server (JetStream), a real `vigil serve`
consuming from it, and real `vigil worker` processes with their own data directories, on the dlib pack
the server tests use.

The clip each camera plays is built from the hamilton clip: Lin-Manuel Miranda's close-up (1.6 s)
then 1.5 s of black, 8 times over at 10 frames/s (25 s). Each appearance is a new track, so alarms
come before, during and after an outage. A single box (`vigil watch`) raises 9 alarms on it.

- two workers, the server *and* the broker stopped a second into the clip for 60 s (the clip ends on
  the workers meanwhile: most alarms are raised while both are down): every alarm arrives once, with
  its crop and its device; the server's audit chain verifies;
- a worker killed with -9 mid-clip and started again (no token: it is paired): as many alarms as the
  uninterrupted run of the same clip, on the same appearances, none twice;
- a watchlist created on the server alarms on a worker within 10 s;
- a device that keeps no templates has its sightings matched on the server, which raises its alarms;
- a revoked device is refused at once: its config request gets 403, its worker stops with an error,
  and a message it signed is refused by the server's consumer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from natsserver import NatsServer
from server.harness import Server, start_server, stop_server, wait_for
from vigil.app import App
from vigil.core.config import Settings
from vigil.events.schemas import Alarm, now_utc
from vigil.fleet.outbox import Outbox
from vigil.fleet.transport import Forwarder, Publisher
from vigil.storage import audit
from vigil.storage.tables import Identity, Template

pytestmark = pytest.mark.slow

EXPIRES = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 30 * 86400))
CYCLE = 31
"""Frames per appearance cycle of the clip: 16 of Lin-Manuel Miranda, 15 black."""
CYCLES = 8
OUTAGE_S = 60.0
"""The server and the broker stay down this long (the clip ends on the workers meanwhile)."""
WORKER_ENV = {"VIGIL_FLEET_POLL_S": "1", "VIGIL_FLEET_HEARTBEAT_S": "1"}


def _loop_clip(shared_data: Path, path: Path) -> Path:
    import cv2

    cap = cv2.VideoCapture(str(shared_data / "video" / "short_hamilton_clip.mp4"))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    lin = [frames[i] for i in range(120, 166, 3)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (640, 360))
    for _ in range(CYCLES):
        for f in lin:
            writer.write(f)
        for _ in range(CYCLE - len(lin)):
            writer.write(np.zeros_like(frames[0]))
    writer.release()
    return path


@dataclass
class WorkerProc:
    name: str
    data_dir: Path
    env: dict[str, str]
    server_url: str
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def out(self) -> Path:
        return self.data_dir.parent / f"{self.name}.jsonl"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def start(self, token: str | None = None) -> WorkerProc:
        args = [sys.executable, "-m", "vigil", "worker", "--server", self.server_url]
        args += ["--data-dir", str(self.data_dir), "--json", *(["--token", token] if token else [])]
        with self.out.open("ab") as out, self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=out, stderr=log)
        self.starts += 1
        return self

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.out.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # a line cut by kill -9
        return found

    def alarms(self, camera: str) -> set[tuple[str, int, str]]:
        return {_key(a) for a in self.lines() if a.get("type") == "alarm" and a["camera"] == camera}

    def camera(self, camera: str) -> dict[str, Any] | None:
        """The camera's state in the last status line."""
        statuses = [s for s in self.lines() if s.get("type") == "status"]
        return statuses[-1]["cameras"].get(camera) if statuses else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _key(alarm: dict[str, Any]) -> tuple[str, int, str]:
    return (alarm["camera"], int(alarm["frame"]), alarm["identity"])


@dataclass
class Fleet:
    tmp: Path
    nats: NatsServer
    server: Server
    port: int
    clip: Path
    shared_data: Path
    workers: dict[str, WorkerProc] = field(default_factory=dict)

    def restart_server(self, timeout_s: float = 60) -> None:
        """`vigil serve` again on the same data directory and port (the workers know its address)."""
        old = self.server
        env = {**os.environ, "VIGIL_DATA_DIR": str(old.data_dir), "VIGIL_PORT": str(self.port)}
        env.update(VIGIL_NATS_URL=self.nats.url, VIGIL_MEDIA_DIRS=json.dumps([str(old.data_dir / "media")]))
        with old.log.open("ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vigil", "serve"], env=env, stdout=fh, stderr=subprocess.STDOUT
            )
        self.server = Server(old.url, old.data_dir, proc, old.log, old.keys)

        def up() -> bool:
            assert proc.poll() is None, old.logs()
            try:
                return httpx.get(old.url + "/api/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout_s=timeout_s, interval_s=0.2)

    def add_device(self, name: str, site: str = "market-street") -> str:
        with self.server.client("admin") as c:
            r = c.post("/api/devices", json={"name": name, "site": site})
            assert r.status_code == 201, r.text
            token: str = r.json()["token"]
            return token

    def add_camera(self, name: str, device: str) -> None:
        with self.server.client("supervisor") as c:
            r = c.post("/api/cameras", json={"name": name, "url": str(self.clip), "device": device})
            assert r.status_code == 201, r.text

    def worker(self, name: str) -> WorkerProc:
        media = json.dumps([str(self.tmp), str(self.shared_data)])
        env = {k: v for k, v in os.environ.items() if k != "VIGIL_DATA_DIR"}
        env.update(WORKER_ENV, VIGIL_NATS_URL=self.nats.url, VIGIL_MEDIA_DIRS=media)
        w = WorkerProc(name, self.tmp / name, env, self.server.url)
        self.workers[name] = w
        return w

    def alarms(self, camera: str, gallery: str | None = None) -> list[dict[str, Any]]:
        params = {"camera": camera, "limit": 500, **({"gallery": gallery} if gallery else {})}
        with self.server.client("supervisor") as c:
            found: list[dict[str, Any]] = c.get("/api/alarms", params=params).json()
            return found


def _enrol(c: httpx.Client, gallery: str, shared_data: Path) -> None:
    spec = {"kind": "watchlist", "purpose": "test", "legal_basis": "test order 1"}
    spec |= {"authorized_by": "test judge", "expires_on": EXPIRES}
    assert c.post("/api/galleries", json={"name": gallery, **spec}).status_code == 201
    photo = shared_data / "people" / "lin-manuel-miranda.png"
    with photo.open("rb") as fh:
        r = c.post(
            f"/api/galleries/{gallery}/identities",
            data={"identity": "Lin-Manuel Miranda"},
            files=[("files", (photo.name, fh, "image/png"))],
        )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    nats = NatsServer(tmp / "jetstream").start()
    server = start_server(tmp / "server", {"VIGIL_NATS_URL": nats.url})
    port = int(server.url.rsplit(":", 1)[1])
    f = Fleet(tmp, nats, server, port, _loop_clip(shared_data, tmp / "loop.mp4"), shared_data)
    try:
        with server.client("supervisor") as c:
            _enrol(c, "wanted", shared_data)
        yield f
    finally:
        for w in f.workers.values():
            w.stop()
        stop_server(f.server)
        nats.stop()


def _finished(w: WorkerProc, camera: str) -> bool:
    state = w.camera(camera)
    return state is not None and state["state"] == "finished"


def _check_stored_once(fleet: Fleet, w: WorkerProc, camera: str) -> list[dict[str, Any]]:
    """The server holds each alarm the worker sent, once, named with its device."""
    sent = w.alarms(camera)
    stored = fleet.alarms(camera)
    keys = [_key(a) for a in stored]
    assert len(keys) == len(set(keys)), f"an alarm stored twice: {sorted(keys)}"
    assert set(keys) == sent, (sorted(set(keys) ^ sent), w.log.read_text()[-3000:])
    assert {a["device"] for a in stored} == {w.name}
    return stored


def test_two_workers_through_an_outage_every_alarm_arrives_once_with_its_crop(fleet: Fleet) -> None:
    a, b = fleet.worker("pole-a"), fleet.worker("pole-b")
    for w, cam in ((a, "cam-a"), (b, "cam-b")):
        token = fleet.add_device(w.name)
        fleet.add_camera(cam, w.name)
        w.start(token)
    wait_for(lambda: fleet.alarms("cam-a") and fleet.alarms("cam-b"), timeout_s=120, interval_s=0.2)
    before = len(fleet.alarms("cam-a"))
    stop_server(fleet.server)  # the server and the broker go away mid-clip
    fleet.nats.stop()
    down = time.monotonic()
    wait_for(lambda: _finished(a, "cam-a") and _finished(b, "cam-b"), timeout_s=120)
    assert a.proc and a.proc.poll() is None and b.proc and b.proc.poll() is None, "workers keep running"
    assert len(a.alarms("cam-a")) > before, "alarms were raised while the server was down"
    status = [s for s in a.lines() if s.get("type") == "status"][-1]
    assert status["outbox"]["depth"] > 0 and not status["server_ok"], status
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
    fleet.nats.start()
    fleet.restart_server()
    outage_s = time.monotonic() - down
    for w, cam in ((a, "cam-a"), (b, "cam-b")):
        wait_for(lambda w=w, cam=cam: len(fleet.alarms(cam)) >= len(w.alarms(cam)), timeout_s=60)
        stored = _check_stored_once(fleet, w, cam)
        assert len(stored) >= CYCLES, stored
        with fleet.server.client("supervisor") as c:
            for alarm in stored:
                r = c.get(f"/api/media/{alarm['crop_sha256']}")
                assert r.status_code == 200 and r.content[:2] == b"\xff\xd8", alarm  # a JPEG crop
    assert sorted(f for _, f, _ in a.alarms("cam-a")) == sorted(f for _, f, _ in b.alarms("cam-b"))
    app = App(Settings(data_dir=fleet.server.data_dir))
    try:
        report = audit.verify(app)
        assert report.ok, report
    finally:
        app.close()
    print(f"outage {outage_s:.0f} s; {len(a.alarms('cam-a'))} alarms per camera")


def test_a_worker_killed_mid_clip_loses_nothing_and_repeats_nothing(fleet: Fleet) -> None:
    a = fleet.workers["pole-a"]
    fleet.add_camera("cam-a2", "pole-a")
    wait_for(lambda: len(fleet.alarms("cam-a2")) >= 3, timeout_s=120, interval_s=0.2)
    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    a.start()  # paired already: no token
    wait_for(lambda: _finished(a, "cam-a2"), timeout_s=120)
    wait_for(lambda: len(fleet.alarms("cam-a2")) >= len(a.alarms("cam-a2")), timeout_s=60)
    stored = _check_stored_once(fleet, a, "cam-a2")
    clean = sorted(f for _, f, _ in a.alarms("cam-a"))
    killed = sorted(a["frame"] for a in stored)
    assert len(killed) == len(clean), (killed, clean)
    assert {f // CYCLE for f in killed} == {f // CYCLE for f in clean}, "every appearance, once"


def test_a_watchlist_created_on_the_server_alarms_on_the_worker_within_10_s(fleet: Fleet) -> None:
    """Timed from the moment the watchlist holds its person (the server's enrolment done): from then
    on it can match. The person reappears on the camera every 3.1 s."""
    a = fleet.workers["pole-a"]
    fleet.add_camera("cam-a3", "pole-a")
    wait_for(lambda: (a.camera("cam-a3") or {}).get("frames", 0) > 0, timeout_s=60, interval_s=0.1)
    created = time.monotonic()
    with fleet.server.client("supervisor") as c:
        _enrol(c, "late", fleet.shared_data)
    enrolled = time.monotonic()
    wait_for(lambda: fleet.alarms("cam-a3", "late"), timeout_s=30, interval_s=0.1)
    elapsed = time.monotonic() - enrolled
    print(
        f"new watchlist: enrolled in {enrolled - created:.1f} s, alarmed on the worker {elapsed:.1f} s later"
    )
    assert elapsed < 10, elapsed


def test_a_device_that_keeps_no_templates_has_its_alarms_raised_by_the_server(fleet: Fleet) -> None:
    """Central matching: the device holds the watchlist's people but no template; its sightings'
    templates are matched on the server, which raises the alarms (one per appearance of the clip)."""
    with fleet.server.client("admin") as c:
        r = c.post("/api/devices", json={"name": "pole-c", "site": "market-street", "keeps_templates": False})
        assert r.status_code == 201, r.text
    fleet.add_camera("cam-c", "pole-c")
    w = fleet.worker("pole-c").start(r.json()["token"])
    wait_for(lambda: _finished(w, "cam-c"), timeout_s=120)
    wait_for(lambda: len(fleet.alarms("cam-c")) >= CYCLES, timeout_s=30)
    stored = fleet.alarms("cam-c")
    assert {(a["device"], a["identity"]) for a in stored} == {("pole-c", "Lin-Manuel Miranda")}
    assert not w.alarms("cam-c"), "the device raised none itself"
    app = App(Settings(data_dir=w.data_dir))
    try:
        with app.db.session() as s:
            assert s.scalar(select(func.count(Template.id))) == 0, "no template on the device"
            assert s.scalar(select(func.count(Identity.id))) == 2, "its watchlists' people"
    finally:
        app.close()
    with fleet.server.client("supervisor") as c:
        assert c.get(f"/api/media/{stored[0]['crop_sha256']}").content[:2] == b"\xff\xd8"


def test_a_revoked_device_is_refused_at_once(fleet: Fleet) -> None:
    b = fleet.workers["pole-b"]
    device = json.loads((b.data_dir / "device.json").read_text())
    assert (b.data_dir / "device.json").stat().st_mode & 0o777 == 0o600
    with fleet.server.client("admin") as c:
        assert c.post("/api/devices/pole-b/revoke").status_code == 200
    r = httpx.get(
        fleet.server.url + "/api/fleet/config", headers={"Authorization": f"Device {device['credential']}"}
    )
    assert r.status_code == 403 and "revoked" in r.text, r.text
    assert b.proc is not None
    assert b.proc.wait(15) != 0, "the revoked worker stops with an error"
    assert "revoked" in b.log.read_text()
    # What it still signs is refused by the server's consumer.
    forged = Alarm(
        camera="cam-b", ts=now_utc(), event_id="forged-after-revocation", identity="Lin-Manuel Miranda",
        identity_id=1, gallery="wanted", score=0.99, threshold=0.5, fpir=0.01, model="dlib-resnet-v1",
        track_id=1, frame=99_999, xyxy=[0, 0, 10, 10], quality=1.0, latency_ms=1.0,
    )  # fmt: skip
    box = Outbox(fleet.tmp / "forged.sqlite3", 2**20)
    Forwarder(box, "pole-b", bytes.fromhex(device["signing_key"])).write(forged)
    publisher = Publisher(box, fleet.nats.url, stream="VIGIL_EVENTS").start()
    try:
        assert publisher.wait_drained(30)
    finally:
        publisher.stop()
        box.close()

    def refused() -> bool:
        with fleet.server.client("admin") as c:
            text = c.get("/metrics").text
        return 'vigil_fleet_refused_total{reason="revoked_device"} 1.0' in text

    wait_for(refused, timeout_s=30)
    assert not [x for x in fleet.alarms("cam-b") if x["frame"] == 99_999]
