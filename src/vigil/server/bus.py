"""The one event bus of the server: camera workers and services publish, subscribers receive.

``publish`` is thread-safe and never blocks. A dispatcher thread hands each event to the listeners
(notifications) and to every live stream (each an ``asyncio.Queue`` on the server's loop).
Events are the typed, versioned union of :mod:`vigil.events.schemas`; what leaves the server (SSE,
webhooks, MQTT) is each event's :func:`~vigil.events.schemas.public` form, never its blobs.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from vigil.events.schemas import AnyEvent

log = logging.getLogger(__name__)

Event = AnyEvent
Listener = Callable[[Event], None]

STREAM_BACKLOG = 1000


class EventBus:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._listeners: list[Listener] = []
        self._streams: dict[asyncio.Queue[Event], asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.published = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-bus", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def publish(self, event: Event) -> None:
        self.published += 1
        self._queue.put(event)

    def add_listener(self, listener: Listener) -> None:
        """``listener(event)`` runs on the dispatcher thread: it must return quickly (queue slow work)."""
        with self._lock:
            self._listeners.append(listener)

    def open_stream(self) -> asyncio.Queue[Event]:
        """A queue that receives every event from now on (call from the event loop)."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=STREAM_BACKLOG)
        with self._lock:
            self._streams[q] = asyncio.get_running_loop()
        return q

    def close_stream(self, q: asyncio.Queue[Event]) -> None:
        with self._lock:
            self._streams.pop(q, None)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            with self._lock:
                listeners = list(self._listeners)
                streams = list(self._streams.items())
            for listener in listeners:
                try:
                    listener(event)
                except Exception:  # a broken listener must not stop the others
                    log.exception("event listener %r failed", listener)
            for q, loop in streams:
                try:
                    loop.call_soon_threadsafe(_offer, q, event)
                except RuntimeError:  # loop closed
                    self.close_stream(q)


def _offer(q: asyncio.Queue[Event], event: Event) -> None:
    try:
        q.put_nowait(event)
    except asyncio.QueueFull:  # a stalled client loses old events, never blocks the bus
        q.get_nowait()
        q.put_nowait(event)
