"""Scheduled work of `vigil serve`: the retention purge, every ``purge_interval_s``."""

from __future__ import annotations

import logging
import threading

from vigil.app import App
from vigil.governance import retention

log = logging.getLogger(__name__)


class PurgeScheduler:
    def __init__(self, app: App, interval_s: float) -> None:
        self.app = app
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-purge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = retention.purge(self.app)
                self.runs += 1
                if report.alarms or report.snapshots or report.files:
                    log.info("retention purge: %s", report.model_dump())
            except Exception:  # the next run tries again
                log.exception("retention purge failed")
            self._stop.wait(self.interval_s)
