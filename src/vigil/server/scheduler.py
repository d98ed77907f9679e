"""Scheduled work of `vigil serve`: the retention purge (every ``purge_interval_s``) and the
clustering of unmatched sightings into recurring unknown people (every ``cluster_interval_s``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from vigil.app import App
from vigil.governance import retention
from vigil.investigation import clusters

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``job`` on its own thread every ``interval_s`` seconds until stopped (the first time at
    once, or after one interval if ``wait_first``)."""

    def __init__(
        self, name: str, job: Callable[[], None], interval_s: float, *, wait_first: bool = False
    ) -> None:
        self.name = name
        self.job = job
        self.interval_s = interval_s
        self.wait_first = wait_first
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"vigil-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        if self.wait_first:
            self._stop.wait(self.interval_s)
        while not self._stop.is_set():
            try:
                self.job()
                self.runs += 1
            except Exception:  # the next run tries again
                log.exception("scheduled %s failed", self.name)
            self._stop.wait(self.interval_s)


def purge_job(app: App) -> Callable[[], None]:
    def run() -> None:
        report = retention.purge(app)
        if report.alarms or report.snapshots or report.files:
            log.info("retention purge: %s", report.model_dump())

    return run


def cluster_job(app: App) -> Callable[[], None]:
    def run() -> None:
        report = clusters.update(app, "system:scheduler")
        if report.assigned or report.new_clusters:
            log.info("clusters: %s", report.model_dump())

    return run


def schedules(app: App) -> list[Periodic]:
    """The server's scheduled jobs, as the settings ask (an interval of 0 turns a job off)."""
    out = [Periodic("purge", purge_job(app), app.settings.purge_interval_s)]
    if app.settings.cluster_interval_s > 0:
        # Not at start: a restarted server should not re-cluster before anyone asked.
        out.append(Periodic("clusters", cluster_job(app), app.settings.cluster_interval_s, wait_first=True))
    return out
