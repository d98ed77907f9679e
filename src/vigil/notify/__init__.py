"""Notifications from the server's one event bus: signed webhooks and MQTT (docs/notifications.md).

:class:`Notifiers` bundles both for the server: it registers them as bus listeners, starts them with
the server and stops them after the bus has delivered its last events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from vigil.app import App
from vigil.events.schemas import AnyEvent
from vigil.notify.mqtt import MqttNotifier
from vigil.notify.webhooks import WebhookNotifier, verify_signature

__all__ = ["MqttNotifier", "Notifiers", "WebhookNotifier", "verify_signature"]


class Bus(Protocol):
    def add_listener(self, listener: Callable[[AnyEvent], None]) -> None: ...


class Notifiers:
    """The webhook notifier, and the MQTT notifier when ``mqtt_url`` is set, listening on ``bus``."""

    def __init__(self, app: App, bus: Bus) -> None:
        self.webhooks = WebhookNotifier(app)
        self.mqtt = MqttNotifier(app.settings) if app.settings.mqtt_url else None
        bus.add_listener(self.webhooks)
        if self.mqtt is not None:
            bus.add_listener(self.mqtt)

    def start(self) -> None:
        self.webhooks.start()
        if self.mqtt is not None:
            self.mqtt.start()

    def stop(self) -> None:
        """Call after the bus has stopped, so that its last events are sent (or dead-lettered)."""
        if self.mqtt is not None:
            self.mqtt.stop()
        self.webhooks.stop()
