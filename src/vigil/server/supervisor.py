"""The camera supervisor: one worker process per running camera, restarted with backoff when it dies.

A worker runs :func:`vigil.video.watch.watch` on its camera (live sources reconnect by themselves;
video files play at their own frame rate, once per start) and sends back, over one queue:
events (to the bus), preview JPEGs with boxes and names drawn, and running metrics.
A worker that exits with an error, or is killed, is started again after 1, 2, 4 ... seconds
(at most ``worker_max_backoff_s``); the backoff resets once a worker has run for a minute. A camera
whose worker fails ``worker_max_failures`` times in a row is marked ``failed`` and left alone until
it is started again.

A worker dies with its server: on Linux the kernel kills it when the supervisor's thread that started
it ends (``PR_SET_PDEATHSIG``; workers are therefore started from the supervisor's own thread, never
from a request's), and everywhere a thread of the worker exits when the pipe from the server closes.
A worker holds a lock on its camera (``<data dir>/cameras/<id>.lock``) while it runs: a second worker
for the same camera (a second server on the same data directory) waits for it, then gives up.
A file camera continues where it was after a restart (see :mod:`vigil.video.resume`).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from typing import Any

from pydantic import BaseModel

from vigil.core.config import Settings
from vigil.core.errors import NotFoundError
from vigil.events.schemas import EVENT_ADAPTER, AnyEvent, CameraOffline, CameraOnline, CameraStatus
from vigil.server.bus import EventBus
from vigil.video.cameras import get_camera

log = logging.getLogger(__name__)

STABLE_AFTER_S = 60.0
LOCK_WAIT_S = 15.0
"""A worker waits this long for another worker of its camera to end before giving up."""
START_WAIT_S = 10.0
"""``start_camera`` waits this long for the supervisor's thread to start the worker."""
PR_SET_PDEATHSIG = 1
_ctx = mp.get_context("spawn")
_held_locks: list[Any] = []
"""The worker's camera lock, open for as long as the worker lives."""


class CameraHealth(BaseModel):
    camera: str
    state: str
    """stopped, starting, running, offline, finished, restarting or failed."""
    pid: int | None
    restarts: int
    last_error: str | None
    started_at: datetime | None
    fps: float
    frames: int
    dropped: int
    alarms: int
    stage_ms_per_frame: dict[str, float]
    alarm_latency_ms: dict[str, float] | None


@dataclass
class _Worker:
    camera: str
    process: BaseProcess | None = None
    stop: Any = None
    state: str = "stopped"
    wanted: bool = False
    restarts: int = 0
    backoff_s: float = 1.0
    restart_at: float | None = None
    last_error: str | None = None
    started_mono: float = 0.0
    started_at: datetime | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    rate: tuple[float, int, float] = (0.0, 0, 0.0)  # (time, frames, fps) of the last metrics
    finished: bool = False
    failures: int = 0
    """Deaths in a row without a minute of stable running."""
    fresh: bool = False
    """A start was asked for (not a restart after a death)."""
    replay: bool = False
    """The next start plays a finished file again."""


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when the server ends, even by ``kill -9``."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:
            log.warning("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)
    if os.getppid() != parent_pid:  # the server died before the signal was armed
        os._exit(1)
    parent = mp.parent_process()
    if parent is None:
        return

    def watch_parent() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # readable once the server's end closes
        os._exit(1)

    threading.Thread(target=watch_parent, name="vigil-parent-watch", daemon=True).start()


def _lock_camera(settings: Settings, camera_id: int, camera: str) -> None:
    """Hold the camera's lock for the life of this process (waiting ``LOCK_WAIT_S`` for a holder)."""
    from vigil.core.errors import ConflictError

    try:
        import fcntl
    except ImportError:  # not POSIX: the parent watch alone keeps workers from outliving the server
        return
    settings.cameras_dir.mkdir(parents=True, exist_ok=True)
    fh = (settings.cameras_dir / f"{camera_id}.lock").open("a+")
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                fh.close()
                raise ConflictError(
                    f"camera {camera!r} is already run by process {holder}",
                    hint="is another vigil serve running on this data directory?",
                ) from None
            time.sleep(0.2)
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _held_locks.append(fh)


def _worker_main(
    settings_data: dict[str, Any], camera: str, out: Any, stop: Any, parent_pid: int, replay: bool
) -> None:
    """The body of a worker process (spawned: imports are done here)."""
    _die_with_parent(parent_pid)
    import cv2
    import numpy as np

    from vigil.app import App
    from vigil.core.errors import VigilError
    from vigil.video.annotate import render
    from vigil.video.cameras import check_media_path, get_camera
    from vigil.video.resume import forget_finished
    from vigil.video.watch import watch

    settings = Settings(**settings_data)
    app = App(settings)
    period = 1.0 / settings.preview_fps

    class Preview:
        last = 0.0

        def draw(self, frame: Any, tracked: Any, pipeline: Any) -> None:
            now = time.monotonic()
            if now - self.last < period:
                return
            self.last = now
            img = render(frame, tracked, pipeline)
            h, w = img.shape[:2]
            if w > 800:
                img = np.asarray(
                    cv2.resize(img, (800, round(h * 800 / w)), interpolation=cv2.INTER_AREA), np.uint8
                )
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 75])
            if ok:
                out.put(("preview", camera, buf.tobytes()))

        def close(self) -> None:
            pass

    def on_event(event: Any) -> None:
        out.put(("event", camera, event.model_dump_json()))  # the wire form, crops included

    try:
        info, url = get_camera(app, camera)
        check_media_path(settings, url)
        _lock_camera(settings, info.id, camera)
        if replay:
            forget_finished(settings, info.id)
        out.put(("running", camera, None))
        summary = watch(
            app,
            None,
            camera=camera,
            fail_fast=False,
            realtime=True,
            stop=stop,
            annotator=Preview(),
            on_event=on_event,
            on_warning=lambda m: out.put(("warning", camera, m)),
            on_metrics=lambda m: out.put(("metrics", camera, m)),
            actor=f"camera:{camera}",
            resume=True,
        )
        out.put(("metrics", camera, summary))
        out.put(("finished", camera, summary))
    except VigilError as exc:
        out.put(("error", camera, str(exc)))
        raise SystemExit(3) from None
    except Exception as exc:
        out.put(("error", camera, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        app.close()


class Supervisor:
    """Starts, stops and watches camera workers; keeps each camera's health and latest preview."""

    def __init__(self, settings: Settings, bus: EventBus, app: Any = None) -> None:
        self.settings = settings
        self.bus = bus
        self.app = app
        """The server's App: a worker that dies cannot audit its own running period, so this does."""
        self._workers: dict[str, _Worker] = {}
        self._previews: dict[str, tuple[int, bytes]] = {}
        self._preview_cond = threading.Condition()
        self._lock = threading.Lock()
        self._spawned = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._queue: Any = _ctx.Queue()
        self._running = False
        self._threads: list[threading.Thread] = []

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        for target, name in ((self._read, "vigil-supervisor-read"), (self._watch, "vigil-supervisor")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def shutdown(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
            for w in workers:
                w.wanted = False
                if w.stop is not None:
                    w.stop.set()
        deadline = time.monotonic() + 5
        for w in workers:
            if w.process is not None:
                w.process.join(timeout=max(0.1, deadline - time.monotonic()))
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join(timeout=2)
        self._running = False
        self._queue.put(("quit", "", None))
        for t in self._threads:
            t.join(timeout=3)
        self._queue.close()
        self._queue.join_thread()

    # control -----------------------------------------------------------------------------------
    def start_camera(self, camera: str, *, replay: bool = False) -> None:
        """Run the camera (a no-op if its worker runs); ``replay``: a finished file plays again.

        The worker is started by the supervisor's thread (see the module doc); this waits for it.
        """
        if self._on_device(camera):
            return
        with self._spawned:
            w = self._workers.setdefault(camera, _Worker(camera))
            w.wanted = True
            w.backoff_s = 1.0
            w.failures = 0
            w.replay = replay
            if w.process is not None and w.process.is_alive():
                return
            w.process = None
            if not self._running:
                self._spawn(w)
                return
            w.fresh, w.restart_at, w.state = True, 0.0, "starting"
            self._wake.set()
            self._spawned.wait_for(
                lambda: w.process is not None or not w.wanted or not self._running, timeout=START_WAIT_S
            )

    def _on_device(self, camera: str) -> bool:
        """A camera assigned to an edge device runs there, never here (it is a no-op to start it)."""
        if self.app is None:
            return False
        try:
            device = get_camera(self.app, camera)[0].device
        except NotFoundError:
            return False
        if device is not None:
            log.info("camera %s runs on device %s, not on this server", camera, device)
        return device is not None

    def stop_camera(self, camera: str) -> None:
        with self._lock:
            w = self._workers.get(camera)
            if w is None:
                return
            w.wanted = False
            w.restart_at = None
            proc = w.process
            if w.stop is not None:
                w.stop.set()
        if proc is not None:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        with self._lock:
            w.state = "stopped"
            w.process = None

    def forget(self, camera: str) -> None:
        self.stop_camera(camera)
        with self._lock:
            self._workers.pop(camera, None)
            self._previews.pop(camera, None)

    def _spawn(self, w: _Worker) -> None:
        w.stop = _ctx.Event()
        w.process = _ctx.Process(
            target=_worker_main,
            args=(
                self.settings.model_dump(exclude_unset=True),
                w.camera,
                self._queue,
                w.stop,
                os.getpid(),
                w.replay,
            ),
            name=f"vigil-camera-{w.camera}",
            daemon=True,
        )
        w.process.start()
        w.state = "starting"
        w.fresh = w.replay = False
        w.finished = False
        w.restart_at = None
        w.started_mono = time.monotonic()
        w.started_at = datetime.now(UTC)
        w.metrics = {}
        w.rate = (time.monotonic(), 0, 0.0)
        log.info("camera %s: worker %s started", w.camera, w.process.pid)

    # status ------------------------------------------------------------------------------------
    def health(self, camera: str) -> CameraHealth:
        with self._lock:
            w = self._workers.get(camera) or _Worker(camera)
            m = w.metrics
            return CameraHealth(
                camera=camera,
                state=w.state,
                pid=w.process.pid if w.process is not None and w.process.is_alive() else None,
                restarts=w.restarts,
                last_error=w.last_error,
                started_at=w.started_at,
                fps=w.rate[2],
                frames=int(m.get("frames", 0)),
                dropped=int(m.get("dropped", 0)),
                alarms=int(m.get("alarms", 0)),
                stage_ms_per_frame=dict(m.get("stage_ms_per_frame") or {}),
                alarm_latency_ms=m.get("alarm_latency_ms"),
            )

    def cameras(self) -> list[str]:
        with self._lock:
            return list(self._workers)

    def preview(self, camera: str) -> tuple[int, bytes] | None:
        with self._preview_cond:
            return self._previews.get(camera)

    def wait_preview(self, camera: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The next preview of ``camera`` newer than sequence number ``after`` (None on timeout)."""
        with self._preview_cond:
            self._preview_cond.wait_for(
                lambda: (p := self._previews.get(camera)) is not None and p[0] > after, timeout=timeout
            )
            p = self._previews.get(camera)
            return p if p is not None and p[0] > after else None

    def _audit_lost_run(self, w: _Worker, code: int | None) -> None:
        """The running period of a worker that died (it records its own when it ends normally)."""
        if self.app is None:
            return
        from vigil.video.watch import audit_lost_run

        try:
            audit_lost_run(self.app, w.camera, w.started_at, w.metrics, code)
        except Exception:  # the audit must not stop the restart
            log.exception("camera %s: could not audit the lost run", w.camera)

    # threads -----------------------------------------------------------------------------------
    def _status_event(self, w: _Worker) -> None:
        self.bus.publish(
            CameraStatus(camera=w.camera, state=w.state, restarts=w.restarts, error=w.last_error)
        )

    @staticmethod
    def _parse_event(camera: str, payload: Any) -> AnyEvent | None:
        """A worker's event from its wire form; None (logged) if it is not a valid event."""
        try:
            return EVENT_ADAPTER.validate_json(payload)
        except ValueError as exc:
            log.error("camera %s: its worker sent an invalid event, dropped: %s", camera, exc)
            return None

    def _read(self) -> None:
        while True:
            try:
                kind, camera, payload = self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._running:
                    return
                continue
            except (EOFError, OSError):
                return
            if kind == "quit":
                return
            if kind == "preview":
                with self._preview_cond:
                    seq = (self._previews.get(camera) or (0, b""))[0] + 1
                    self._previews[camera] = (seq, payload)
                    self._preview_cond.notify_all()
                continue
            with self._lock:
                w = self._workers.get(camera)
                if w is None:
                    continue
                changed = False
                if kind == "event":
                    event = self._parse_event(camera, payload)
                    if event is not None:
                        self.bus.publish(event)
                    if isinstance(event, CameraOffline) and w.state != "offline":
                        w.state, changed = "offline", True
                    elif isinstance(event, CameraOnline) and w.state != "running":
                        w.state, changed = "running", True
                elif kind == "metrics":
                    now, frames = time.monotonic(), int(payload.get("frames", 0))
                    t0, f0, _ = w.rate
                    fps = (frames - f0) / (now - t0) if now > t0 and frames >= f0 else 0.0
                    w.rate = (now, frames, round(fps, 2))
                    w.metrics = payload
                elif kind == "running":
                    w.state, changed = "running", True
                elif kind == "finished":
                    w.state, w.finished, changed = "finished", True, True
                    w.rate = (time.monotonic(), w.rate[1], 0.0)
                elif kind == "error":
                    w.last_error = str(payload)
                elif kind == "warning":
                    log.warning("camera %s: %s", camera, payload)
                if changed:
                    self._status_event(w)

    def _watch(self) -> None:
        """The supervisor's thread: it starts every worker (see the module doc) and restarts dead ones."""
        while self._running:
            self._wake.wait(0.25)
            self._wake.clear()
            with self._spawned:
                for w in self._workers.values():
                    proc = w.process
                    if proc is None:
                        if w.wanted and w.restart_at is not None and time.monotonic() >= w.restart_at:
                            fresh = w.fresh
                            w.restarts += 0 if fresh else 1
                            self._spawn(w)
                            if not fresh:
                                self._status_event(w)
                            self._spawned.notify_all()
                        continue
                    if proc.is_alive():
                        if time.monotonic() - w.started_mono > STABLE_AFTER_S:
                            w.backoff_s, w.failures = 1.0, 0
                        continue
                    proc.join(timeout=0)
                    w.process = None
                    code = proc.exitcode
                    if w.finished or not w.wanted:
                        w.state = "finished" if w.finished else "stopped"
                        continue
                    w.last_error = w.last_error or f"worker exited with code {code}"
                    self._audit_lost_run(w, code)
                    w.failures += 1
                    if w.failures >= self.settings.worker_max_failures:
                        w.state, w.restart_at = "failed", None
                        log.error(
                            "camera %s: worker failed %d times in a row (%s); not restarted",
                            w.camera,
                            w.failures,
                            w.last_error,
                        )
                        self._status_event(w)
                        continue
                    w.state = "restarting"
                    w.restart_at = time.monotonic() + w.backoff_s
                    log.warning(
                        "camera %s: worker died (exit %s: %s); restart in %.0f s",
                        w.camera,
                        code,
                        w.last_error,
                        w.backoff_s,
                    )
                    w.backoff_s = min(w.backoff_s * 2, self.settings.worker_max_backoff_s)
                    self._status_event(w)
