"""The server's side of a model switch: the re-embedding job on a background thread, resumed when the
server starts, and what follows the flip: the face engine reloaded on the new pack and the camera
workers restarted so that they load it too.

The job itself is :mod:`vigil.gallery.modelstate` (resumable, audited). It runs on its own
application context (its own catalog connections and index store, on the same data directory), so
that it never shares the request threads' index cache. A server stopping leaves the switch running;
the next start resumes it. When another process switches (``vigil models use``), the server sees the
active pack change within ``ACTIVE_CHECK_S`` and reloads as if it had run the switch.

The packs (their licences, installed state, installation) come from :mod:`vigil.vision.packs`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from vigil.app import App
from vigil.core.errors import ConflictError, ModelError, VigilError
from vigil.gallery import modelstate
from vigil.server.deps import ServerState
from vigil.server.scheduler import Periodic
from vigil.vision.engine import FaceEngine, build_engine
from vigil.vision.packs.active import active_model
from vigil.vision.packs.catalog import get_pack
from vigil.vision.packs.resolve import is_installed
from vigil.vision.packs.service import install_pack, list_packs

log = logging.getLogger(__name__)

ACTIVE_CHECK_S = 10.0
"""How often the server looks whether another process changed the active pack."""
RESTART_STATES = frozenset({"starting", "running", "offline", "restarting"})
"""Cameras in these states are restarted after a flip (stopped, finished and failed ones stay so)."""


class PackView(BaseModel):
    """A model pack as the API shows it."""

    name: str
    title: str
    detector: str = ""
    embedder: str = ""
    licences: list[str]
    installed: bool
    active: bool
    """The catalog's active pack."""
    in_use: bool
    """The pack the server's engine uses now."""
    size_bytes: int | None = None
    caveat: str | None = None
    notes: str = ""
    accuracy: dict[str, str] = {}


def engine_for(app: App, pack: str) -> FaceEngine:
    """The engine of ``pack``."""
    return build_engine(app.settings, pack)


def pack_views(app: App) -> list[PackView]:
    """Every pack with its licences and state."""
    return [PackView.model_validate(p.model_dump()) for p in list_packs(app)]


def check_installed(app: App, pack: str) -> None:
    """NotFoundError for a pack vigil does not know, ConflictError for one that is not installed."""
    get_pack(pack)
    if not is_installed(app.settings, pack):
        raise ConflictError(
            f"the model pack {pack!r} is not installed",
            hint=f"install it first: POST /api/models/{pack}/install (or `vigil models install {pack}`)",
        )


def install(app: App, pack: str, actor: str) -> PackView:
    """Install ``pack`` from the server's configured source (``VIGIL_MODEL_SOURCE_DIR``, the mirror or
    the upstream URLs), audited by the packs service. A pack that cannot be fetched or verified from
    there is a ConflictError (409: the server's sources, not the request, must change)."""
    try:
        install_pack(app, pack, actor)
    except ModelError as exc:  # no source reachable, a file not as pinned, a failed conversion
        raise ConflictError(f"the {pack} pack could not be installed: {exc.message}", hint=exc.hint) from exc
    return next(p for p in pack_views(app) if p.name == pack)


class SwitchRunner:
    """Runs the server's model switch, one at a time, on a daemon thread."""

    def __init__(self, st: ServerState) -> None:
        self._st = st
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._switch_id: int | None = None
        self._stopping = threading.Event()
        self._seen: tuple[str, str] | None = None
        """The active (pack, model) the engine was last loaded for."""

    def start(self, pack: str, actor: str) -> modelstate.SwitchStatus:
        """Start (or resume) the switch to ``pack`` and run it in the background."""
        app = self._st.app
        check_installed(app, pack)
        engine = engine_for(app, pack)
        status = modelstate.start_switch(app, pack, engine.model_id, actor)
        self._launch(status.id, lambda: engine)
        return status

    def resume(self) -> None:
        """At start-up: go on with a switch that a stopped or killed server left running."""
        self._seen = _active_key(self._st.app)
        current = modelstate.current_switch(self._st.app)
        if current is not None and current.state != "running":
            modelstate.audit_pending(self._st.app)  # a flip whose run was killed before auditing it
        elif current is not None:
            log.warning("model switch %d to %s was left running: resuming it", current.id, current.pack)
            self._launch(current.id, lambda: engine_for(self._st.app, current.pack))

    def stop(self) -> None:
        """The server stops: the run ends after its current batch and is resumed at the next start."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def check_active(self) -> None:
        """Every ``ACTIVE_CHECK_S``: another process (``vigil models use``) switched: reload as well."""
        key = _active_key(self._st.app)
        with self._lock:
            if key == self._seen or (self._thread is not None and self._thread.is_alive()):
                return
            first_record, self._seen = self._seen is None, key
        if first_record and key is not None and self._runs(key[1]):
            return  # the first use's choice (this server's own, or the same): nothing to reload
        self._reload(f"another process made {key[0] if key else '?'} the active pack")

    def _runs(self, model_id: str) -> bool:
        """Whether the server's engine is not loaded yet or already runs ``model_id``."""
        engine = self._st.app.__dict__.get("engine")
        return engine is None or getattr(engine, "model_id", None) == model_id

    def _launch(self, switch_id: int, engine: Callable[[], FaceEngine]) -> None:
        """Run the switch on a new thread, unless this server runs it already. A thread still ending
        the run of a switch cancelled just before is waited for (it holds the run lock)."""
        with self._lock:
            previous = self._thread
            if previous is not None and previous.is_alive() and self._switch_id == switch_id:
                return
            self._switch_id = switch_id
            self._thread = threading.Thread(
                target=self._run, args=(switch_id, engine, previous), name="vigil-model-switch", daemon=True
            )
            self._thread.start()

    def _run(
        self, switch_id: int, engine: Callable[[], FaceEngine], previous: threading.Thread | None
    ) -> None:
        if previous is not None:
            previous.join()
        job = App(self._st.app.settings)
        try:
            final = modelstate.run_switch(job, switch_id, engine(), self._progress)
        except modelstate.SwitchInterruptedError:
            log.info("model switch %d: paused while the server stops (resumed at its next start)", switch_id)
            return
        except ConflictError as exc:  # another process runs it; check_active follows its flip
            log.warning("model switch %d: %s", switch_id, exc.message)
            return
        except VigilError as exc:
            log.error("model switch %d failed: %s", switch_id, exc)
            return
        except Exception:  # a worker thread must report, never die silently
            log.exception("model switch %d failed", switch_id)
            return
        finally:
            job.close()
        if final.state == "done":
            with self._lock:
                self._seen = (final.pack, final.model_id)
            self._reload(f"model switch {final.id} done: {final.pack} is active")

    def _progress(self, status: modelstate.SwitchStatus) -> None:
        if self._stopping.is_set():
            raise modelstate.SwitchInterruptedError
        log.debug("model switch %d: %d of %d photos", status.id, status.photos_done, status.photos_total)

    def _reload(self, why: str) -> None:
        """Reload the engine (between two requests' engine calls) and restart the cameras' workers,
        so that both load the active pack."""
        with self._st.face_lock:
            self._st.app.reload_engine()
        restarted = restart_cameras(self._st.supervisor)
        # The models that match changed: worth a line in the default log.
        log.warning("%s; engine reloaded, %d camera(s) restarted", why, len(restarted))


def _active_key(app: App) -> tuple[str, str] | None:
    active = active_model(app)
    return (active.pack, active.model_id) if active is not None else None


def restart_cameras(supervisor: Any) -> list[str]:
    """Restart the workers of the cameras that run, so that they load the active pack."""
    if supervisor is None:
        return []
    restarted = []
    for camera in supervisor.cameras():
        if supervisor.health(camera).state in RESTART_STATES:
            supervisor.stop_camera(camera)
            supervisor.start_camera(camera)
            restarted.append(camera)
    return restarted


_runner_lock = threading.Lock()


def runner(st: ServerState) -> SwitchRunner:
    """The server's switch runner, made on first use (and stopped with the server)."""
    with _runner_lock:
        found = st.extras.get("model_switch")
        if found is None:
            found = st.extras["model_switch"] = SwitchRunner(st)
            st.extras.setdefault("on_stop", []).append(lambda _st: found.stop())
        return found


def install_hooks(st: ServerState) -> None:
    """At the server's start, resume a switch left running; then follow the active pack."""
    st.extras.setdefault("on_start", []).append(lambda s: runner(s).resume())
    check = Periodic("models", lambda: runner(st).check_active(), ACTIVE_CHECK_S, wait_first=True)
    st.extras.setdefault("scheduled", []).append(check)
