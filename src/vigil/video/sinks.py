"""Sinks: where the pipeline's events go. The pipeline computes; a sink acts on each event.

A :class:`Sink` takes one event and returns what should travel on (to ``on_event``, the bus, a
notifier), or None when the event is to be dropped (already handled before). Two sinks exist:

- :class:`CatalogWriter` stores alarms, attendance marks and sightings in the catalog, each with its
  blobs and audit entry in one transaction, once per ``event_id``. An alarm that negative examples
  suppressed is stored and then dropped: nothing notifies it. An edge device's alarm (``device``
  set) is screened against the negatives on arrival
  (:func:`vigil.gallery.negatives.screen_arriving`). The one-box server, ``vigil watch`` and the
  server side of the fleet transport use it.
- the fleet's forwarder (:mod:`vigil.fleet.transport`) puts the events of an edge device in its
  outbox, to the server.
"""

from __future__ import annotations

from typing import Protocol

from vigil.app import App
from vigil.attendance.marks import store_mark
from vigil.events.schemas import Alarm, AnyEvent, AttendanceMarked, SightingRecorded
from vigil.gallery import negatives
from vigil.investigation.sightings import store_sighting
from vigil.video.alarms import store_alarm


class Sink(Protocol):
    """Acts on one event; returns the event to pass on (possibly a stored copy), or None to drop it."""

    def write(self, event: AnyEvent) -> AnyEvent | None: ...


class CatalogWriter:
    """Stores the events that are kept (alarms, attendance marks, sightings) in ``app``'s catalog.

    ``write`` returns the stored copy (``alarm_id``, ``mark_id`` or ``sighting_id`` and the blobs'
    digests set; the blobs themselves stay in it), None when that ``event_id`` is stored already (the
    unique index decides, so a replayed frame or a redelivered message is stored once), and any other
    event unchanged.

    Args:
        app: the application context.
        device: the edge device the events come from, recorded with each alarm (None: this server's
            own cameras, or ``vigil watch``).
    """

    def __init__(self, app: App, device: str | None = None) -> None:
        self.app = app
        self.device = device
        self.stored = 0
        """Events written by this writer."""
        self.duplicates = 0
        """Events dropped because their ``event_id`` was stored already."""
        self.suppressed = 0
        """Alarms stored ``suppressed`` by negative examples, and so passed on to no one (no bus, SSE,
        webhook or MQTT message: they are not alarms)."""

    def write(self, event: AnyEvent) -> AnyEvent | None:
        stored: AnyEvent | None
        if isinstance(event, Alarm):
            if self.device is not None:  # the device's catalog holds no negative examples
                event = negatives.screen_arriving(self.app, event)
            stored = store_alarm(self.app, event, device=self.device)
            if stored is not None and stored.suppressed_by:
                self.stored += 1
                self.suppressed += 1
                return None  # kept for the record and the reviewers; raised to no one
        elif isinstance(event, AttendanceMarked):
            stored = store_mark(self.app, event)
        elif isinstance(event, SightingRecorded):
            stored = store_sighting(self.app, event)
        else:
            return event
        if stored is None:
            self.duplicates += 1
        else:
            self.stored += 1
        return stored
