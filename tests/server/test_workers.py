"""Camera workers of a real `vigil serve`: they die with their server, a restarted server runs one per
camera, a file camera resumes where it was without storing an alarm twice, file cameras are confined
to the media folders, and a source that keeps failing ends as a failed camera."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Server, start_server, stop_server, wait_for

from vigil.app import App
from vigil.core.config import Settings
from vigil.server.bus import EventBus
from vigil.server.supervisor import Supervisor
from vigil.video import cameras
from vigil.video.resume import FileProgress

EXPIRES = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 30 * 86400))
WATCHLIST = {
    "name": "wanted",
    "kind": "watchlist",
    "purpose": "test",
    "legal_basis": "test order 1",
    "authorized_by": "test judge",
    "expires_on": EXPIRES,
}


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan may wait a moment to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _workers(data_dir: Path) -> list[int]:
    """Pids of the camera worker processes (spawned by multiprocessing) serving ``data_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or not _alive(int(proc.name)):
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"spawn_main" in cmdline and f"VIGIL_DATA_DIR={data_dir}".encode() in environ:
            pids.append(int(proc.name))
    return pids


def _setup_watchlist(c: httpx.Client, shared_data: Path) -> None:
    assert c.post("/api/galleries", json=WATCHLIST).status_code == 201
    photo = shared_data / "people" / "lin-manuel-miranda.png"
    with photo.open("rb") as fh:
        r = c.post(
            "/api/galleries/wanted/identities",
            data={"identity": "Lin-Manuel Miranda"},
            files=[("files", (photo.name, fh, "image/png"))],
        )
    assert r.status_code == 201, r.text


def _health(c: httpx.Client, camera: str) -> dict[str, Any]:
    health: dict[str, Any] = c.get(f"/api/cameras/{camera}").json()["health"]
    return health


def _alarms(c: httpx.Client, camera: str) -> list[dict[str, Any]]:
    alarms: list[dict[str, Any]] = c.get("/api/alarms", params={"camera": camera}).json()
    return alarms


pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")


def test_killed_server_takes_its_worker_along_and_the_restarted_one_resumes_the_file(
    tmp_path: Path, shared_data: Path
) -> None:
    data = tmp_path / "server"
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    server = start_server(data)
    try:
        with server.client("supervisor") as c:
            _setup_watchlist(c, shared_data)
            assert c.post("/api/cameras", json={"name": "stage", "url": str(clip)}).status_code == 201
            # Killed during his close-up (frame 82 to the end), once its alarm is stored.
            wait_for(lambda: len(_alarms(c, "stage")) >= 2, timeout_s=120, interval_s=0.1)
            health = _health(c, "stage")
            assert health["state"] == "running", health
            worker = health["pid"]
            assert _workers(data) == [worker]
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    wait_for(lambda: not _alive(worker), timeout_s=5, interval_s=0.1)

    progress = FileProgress.model_validate_json((data / "cameras" / "1.json").read_text())
    assert 0 < progress.next_frame < 275 and not progress.finished
    again = start_server(data, keys=server.keys)
    try:
        with again.client("supervisor") as c:
            pid = wait_for(lambda: _health(c, "stage")["pid"], timeout_s=60)
            assert pid != worker and _workers(data) == [pid], "exactly one worker for the camera"
            lock = data / "cameras" / "1.lock"
            wait_for(lambda: lock.read_text().strip() == str(pid), timeout_s=60)  # the new worker holds it
            # A clean run of the same file, on another camera, for comparison.
            assert c.post("/api/cameras", json={"name": "clean", "url": str(clip)}).status_code == 201
            for camera in ("stage", "clean"):
                wait_for(lambda camera=camera: _health(c, camera)["state"] == "finished", timeout_s=180)
            assert _health(c, "stage")["frames"] == 275 - progress.next_frame, "continued, not replayed"
            stage, clean = _alarms(c, "stage"), _alarms(c, "clean")
            assert len(clean) == 2 and len(stage) == len(clean), (stage, clean)
    finally:
        stop_server(again)
    assert _workers(data) == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Server]:
    env = {"VIGIL_WORKER_MAX_FAILURES": "3", "VIGIL_WORKER_MAX_BACKOFF_S": "1"}
    s = start_server(tmp_path_factory.mktemp("server"), env)
    with s.client("supervisor") as c:
        _setup_watchlist(c, shared_data)
    yield s
    stop_server(s)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/etc/passwd", "/etc/passwd: not inside a media folder"),
        ("/etc", "/etc: not inside a media folder"),
        ("{media}/missing.mp4", "{media}/missing.mp4: no such file or folder"),
        ("{media}/../../../../etc/hostname", "not inside a media folder"),
    ],
)
def test_file_cameras_outside_the_media_folders_are_refused(server: Server, url: str, expected: str) -> None:
    media = server.data_dir / "media"
    with server.client("supervisor") as c:
        r = c.post("/api/cameras", json={"name": "bad", "url": url.format(media=media)})
        assert r.status_code == 422, r.text
        assert expected.format(media=media) in r.json()["detail"]
        if "not inside" in expected:
            assert "VIGIL_MEDIA_DIRS" in r.json()["detail"]
        assert c.get("/api/cameras/bad").status_code == 404


def test_a_source_that_keeps_failing_is_marked_failed(server: Server) -> None:
    media = server.data_dir / "media"
    media.mkdir(exist_ok=True)
    (media / "broken.mp4").write_bytes(b"not a video at all" * 100)
    with server.client("supervisor") as c:
        r = c.post("/api/cameras", json={"name": "broken", "url": str(media / "broken.mp4")})
        assert r.status_code == 201, r.text
        health = wait_for(lambda: (h := _health(c, "broken"))["state"] == "failed" and h, timeout_s=90)
        assert health["restarts"] == 2 and health["pid"] is None
        assert "broken.mp4" in (health["last_error"] or ""), health
        time.sleep(3)
        assert _health(c, "broken")["restarts"] == 2, "a failed camera is not restarted"
        started = c.post("/api/cameras/broken/start").json()  # by hand: it is tried again
        assert started["health"]["state"] in ("starting", "running", "restarting"), started
        wait_for(lambda: _health(c, "broken")["state"] == "failed", timeout_s=90)


def test_a_worker_outlives_the_thread_that_asked_for_it(tmp_path: Path) -> None:
    """On Linux a worker is killed when the thread that started it ends (PR_SET_PDEATHSIG), and the
    server ends idle request threads: workers are started by the supervisor's own thread."""
    settings = Settings(data_dir=tmp_path / "data")
    app = App(settings)
    cameras.add_camera(app, "gate", "rtsp://127.0.0.1:9/nothing-here")
    app.close()
    bus = EventBus()
    supervisor = Supervisor(settings, bus)
    supervisor.start()
    try:

        def request() -> None:
            supervisor.start_camera("gate")
            wait_for(lambda: supervisor.health("gate").state in ("running", "offline"), timeout_s=60)

        thread = threading.Thread(target=request)
        thread.start()
        thread.join()
        pid = supervisor.health("gate").pid
        time.sleep(2)
        health = supervisor.health("gate")
        assert pid is not None and (health.pid, health.restarts) == (pid, 0), health
    finally:
        supervisor.shutdown()


def test_a_killed_worker_resumes_its_file_and_stores_each_alarm_once(
    server: Server, shared_data: Path
) -> None:
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    with server.client("supervisor") as c:
        assert c.post("/api/cameras", json={"name": "stage", "url": str(clip)}).status_code == 201
        wait_for(lambda: len(_alarms(c, "stage")) >= 2, timeout_s=120, interval_s=0.1)
        health = _health(c, "stage")
        assert health["state"] == "running", health
        os.kill(health["pid"], signal.SIGKILL)
        wait_for(lambda: _health(c, "stage")["restarts"] == 1, timeout_s=30)
        finished = wait_for(lambda: (h := _health(c, "stage"))["state"] == "finished" and h, timeout_s=180)
        assert 0 < finished["frames"] < 275, "the restarted worker continued the file"
        assert len(_alarms(c, "stage")) == 2


def test_camera_workers_run_the_active_pack(tmp_path: Path, shared_data: Path, shared_models: Path) -> None:
    """A server whose first use installed edgeface-xs (from a local folder) runs its camera workers on
    it too: their alarms carry that model (a worker rebuilding the settings must not fall back to the
    legacy dlib settings)."""
    data = tmp_path / "server"
    clip = shared_data / "video" / "short_hamilton_clip.mp4"
    server = start_server(data, {"VIGIL_MODEL_SOURCE_DIR": str(shared_models)})
    try:
        with server.client("supervisor") as c:
            _setup_watchlist(c, shared_data)
            assert c.post("/api/cameras", json={"name": "stage", "url": str(clip)}).status_code == 201
            wait_for(lambda: _health(c, "stage")["state"] == "finished", timeout_s=180)
            alarms = _alarms(c, "stage")
            assert alarms and {a["model"] for a in alarms} == {"edgeface-xs-q"}, alarms
    finally:
        stop_server(server)
